"""huey: RedisHuey with result notification, process workers.

The huey instance and its no-op task (``huey_consumer libs.huey_peer.huey``),
and the client side.
"""

from __future__ import annotations

from huey import RedisHuey

from libs.base import PY, Config, Peer, timed
from libs.common import QUEUE, mark_done, url

# notify_result: a waiting caller BLPOPs a notification key instead of polling;
# store_none: the no-op returns None, which huey does not store by default (a
# caller waiting for it would wait forever).
huey = RedisHuey(QUEUE, url=url(), notify_result=True, store_none=True)


@huey.task(name="bench.noop")
def noop(body: str) -> None:
    """The no-op job: only counts itself."""
    mark_done()


class HueyPeer(Peer):
    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [[PY, "-m", "huey.bin.huey_consumer", "libs.huey_peer.huey", "-k", "process",
                 "-w", str(processes), "-n", "-q"]]

    def enqueue_one(self, n: int, body: str) -> None:
        for _ in range(n):
            noop(body)

    def enqueue_bulk(self, n: int, body: str) -> None:
        noop.map([body] * n)

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        return timed(n, lambda: noop(body).get(blocking=True, timeout=timeout))

    def close(self) -> None:
        huey.storage.pool.disconnect()


PEER = HueyPeer(
    name="huey",
    packages=("huey", "redis"),
    one_api="noop(body)",
    bulk_api="noop.map([body] * n)",
    bulk_note="huey has no batched send: Task.map enqueues one LPUSH per task",
    roundtrip_api="noop(body).get(blocking=True, timeout=10)  "
    "(RedisHuey(notify_result=True): BLPOP on a notification key)",
    configs=[
        Config("process", "`huey_consumer libs.huey_peer.huey -k process -w 2 -n -q`: "
               "2 worker processes, blocking dequeue (BRPOP), periodic tasks off; "
               "RedisHuey(notify_result=True, store_none=True)"),
    ],
)
