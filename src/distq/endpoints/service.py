"""Cached services: named computations whose results are shared by key.

A client asks a service for the value of some arguments (``app.get``). A
cached value comes back in one round trip without reaching any server;
otherwise the request goes to the service's servers, and every client that
asks for the same key while it is being computed waits for that one
computation (DisTcl's run list and waitlist).

Two wire protocols:

* ``native``: values through the codec, keys under hash tags, requests as
  jobs of the reliable queue ``svc.<name>`` — a server that dies mid-way
  loses nothing: the lease brings the request back to another server;
* ``distcl``: exactly DisTcl's keys and ``STATUS:VALUE`` strings (see
  :mod:`distq.endpoints.distcl`), so Tcl clients and servers take part.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from distq.codec.result import decode_result, encode_error, encode_value
from distq.connection.ops import Command, Op, ScriptCall, single
from distq.endpoints.distcl import DistclKeys, parse_value, tcl_join
from distq.endpoints.task import SCRIPTS
from distq.errors import CodecError, InvalidArgument, RemoteError, Timeout
from distq.queue import ops as queue_ops
from distq.queue.keys import ServiceKeys, service_queue, validate_queue
from distq.queue.ops import Duration, QueueContext, seconds_to_ms

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Cached", "Service", "ServiceOptions", "request_digest"]

Protocol = Literal["native", "distcl"]
#: How long a delivered result stays readable by waiters that were slow to look.
WAITLIST_TTL_MS = 60_000
#: Longest blocking wait between looks at whether the request is still alive.
CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class Cached:
    """Return this from a service function to choose the expiry of its result
    (DisTcl's ``-secs2keep``): ``return distq.Cached(value, ttl=60)``."""

    value: Any
    ttl: float | None


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How a service runs (seconds throughout).

    Attributes:
        ttl: default cache expiry of a result (``None``: results are handed to
            the waiting clients but not cached, unless the function returns
            :class:`Cached`).
        protocol: ``"native"`` or ``"distcl"``.
        lease: how long a computation may go unrenewed before another server
            takes the request over (servers renew it while they compute).
        time_limit: hard limit of one computation (native protocol).
        soft_time_limit: ``SoftTimeLimit`` is raised in the function.
    """

    ttl: float | None = None
    protocol: Protocol = "native"
    lease: float = 30.0
    time_limit: float | None = None
    soft_time_limit: float | None = None


class Service:
    """A function registered as a named service."""

    def __init__(self, name: str, fn: Callable[..., Any], options: ServiceOptions) -> None:
        import inspect

        self.name = name
        self.fn = fn
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self.queue = service_queue(name)
        self.distcl = DistclKeys(name)

    def outcome(self, value: Any) -> tuple[Any, float | None]:
        """The value to deliver and its cache expiry (``Cached`` unwrapped)."""
        if isinstance(value, Cached):
            return value.value, value.ttl
        return value, self.options.ttl

    def __repr__(self) -> str:
        return f"<distq.Service {self.name} protocol={self.options.protocol}>"


def validate_service(name: str) -> str:
    """``name`` if it can name a service (it names a queue and DisTcl keys)."""
    validate_queue(name)
    if ":" in name:
        raise InvalidArgument(f"a service name cannot contain ':' (DisTcl keys use it): {name!r}")
    return name


def request_digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The key of a native request: a digest of its arguments in canonical JSON."""
    try:
        text = json.dumps(
            [list(args), kwargs],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise CodecError(f"service arguments must be JSON-compatible: {exc}") from exc
    return hashlib.sha1(text.encode()).hexdigest()[:24]


def _deadline(timeout: Duration | None) -> float | None:
    return None if timeout is None else time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000


def _slice(deadline: float | None, longest: float) -> float:
    remaining = longest if deadline is None else deadline - time.monotonic()
    return round(max(0.001, min(longest, remaining)), 3)


# Native protocol: the client side ---------------------------------------------


def _request(
    ctx: QueueContext,
    service: str,
    options: ServiceOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[ServiceKeys, ScriptCall]:
    keys = ServiceKeys(ctx.namespace, service, request_digest(args, kwargs))
    call = ScriptCall(SCRIPTS["svc_request"], keys.all(), (round(options.lease * 1000),))
    return keys, call


def _enqueue(
    ctx: QueueContext,
    service: str,
    options: ServiceOptions,
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
) -> Op[list[str]]:
    queue = service_queue(service)
    bodies = [ctx.seal(queue, {"s": service, "a": list(a), "k": k}) for a, k in calls]
    return queue_ops.addjobs(ctx, queue, bodies, retry=options.lease, max_deliveries=5)


def native_get(
    ctx: QueueContext,
    service: str,
    options: ServiceOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: Duration | None,
) -> Op[Any]:
    """Get a value: cached in one round trip; else queued (once) and waited for."""
    keys, call = _request(ctx, service, options, args, kwargs)
    deadline = _deadline(timeout)
    while True:
        reply = yield from single(call)
        if reply[0] == 1:
            return decode_result(ctx.codec, reply[1])
        if reply[0] == 3:
            yield from _enqueue(ctx, service, options, [(args, kwargs)])
        found = yield from _wait_native(ctx, keys, deadline)
        if found is not None:
            return decode_result(ctx.codec, found)
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"no server answered {service}{list(args)} within {timeout} s")
        # The computation vanished (its marker expired unrenewed): ask again.


def _wait_native(ctx: QueueContext, keys: ServiceKeys, deadline: float | None) -> Op[bytes | None]:
    """Wait for the result while the computation is alive; None when it is not."""
    while True:
        wait_s = _slice(deadline, min(ctx.wait_slice_s, CHECK_S))
        # Moving the one element of the waitlist onto itself reads it without taking it.
        found = yield from single(
            Command(("BLMOVE", keys.waitlist, keys.waitlist, "LEFT", "LEFT", wait_s))
        )
        if found is not None:
            return bytes(found)
        value, alive = yield [Command(("GET", keys.value)), Command(("EXISTS", keys.inflight))]
        if value is not None:
            return bytes(value)
        if not alive or (deadline is not None and time.monotonic() >= deadline):
            return None


def native_prefetch(
    ctx: QueueContext,
    service: str,
    options: ServiceOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Op[bool]:
    """Ask for a computation without waiting; True if one was queued."""
    _, call = _request(ctx, service, options, args, kwargs)
    reply = yield from single(call)
    if reply[0] != 3:
        return False
    yield from _enqueue(ctx, service, options, [(args, kwargs)])
    return True


def native_forget(
    ctx: QueueContext, service: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Op[bool]:
    """Remove a cached value (and the last delivered result); True if one was cached."""
    keys = ServiceKeys(ctx.namespace, service, request_digest(args, kwargs))
    removed = yield from single(Command(("DEL", keys.value, keys.waitlist)))
    return int(removed) > 0


def native_get_many(
    ctx: QueueContext,
    service: str,
    options: ServiceOptions,
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
    timeout: Duration | None,
) -> Op[list[Any]]:
    """Get many values: one round trip to look them all up, one to queue the
    missing ones (computed in parallel by the servers), then the waits."""
    requests = [_request(ctx, service, options, a, k) for a, k in calls]
    replies = yield [call for _, call in requests]
    missing = [calls[i] for i, reply in enumerate(replies) if reply[0] == 3]
    if missing:
        yield from _enqueue(ctx, service, options, missing)
    deadline = _deadline(timeout)
    values: list[Any] = []
    for (keys, _), reply, (args, kwargs) in zip(requests, replies, calls, strict=True):
        if reply[0] == 1:
            values.append(decode_result(ctx.codec, reply[1]))
            continue
        found = yield from _wait_native(ctx, keys, deadline)
        if found is None:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            values.append((yield from native_get(ctx, service, options, args, kwargs, remaining)))
        else:
            values.append(decode_result(ctx.codec, found))
    return values


# Native protocol: the server side ---------------------------------------------


def native_done(
    ctx: QueueContext,
    service: Service,
    args: list[Any],
    kwargs: dict[str, Any],
    outcome: Any,
    error: BaseException | None,
) -> ScriptCall:
    """The request that delivers (and maybe caches) one computed result."""
    keys = ServiceKeys(ctx.namespace, service.name, request_digest(tuple(args), kwargs))
    ttl: float | None = None
    if error is None:
        value, ttl = service.outcome(outcome)
        try:
            stored = encode_value(ctx.codec, value)
        except CodecError as exc:
            stored, ttl = encode_error(RemoteError("distq.CodecError", str(exc))), None
    else:
        stored = encode_error(RemoteError.from_exception(error))
    ttl_ms = round(ttl * 1000) if ttl else 0
    return ScriptCall(SCRIPTS["svc_done"], keys.all(), (stored, ttl_ms, WAITLIST_TTL_MS))


def native_failed(ctx: QueueContext, body: Any, error: RemoteError) -> ScriptCall | None:
    """The request that tells a request's waiters it will not be computed
    (its server ran out of time, nobody serves it…); None if ``body`` is not
    a service request."""
    if not (isinstance(body, dict) and isinstance(body.get("s"), str)):
        return None
    args, kwargs = body.get("a", []), body.get("k", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return None
    keys = ServiceKeys(ctx.namespace, body["s"], request_digest(tuple(args), kwargs))
    return ScriptCall(SCRIPTS["svc_done"], keys.all(), (encode_error(error), 0, WAITLIST_TTL_MS))


# DisTcl protocol: the client side ---------------------------------------------


def _distcl_result(raw: bytes, where: str) -> str:
    status, value = parse_value(raw, where)
    if status != 0:
        raise RemoteError("TclError" if status == 1 else f"TclStatus{status}", value)
    return value


def distcl_key(args: tuple[Any, ...]) -> str:
    """DisTcl's KEY: the arguments as a Tcl list of strings."""
    return tcl_join([str(a) for a in args])


def distcl_get(service: str, args: tuple[Any, ...], timeout: Duration | None) -> Op[str]:
    """``distcl::get``: the cached value, or push the request and wait on the waitlist."""
    keys, key = DistclKeys(service), distcl_key(args)
    cached = yield from single(Command(("GET", keys.value(key))))
    if cached is not None:
        return _distcl_result(cached, keys.value(key))
    yield from single(Command(("RPUSH", keys.get_queue, key)))
    return (yield from _distcl_wait(keys, key, _deadline(timeout), timeout))


def distcl_get_many(
    service: str, calls: list[tuple[Any, ...]], timeout: Duration | None
) -> Op[list[str]]:
    """Many ``distcl::get``s at once: one round trip reads the cache, one
    queues every missing KEY (once each), then the waits."""
    keys = DistclKeys(service)
    names = [distcl_key(args) for args in calls]
    cached = yield [Command(("GET", keys.value(name))) for name in names]
    missing = list(
        dict.fromkeys(n for n, value in zip(names, cached, strict=True) if value is None)
    )
    if missing:
        yield [Command(("RPUSH", keys.get_queue, name)) for name in missing]
    deadline = _deadline(timeout)
    values: list[str] = []
    waited: dict[str, str] = {}
    for name, value in zip(names, cached, strict=True):
        if value is not None:
            values.append(_distcl_result(value, keys.value(name)))
            continue
        if name not in waited:
            waited[name] = yield from _distcl_wait(keys, name, deadline, timeout)
        values.append(waited[name])
    return values


def _distcl_wait(
    keys: DistclKeys, name: str, deadline: float | None, timeout: Duration | None
) -> Op[str]:
    while True:
        reply = yield from single(Command(("BLPOP", keys.waitlist(name), _slice(deadline, 2.0))))
        if reply is not None:
            return _distcl_result(reply[1], keys.value(name))
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"Request for '{keys.value(name)}' timed out.")


def distcl_prefetch(service: str, args: tuple[Any, ...]) -> Op[bool]:
    """``distcl::prefetch``: push a prefetch request unless the value is cached."""
    keys, key = DistclKeys(service), distcl_key(args)
    if (yield from single(Command(("EXISTS", keys.value(key))))):
        return False
    yield from single(Command(("RPUSH", keys.prefetch_queue, key)))
    return True


def distcl_forget(service: str, args: tuple[Any, ...]) -> Op[bool]:
    """``distcl::forget``: delete the cached value and any stale waitlist."""
    keys, key = DistclKeys(service), distcl_key(args)
    removed = yield from single(Command(("DEL", keys.value(key), keys.waitlist(key))))
    return int(removed) > 0
