"""What the workers of every library share: the server URL and the done counter.

Every no-op task of every library does one thing: ``INCR bench:done`` on the
benchmark server, through a plain redis-py client made once per worker
process (``redis.asyncio`` for the asyncio libraries, once per process and
event loop). The runner polls that counter to see a drain finish, so
completion is detected the same way for every library.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis
import redis.asyncio

URL_ENV = "BENCH_REDIS_URL"
DONE_KEY = "bench:done"
QUEUE = "bench"


def url() -> str:
    """The benchmark server (set by the runner for itself and its workers)."""
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6379/0")


_sync: tuple[int, redis.Redis] | None = None
_async: dict[tuple[int, int], Any] = {}


def mark_done() -> None:
    """``INCR bench:done``: one round trip on this process's own client."""
    global _sync
    pid = os.getpid()
    if _sync is None or _sync[0] != pid:  # made after a fork, never inherited
        _sync = (pid, redis.Redis.from_url(url()))
    _sync[1].incr(DONE_KEY)


async def amark_done() -> None:
    """``INCR bench:done`` from asyncio code, on this process's and loop's client."""
    key = (os.getpid(), id(asyncio.get_running_loop()))
    client = _async.get(key)
    if client is None:
        client = _async[key] = redis.asyncio.Redis.from_url(url())
    await client.incr(DONE_KEY)
