"""Clients: the Disque command set, blocking or asyncio, and pipelines.

Every command is defined once, in :mod:`distq.queue.ops` and
:mod:`distq.queue.admin`, and listed once in :class:`Commands`; the client
kinds differ only in how they run an op (see :mod:`distq.connection.verbs`).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, TypeVar

from distq.codec.body import BodyCodec
from distq.connection.client import AsyncConnection, SyncConnection
from distq.connection.ops import Op
from distq.connection.url import ConnectionSettings
from distq.connection.verbs import AsyncRunner, BatchRunner, SyncRunner, Verb
from distq.errors import InvalidArgument
from distq.queue import admin, ops
from distq.queue.ops import DEFAULT_MAX_PAYLOAD, QueueContext

__all__ = ["AsyncClient", "AsyncPipeline", "Client", "Pipeline", "connect", "connect_async"]

T = TypeVar("T")

#: The namespace when neither the argument nor ``DISTQ_NAMESPACE`` gives one.
DEFAULT_NAMESPACE = "distq"


class Commands:
    """The Disque command set (each name a Disque command in lower case)."""

    _ctx: QueueContext

    addjob = Verb(ops.addjob)
    addjobs = Verb(ops.addjobs)
    getjob = Verb(ops.getjob)
    ackjob = Verb(ops.ackjob)
    fastack = Verb(ops.fastack)
    nack = Verb(ops.nack)
    working = Verb(ops.working)
    enqueue = Verb(ops.enqueue)
    dequeue = Verb(ops.dequeue)
    deljob = Verb(ops.deljob)
    release = Verb(ops.release)
    deadletter = Verb(ops.deadletter)
    qlen = Verb(admin.qlen)
    qpeek = Verb(admin.qpeek)
    qstat = Verb(admin.qstat)
    deadletters = Verb(admin.deadletters)
    show = Verb(admin.show)
    jscan = Verb(admin.jscan)
    qscan = Verb(admin.qscan)
    hello = Verb(admin.hello)
    info = Verb(admin.info)

    @property
    def namespace(self) -> str:
        """The key prefix this client works under."""
        return self._ctx.namespace


class Client(Commands, SyncRunner):
    """A blocking client. Make one with :func:`connect`; share it between threads.

    Use it as a context manager to close its connections at the end.
    """

    def __init__(self, connection: SyncConnection, ctx: QueueContext) -> None:
        self._conn = connection
        self._ctx = ctx

    def _run(self, op: Op[Any]) -> Any:
        return self._conn.run(op)

    def run(self, op: Op[T]) -> T:
        """Run an op (see :mod:`distq.connection.ops`): how higher layers add commands."""
        return self._conn.run(op)

    @property
    def settings(self) -> ConnectionSettings:
        """Where this client connects."""
        return self._conn.settings

    def pipeline(self) -> Pipeline:
        """Queue commands and send them in one round trip at the end of a ``with`` block.

        ``with client.pipeline() as p: p.addjob(…); p.qlen(…)`` — the results
        are in ``p.results`` after the block, in order.
        """
        return Pipeline(self)

    def close(self) -> None:
        """Close this client's connections."""
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<distq.Client {self.settings.redacted()} namespace={self.namespace!r}>"


class AsyncClient(Commands, AsyncRunner):
    """The asyncio client: the same commands as :class:`Client`, awaited."""

    def __init__(self, connection: AsyncConnection, ctx: QueueContext) -> None:
        self._conn = connection
        self._ctx = ctx

    async def _run(self, op: Op[Any]) -> Any:
        return await self._conn.run(op)

    async def run(self, op: Op[T]) -> T:
        """Run an op (see :mod:`distq.connection.ops`): how higher layers add commands."""
        return await self._conn.run(op)

    @property
    def settings(self) -> ConnectionSettings:
        """Where this client connects."""
        return self._conn.settings

    def pipeline(self) -> AsyncPipeline:
        """Like :meth:`Client.pipeline`, used as ``async with client.pipeline() as p``."""
        return AsyncPipeline(self)

    async def close(self) -> None:
        """Close this client's connections."""
        await self._conn.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<distq.AsyncClient {self.settings.redacted()} namespace={self.namespace!r}>"


