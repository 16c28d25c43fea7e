"""The App: one connection setting, one registry of endpoints.

::

    app = distq.App()                    # the embedded server, or DISTQ_URL

    @app.task(retry=2, time_limit=30)
    def add(x, y):
        return x + y

    handle = add.delay(2, 3)             # queued; a worker runs it
    handle.get(timeout=10)               # 5

Workers load the app by reference (``distq worker mymodule:app``), so tasks
are registered by importing the module; a task is known by its name
(``module.function`` unless given), on clients and workers alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, overload

from distq.codec.body import BodyCodec
from distq.connection.client import AsyncConnection, SyncConnection
from distq.connection.ops import Op
from distq.endpoints.actor import (
    ActorRef,
    call_op,
    make_envelope,
    need,
    register_op,
    send_many_op,
    send_op,
    watch_op,
    whereis_op,
)
from distq.endpoints.node import Node
from distq.endpoints.service import (
    Protocol,
    Service,
    ServiceOptions,
    distcl_forget,
    distcl_get,
    distcl_get_many,
    distcl_prefetch,
    native_forget,
    native_get,
    native_get_many,
    native_prefetch,
    validate_service,
)
from distq.endpoints.task import Task, TaskOptions, split_call, validate_options
from distq.errors import InvalidArgument
from distq.queue.client import AsyncClient, Client, resolve_settings
from distq.queue.ops import DEFAULT_MAX_PAYLOAD, Duration, QueueContext

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")
B = TypeVar("B")


class App:
    """Where a program's endpoints are defined and from where they are called.

    Args:
        url: the server (``None``: ``DISTQ_URL``, else the embedded default).
        namespace: prefix of every key (``None``: ``DISTQ_NAMESPACE``, else ``"distq"``).
        codec: ``"json"`` or ``"msgpack"`` for arguments and results.
        max_payload: the largest encoded message, in bytes.
        protocol: the wire protocol of this app's services: ``"native"`` or
            ``"distcl"`` (DisTcl's keys and values, for Tcl peers).
        secret: the cluster secret (``None``: ``DISTQ_SECRET``, else none):
            every actor message then carries an HMAC-SHA256 of its bytes, and
            one without a valid MAC is refused and dead-lettered.
        sign_all: sign task calls and native service requests too (workers
            then refuse, and dead-letter, any that is not signed).
        **defaults: default :class:`~distq.endpoints.task.TaskOptions` for
            every task of this app (``queue``, ``retry``, ``result_ttl``, …).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        codec: str = "json",
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        protocol: Protocol = "native",
        secret: str | bytes | None = None,
        sign_all: bool = False,
        **defaults: Any,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._codec = codec
        self._max_payload = max_payload
        self.defaults = _options(TaskOptions(), defaults)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.services: dict[str, Service] = {}
        self.actors: dict[str, tuple[Any, dict[str, Any]]] = {}
        chosen = secret if secret is not None else os.environ.get("DISTQ_SECRET") or None
        self.secret: bytes | None = chosen.encode() if isinstance(chosen, str) else chosen
        if sign_all and self.secret is None:
            raise InvalidArgument("sign_all needs a secret (secret= or DISTQ_SECRET)")
        self.sign_all = sign_all
        self.protocol: Protocol = _protocol(protocol)
        self._client: Client | None = None
        self._aclient: AsyncClient | None = None
        self._aclient_loop: object = None
        self._context: QueueContext | None = None

    # -- connections (made on first use, so a forked worker makes its own)

    def _connect(self) -> None:
        settings, context = resolve_settings(
            self.url, self.namespace, self._codec, self._max_payload
        )
        codec = BodyCodec(self._codec, make_ref=lambda node, actor: ActorRef(node, actor, self))
        self._context = replace(context, codec=codec, secret=self.secret, sign_all=self.sign_all)
        self._client = Client(SyncConnection(settings), self._context)

    @property
    def client(self) -> Client:
        """The app's blocking client (connected on first use)."""
        if self._client is None:
            self._connect()
        assert self._client is not None
        return self._client

    @property
    def aclient(self) -> AsyncClient:
        """The app's asyncio client for the running event loop (made on first use
        in each loop: asyncio connections belong to the loop that opened them)."""
        try:
            loop: object = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = AsyncClient(AsyncConnection(self.client.settings), self.context)
            self._aclient_loop = loop
        return self._aclient

    @property
    def context(self) -> QueueContext:
        """Namespace, codec and limits shared by every op of this app."""
        if self._context is None:
            self._connect()
        assert self._context is not None
        return self._context

    @property
    def codec(self) -> BodyCodec:
        """The codec of arguments and results."""
        return self.context.codec

    def close(self) -> None:
        """Close the app's connections (they reopen on next use)."""
        if self._client is not None:
            self._client.close()
        self.forget_connections()

    async def aclose(self) -> None:
        """Close the app's connections, the asyncio ones included (from asyncio code)."""
        if self._aclient is not None:
            await self._aclient.close()
        self.close()

    def forget_connections(self) -> None:
        """Drop (without closing) connections made by a parent process before a
        fork: they are the parent's; this process makes its own on next use."""
        self._client = self._aclient = self._context = None

    # -- tasks

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self, fn: None = None, /, *, name: str | None = None, **options: Any
    ) -> Callable[[Callable[P, Any]], Task[P, Any]]: ...
    def task(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Register a function (sync or ``async def``) as a task.

        Use bare (``@app.task``) or with options (``@app.task(queue="mail",
        retry=5, backoff=2, max_deliveries=3, time_limit=60,
        soft_time_limit=50, result_ttl=3600, lease=30)``); see
        :class:`~distq.endpoints.task.TaskOptions`. Unknown options raise.
        """
        task_options = validate_options(_options(self.defaults, options))

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or _default_name(function)
            if task_name in self.tasks:
                raise InvalidArgument(f"a task named {task_name!r} is already registered")
            registered: Task[Any, Any] = Task(self, function, task_name, task_options)
            self.tasks[task_name] = registered
            return registered

        return register(fn) if fn is not None else register

    def queues(self, *, tasks: bool = True, services: bool = True) -> list[str]:
        """Every queue the app's tasks and native services use, in registration order."""
        names = [t.options.queue for t in self.tasks.values()] if tasks else []
        if services:
            names += [s.queue for s in self.services.values() if s.options.protocol == "native"]
        return list(dict.fromkeys(names))

    # -- services

    def service(
        self,
        name: str,
        *,
        ttl: float | None = None,
        protocol: Protocol | None = None,
        lease: float = 30.0,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Register a function (sync or ``async def``) as the service ``name``.

        Args:
            name: the service's name, as clients call it.
            ttl: default cache expiry of its results in seconds (``None``: not
                cached, only handed to the clients waiting; a function can
                return ``distq.Cached(value, ttl=…)`` to choose per result).
            protocol: ``"native"`` or ``"distcl"`` (default: the app's).
            lease: seconds a computation may go unrenewed before another server
                takes the request over.
            time_limit: hard limit of a computation (native protocol).
            soft_time_limit: ``SoftTimeLimit`` raised in the function.

        The function is returned unchanged: calling it runs it here.
        """
        options = ServiceOptions(
            ttl=ttl,
            protocol=_protocol(protocol or self.protocol),
            lease=lease,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
        )

        def register(function: Callable[P, R]) -> Callable[P, R]:
            validate_service(name)
            if name in self.services:
                raise InvalidArgument(f"a service named {name!r} is already registered")
            self.services[name] = Service(name, function, options)
            return function

        return register

    def _service(self, name: str) -> ServiceOptions:
        known = self.services.get(name)
        return known.options if known else ServiceOptions(protocol=self.protocol)

    def _get_op(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None
    ) -> Op[Any]:
        options = self._service(validate_service(name))
        if options.protocol == "distcl":
            _no_kwargs(kwargs)
            return distcl_get(name, args, timeout)
        return native_get(self.context, name, options, args, kwargs, timeout)

    def _prefetch_op(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Op[bool]:
        options = self._service(validate_service(name))
        if options.protocol == "distcl":
            _no_kwargs(kwargs)
            return distcl_prefetch(name, args)
        return native_prefetch(self.context, name, options, args, kwargs)

    def _forget_op(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Op[bool]:
        options = self._service(validate_service(name))
        if options.protocol == "distcl":
            _no_kwargs(kwargs)
            return distcl_forget(name, args)
        return native_forget(self.context, name, args, kwargs)

    def _get_many_op(self, name: str, calls: Iterable[Any], timeout: float | None) -> Op[list[Any]]:
        options = self._service(validate_service(name))
        split = [split_call(call) for call in calls]
        if options.protocol == "distcl":
            for _, kwargs in split:
                _no_kwargs(kwargs)
            return distcl_get_many(name, [a for a, _ in split], timeout)
        return native_get_many(self.context, name, options, split, timeout)

    def get(self, name: str, *args: Any, timeout: float | None = 10.0, **kwargs: Any) -> Any:
        """The value of service ``name`` for these arguments.

        A cached value comes back in one round trip, without reaching a
        server; otherwise one server computes it, once, however many clients
        ask for it meanwhile.

        Raises:
            RemoteError: the computation failed.
            Timeout: no server answered within ``timeout`` seconds.
        """
        return self.client.run(self._get_op(name, args, kwargs, timeout))

    def prefetch(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Ask for a value to be computed (and cached) without waiting for it.

        Returns True if a computation was requested (False: cached or in flight).
        """
        return self.client.run(self._prefetch_op(name, args, kwargs))

    def forget(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Remove a cached value (and any stale waitlist); True if one was there."""
        return self.client.run(self._forget_op(name, args, kwargs))

    def get_many(
        self, name: str, calls: Iterable[Any], *, timeout: float | None = 10.0
    ) -> list[Any]:
        """The values of many calls (each a tuple of arguments, a dict of keyword
        arguments or a single argument), the missing ones computed in parallel."""
        return self.client.run(self._get_many_op(name, calls, timeout))

    async def aget(self, name: str, *args: Any, timeout: float | None = 10.0, **kwargs: Any) -> Any:
        """Like :meth:`get`, awaited."""
        return await self.aclient.run(self._get_op(name, args, kwargs, timeout))

    async def aprefetch(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Like :meth:`prefetch`, awaited."""
        return await self.aclient.run(self._prefetch_op(name, args, kwargs))

    async def aforget(self, name: str, *args: Any, **kwargs: Any) -> bool:
        """Like :meth:`forget`, awaited."""
        return await self.aclient.run(self._forget_op(name, args, kwargs))

    async def aget_many(
        self, name: str, calls: Iterable[Any], *, timeout: float | None = 10.0
    ) -> list[Any]:
        """Like :meth:`get_many`, awaited."""
        return await self.aclient.run(self._get_many_op(name, calls, timeout))

    # -- actors

    def actor(
        self, name: str, *, supervise: bool = False, trap_exit: bool = False
    ) -> Callable[[B], B]:
        """Declare an actor every node of this app spawns at start, registered as ``name``.

        Decorates a behaviour: a function looping on ``distq.receive()``, or a
        class with ``receive(self, message)``.
        """

        def register(behaviour: B) -> B:
            if name in self.actors:
                raise InvalidArgument(f"an actor named {name!r} is already declared")
            self.actors[name] = (behaviour, {"supervise": supervise, "trap_exit": trap_exit})
            return behaviour

        return register

    def node(self, node_id: str | None = None, *, heartbeat_s: float = 1.0) -> Node:
        """A node hosting actors in this process (``with app.node() as node:``)."""
        return Node(self, node_id, heartbeat_s=heartbeat_s)

    def whereis(self, name: str) -> ActorRef | None:
        """The actor registered as ``name``, or None (no live actor has it)."""
        return self.client.run(whereis_op(self, name))

    def register(self, name: str, ref: ActorRef) -> None:
        """Register ``ref`` as ``name`` cluster-wide.

        Raises:
            NameTaken: a live actor holds the name.
        """
        self.client.run(register_op(self, name, ref))

    def _ref(self, target: ActorRef | str) -> ActorRef:
        if isinstance(target, ActorRef):
            return target if target.app is self else ActorRef(target.node, target.actor, self)
        return need(self.whereis(target), target)

    def send(self, target: ActorRef | str, message: Any) -> None:
        """Put ``message`` in an actor's mailbox (by reference or registered name).

        Raises:
            ActorNotFound: no live actor has that name.
            CodecError: the message cannot be encoded (nothing is sent).
        """
        self.client.run(send_op(self, self._ref(target), make_envelope(message)))

    def send_many(self, messages: Iterable[tuple[ActorRef | str, Any]]) -> None:
        """Send many messages, to one actor or many, in one round trip (in order
        per target; each name is looked up once)."""
        refs: dict[ActorRef | str, ActorRef] = {}
        batches: dict[ActorRef, list[Any]] = {}
        for target, message in messages:
            if target not in refs:
                refs[target] = self._ref(target)
            batches.setdefault(refs[target], []).append(make_envelope(message))
        ops = [send_many_op(self, ref, envelopes) for ref, envelopes in batches.items()]
        stepper = self.client._conn.run_many(ops)
        for index in range(len(ops)):
            stepper.outcome(index)

    def call(self, target: ActorRef | str, message: Any, *, timeout: Duration = 10.0) -> Any:
        """Send ``message`` and wait for the reply to that very message.

        Raises:
            RemoteError: the actor raised while handling it.
            Timeout: no reply within ``timeout`` seconds.
            ActorNotFound: no live actor has that name.
        """
        return self.client.run(call_op(self, self._ref(target), message, timeout))

    async def asend(self, target: ActorRef | str, message: Any) -> None:
        """Like :meth:`send`, awaited."""
        ref = (
            target
            if isinstance(target, ActorRef)
            else need(await self.aclient.run(whereis_op(self, target)), target)
        )
        await self.aclient.run(send_op(self, ref, make_envelope(message)))

    async def acall(self, target: ActorRef | str, message: Any, *, timeout: Duration = 10.0) -> Any:
        """Like :meth:`call`, awaited."""
        ref = (
            target
            if isinstance(target, ActorRef)
            else need(await self.aclient.run(whereis_op(self, target)), target)
        )
        return await self.aclient.run(call_op(self, ref, message, timeout))

    def monitor(self, watcher: ActorRef, watched: ActorRef) -> None:
        """Tell ``watcher`` (a message ``{"down": ref, "reason": …}``) when
        ``watched`` stops or its node dies."""
        self.client.run(watch_op(self, watcher, watched, "monitor"))

    def link(self, first: ActorRef, second: ActorRef) -> None:
        """Link two actors: when one stops abnormally the other gets
        ``{"exit": ref, "reason": …}`` — and stops too, unless it traps exits."""
        self.client.run(watch_op(self, first, second, "link"))
        self.client.run(watch_op(self, second, first, "link"))

    def __repr__(self) -> str:
        return f"<distq.App namespace={self.namespace!r} tasks={len(self.tasks)}>"


def _protocol(value: str) -> Protocol:
    if value not in ("native", "distcl"):
        raise InvalidArgument(f"unknown protocol {value!r}: use 'native' or 'distcl'")
    return value  # type: ignore[return-value]


def _no_kwargs(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise InvalidArgument("DisTcl services take positional arguments only")


def _options(base: TaskOptions, changes: dict[str, Any]) -> TaskOptions:
    unknown = set(changes) - set(TaskOptions.__dataclass_fields__)
    if unknown:
        raise InvalidArgument(f"unknown task option(s): {', '.join(sorted(unknown))}")
    return replace(base, **changes)


def _default_name(function: Callable[..., Any]) -> str:
    module = function.__module__
    if module == "__main__":
        # A script run directly is imported by workers under its module name.
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        main_file = getattr(sys.modules["__main__"], "__file__", None) or "__main__"
        module = spec.name if spec else main_file.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{module}.{function.__qualname__}"
