"""The raw redis-py baseline: one ``RPUSH`` of the 100-byte body per round trip.

Not a task library: no workers, no results. It gives the ceiling for
one-call enqueue (one command per round trip) and the floor for memory per
queued item (a 100-byte string in a list).
"""

from __future__ import annotations

import redis

from libs.base import Peer
from libs.common import QUEUE, url


class RawPeer(Peer):
    _client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(url())
        return self._client

    def enqueue_one(self, n: int, body: str) -> None:
        rpush, key = self.client.rpush, f"raw:{QUEUE}"
        for _ in range(n):
            rpush(key, body)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


PEER = RawPeer(
    name="redis-py",
    packages=("redis", "hiredis"),
    one_api="client.rpush(key, body): one command per round trip",
    bulk_note="baseline only (not a task library)",
    roundtrip_api="",
    configs=[],
)