class _Batch(Commands, BatchRunner):
    """Commands queued for one round trip (cl-disque's ``with-pipelining``)."""

    def __init__(self, ctx: QueueContext) -> None:
        self._ctx = ctx
        self._ops: list[Op[Any]] = []
        #: The results, in the order the commands were queued (after execution).
        self.results: list[Any] = []

    def _run(self, op: Op[Any]) -> None:
        self._ops.append(op)

    def __len__(self) -> int:
        return len(self._ops)


class Pipeline(_Batch):
    """A pipeline of a :class:`Client`; commands return ``None`` until executed."""

    def __init__(self, client: Client) -> None:
        super().__init__(client._ctx)
        self._client = client

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send every queued command in one round trip per step; return the results.

        With ``raise_on_error=False`` a failed command's result is its exception.
        """
        stepper = self._client._conn.run_many(self._ops)
        self._ops = []
        self.results = _outcomes(stepper, raise_on_error)
        return self.results

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.execute()


class AsyncPipeline(_Batch):
    """A pipeline of an :class:`AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        super().__init__(client._ctx)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Like :meth:`Pipeline.execute`."""
        stepper = await self._client._conn.run_many(self._ops)
        self._ops = []
        self.results = _outcomes(stepper, raise_on_error)
        return self.results

    async def __aenter__(self) -> AsyncPipeline:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            await self.execute()


def _outcomes(stepper: Any, raise_on_error: bool) -> list[Any]:
    results: list[Any] = []
    for index in range(len(stepper.results)):
        try:
            results.append(stepper.outcome(index))
        except Exception as exc:
            if raise_on_error:
                raise
            results.append(exc)
    return results


def resolve_settings(
    url: str | None, namespace: str | None, codec: str, max_payload: int
) -> tuple[ConnectionSettings, QueueContext]:
    """Where to connect (argument, else ``DISTQ_URL``, else the embedded
    server) and the op context that goes with it, in ``namespace`` (argument,
    else ``DISTQ_NAMESPACE``, else ``"distq"``)."""
    if namespace is None:
        namespace = os.environ.get("DISTQ_NAMESPACE") or DEFAULT_NAMESPACE
    if not namespace or any(c in namespace for c in "{} "):
        raise InvalidArgument(f"bad namespace {namespace!r}")
    if url is None:
        url = os.environ.get("DISTQ_URL") or None
    if url is None:
        from distq.connection import embedded

        url = embedded.ensure_running()
    settings = ConnectionSettings.from_url(url)
    ctx = QueueContext(
        namespace=namespace,
        codec=BodyCodec(codec),
        max_payload=max_payload,
        wait_slice_s=max(0.01, min(ops.MAX_WAIT_SLICE_S, settings.socket_timeout_s / 2)),
    )
    return settings, ctx


def connect(
    url: str | None = None,
    *,
    namespace: str | None = None,
    codec: str = "json",
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Client:
    """A blocking client.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL. ``None``: the
            ``DISTQ_URL`` environment variable, else the embedded default
            server (started on first use).
        namespace: prefix of every key distq writes. ``None``: the
            ``DISTQ_NAMESPACE`` environment variable if set and not empty,
            else ``"distq"``.
        codec: ``"json"`` or ``"msgpack"``, for bodies that are not bytes/str.
        max_payload: the largest encoded body accepted, in bytes.
    """
    settings, ctx = resolve_settings(url, namespace, codec, max_payload)
    return Client(SyncConnection(settings), ctx)


def connect_async(
    url: str | None = None,
    *,
    namespace: str | None = None,
    codec: str = "json",
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> AsyncClient:
    """An asyncio client; takes the arguments of :func:`connect`."""
    settings, ctx = resolve_settings(url, namespace, codec, max_payload)
    return AsyncClient(AsyncConnection(settings), ctx)
