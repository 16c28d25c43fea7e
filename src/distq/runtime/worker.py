"""The worker process: fetch a batch, run it, store results and acks.

One :class:`Worker` runs in each process of a ``distq worker`` (a child of
the supervisor's pool, see :mod:`distq.runtime.supervisor`). Each
:meth:`Worker.step` is one round: lease up to ``batch`` jobs, run them (sync
tasks one after another in this process; ``async def`` tasks together on an
event loop, at most ``async_concurrency`` at once), then store every result
and acknowledgement in one pipelined round trip — together with the next
fetch when the queue still has work.

A heartbeat thread records the worker's presence, extends the leases of the
jobs it holds, and reads its control queue (``stop``, ``verbose``, ``quiet``,
``ping``). Stopping — by SIGTERM from the supervisor, a ``stop`` message or
``max_tasks`` — finishes the running job, hands the fetched but unstarted
ones straight back to their queue, and returns.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from distq.codec.result import encode_error, encode_value
from distq.connection.ops import Op, Request, Step
from distq.endpoints.app import App
from distq.endpoints.task import Task, complete, fail
from distq.errors import CodecError, DistqError, InvalidArgument, RemoteError, SoftTimeLimit
from distq.queue import ops as queue_ops
from distq.queue.job import Job
from distq.runtime import pool
from distq.runtime.control import Presence, interpret, new_worker_id

__all__ = ["Worker", "WorkerConfig", "load_app", "worker_main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one worker process does.

    Attributes:
        app: the app, as ``"module:attribute"``.
        queues: the queues to serve, first ones first (empty: every queue of
            the app's tasks).
        batch: jobs leased per fetch.
        async_concurrency: ``async def`` tasks run at once, at most.
        max_tasks: the process exits after this many jobs (0: never).
        heartbeat_s: seconds between heartbeats (presence, leases, control).
        fetch_timeout_s: longest blocking fetch before looking at stop flags.
    """

    app: str
    queues: tuple[str, ...] = ()
    batch: int = 10
    async_concurrency: int = 100
    max_tasks: int = 0
    heartbeat_s: float = 2.0
    fetch_timeout_s: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible form (it crosses the pool's process boundary)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerConfig:
        """The inverse of :meth:`to_dict`."""
        return cls(**{**data, "queues": tuple(data.get("queues", ()))})


def load_app(reference: str) -> App:
    """Import ``"module:attribute"`` and return the App it names."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise InvalidArgument(f"an app is named MODULE:ATTRIBUTE, not {reference!r}")
    app = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(app, App):
        raise InvalidArgument(f"{reference} is not a distq.App")
    return app


@dataclass(slots=True)
class _Outcome:
    """What to tell the server about one job after running it."""

    job: Job
    request: Request | None = None
    dead_reason: str | None = None


@dataclass(slots=True)
class _Held:
    """The jobs this worker holds, shared with the heartbeat thread."""

    jobs: dict[str, Job] = field(default_factory=dict)
    current: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())


class Worker:
    """Runs an app's tasks from its queues; :meth:`run` until asked to stop."""

    def __init__(self, app: App, config: WorkerConfig, worker_id: str | None = None) -> None:
        self.app = app
        self.config = config
        self.queues = config.queues or tuple(app.queues())
        if not self.queues:
            raise InvalidArgument("nothing to serve: the app has no task and no queue was named")
        self.id = worker_id or new_worker_id()
        self.done = 0
        self.stop_reason: str | None = None
        self._held = _Held()
        self._runner: asyncio.Runner | None = None
        self._pending: list[Op[Any]] = []

    # -- the loop

    def run(self) -> dict[str, Any]:
        """Serve until stopped; return ``{"done": n, "stopped": reason}``."""
        presence = Presence(self.app.client, self.id, self.queues, self.config.heartbeat_s)
        beating = threading.Event()
        beater = threading.Thread(
            target=self._heartbeat, args=(presence, beating), name="distq-heartbeat", daemon=True
        )
        beater.start()
        try:
            while self._should_continue():
                self.step(self.config.fetch_timeout_s)
            self._flush()
        finally:
            beating.set()
            beater.join(timeout=self.config.heartbeat_s + 5)
            presence.leave()
            if self._runner is not None:
                self._runner.close()
        return {"done": self.done, "stopped": self.stop_reason or "signal"}

    def _should_continue(self) -> bool:
        if pool.stopping() and self.stop_reason is None:
            self.stop_reason = "signal"
        if self.config.max_tasks and self.done >= self.config.max_tasks:
            self.stop_reason = "max_tasks"
        return self.stop_reason is None

    def step(self, timeout: float = 0.0) -> int:
        """One round: fetch (sending the last round's outcomes along), run, settle.

        Returns how many jobs were run.
        """
        count = self.config.batch
        if self.config.max_tasks:
            count = max(1, min(count, self.config.max_tasks - self.done))
        fetch = queue_ops.getjob(self.app.context, *self.queues, count=count, nohang=True)
        jobs: list[Job] = self._send_with(fetch)
        if not jobs and timeout > 0:
            jobs = self.app.client.run(
                queue_ops.getjob(self.app.context, *self.queues, count=count, timeout=timeout)
            )
        if not jobs:
            return 0
        with self._held.lock:
            self._held.jobs = {job.id: job for job in jobs}
        _report({"held": [[job.id, job.delivery] for job in jobs]})
        outcomes = self._run_batch(jobs)
        self._pending += _settle(self.app, outcomes)
        return len(outcomes)

    def _send_with(self, op: Op[Any]) -> Any:
        """Run ``op`` in the same round trip as the outcomes not yet sent."""
        ops, self._pending = [*self._pending, op], []
        stepper = self.app.client._conn.run_many(ops)
        for index in range(len(ops) - 1):
            try:
                stepper.outcome(index)
            except DistqError:
                log.exception("storing results failed; the jobs' leases will bring them back")
        return stepper.outcome(len(ops) - 1)

    def _flush(self) -> None:
        if self._pending:
            self._send_with(_requests([]))

    # -- running jobs

    def _run_batch(self, jobs: list[Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        waiting: list[tuple[Job, Task[Any, Any], list[Any], dict[str, Any]]] = []
        for index, job in enumerate(jobs):
            if self._should_stop_now():
                self._give_back(jobs[index:])
                break
            call = _parse(self.app, job, self.id)
            if isinstance(call, _Outcome):
                outcomes.append(call)
            elif call[0].is_async:
                waiting.append((job, *call))
            else:
                outcomes.append(self._run_sync(job, *call))
        if waiting:
            outcomes += self._run_async(waiting)
        with self._held.lock:
            self._held.jobs.clear()
            self._held.current = None
        return outcomes

    def _should_stop_now(self) -> bool:
        if self.stop_reason is not None or pool.stopping():
            return True
        return bool(self.config.max_tasks and self.done >= self.config.max_tasks)

    def _give_back(self, jobs: Sequence[Job]) -> None:
        if jobs:
            released = self.app.client.release(*jobs)
            log.info("handed %d unstarted job(s) back to their queue", released)
            with self._held.lock:
                for job in jobs:
                    self._held.jobs.pop(job.id, None)

    def _run_sync(
        self, job: Job, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> _Outcome:
        self._started(job, task)
        soft = task.options.soft_time_limit
        try:
            with _SoftLimit(soft):
                value = task.fn(*args, **kwargs)
        except Exception as exc:
            return _failed(self.app, job, task, exc)
        finally:
            self.done += 1
        return _succeeded(self.app, job, task, value)

    def _run_async(
        self, calls: list[tuple[Job, Task[Any, Any], list[Any], dict[str, Any]]]
    ) -> list[_Outcome]:
        if self._runner is None:
            self._runner = asyncio.Runner()
        limit = asyncio.Semaphore(self.config.async_concurrency)

        async def one(
            job: Job, task: Task[Any, Any], args: list[Any], kw: dict[str, Any]
        ) -> _Outcome:
            async with limit:
                self._started(job, task)
                try:
                    async with asyncio.timeout(task.options.soft_time_limit):
                        value = await task.fn(*args, **kw)
                except TimeoutError:
                    error = SoftTimeLimit(f"soft time limit of {task.options.soft_time_limit} s")
                    return _failed(self.app, job, task, error)
                except Exception as exc:
                    return _failed(self.app, job, task, exc)
                finally:
                    self.done += 1
                return _succeeded(self.app, job, task, value)

        async def all_calls() -> list[_Outcome]:
            return list(await asyncio.gather(*(one(*call) for call in calls)))

        return self._runner.run(all_calls())

    def _started(self, job: Job, task: Task[Any, Any]) -> None:
        with self._held.lock:
            self._held.current = job.id
        _report({"run": job.id, "d": job.delivery, "limit": task.options.time_limit})

    # -- the heartbeat thread

    def _heartbeat(self, presence: Presence, done: threading.Event) -> None:
        while True:
            try:
                self._beat(presence)
            except DistqError as exc:
                log.warning("heartbeat failed: %s", exc)
            if done.wait(self.config.heartbeat_s):
                return

    def _beat(self, presence: Presence) -> None:
        for message in presence.beat(self.done, self._held.current):
            kind = interpret(message)
            if kind == "stop":
                log.info("worker %s: stop requested", self.id)
                self.stop_reason = "control"
            elif kind in ("verbose", "quiet"):
                level = logging.DEBUG if kind == "verbose" else logging.INFO
                logging.getLogger("distq").setLevel(level)
                log.info("worker %s: logging now %s", self.id, kind)
            elif kind == "ping":
                presence.answer_ping(message)
            else:
                log.warning("worker %s: unknown control message %r", self.id, message)
        held = self._held.snapshot()
        if held:
            with self.app.client.pipeline() as extend:
                for job in held:
                    extend.working(job)
            lost = [r for r in extend.execute(raise_on_error=False) if isinstance(r, Exception)]
            if lost:
                log.warning("%d held job(s) lost their lease: %s", len(lost), lost[0])


def _report(value: dict[str, Any]) -> None:
    if pool.in_worker_process():
        pool.report(value)


def _parse(
    app: App, job: Job, worker_id: str
) -> _Outcome | tuple[Task[Any, Any], list[Any], dict[str, Any]]:
    """The task and arguments a job calls, or the dead-letter outcome of a bad one."""
    body = job.body
    if not isinstance(body, dict) or not isinstance(body.get("t"), str):
        return _Outcome(job, dead_reason="malformed task message: not a task call")
    task = app.tasks.get(body["t"])
    if task is None:
        return _Outcome(
            job, dead_reason=f"unknown task {body['t']!r}: not registered on worker {worker_id}"
        )
    args, kwargs = body.get("a", []), body.get("k", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return _Outcome(job, dead_reason="malformed task message: bad arguments")
    return task, args, kwargs


def _succeeded(app: App, job: Job, task: Task[Any, Any], value: Any) -> _Outcome:
    try:
        stored = encode_value(app.codec, value)
    except CodecError as exc:
        error = RemoteError("distq.CodecError", f"the result cannot be encoded: {exc}")
        return _Outcome(
            job,
            fail(
                app.context,
                job.id,
                job.delivery,
                task.options,
                error=str(error),
                stored=encode_error(error),
                retry=False,
            ),
        )
    return _Outcome(job, complete(app.context, job.id, job.delivery, task.options, stored))


def _failed(app: App, job: Job, task: Task[Any, Any], exc: BaseException) -> _Outcome:
    error = RemoteError.from_exception(exc)
    log.info("task %s (%s) raised %s", task.name, job.id, error)
    return _Outcome(
        job,
        fail(
            app.context,
            job.id,
            job.delivery,
            task.options,
            error=str(error),
            stored=encode_error(error),
        ),
    )


def _settle(app: App, outcomes: list[_Outcome]) -> list[Op[Any]]:
    """The ops that tell the server every outcome of a batch (one round trip)."""
    ops: list[Op[Any]] = []
    step: Step = [o.request for o in outcomes if o.request is not None]
    if step:
        ops.append(_requests(step))
    for outcome in outcomes:
        if outcome.dead_reason is not None:
            log.error("job %s dead-lettered: %s", outcome.job.id, outcome.dead_reason)
            ops.append(queue_ops.deadletter(app.context, outcome.job, reason=outcome.dead_reason))
    return ops


def _requests(step: Step) -> Op[list[Any]]:
    replies = yield step
    return replies


class _SoftLimit:
    """Raise SoftTimeLimit in this (main) thread after ``seconds``."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if self.seconds:
            self._previous = signal.signal(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)

    def _expire(self, signum: int, frame: Any) -> None:
        raise SoftTimeLimit(f"soft time limit of {self.seconds} s")


def worker_main(config: dict[str, Any]) -> dict[str, Any]:
    """Entry point of one worker process of the supervisor's pool."""
    settings = WorkerConfig.from_dict(config)
    app = load_app(settings.app)
    app.forget_connections()  # connections made before the fork belong to the parent
    started = time.monotonic()
    result = Worker(app, settings).run()
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
