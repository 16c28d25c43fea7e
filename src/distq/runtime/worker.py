"""The worker process: fetch a batch, run it, store results and acks.

One :class:`Worker` runs in each process of a ``distq worker`` (a child of
the supervisor's pool, see :mod:`distq.runtime.supervisor`). Each
:meth:`Worker.step` is one round: lease up to ``batch`` jobs, run them (sync
tasks one after another in this process; ``async def`` tasks together on an
event loop, at most ``async_concurrency`` at once), then store every result
and acknowledgement in one pipelined round trip — together with the next
fetch when the queue still has work (when the last fetch found it nearly
empty, the results go first, on their own: their callers are waiting).

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

from distq.codec import signing
from distq.codec.result import encode_error, encode_value
from distq.connection.ops import Command, Op, Request, Step
from distq.endpoints.app import App
from distq.endpoints.service import Service, native_done, native_failed, request_digest
from distq.endpoints.task import Completion, Task, complete, fail
from distq.errors import CodecError, DistqError, InvalidArgument, RemoteError, SoftTimeLimit
from distq.queue import ops as queue_ops
from distq.queue.job import Job
from distq.queue.keys import SERVICE_QUEUE_PREFIX, ServiceKeys
from distq.runtime import pool
from distq.runtime.control import Presence, interpret, new_worker_id

__all__ = ["Worker", "WorkerConfig", "load_app", "worker_main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one worker process does.

    Attributes:
        app: the app, as ``"module:attribute"``.
        role: ``"worker"`` (tasks and native services, from queues) or
            ``"distcl"`` (DisTcl-protocol services, from DisTcl's lists).
        services: for ``"distcl"``, the services to serve (empty: all of them).
        server_id: for ``"distcl"``, the id naming the control queue ``z:ID``.
        queues: the queues to serve, first ones first (empty: every queue of
            the app's tasks).
        batch: jobs leased per fetch.
        async_concurrency: ``async def`` tasks run at once, at most.
        max_tasks: the process exits after this many jobs (0: never).
        heartbeat_s: seconds between heartbeats (presence, leases, control).
        fetch_timeout_s: longest blocking fetch before looking at stop flags.
    """

    app: str
    role: str = "worker"
    queues: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    server_id: str | None = None
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
        return cls(
            **{
                **data,
                "queues": tuple(data.get("queues", ())),
                "services": tuple(data.get("services", ())),
            }
        )


