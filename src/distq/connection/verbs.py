"""One method definition for the sync client, the async client and pipelines.

A client class lists its commands once, as ``addjob = Verb(ops.addjob)``,
where ``ops.addjob(ctx, …)`` returns an op (see :mod:`distq.connection.ops`).
Looked up on a :class:`SyncRunner` the verb is a plain method returning the
result; on an :class:`AsyncRunner` it returns a coroutine; on a
:class:`BatchRunner` (a pipeline) it queues the op and returns ``None``.
Type checkers see each of these signatures (``__get__`` is overloaded), so
there is no second copy of any command, and no ``__getattr__`` magic.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from distq.connection.ops import Op

__all__ = ["AsyncRunner", "BatchRunner", "SyncRunner", "Verb"]

P = ParamSpec("P")
T = TypeVar("T")


class SyncRunner:
    """Base of blocking clients: runs each op at once and returns its result."""

    _ctx: Any

    def _run(self, op: Op[T]) -> T:
        raise NotImplementedError


class AsyncRunner:
    """Base of asyncio clients: each op becomes an awaitable."""

    _ctx: Any

    async def _run(self, op: Op[T]) -> T:
        raise NotImplementedError


class BatchRunner:
    """Base of pipelines: ops are queued and sent together later."""

    _ctx: Any

    def _run(self, op: Op[Any]) -> None:
        raise NotImplementedError


class Verb(Generic[P, T]):
    """A command, defined once by its op function, bound by the runner kind."""

    def __init__(self, op: Callable[Concatenate[Any, P], Op[T]]) -> None:
        self._op = op
        self._name = op.__name__
        self.__doc__ = op.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Verb[P, T]: ...
    @overload
    def __get__(self, obj: AsyncRunner, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: BatchRunner, owner: type) -> Callable[P, None]: ...
    @overload
    def __get__(self, obj: SyncRunner, owner: type) -> Callable[P, T]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        op, run = self._op, obj._run

        def bound(*args: Any, **kwargs: Any) -> Any:
            return run(op(obj._ctx, *args, **kwargs))

        bound.__name__ = self._name
        bound.__doc__ = self.__doc__
        # Cache on the instance: later lookups skip the descriptor entirely.
        obj.__dict__[self._name] = bound
        return bound
