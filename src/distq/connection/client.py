"""Talking to the server: one round trip per step, reconnects, typed errors.

:class:`SyncConnection` and :class:`AsyncConnection` are the only two places
that touch redis-py. Each sends a *step* (a list of requests, see
:mod:`distq.connection.ops`) in one round trip — a single command, or a
pipeline when there are several — and returns the replies, error replies
translated to :class:`~distq.errors.DistqError` values in place.

Broken connections are retried with exponential backoff (cl-disque's
*reconnect* restart: the whole step is resent). Every distq request is safe to
resend: job ids are made by the client, so a resent ``addjob`` finds its job
already there, and a resent ``getjob`` at worst leaves a job leased to nobody
until its lease brings it back. A wrong password is never retried, and a
server that stops answering gives :class:`~distq.errors.Timeout` rather than a
retry storm. Any other redis-py error (such as ``InvalidResponse`` from a peer
that does not speak the Redis protocol) becomes :class:`~distq.errors.ServerError`;
no redis-py exception reaches the caller.

Every request and reply can be logged at DEBUG level on the ``distq.wire``
logger (cl-disque's ``*echo-p*``); passwords never appear there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
from hiredis import pack_command
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError as RedisAuthenticationError,
)
from redis.exceptions import (
    AuthorizationError,
    InvalidResponse,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from distq import errors
from distq.connection.ops import Command, Op, Request, ScriptCall, Step, Stepper
from distq.connection.url import ConnectionSettings

__all__ = ["AsyncConnection", "SyncConnection", "translate"]

T = TypeVar("T")

wire = logging.getLogger("distq.wire")
log = logging.getLogger(__name__)

#: Error-reply prefixes of distq's scripts, and the errors they become.
_SCRIPT_ERRORS: dict[str, type[errors.DistqError]] = {
    "QUEUEFULL": errors.QueueFull,
    "NOJOB": errors.JobNotFound,
    "LEASELOST": errors.LeaseLost,
    "BADARG": errors.InvalidArgument,
    "NAMETAKEN": errors.NameTaken,
}
_REDACTED_COMMANDS = {b"AUTH", "AUTH", b"HELLO", "HELLO"}


def translate(exc: RedisError, settings: ConnectionSettings) -> errors.DistqError:
    """The distq error for a redis-py exception (the caller chains the cause)."""
    message = str(exc)
    where = settings.redacted()
    if isinstance(exc, RedisAuthenticationError | AuthorizationError):
        return errors.AuthenticationError(f"{where}: the server refused the credentials: {message}")
    if isinstance(exc, NoPermissionError):
        return errors.PermissionDenied(f"{where}: {message}")
    if isinstance(exc, OutOfMemoryError):
        return errors.OutOfMemory(message)
    if isinstance(exc, RedisTimeoutError):
        if message.startswith("Timeout connecting"):
            return errors.Timeout(
                f"{where}: no connection within {settings.connect_timeout_s} s (connect_timeout)"
            )
        return errors.Timeout(f"{where}: no reply within {settings.socket_timeout_s} s")
    if isinstance(exc, RedisConnectionError):
        return errors.ServerUnavailable(f"{where}: {message}")
    if isinstance(exc, InvalidResponse):
        return errors.ServerError(
            f"{where}: the reply is not the Redis protocol (is this a Redis/Valkey "
            f"server?): {message}"
        )
    if not isinstance(exc, ResponseError):
        return errors.ServerError(f"{where}: {type(exc).__name__}: {message}")
    head, _, rest = message.partition(" ")
    kind = _SCRIPT_ERRORS.get(head)
    if kind is not None:
        return kind(rest)
    if "NOAUTH" in message or "WRONGPASS" in message:
        return errors.AuthenticationError(f"{where}: {message}")
    return errors.ServerError(message)


class _Backoff:
    """Reconnect pacing: exponential, capped, bounded by ``settings.retries``."""

    __slots__ = ("attempt", "settings")

    BASE_S = 0.05
    CAP_S = 2.0

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.attempt = 0

    def next_delay(self, exc: RedisError) -> float:
        """Seconds to wait before the next attempt, or raise the final error."""
        if isinstance(exc, RedisAuthenticationError | AuthorizationError | RedisTimeoutError):
            raise translate(exc, self.settings) from exc
        if self.attempt >= self.settings.retries:
            raise errors.ServerUnavailable(
                f"{self.settings.redacted()}: no connection after "
                f"{self.attempt + 1} attempts: {exc}"
            ) from exc
        delay: float = min(self.CAP_S, self.BASE_S * 2**self.attempt)
        self.attempt += 1
        log.warning(
            "connection to %s failed (%s); retry %d in %.2f s",
            self.settings.redacted(),
            exc,
            self.attempt,
            delay,
        )
        return delay


def _redis_options(settings: ConnectionSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "db": settings.db,
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),  # distq retries itself, and never on bad credentials
        "decode_responses": False,
    }
    if settings.path is not None:
        options["unix_socket_path"] = settings.path
    else:
        options.update(host=settings.host, port=settings.port)
    if settings.tls:
        options.update(
            ssl=True,
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_cert_reqs=settings.ssl_cert_reqs,
        )
    return options


def _wire_args(request: Request) -> tuple[Any, ...]:
    if isinstance(request, ScriptCall):
        return ("EVALSHA", request.script.sha, len(request.keys), *request.keys, *request.args)
    return request.args


def _eval_args(request: ScriptCall) -> tuple[Any, ...]:
    return ("EVAL", request.script.source, len(request.keys), *request.keys, *request.args)


def _shorten(value: Any) -> Any:
    if isinstance(value, bytes | str) and len(value) > 200:
        return f"{value[:200]!r}…({len(value)} bytes)"
    return value


def _log_step(step: Step, replies: Sequence[Any] | None) -> None:
    for index, request in enumerate(step):
        args = _wire_args(request)
        if args and args[0] in _REDACTED_COMMANDS:
            args = (args[0], "***")
        shown = " ".join(str(_shorten(a)) for a in args)
        if replies is None:
            wire.debug("> %s", shown)
        else:
            wire.debug("< %s", _shorten(replies[index]))


def _replies_with_errors(raw: Sequence[Any], settings: ConnectionSettings) -> list[Any]:
    return [translate(r, settings) if isinstance(r, RedisError) else r for r in raw]


class _Base:
    """What both connections share: settings, wire logging, reply handling."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        #: SHAs of the scripts known to be loaded on the server.
        self._loaded: set[str] = set()

    def _missing_scripts(self, step: Step) -> dict[str, bytes]:
        """SHA → source of the scripts of ``step`` the server may not know: they
        are loaded (SCRIPT LOAD) in the same round trip, ahead of the step."""
        loaded = self._loaded
        return {
            r.script.sha: r.script.source
            for r in step
            if isinstance(r, ScriptCall) and r.script.sha not in loaded
        }

    def _queue_step(self, pipe: Any, step: Step) -> int:
        """Queue a step on a pipeline, preceded by SCRIPT LOAD of any script the
        server may not know, so that every command runs in order; returns how
        many replies to skip."""
        missing = self._missing_scripts(step)
        for source in missing.values():
            pipe.execute_command("SCRIPT", "LOAD", source)
        for request in step:
            pipe.execute_command(*_wire_args(request))
        self._loaded.update(missing)
        return len(missing)

    def _noscript(self, replies: list[Any]) -> list[int]:
        """Indexes of replies that say the server lost its scripts (a restart or a
        SCRIPT FLUSH): those calls are resent one by one with EVAL."""
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            self._loaded.clear()
        return lost

    def _before(self, step: Step) -> None:
        if wire.isEnabledFor(logging.DEBUG):
            _log_step(step, None)

    def _after(self, step: Step, replies: list[Any]) -> list[Any]:
        if wire.isEnabledFor(logging.DEBUG):
            _log_step(step, replies)
        for reply in replies:
            if isinstance(reply, RedisError):
                return _replies_with_errors(replies, self.settings)
        return replies


