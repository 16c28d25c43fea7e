"""Measure one library: a subprocess of ``run.py``, one per library.

    python bench/peers/runner.py LIB --url URL --out FILE --pgids FILE --logs DIR
        [--jobs N] [--roundtrips N] [--reps N] [--bound S] [--scaling]

Imports ``libs.<lib>_peer`` (so a library that fails to import fails only
its own runner), then, ``--reps`` times over:

1. FLUSHALL; enqueue ``--jobs`` no-op jobs with the one-call API (timed),
   reading ``INFO memory`` ``used_memory`` before and after (memory per
   queued job); drain them with the library's first worker configuration;
   round trips on the running workers; stop the workers.
2. FLUSHALL; enqueue the jobs again with the bulk API (timed) when there is
   one, else the one-call API (not timed); drain them with the next worker
   configuration, if any; round trips; stop the workers.
3. …and so on until every configuration has drained once.

With ``--scaling`` (distq), it also drains with 1 and 4 worker processes and
with 10 KB and 1 MB bodies. Every worker command is started in a session of
its own; its process group id is appended to ``--pgids`` (so the parent can
clean up if this runner is killed) and the whole group is stopped by
``killpg`` (SIGTERM, then SIGKILL) when the measurement is done. Results are
written to ``--out`` after every step.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

PEERS = Path(__file__).resolve().parent
sys.path.insert(0, str(PEERS))

from libs import LIBS  # noqa: E402
from libs.base import Peer  # noqa: E402
from libs.common import DONE_KEY, URL_ENV  # noqa: E402

BODY = "x" * 100  # the job body: one 100-byte argument
WARMUP = 20  # enqueues / round trips before each timed one (not timed)
POLL_S = 0.005  # how often the done counter is read during a drain
CHECK_EVERY = 20  # polls between checks that the workers are still alive
ROUNDTRIP_TIMEOUT_S = 10.0  # bound on one round trip
ROUNDTRIP_CHUNK = 50  # round trips between checks of the workload bound
#: the library-only latencies a peer may measure (Peer.latencies), p50 and p99 each
EXTRA_FIGURES = ("service_get", "actor_call")
PAIRED_BLOCKS = 10  # alternating blocks of the paired one-call enqueue (distq vs redis-py)
STOP_GRACE_S = 3.0  # SIGTERM to SIGKILL
PROCESSES = 2
SCALING_PROCESSES = (1, 4)  # 2 is the main drain
SCALING_BODIES = {"10 KB": 10_000, "1 MB": 1_000_000}  # 100 B is the main drain
JOBS_1MB = 200


class Stopped(Exception):
    """SIGTERM from the parent: unwind, stopping the workers on the way."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Stopped("runner stopped by its parent (time limit)")


# Worker processes ----------------------------------------------------------------


