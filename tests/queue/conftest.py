"""Clients for the queue tests: every behaviour test runs on the sync client
and on the asyncio client (driven through a small blocking facade), on every
engine found."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import distq


class AsyncFacade:
    """Calls an AsyncClient's commands to completion on one private event loop."""

    def __init__(self, client: distq.AsyncClient) -> None:
        self._client = client
        self._runner = asyncio.Runner()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return self._runner.run(result) if inspect.isawaitable(result) else result

        return call

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()


@pytest.fixture(params=["sync", "async"])
def client(request: pytest.FixtureRequest, url: str, namespace: str) -> Iterator[Any]:
    """A connected client of each kind, in the test's own namespace."""
    if request.param == "sync":
        sync = distq.connect(url, namespace=namespace)
        yield sync
        sync.close()
    else:
        facade = AsyncFacade(distq.connect_async(url, namespace=namespace))
        yield facade
        facade.close()


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name unique to the test."""
    return "q-" + request.node.name.replace("[", "-").replace("]", "")[:60]


@pytest.fixture
def make_client(url: str, namespace: str) -> Iterator[Callable[..., distq.Client]]:
    """A factory of extra sync clients in the test's namespace, closed at the end."""
    made: list[distq.Client] = []

    def make(**options: Any) -> distq.Client:
        options.setdefault("namespace", namespace)
        made.append(distq.connect(url, **options))
        return made[-1]

    yield make
    for c in made:
        c.close()
