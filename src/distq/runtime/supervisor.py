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

from distq.codec import signing
from distq.connection.ops import Op, Step
from distq.endpoints.app import App
from distq.endpoints.service import native_failed
from distq.errors import CodecError, DistqError, InvalidArgument, RemoteError, WorkerLost
from distq.queue import admin
from distq.queue.job import Job
from distq.queue.keys import SERVICE_QUEUE_PREFIX, parse_id
from distq.runtime.pool import Done, Message, Pool
from distq.runtime.worker import (
    RUNNING_ASYNC,
    WorkerConfig,
    load_app,
    parse_held_note,
    worker_main,
)

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

#: Seconds between looks at the clock for hard time limits.
_TICK = 0.1
#: A process whose loop fails this fast, this many times in a row, stops the supervisor.
_CRASH_WINDOW_S = 2.0
_CRASH_LIMIT = 5


@dataclass(slots=True)
class _Child:
    """What a worker process reported: jobs held (id → delivery), jobs running
    (id → (started, hard limit)), and why it was killed, if it was."""

    slot: int = 0
    held: dict[str, int] = field(default_factory=dict)
    running: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    killed_for: tuple[str, str] | None = None


class Supervisor:
    """Keeps worker processes serving an app, as many of each kind as planned.

    Args:
        plan: ``(config, processes)`` pairs: what worker processes do, and how
            many run it (all configs name the same app).
        app: that app, already loaded (default: loaded from the first config).
        grace_s: how long a graceful stop waits for running jobs.
    """

    def __init__(
        self,
        plan: list[tuple[WorkerConfig, int]],
        *,
        app: App | None = None,
        grace_s: float = 30.0,
    ) -> None:
        if not plan or any(count < 1 for _, count in plan):
            raise InvalidArgument("a supervisor needs at least one worker process")
        self.plan = plan
        self.grace_s = grace_s
        # Imported once here, inherited by every fork.
        self.app = app if app is not None else load_app(plan[0][0].app)
        self.signals = 0
        self._children: dict[int, _Child] = {}
        self._wanted = [count for _, count in plan]
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
        self._check_server()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with Pool(sum(self._wanted), max_jobs_per_child=1) as pool:
                code = self._serve(pool)
                events = pool.stop(
                    graceful=self.signals < 2, timeout=self.grace_s, abort=lambda: self.signals >= 2
                )
                self._handle(events)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _check_server(self) -> None:
        """Say at start what the server's settings risk (AOF, fsync, eviction)."""
        try:
            state = self.app.client.run(admin.durability(self.app.context))
        except DistqError as exc:
            log.warning("could not read the server's durability settings: %s", exc)
            return
        for warning in admin.durability_warnings(state):
            log.warning("%s", warning)

    def _serve(self, pool: Pool) -> int:
        while not self.signals and sum(self._wanted) > 0:
            for slot, (config, _) in enumerate(self.plan):
                running = sum(1 for c in self._children.values() if c.slot == slot)
                for _ in range(min(pool.free, self._wanted[slot] - running)):
                    pid = pool.submit(worker_main, config.to_dict())
                    self._children[pid] = _Child(slot)
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
        child = self._children.get(pid)
        if child is None:
            return
        if "held" in value:
            child.held = {job_id: delivery for job_id, delivery in value["held"]}
        elif "run" in value:
            child.running[value["run"]] = (time.monotonic(), value.get("limit"))
        elif "end" in value:
            child.running.pop(value["end"], None)

    def _done(self, event: Done) -> None:
        child = self._children.pop(event.pid, None) or _Child()
        result = event.result
        if isinstance(result, WorkerLost):
            if event.note is not None:  # published after the last "held" message
                child.held = parse_held_note(event.note)
            self._recover(child, f"worker lost: {result}", event.board)
        elif isinstance(result, RemoteError | DistqError):
            self._crashed(event, result)
        elif isinstance(result, dict):
            self._crashes = 0
            if result.get("stopped") == "control":
                self._wanted[child.slot] -= 1
                log.info(
                    "worker process %d stopped on request; %d left", event.pid, sum(self._wanted)
                )

    def _crashed(self, event: Done, error: DistqError) -> None:
        log.error("worker process %d failed: %s", event.pid, error)
        if event.seconds < _CRASH_WINDOW_S:
            self._crashes += 1
            time.sleep(min(2.0, 0.1 * 2**self._crashes))

    def _recover(self, child: _Child, reason: str, board: list[int]) -> None:
        """Give a dead process's jobs back: the ones that may have killed it are
        nacked (counted towards max_deliveries, with the reason), the others
        released (uncounted)."""
        culprits = dict.fromkeys(child.running, reason)
        held = list(child.held)
        position = board[0] if board else 0
        if position == RUNNING_ASYNC:
            culprits.update(dict.fromkeys(held, reason))
        elif 0 < position <= len(held):
            culprits[held[position - 1]] = reason
        if child.killed_for is not None:
            culprit, why = child.killed_for
            culprits = {culprit: why}
        counted = [(_job(i, child.held[i]), why) for i, why in culprits.items() if i in child.held]
        innocent = [_job(i, d) for i, d in child.held.items() if i not in culprits]
        client = self.app.client
        try:
            for job, why in counted:
                if child.killed_for is not None and self._time_out_request(job, why):
                    continue
                client.nack(job, reason=why)
                log.warning("job %s: %s; nacked for another delivery", job.id, why)
            if innocent:
                client.release(*innocent)
        except DistqError as exc:
            log.error("could not give jobs back (%s): their leases will", exc)

    def _time_out_request(self, job: Job, why: str) -> bool:
        """A service computation that ran out of time failed: tell its waiters
        (as for an exception) and acknowledge the request, rather than have
        every server try it again."""
        if not job.queue.startswith(SERVICE_QUEUE_PREFIX):
            return False
        shown = self.app.client.show(job.id)
        body = shown and shown["body"]
        if signing.is_sealed(body):
            try:
                body = signing.unseal(self.app.codec, self.app.secret, job.queue, body)
            except CodecError:
                return False
        told = native_failed(self.app.context, body, RemoteError("distq.TimeLimit", why))
        if told is None:
            return False
        self.app.client.run(_requests([told]))
        self.app.client.ackjob(job)
        log.warning("service request %s: %s; its callers get the error", job.id, why)
        return True

    def _enforce_limits(self, pool: Pool) -> None:
        now = time.monotonic()
        for pid, child in self._children.items():
            if child.killed_for is not None:
                continue
            for job_id, (started, limit) in child.running.items():
                if limit and now - started > limit:
                    child.killed_for = (job_id, f"hard time limit of {limit} s exceeded")
                    log.warning(
                        "job %s: %s; killing worker process %d", job_id, child.killed_for[1], pid
                    )
                    pool.kill(pid)
                    break


def _requests(step: Step) -> Op[list[Any]]:
    replies = yield step
    return replies


def _job(job_id: str, delivery: int) -> Job:
    """A fence-carrying reference to a job a worker process held."""
    return Job(job_id, parse_id(job_id)[1], None, delivery=delivery)