def load_app(reference: str) -> App:
    """Import ``"module:attribute"`` and return the App it names."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise InvalidArgument(f"an app is named MODULE:ATTRIBUTE, not {reference!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgument(f"cannot import {module_name!r} for {reference}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise InvalidArgument(f"{reference} is not a distq.App")
    return app


#: What a job calls: a task or a native service.
Endpoint = Task[Any, Any] | Service
#: A call ready to run: the job, its endpoint, its arguments.
_Call = tuple[Job, Endpoint, list[Any], dict[str, Any]]


@dataclass(slots=True)
class _Outcome:
    """What to tell the server about one job after running it."""

    job: Job
    requests: list[Request] = field(default_factory=list)
    dead_reason: str | None = None
    #: A task's result, stored with the job's acknowledgement (batched per queue).
    completed: Completion | None = None


@dataclass(slots=True)
class _Held:
    """The jobs this worker holds, shared with the heartbeat thread."""

    jobs: dict[str, Job] = field(default_factory=dict)
    current: str | None = None
    #: In-flight markers of service requests being computed: key → lease ms.
    markers: dict[str, int] = field(default_factory=dict)
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
        self._service_queues = tuple(q for q in self.queues if q.startswith(SERVICE_QUEUE_PREFIX))
        self._task_queues = tuple(q for q in self.queues if q not in self._service_queues)
        self.id = worker_id or new_worker_id()
        self.done = 0
        self.stop_reason: str | None = None
        self._held = _Held()
        self._runner: asyncio.Runner | None = None
        self._pending: list[Op[Any]] = []
        #: Whether the last fetch brought fewer jobs than it asked for.
        self._ran_dry = False
        self._positions: dict[str, int] = {}

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
        ctx = self.app.context
        # Task calls come by the batch; service requests one at a time, so a
        # slow computation never holds other requests back from other processes.
        sources = [
            (queues, n)
            for queues, n in ((self._task_queues, count), (self._service_queues, 1))
            if queues
        ]
        if self._pending and self._ran_dry:
            # The last fetch found the queues nearly empty: callers are waiting for
            # these results, so they go out on their own rather than wait for the
            # fetch script that would follow them in the same round trip.
            self._flush()
        if len(sources) == 1 and timeout > 0:
            # One fetch: it may block right away (its first step travels with the
            # outcomes; then it waits on the wake lists, where a job may be handed to it).
            [(queues, n)] = sources
            fetches = [queue_ops.getjob(ctx, *queues, count=n, timeout=timeout)]
        else:
            fetches = [queue_ops.getjob(ctx, *qs, count=n, nohang=True) for qs, n in sources]
        jobs: list[Job] = [job for batch in self._send_with(fetches) for job in batch]
        if not jobs and timeout > 0 and len(sources) > 1:
            jobs = self.app.client.run(
                queue_ops.getjob(ctx, *self.queues, count=1, timeout=timeout)
            )
        self._ran_dry = len(jobs) < count
        if not jobs:
            return 0
        with self._held.lock:
            self._held.jobs = {job.id: job for job in jobs}
        self._positions = {job.id: index + 1 for index, job in enumerate(jobs)}
        _publish_held(jobs)
        outcomes = self._run_batch(jobs)
        self._pending += _settle(self.app, outcomes)
        return len(outcomes)

    def _send_with(self, ops: list[Op[Any]]) -> list[Any]:
        """Run ``ops`` in the same round trip as the outcomes not yet sent."""
        pending, self._pending = self._pending, []
        stepper = self.app.client._conn.run_many([*pending, *ops])
        for index in range(len(pending)):
            try:
                stepper.outcome(index)
            except DistqError:
                log.exception("storing results failed; the jobs' leases will bring them back")
        return [stepper.outcome(len(pending) + i) for i in range(len(ops))]

    def _flush(self) -> None:
        if self._pending:
            self._send_with([])

    # -- running jobs

    def _run_batch(self, jobs: list[Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        waiting: list[_Call] = []
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
                if call[0].options.time_limit and outcomes:
                    # This task may get its process killed: store what is done first.
                    self._pending += _settle(self.app, outcomes)
                    outcomes = []
                    self._flush()
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
        self, job: Job, endpoint: Endpoint, args: list[Any], kwargs: dict[str, Any]
    ) -> _Outcome:
        self._started(job, endpoint, args, kwargs)
        value: Any = None
        error: BaseException | None = None
        try:
            with _SoftLimit(endpoint.options.soft_time_limit):
                value = endpoint.fn(*args, **kwargs)
        except Exception as exc:
            error = exc
        finally:
            self._ended(job, endpoint, args, kwargs)
        return _finished(self.app, job, endpoint, args, kwargs, value, error)

    def _run_async(self, calls: list[_Call]) -> list[_Outcome]:
        if self._runner is None:
            self._runner = asyncio.Runner()
        limit = asyncio.Semaphore(self.config.async_concurrency)

        async def one(
            job: Job, endpoint: Endpoint, args: list[Any], kw: dict[str, Any]
        ) -> _Outcome:
            async with limit:
                self._started(job, endpoint, args, kw)
                soft = asyncio.timeout(endpoint.options.soft_time_limit)
                value: Any = None
                error: BaseException | None = None
                try:
                    async with soft:
                        value = await endpoint.fn(*args, **kw)
                except TimeoutError as exc:
                    error = exc
                    if soft.expired():
                        seconds = endpoint.options.soft_time_limit
                        error = SoftTimeLimit(f"soft time limit of {seconds} s")
                except Exception as exc:
                    error = exc
                finally:
                    self._ended(job, endpoint, args, kw)
                return _finished(self.app, job, endpoint, args, kw, value, error)

        async def all_calls() -> list[_Outcome]:
            return list(await asyncio.gather(*(one(*call) for call in calls)))

        _publish(RUNNING_ASYNC)  # several run at once: any of them may kill the process
        try:
            return self._runner.run(all_calls())
        finally:
            _publish(0)

    def _started(
        self, job: Job, endpoint: Endpoint, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        with self._held.lock:
            self._held.current = job.id
            if isinstance(endpoint, Service):
                marker = _marker(self.app, endpoint, args, kwargs)
                self._held.markers[marker] = round(endpoint.options.lease * 1000)
        if not endpoint.is_async:
            _publish(self._positions.get(job.id, 0))
        if endpoint.options.time_limit:  # the supervisor enforces it: tell it when this began
            _report({"run": job.id, "limit": endpoint.options.time_limit})

    def _ended(self, job: Job, endpoint: Endpoint, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.done += 1
        if isinstance(endpoint, Service):
            with self._held.lock:
                self._held.markers.pop(_marker(self.app, endpoint, args, kwargs), None)
        if not endpoint.is_async:
            _publish(0)
        if endpoint.options.time_limit:
            _report({"end": job.id})

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
        with self._held.lock:
            markers = list(self._held.markers.items())
        if held:
            with self.app.client.pipeline() as extend:
                for job in held:
                    extend.working(job)
            lost = [r for r in extend.execute(raise_on_error=False) if isinstance(r, Exception)]
            if lost:
                log.warning("%d held job(s) lost their lease: %s", len(lost), lost[0])
        if markers:  # computations in progress: keep their in-flight markers alive
            self.app.client.run(_renew(markers))


def _marker(app: App, service: Service, args: list[Any], kwargs: dict[str, Any]) -> str:
    digest = request_digest(tuple(args), kwargs)
    return ServiceKeys(app.context.namespace, service.name, digest).inflight


def _renew(markers: list[tuple[str, int]]) -> Op[list[Any]]:
    replies = yield [Command(("PEXPIRE", key, ms)) for key, ms in markers]
    return replies


#: Published on the pool's board while a batch's ``async def`` calls run together.
RUNNING_ASYNC = -1


def _publish(position: int) -> None:
    """Publish which job of the held batch runs (1-based; 0: none) on the
    pool's shared board: free for this process, read by the supervisor only
    if the process dies, to tell the job that may have killed it."""
    slots = pool.board()
    if slots is not None:
        slots[0] = position


def held_note(jobs: Sequence[Job]) -> bytes:
    """The held jobs as the supervisor reads them should the process die:
    ``"<id> <delivery>"`` lines."""
    return "\n".join(f"{job.id} {job.delivery}" for job in jobs).encode()


def parse_held_note(note: bytes) -> dict[str, int]:
    """The inverse of :func:`held_note`: job id → delivery."""
    held: dict[str, int] = {}
    for line in note.decode().splitlines():
        job_id, _, delivery = line.rpartition(" ")
        held[job_id] = int(delivery)
    return held


def _publish_held(jobs: Sequence[Job]) -> None:
    """Tell the supervisor which jobs this process holds, in the order it runs
    them: on the pool's shared note (no system call, no wake-up), or in a
    message when the batch is too long for it."""
    if pool.in_worker_process() and not pool.note(held_note(jobs)):
        pool.report({"held": [[job.id, job.delivery] for job in jobs]})


def _report(value: dict[str, Any]) -> None:
    if pool.in_worker_process():
        pool.report(value)


def _parse(
    app: App, job: Job, worker_id: str
) -> _Outcome | tuple[Endpoint, list[Any], dict[str, Any]]:
    """The task and arguments a job calls, or the dead-letter outcome of a bad one."""
    body = job.body
    ctx = app.context
    if (ctx.sign_all and ctx.secret is not None) or signing.is_sealed(body):
        try:
            body = signing.unseal(ctx.codec, ctx.secret if ctx.sign_all else None, job.queue, body)
        except CodecError as exc:
            return _Outcome(job, dead_reason=str(exc))
    if isinstance(body, dict) and isinstance(body.get("s"), str):
        endpoint: Endpoint | None = app.services.get(body["s"])
        what = "service"
    elif isinstance(body, dict) and isinstance(body.get("t"), str):
        endpoint, what = app.tasks.get(body["t"]), "task"
    else:
        return _Outcome(job, dead_reason="malformed message: neither a task call nor a request")
    if endpoint is None:
        name = body.get("s") or body.get("t")
        reason = f"unknown {what} {name!r}: not registered on worker {worker_id}"
        told = native_failed(app.context, body, RemoteError("distq.UnknownService", reason))
        return _Outcome(job, [told] if told else [], dead_reason=reason)
    args, kwargs = body.get("a", []), body.get("k", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return _Outcome(job, dead_reason="malformed message: bad arguments")
    return endpoint, args, kwargs


def _served(
    app: App,
    job: Job,
    service: Service,
    args: list[Any],
    kwargs: dict[str, Any],
    value: Any,
    error: BaseException | None,
) -> _Outcome:
    """Deliver a native service's result to its waiters, and ack its request."""
    if error is not None:
        log.info("service %s%s raised %s", service.name, args, error)
    done = native_done(app.context, service, args, kwargs, value, error)
    return _Outcome(
        job, [done, *queue_ops.per_queue(app.context, "ackjob", [(job.id, job.delivery)])]
    )


