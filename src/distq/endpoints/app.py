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

import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, ParamSpec, TypeVar, overload

from distq.codec.body import BodyCodec
from distq.connection.client import AsyncConnection, SyncConnection
from distq.endpoints.task import Task, TaskOptions, validate_options
from distq.errors import InvalidArgument
from distq.queue.client import AsyncClient, Client, resolve_settings
from distq.queue.ops import DEFAULT_MAX_PAYLOAD, QueueContext

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """Where a program's endpoints are defined and from where they are called.

    Args:
        url: the server (``None``: ``DISTQ_URL``, else the embedded default).
        namespace: prefix of every key.
        codec: ``"json"`` or ``"msgpack"`` for arguments and results.
        max_payload: the largest encoded message, in bytes.
        **defaults: default :class:`~distq.endpoints.task.TaskOptions` for
            every task of this app (``queue``, ``retry``, ``result_ttl``, …).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str = "distq",
        codec: str = "json",
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        **defaults: Any,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._codec = codec
        self._max_payload = max_payload
        self.defaults = _options(TaskOptions(), defaults)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._client: Client | None = None
        self._aclient: AsyncClient | None = None
        self._context: QueueContext | None = None

    # -- connections (made on first use, so a forked worker makes its own)

    def _connect(self) -> None:
        settings, self._context = resolve_settings(
            self.url, self.namespace, self._codec, self._max_payload
        )
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
        """The app's asyncio client (connected on first use)."""
        if self._aclient is None:
            self._aclient = AsyncClient(AsyncConnection(self.client.settings), self.context)
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

    def queues(self) -> list[str]:
        """Every queue a registered task uses, in registration order."""
        return list(dict.fromkeys(t.options.queue for t in self.tasks.values()))

    def __repr__(self) -> str:
        return f"<distq.App namespace={self.namespace!r} tasks={len(self.tasks)}>"


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