class Workers:
    """A library's worker commands, each in its own session; stopped by process group."""

    def __init__(self, commands: list[list[str]], name: str, logs: Path, pgids: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PEERS), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.started = time.perf_counter()
        for index, command in enumerate(commands):
            path = logs / f"{name}-{index}-{os.getpid()}-{time.monotonic_ns()}.log"
            self.logs.append(path)
            with path.open("wb") as log:
                log.write((" ".join(command) + "\n").encode())
                log.flush()
                proc = subprocess.Popen(
                    command,
                    cwd=PEERS,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # pgid == pid: killpg reaches its children
                )
            self.procs.append(proc)
            with pgids.open("a") as out:
                out.write(f"{proc.pid}\n")

    def check(self) -> None:
        """Raise if a worker command has exited."""
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with status {proc.returncode}: {tail(log)}"
                )

    def stop(self) -> None:
        """SIGTERM each process group, a bounded wait, then SIGKILL what is left."""
        began = time.perf_counter()
        for proc in self.procs:
            signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            for _ in range(50):  # children may outlive the leader for a moment
                if not group_alive(proc.pid) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if group_alive(proc.pid):
                signal_group(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(timeout=10)
        print(f"stopped {self.name} in {time.perf_counter() - began:.1f} s", flush=True)

    def tails(self) -> str:
        return " | ".join(tail(log) for log in self.logs)


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return bool(live_members(pgid)) if Path("/proc/self/stat").exists() else True


def live_members(pgid: int) -> list[int]:
    """Pids of the group's processes that are not zombies (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def tail(path: Path, chars: int = 800) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " ".join(text[-chars:].split())


# Recording -------------------------------------------------------------------------


class Recorder:
    """Rows of (workload, config) -> runs and errors, saved after every change."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out = out
        self.meta = meta
        self.rows: dict[tuple[str, str | None], dict[str, Any]] = {}

    def _row(self, workload: str, config: str | None, unit: str) -> dict[str, Any]:
        key = (workload, config)
        if key not in self.rows:
            self.rows[key] = {
                "workload": workload, "config": config, "unit": unit, "runs": [], "errors": []
            }
        return self.rows[key]

    def add(self, workload: str, config: str | None, unit: str, value: float) -> None:
        self._row(workload, config, unit)["runs"].append(value)
        self.save()

    def error(self, workload: str, config: str | None, unit: str, message: str) -> None:
        self._row(workload, config, unit)["errors"].append(message[:2000])
        self.save()

    def save(self) -> None:
        data = {**self.meta, "rows": list(self.rows.values())}
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(self.out)


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


# Measuring -------------------------------------------------------------------------


class Bench:
    def __init__(self, peer: Peer, args: argparse.Namespace, rec: Recorder) -> None:
        self.peer = peer
        self.args = args
        self.rec = rec
        self.raw = redis.Redis.from_url(args.url)

    def jobs_for(self, config: str | None) -> int:
        """Jobs per drain: the run's count, or fewer for a configuration that says so."""
        for c in self.peer.configs:
            if c.name == config and c.jobs:
                return min(self.args.jobs, c.jobs)
        return self.args.jobs

    def flush(self) -> None:
        self.raw.flushall()  # synchronous: lazyfree-lazy-user-flush is off on the server

    def used_memory(self) -> int:
        return int(self.raw.info("memory")["used_memory"])

    def enqueue(self, how: str, timed: bool, memory: bool, keep: int) -> bool:
        """FLUSHALL, enqueue ``--jobs`` jobs (timed), leave ``keep`` of them queued.

        Returns True when the jobs are queued."""
        peer, n = self.peer, self.args.jobs
        call = peer.enqueue_bulk if how == "bulk" else peer.enqueue_one
        workload = f"enqueue_{how}"
        try:
            self.flush()
            call(WARMUP, BODY)
            self.flush()
            before = self.used_memory()
            start = time.perf_counter()
            call(n, BODY)
            elapsed = time.perf_counter() - start
            after = self.used_memory()
        except Exception as exc:
            message = describe(exc)
            for name, unit in ((workload, "jobs/s"), ("memory", "bytes/job")):
                if (name == workload and timed) or (name == "memory" and memory):
                    self.rec.error(name, None, unit, message)
            traceback.print_exc()
            return False
        if timed:
            self.rec.add(workload, None, "jobs/s", n / elapsed)
        if memory:
            self.rec.add("memory", None, "bytes/job", (after - before) / n)
        if keep < n:  # a configuration that drains fewer jobs: keep only that many
            self.flush()
            call(keep, BODY)
        return True

    def drain(
        self,
        config: str,
        n: int,
        processes: int,
        keys: tuple[str, str, str | None],
        then: Callable[[Workers], None] | None = None,
        label: str | None = None,
    ) -> None:
        """Start the workers on ``n`` queued jobs; time until the counter reaches ``n``.

        ``keys``: the workload names for the end-to-end rate, the steady rate
        and the time to the first job done (None: not recorded); ``label``: the
        rows' config name (default ``config``).
        """
        main, steady_key, first_key = keys
        row = label or config
        self.raw.delete(DONE_KEY)
        commands = self.peer.worker_commands(config, processes)
        workers = Workers(commands, f"{self.peer.name}-{config}", self.args.logs, self.args.pgids)
        try:
            start, now, first = self.wait_done(n, workers)
            self.rec.add(main, row, "jobs/s", n / (now - start))
            if now > first[0]:
                self.rec.add(steady_key, row, "jobs/s", (n - first[1]) / (now - first[0]))
            if first_key:
                self.rec.add(first_key, row, "s", first[0] - start)
            if then is not None:
                then(workers)
        except Exception as exc:
            traceback.print_exc()
            message = describe(exc)
            for key, unit in ((main, "jobs/s"), (steady_key, "jobs/s"), (first_key, "s")):
                if key:
                    self.rec.error(key, row, unit, message)
            if then is not None:
                for key in ("roundtrip_p50", "roundtrip_p99"):
                    self.rec.error(key, config, "ms", f"not measured: the drain failed ({message})")
        finally:
            workers.stop()

    def wait_done(self, n: int, workers: Workers) -> tuple[float, float, tuple[float, int]]:
        """Poll the done counter until it reaches ``n`` (bounded by ``--bound``).

        Returns the workers' start, the end, and (when, how many) the counter
        was first seen above 0.
        """
        start, first, polls = workers.started, None, 0
        deadline = start + self.args.bound
        while True:
            done = int(self.raw.get(DONE_KEY) or 0)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= n and first is not None:
                return start, now, first
            if now > deadline:
                raise TimeoutError(
                    f"{done:,} of {n:,} jobs done in {self.args.bound:.0f} s "
                    f"({done / (now - start):,.0f} jobs/s); workers: {workers.tails()}"
                )
            polls += 1
            if polls % CHECK_EVERY == 0:
                workers.check()
            time.sleep(POLL_S)

    def roundtrip(self, config: str, workers: Workers) -> None:
        """``--roundtrips`` sequential submit-and-wait calls on the running workers."""
        try:
            self.peer.roundtrips(WARMUP, BODY, ROUNDTRIP_TIMEOUT_S)
            times: list[float] = []
            deadline = time.perf_counter() + self.args.bound
            while len(times) < self.args.roundtrips:
                count = min(ROUNDTRIP_CHUNK, self.args.roundtrips - len(times))
                times += self.peer.roundtrips(count, BODY, ROUNDTRIP_TIMEOUT_S)
                workers.check()
                if time.perf_counter() > deadline and len(times) < self.args.roundtrips:
                    raise TimeoutError(
                        f"only {len(times)} round trips in {self.args.bound:.0f} s"
                    )
            cuts = statistics.quantiles(times, n=100, method="inclusive")
            self.rec.add("roundtrip_p50", config, "ms", cuts[49] * 1000)
            self.rec.add("roundtrip_p99", config, "ms", cuts[98] * 1000)
        except Exception as exc:
            traceback.print_exc()
            for key in ("roundtrip_p50", "roundtrip_p99"):
                self.rec.error(key, config, "ms", describe(exc))

    def extra_latencies(self, config: str) -> None:
        """The library-only latencies (distq: a cached service get, an actor call), with
        the processes they need running; each as p50 and p99 rows."""
        commands = self.peer.extra_commands()
        if not commands:
            return
        extra = Workers(commands, f"{self.peer.name}-extra", self.args.logs, self.args.pgids)
        try:
            found = self.peer.latencies(self.args.roundtrips, ROUNDTRIP_TIMEOUT_S)
            extra.check()
            for figure, times in found.items():
                cuts = statistics.quantiles(times, n=100, method="inclusive")
                self.rec.add(f"{figure}_p50", config, "ms", cuts[49] * 1000)
                self.rec.add(f"{figure}_p99", config, "ms", cuts[98] * 1000)
        except Exception as exc:
            traceback.print_exc()
            for figure in EXTRA_FIGURES:
                for cut in ("p50", "p99"):
                    self.rec.error(f"{figure}_{cut}", config, "ms", describe(exc))
        finally:
            extra.stop()

    def rep(self) -> None:
        """One repetition of every workload of this library."""
        peer = self.peer
        sets = ["one"] + (["bulk"] if peer.bulk_api else [])
        configs = [c.name for c in peer.configs]
        for index in range(max(len(sets), len(configs))):
            how = sets[index] if index < len(sets) else sets[-1]
            config = configs[index] if index < len(configs) else None
            keep = self.jobs_for(config)
            queued = self.enqueue(how, timed=index < len(sets), memory=index == 0, keep=keep)
            if config is None:
                continue
            if not queued:
                message = "not measured: enqueueing the jobs failed"
                for key, unit in (("drain", "jobs/s"), ("roundtrip_p50", "ms"),
                                  ("roundtrip_p99", "ms")):
                    self.rec.error(key, config, unit, message)
                continue
            self.drain(
                config, keep, PROCESSES, ("drain", "drain_steady", "drain_first"),
                then=lambda workers, config=config: (
                    self.roundtrip(config, workers), self.extra_latencies(config)
                ),
            )
        self.flush()

    def paired_enqueue(self) -> None:
        """distq only: one-call enqueue against raw redis-py ``RPUSH``, in alternating
        blocks in this one process, so that both rates share the machine's moment (the
        target's measure; the separate redis-py runner comes minutes later)."""
        from libs.raw_peer import PEER as RAW

        n, blocks = self.args.jobs, PAIRED_BLOCKS
        size = max(1, n // blocks)
        elapsed = {self.peer.name: 0.0, RAW.name: 0.0}
        try:
            for block in range(blocks):
                order = (RAW, self.peer) if block % 2 == 0 else (self.peer, RAW)
                for peer in order:
                    self.flush()
                    peer.enqueue_one(WARMUP, BODY)
                    start = time.perf_counter()
                    peer.enqueue_one(size, BODY)
                    elapsed[peer.name] += time.perf_counter() - start
        except Exception as exc:
            traceback.print_exc()
            for name in elapsed:
                self.rec.error("enqueue_one_paired", name, "jobs/s", describe(exc))
            return
        finally:
            RAW.close()
            self.flush()
        for name, seconds in elapsed.items():
            self.rec.add("enqueue_one_paired", name, "jobs/s", size * blocks / seconds)

    def scaling(self) -> None:
        """distq only: drains with other process counts and body sizes (bulk-enqueued)."""
        config = self.peer.configs[0].name
        cases: list[tuple[str, str, int, int, str]] = [
            ("scale_procs", f"{p} process{'es' if p > 1 else ''}", p, self.args.jobs, BODY)
            for p in SCALING_PROCESSES
        ]
        cases += [
            ("scale_body", label, PROCESSES,
             JOBS_1MB if size >= 1_000_000 else self.args.jobs, "x" * size)
            for label, size in SCALING_BODIES.items()
        ]
        for workload, label, processes, n, body in cases:
            try:
                self.flush()
                self.peer.enqueue_bulk(n, body)
            except Exception as exc:
                self.rec.error(workload, label, "jobs/s", describe(exc))
                continue
            self.drain(config, n, processes, (workload, f"{workload}_steady", None), label=label)
        self.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lib", choices=sorted(LIBS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pgids", type=Path, required=True)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--roundtrips", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bound", type=float, default=120.0,
                        help="seconds one drain or one round-trip series may take")
    parser.add_argument("--scaling", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ[URL_ENV] = args.url
    meta: dict[str, Any] = {"lib": args.lib, "module": LIBS[args.lib]}
    rec = Recorder(args.out, meta)
    try:
        peer: Peer = importlib.import_module(LIBS[args.lib]).PEER
    except Exception as exc:
        traceback.print_exc()
        meta["error"] = f"cannot import {LIBS[args.lib]}: {describe(exc)}"
        rec.save()
        sys.exit(1)
    bench = Bench(peer, args, rec)
    meta.update(
        name=peer.name,
        versions=peer.versions(),
        one_api=peer.one_api,
        bulk_api=peer.bulk_api,
        bulk_note=peer.bulk_note,
        roundtrip_api=peer.roundtrip_api,
        configs=[
            {"name": c.name, "description": c.description, "jobs": bench.jobs_for(c.name)}
            for c in peer.configs
        ],
        notes=peer.notes,
    )
    rec.save()
    try:
        for rep in range(args.reps):
            started = time.perf_counter()
            bench.rep()
            if args.scaling:
                bench.paired_enqueue()
                bench.scaling()
            print(f"{args.lib}: repetition {rep + 1} in {time.perf_counter() - started:.1f} s",
                  flush=True)
    except Stopped as exc:
        meta["error"] = str(exc)
        rec.save()
        sys.exit(1)
    finally:
        try:
            peer.close()
        except Exception:
            traceback.print_exc()
        bench.raw.close()


if __name__ == "__main__":
    main()