def _finished(
    app: App,
    job: Job,
    endpoint: Endpoint,
    args: list[Any],
    kwargs: dict[str, Any],
    value: Any,
    error: BaseException | None,
) -> _Outcome:
    if isinstance(endpoint, Service):
        return _served(app, job, endpoint, args, kwargs, value, error)
    if error is not None:
        return _failed(app, job, endpoint, error)
    return _succeeded(app, job, endpoint, value)


def _succeeded(app: App, job: Job, task: Task[Any, Any], value: Any) -> _Outcome:
    try:
        stored = encode_value(app.codec, value)
    except CodecError as exc:
        error = RemoteError("distq.CodecError", f"the result cannot be encoded: {exc}")
        return _failure(app, job, task, error, retry=False)
    return _Outcome(job, completed=(job.id, job.delivery, task.options, stored))


def _failed(app: App, job: Job, task: Task[Any, Any], exc: BaseException) -> _Outcome:
    error = RemoteError.from_exception(exc)
    log.info("task %s (%s) raised %s", task.name, job.id, error)
    return _failure(app, job, task, error, retry=True)


def _failure(
    app: App, job: Job, task: Task[Any, Any], error: RemoteError, *, retry: bool
) -> _Outcome:
    """Retry the call later, or dead-letter it with ``error`` as its result."""
    request = fail(
        app.context,
        job.id,
        job.delivery,
        task.options,
        error=str(error),
        stored=encode_error(error),
        retry=retry,
    )
    return _Outcome(job, [request])


