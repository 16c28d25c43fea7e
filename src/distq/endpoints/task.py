"""Tasks: functions run by workers, whose callers may wait for a result.

A task call is a job whose body is a small message naming the task and its
arguments: ``{"t": name, "a": [args…], "k": {kwargs…}}``. A worker runs it
and, in one script call, stores the result (with a TTL) and acknowledges the
job; a failure is retried with exponential backoff and jitter, then
dead-lettered with its last error, which also becomes the stored result. A
caller waits for a result with one blocking command (no polling).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from distq.codec.result import decode_result, result_failed
from distq.connection.ops import Command, Op, ScriptCall, single
from distq.connection.scripts import load_scripts
from distq.errors import InvalidArgument, JobNotFound, RemoteError, Timeout
from distq.queue import ops as queue_ops
from distq.queue.job import JobState
from distq.queue.keys import core_bytes, parse_id
from distq.queue.ops import Duration, QueueContext, seconds_to_ms

if TYPE_CHECKING:
    from distq.endpoints.app import App

__all__ = ["Task", "TaskHandle", "TaskOptions", "message", "wait_result"]

P = ParamSpec("P")
R = TypeVar("R")

SCRIPTS = load_scripts("distq.endpoints", lib_from="distq.queue")
#: Longest blocking wait for a result between looks at the job's state (a job
#: dead-lettered by a lost worker stores no result to wake its waiters).
DEAD_CHECK_S = 0.5


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task's jobs are queued, run and retried (seconds throughout).

    Attributes:
        queue: the queue its calls go to.
        retry: how many times a call that raised is tried again.
        backoff: the first retry's delay; each next one doubles, up to
            ``backoff_max``; the actual delay is drawn in [½d, d] (jitter).
        max_deliveries: deliveries (crashes, kills, lost leases included)
            after which a call goes to the dead letters.
        time_limit: hard limit: the worker process is killed past it and the
            call is tried again.
        soft_time_limit: ``distq.SoftTimeLimit`` is raised inside the task.
        result_ttl: how long a result is kept (0: not stored).
        lease: how long a worker holds a call before it is redelivered (the
            worker extends it while the task runs).
    """

    queue: str = "default"
    retry: int = 3
    backoff: float = 1.0
    backoff_max: float = 300.0
    max_deliveries: int = 5
    time_limit: float | None = None
    soft_time_limit: float | None = None
    result_ttl: float = 86400.0
    lease: float = 60.0