class SyncConnection(_Base):
    """A blocking connection to one server: one socket per thread (safe to use
    after fork: a child opens its own).

    Requests go straight to the socket of a redis-py ``Connection`` — packed by
    hiredis, replies parsed by hiredis — rather than through ``Redis.execute_command``,
    whose per-call bookkeeping (connection pool, callbacks, instrumentation)
    costs as much as the round trip itself on loopback.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.redis = redis.Redis(**_redis_options(settings))
        self._local = threading.local()
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def close(self) -> None:
        """Close every connection (a later call opens a new one)."""
        for conn in list(self._connections):
            conn.disconnect()
        self.redis.close()

    def run(self, op: Op[T]) -> T:
        """Drive one op to completion, one round trip per step."""
        try:
            step = next(op)
            while True:
                replies = self.roundtrip(step)
                error = next((r for r in replies if isinstance(r, BaseException)), None)
                step = op.throw(error) if error is not None else op.send(replies)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def run_many(self, ops: Sequence[Op[Any]]) -> Stepper[Any]:
        """Drive several ops in lockstep: each round is one pipelined round trip."""
        stepper: Stepper[Any] = Stepper(ops)
        while not stepper.done:
            stepper.feed(self.roundtrip(stepper.requests()))
        return stepper

    def roundtrip(self, step: Step) -> list[Any]:
        """Send a step, resending it on a broken connection; replies in order."""
        backoff = None
        while True:
            try:
                self._before(step)
                return self._after(step, self._send(step))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                backoff = backoff or _Backoff(self.settings)
                time.sleep(backoff.next_delay(exc))
            except RedisError as exc:  # e.g. InvalidResponse: a peer that is not Redis
                raise translate(exc, self.settings) from exc

    def _connection(self) -> Any:
        local = self._local
        if getattr(local, "generation", None) != _fork_generation:
            # Each thread (and, after a fork, each child) has a connection of
            # its own, opened on its first send; close() disconnects them all.
            local.conn = self.redis.connection_pool.make_connection()
            local.generation = _fork_generation
            self._connections.add(local.conn)
        return local.conn

    def _send(self, step: Step) -> list[Any]:
        conn = self._connection()
        if len(step) == 1:  # the common case, kept short
            request = step[0]
            if isinstance(request, Command):
                conn.send_packed_command([pack_command(request.args)], check_health=False)
                return [_read(conn)]
            if request.script.sha in self._loaded:
                conn.send_packed_command([pack_command(_wire_args(request))], check_health=False)
                reply = _read(conn)
                if not isinstance(reply, NoScriptError):
                    return [reply]
                self._loaded.clear()  # the server lost its scripts: load them again below
        missing = self._missing_scripts(step)
        wire_args = [("SCRIPT", "LOAD", source) for source in missing.values()]
        wire_args.extend(map(_wire_args, step))
        conn.send_packed_command([_pack(wire_args)], check_health=False)
        replies = [_read(conn) for _ in wire_args][len(missing) :]
        self._loaded.update(missing)
        for index in self._noscript(replies):
            request = step[index]
            assert isinstance(request, ScriptCall)
            conn.send_packed_command([_pack([_eval_args(request)])], check_health=False)
            replies[index] = _read(conn)
        return replies


def _pack(commands: list[tuple[Any, ...]]) -> bytes:
    """The wire bytes of commands (hiredis packs each in one call)."""
    return b"".join(map(pack_command, commands))


#: Raised in a child after each fork, so that it opens connections of its own
#: (cheaper to check on every request than os.getpid(), a system call).
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


def _read(conn: Any) -> Any:
    """One reply; an error reply is returned, not raised."""
    try:
        return conn.read_response()
    except ResponseError as exc:
        return exc


class AsyncConnection(_Base):
    """The asyncio twin of :class:`SyncConnection`, driving the same ops."""

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.redis = redis.asyncio.Redis(**_redis_options(settings))
        self.redis.response_callbacks.clear()
        self._execute: Callable[..., Awaitable[Any]] = self.redis.execute_command

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.redis.aclose()

    async def run(self, op: Op[T]) -> T:
        """Drive one op to completion, one round trip per step."""
        try:
            step = next(op)
            while True:
                replies = await self.roundtrip(step)
                error = next((r for r in replies if isinstance(r, BaseException)), None)
                step = op.throw(error) if error is not None else op.send(replies)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def run_many(self, ops: Sequence[Op[Any]]) -> Stepper[Any]:
        """Drive several ops in lockstep: each round is one pipelined round trip."""
        stepper: Stepper[Any] = Stepper(ops)
        while not stepper.done:
            stepper.feed(await self.roundtrip(stepper.requests()))
        return stepper

    async def roundtrip(self, step: Step) -> list[Any]:
        """Send a step, resending it on a broken connection; replies in order."""
        backoff = _Backoff(self.settings)
        while True:
            try:
                self._before(step)
                return self._after(step, await self._send(step))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                await asyncio.sleep(backoff.next_delay(exc))
            except RedisError as exc:  # e.g. InvalidResponse: a peer that is not Redis
                raise translate(exc, self.settings) from exc

    async def _send(self, step: Step) -> list[Any]:
        if len(step) == 1:
            return [await self._one(step[0])]
        pipe: Any = self.redis.pipeline(transaction=False)
        loads = self._queue_step(pipe, step)
        replies = (await pipe.execute(raise_on_error=False))[loads:]
        for index in self._noscript(replies):
            replies[index] = await self._one(step[index])
        return list(replies)

    async def _one(self, request: Request) -> Any:
        try:
            if isinstance(request, Command):
                return await self._execute(*request.args)
            try:
                reply = await self._execute(*_wire_args(request))
            except NoScriptError:
                self._loaded.clear()
                reply = await self._execute(*_eval_args(request))
            self._loaded.add(request.script.sha)
            return reply
        except ResponseError as exc:
            return exc