def _settle(app: App, outcomes: list[_Outcome]) -> list[Op[Any]]:
    """The ops that tell the server every outcome of a batch (one round trip)."""
    ops: list[Op[Any]] = []
    completed = [o.completed for o in outcomes if o.completed]
    calls = complete(app.context, completed)
    step: Step = [*calls, *(request for o in outcomes for request in o.requests)]
    if step:
        ops.append(_stored(step, len(calls), len(completed)))
    for outcome in outcomes:
        if outcome.dead_reason is not None:
            log.error("job %s dead-lettered: %s", outcome.job.id, outcome.dead_reason)
            ops.append(queue_ops.deadletter(app.context, outcome.job, reason=outcome.dead_reason))
    return ops


def _stored(step: Step, calls: int, results: int) -> Op[list[Any]]:
    """Send a batch's outcomes, the first ``calls`` requests storing ``results``
    results: those refused are duplicates (a zombie's late run), logged."""
    replies = yield step
    refused = results - sum(int(done) for done in replies[:calls])
    if refused:
        log.warning(
            "%d result(s) refused as stale: the call(s) were delivered again since this "
            "run began, and the later delivery's outcome counts",
            refused,
        )
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
    if settings.role == "distcl":
        from distq.runtime.distcl_server import DistclServer

        chosen = [app.services[name] for name in settings.services] or None
        server = DistclServer(app, chosen, settings.server_id, settings.heartbeat_s)
        result = server.run()
    else:
        result = Worker(app, settings).run()
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
