"""The supervisor of ``distq worker``: N pre-forked worker processes on the pool.

The supervisor runs :func:`distq.runtime.worker.worker_main` in each process
of a :class:`~distq.runtime.pool.Pool` (one loop per process; a fresh process
for each loop, so ``max_tasks_per_child`` recycles processes). It watches
what each process reports — the jobs it holds, the one it runs and its hard
time limit — and:

* kills a process whose job runs past its ``time_limit``; the job is nacked
  at once (so it is tried again now, not after its lease) with the reason;
* when a process dies (killed, crashed), nacks its running job with the
  reason "worker lost" and hands its unstarted jobs back uncounted, then
  forks a replacement;
* does not replace a process that stopped on a ``stop`` control message, and
  exits when none is left;
* on SIGINT/SIGTERM stops fetching everywhere (SIGTERM to each process: the
  running jobs finish, unstarted ones go straight back), waits, exits 0; a
  second signal kills the processes at once (their leases bring the work back).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from distq.errors import DistqError, RemoteError, WorkerLost
from distq.queue.job import Job
from distq.queue.keys import parse_id
from distq.runtime.pool import Done, Message, Pool
from distq.runtime.worker import WorkerConfig, load_app, worker_main

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

#: Seconds between looks at the clock for hard time limits.
_TICK = 0.1
#: A process whose loop fails this fast, this many times in a row, stops the supervisor.
_CRASH_WINDOW_S = 2.0
_CRASH_LIMIT = 5


@dataclass(slots=True)
class _Child:
    held: dict[str, int] = field(default_factory=dict)
    running: str | None = None
    started: float = 0.0
    limit: float | None = None
    killed_for: str | None = None


class Supervisor:
    """Keeps ``concurrency`` worker processes serving ``config``.

    Args:
        config: what each worker process does.
        concurrency: the number of worker processes.
        grace_s: how long a graceful stop waits for running jobs.
    """

    def __init__(self, config: WorkerConfig, concurrency: int, *, grace_s: float = 30.0) -> None:
        self.config = config
        self.concurrency = concurrency
        self.grace_s = grace_s
        self.app = load_app(config.app)  # imported once here, inherited by every fork
        self.signals = 0
        self._children: dict[int, _Child] = {}
        self._wanted = concurrency
        self._crashes = 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        log.warning(
            "received %s (%d); %s",
            signal.Signals(signum).name,
            self.signals,
            "stopping gracefully" if self.signals == 1 else "killing workers now",
        )

    def run(self) -> int:
        """Serve until told to stop; return the process exit code."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with Pool(self.concurrency, max_jobs_per_child=1) as pool:
                code = self._serve(pool)
                events = pool.stop(
                    graceful=self.signals < 2, timeout=self.grace_s, abort=lambda: self.signals >= 2
                )
                self._handle(events)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _serve(self, pool: Pool) -> int:
        while not self.signals and self._wanted > 0:
            while pool.free > 0 and pool.busy < self._wanted:
                pid = pool.submit(worker_main, self.config.to_dict())
                self._children[pid] = _Child()
            self._handle(pool.wait(_TICK))
            self._enforce_limits(pool)
            if self._crashes >= _CRASH_LIMIT:
                log.error("worker processes keep failing at start; giving up")
                return 1
        return 0

    # -- events

    def _handle(self, events: list[Done | Message]) -> None:
        for event in events:
            if isinstance(event, Message):
                self._message(event.pid, event.value)
            else:
                self._done(event)

    def _message(self, pid: int, value: Any) -> None:
        child = self._children.setdefault(pid, _Child())
        if "held" in value:
            child.held = {job_id: delivery for job_id, delivery in value["held"]}
        elif "run" in value:
            child.running, child.started = value["run"], time.monotonic()
            child.limit = value.get("limit")

    def _done(self, event: Done) -> None:
        child = self._children.pop(event.pid, _Child())
        result = event.result
        if isinstance(result, WorkerLost):
            self._recover(child, child.killed_for or f"worker lost: {result}")
        elif isinstance(result, RemoteError | DistqError):
            self._crashed(event, result)
        elif isinstance(result, dict):
            self._crashes = 0
            if result.get("stopped") == "control":
                self._wanted -= 1
                log.info("worker process %d stopped on request; %d left", event.pid, self._wanted)

    def _crashed(self, event: Done, error: DistqError) -> None:
        log.error("worker process %d failed: %s", event.pid, error)
        if event.seconds < _CRASH_WINDOW_S:
            self._crashes += 1
            time.sleep(min(2.0, 0.1 * 2**self._crashes))

    def _recover(self, child: _Child, reason: str) -> None:
        """Give a dead process's jobs back: the running one counted, the others not."""
        if not child.held:
            return
        client = self.app.client
        try:
            if child.running in child.held:
                running = _job(child.running, child.held.pop(child.running))
                client.nack(running, reason=reason)
                log.warning("job %s: %s; nacked for another delivery", running.id, reason)
            if child.held:
                client.release(*(_job(i, d) for i, d in child.held.items()))
        except DistqError as exc:
            log.error("could not give jobs back (%s): their leases will", exc)

    def _enforce_limits(self, pool: Pool) -> None:
        now = time.monotonic()
        for pid, child in self._children.items():
            if (
                child.running
                and child.limit
                and not child.killed_for
                and now - child.started > child.limit
            ):
                child.killed_for = f"hard time limit of {child.limit} s exceeded"
                log.warning(
                    "job %s: %s; killing worker process %d", child.running, child.killed_for, pid
                )
                pool.kill(pid)


def _job(job_id: str, delivery: int) -> Job:
    """A fence-carrying reference to a job a worker process held."""
    return Job(job_id, parse_id(job_id)[1], None, delivery=delivery)
