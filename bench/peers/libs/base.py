"""The interface every library module implements for the runner."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

PY = sys.executable


@dataclass(frozen=True)
class Config:
    """One way of running a library's workers with 2 (or ``processes``) processes.

    Attributes:
        name: short name shown in the tables (``prefork``, ``solo``, …).
        description: how the workers run, written beside the figures.
        jobs: jobs per drain when fewer than the run's count (a slow configuration).
    """

    name: str
    description: str
    jobs: int | None = None


@dataclass
class Peer:
    """A library as the runner sees it.

    Subclasses fill in the class attributes and the methods; every method
    that talks to the server is synchronous (asyncio libraries run their
    coroutines on one event loop of their own, see :class:`AsyncPeer`).
    """

    name: str = ""
    #: distributions whose versions are reported
    packages: tuple[str, ...] = ()
    #: how one job is enqueued, e.g. ``noop.delay(body)``
    one_api: str = ""
    #: how many jobs are enqueued at once, or None when the library has no such API
    bulk_api: str | None = None
    #: why there is no bulk API, or what the bulk API really does
    bulk_note: str = ""
    #: how a caller waits for one job's result
    roundtrip_api: str = ""
    configs: list[Config] = field(default_factory=list)
    #: anything else the report should say about this library's setup
    notes: list[str] = field(default_factory=list)

    def versions(self) -> dict[str, str]:
        out = {}
        for package in self.packages:
            try:
                out[package] = metadata.version(package)
            except metadata.PackageNotFoundError:
                out[package] = "not installed"
        return out

    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        """The commands that start ``processes`` worker processes in ``config``.

        Each command is started in its own process group (session).
        """
        raise NotImplementedError

    def enqueue_one(self, n: int, body: str) -> None:
        """Enqueue ``n`` no-op jobs, one call (one job) at a time."""
        raise NotImplementedError

    def enqueue_bulk(self, n: int, body: str) -> None:
        """Enqueue ``n`` no-op jobs with the library's bulk API."""
        raise NotImplementedError

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        """``n`` sequential submit-and-wait-for-result calls: their times in seconds."""
        raise NotImplementedError

    def extra_commands(self) -> list[list[str]]:
        """Processes the library-only figures of :meth:`latencies` need (started
        after the round trips, stopped by process group like the workers)."""
        return []

    def latencies(self, n: int, timeout: float) -> dict[str, list[float]]:
        """Figures only this library has: ``{figure: times of n sequential calls}``."""
        return {}

    def close(self) -> None:
        """Close the client's connections."""


class AsyncPeer(Peer):
    """A peer whose client API is asyncio: its coroutines share one event loop."""

    _runner: asyncio.Runner | None = None

    def run(self, coro: Awaitable[Any]) -> Any:
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(_as_coroutine(coro))

    def close(self) -> None:
        if self._runner is not None:
            try:
                self._runner.run(self.aclose())
            finally:
                self._runner.close()
                self._runner = None

    async def aclose(self) -> None:
        """Close the asyncio client (on the peer's loop)."""

    async def timed(
        self, n: int, call: Callable[[], Awaitable[Any]]
    ) -> list[float]:
        """``n`` sequential awaits of ``call()``, each timed."""
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await call()
            times.append(time.perf_counter() - start)
        return times


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def timed(n: int, call: Callable[[], Any]) -> list[float]:
    """``n`` sequential calls of ``call()``, each timed."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times