def message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The job body of a task call."""
    return {"t": name, "a": list(args), "k": kwargs}


class Task(Generic[P, R]):
    """A function registered as a task. Calling it runs it here; ``delay`` queues it."""

    def __init__(self, app: App, fn: Callable[P, Any], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = _is_coroutine_function(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run the function here and now (no queue, no worker)."""
        return self.fn(*args, **kwargs)

    def _add(self, bodies: Iterable[dict[str, Any]]) -> Op[list[str]]:
        ctx = self.app.context
        return queue_ops.addjobs(
            ctx,
            self.options.queue,
            (ctx.seal(self.options.queue, body) for body in bodies),
            retry=self.options.lease,
            max_deliveries=self.options.max_deliveries,
        )

    def _add_one(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Op[str]:
        ctx, queue = self.app.context, self.options.queue
        return queue_ops.addjob(
            ctx,
            queue,
            ctx.seal(queue, message(self.name, args, kwargs)),
            retry=self.options.lease,
            max_deliveries=self.options.max_deliveries,
        )

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Queue a call; return its handle at once."""
        return TaskHandle(self.app, self.app.client.run(self._add_one(args, kwargs)))

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Like :meth:`delay`, from asyncio code."""
        return TaskHandle(self.app, await self.app.aclient.run(self._add_one(args, kwargs)))

    def map(self, calls: Iterable[Any]) -> list[TaskHandle[R]]:
        """Queue many calls in one round trip.

        Each item is the arguments of one call: a tuple (positional
        arguments), a dict (keyword arguments), or any other single value
        (one positional argument).
        """
        bodies = [message(self.name, *split_call(call)) for call in calls]
        return [TaskHandle(self.app, job_id) for job_id in self.app.client.run(self._add(bodies))]

    def __repr__(self) -> str:
        return f"<distq.Task {self.name} queue={self.options.queue!r}>"


def split_call(call: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of one call given as a tuple, a dict or a single value."""
    if isinstance(call, tuple):
        return call, {}
    if isinstance(call, dict):
        return (), call
    return (call,), {}


def _is_coroutine_function(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


class TaskHandle(Generic[R]):
    """The handle of one queued call: its id, status and result.

    ``handle.get(timeout)`` blocks for the result; ``await handle`` (or
    ``await handle.aget(timeout)``) does the same in asyncio code.
    """

    __slots__ = ("app", "id")

    def __init__(self, app: App, job_id: str) -> None:
        self.app = app
        self.id = job_id

    def status(self) -> str:
        """``queued``, ``active``, ``delayed`` (waiting for a retry), ``dead``,
        ``succeeded``, ``failed``, or ``unknown`` (no such call, or its
        result expired)."""
        return self.app.client.run(task_status(self.app.context, self.id))

    def get(self, timeout: Duration | None = None) -> R:
        """The call's result, waiting up to ``timeout`` seconds (``None``: no limit).

        Raises:
            RemoteError: the task raised (after its retries), or was dead-lettered.
            Timeout: no result in time.
            JobNotFound: no such call, or its result expired.
        """
        result: R = self.app.client.run(wait_result(self.app.context, self.id, timeout))
        return result

    async def aget(self, timeout: Duration | None = None) -> R:
        """Like :meth:`get`, awaited."""
        result: R = await self.app.aclient.run(wait_result(self.app.context, self.id, timeout))
        return result

    def __await__(self) -> Generator[Any, None, R]:
        return self.aget().__await__()

    def __repr__(self) -> str:
        return f"<distq.TaskHandle {self.id}>"


def task_status(ctx: QueueContext, job_id: str) -> Op[str]:
    """The status of a call (see :meth:`TaskHandle.status`)."""
    core, queue = parse_id(job_id)
    keys = ctx.keys(queue)
    stored, state, exists, _reason = yield [
        Command(("LINDEX", keys.result(core), 0)),
        *queue_ops.state_requests(keys, core),
    ]
    if stored is not None:
        return "failed" if result_failed(stored) else "succeeded"
    code = queue_ops.state_letter(state, exists)
    return "unknown" if code is None else JobState.from_code(code).value


def wait_result(ctx: QueueContext, job_id: str, timeout: Duration | None) -> Op[Any]:
    """Wait for a call's stored result, one blocking command per slice."""
    core, queue = parse_id(job_id)
    keys = ctx.keys(queue)
    result_key = keys.result(core)
    deadline = (
        None if timeout is None else time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000
    )
    slice_s = min(ctx.wait_slice_s, DEAD_CHECK_S)
    while True:
        remaining = slice_s if deadline is None else deadline - time.monotonic()
        wait_s = round(max(0.001, min(slice_s, remaining)), 3)
        # Moving the one element of the list onto itself reads it without taking it.
        stored = yield from single(
            Command(("BLMOVE", result_key, result_key, "LEFT", "LEFT", wait_s))
        )
        if stored is not None:
            return decode_result(ctx.codec, stored, job_id)
        stored, raw_state, exists, reason = yield [
            Command(("LINDEX", result_key, 0)),
            *queue_ops.state_requests(keys, core),
        ]
        if stored is not None:
            return decode_result(ctx.codec, stored, job_id)
        state = queue_ops.state_letter(raw_state, exists)
        if state == "x":
            raise RemoteError("DeadLetter", (reason or b"dead-lettered").decode(errors="replace"))
        if state is None:
            raise JobNotFound(f"no task call {job_id}, or its result expired")
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"no result for {job_id} within {timeout} s")


# What workers call ------------------------------------------------------------


#: A finished call to report: its id, the delivery that ran it, its options and
#: its stored result.
Completion = tuple[str, int, TaskOptions, bytes]


#: Jobs per ``complete`` script call (a worker's batch per queue, in slices).
COMPLETE_CHUNK = 500


def complete(ctx: QueueContext, done: Iterable[Completion]) -> list[ScriptCall]:
    """The requests that store results and acknowledge their jobs (each fenced by
    its delivery): one script call per queue, for a whole batch."""
    groups: dict[str, tuple[list[str], list[Any]]] = {}
    for job_id, token, options, stored in done:
        core, queue = parse_id(job_id)
        keys, args = groups.setdefault(queue, ([], []))
        keys.append(ctx.keys(queue).result(core))
        args += (core_bytes(core), token, stored, round(options.result_ttl * 1000))
    return [
        ScriptCall(
            SCRIPTS["complete"],
            (*ctx.keys(queue).all(), *keys[start : start + COMPLETE_CHUNK]),
            args[4 * start : 4 * (start + COMPLETE_CHUNK)],
        )
        for queue, (keys, args) in groups.items()
        for start in range(0, len(keys), COMPLETE_CHUNK)
    ]


def fail(
    ctx: QueueContext,
    job_id: str,
    token: int,
    options: TaskOptions,
    *,
    error: str,
    stored: bytes,
    retry: bool = True,
) -> ScriptCall:
    """The request that schedules a retry (exponential backoff with jitter), or
    dead-letters a call that used its retries (or must not be retried)."""
    core, queue = parse_id(job_id)
    keys = ctx.keys(queue)
    return ScriptCall(
        SCRIPTS["fail"],
        (*keys.all(), keys.result(core)),
        (
            core_bytes(core),
            token,
            round(options.backoff * 1000),
            round(options.backoff_max * 1000),
            random.uniform(0.5, 1.0),
            options.retry if retry else 0,
            error,
            stored,
            round(options.result_ttl * 1000),
        ),
    )


def validate_options(options: TaskOptions) -> TaskOptions:
    """Refuse impossible option values early, at decoration time."""
    if options.retry < 0 or options.max_deliveries < 1:
        raise InvalidArgument("retry must be >= 0 and max_deliveries >= 1")
    for name in ("backoff", "backoff_max", "result_ttl", "lease"):
        if getattr(options, name) < 0:
            raise InvalidArgument(f"{name} must be a non-negative number of seconds")
    for name in ("time_limit", "soft_time_limit"):
        value = getattr(options, name)
        if value is not None and value <= 0:
            raise InvalidArgument(f"{name} must be a positive number of seconds or None")
    return options
