"""Dramatiq: Redis broker, Results middleware with the Redis backend.

The broker and its no-op actor (``dramatiq libs.dramatiq_peer``), and the
client side.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq import group
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from libs.base import PY, Config, Peer, timed
from libs.common import QUEUE, mark_done, url

#: worker threads per process (``dramatiq -t``)
THREADS = int(os.environ.get("BENCH_DRAMATIQ_THREADS", "8"))

broker = RedisBroker(url=url())
backend = RedisBackend(url=url())
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench.noop", queue_name=QUEUE, store_results=True)
def noop(body: str) -> None:
    """The no-op job: only counts itself."""
    mark_done()


class DramatiqPeer(Peer):
    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [[PY, "-m", "dramatiq", "libs.dramatiq_peer", "-p", str(processes),
                 "-t", str(THREADS), "-Q", QUEUE]]

    def enqueue_one(self, n: int, body: str) -> None:
        send = noop.send
        for _ in range(n):
            send(body)

    def enqueue_bulk(self, n: int, body: str) -> None:
        group(noop.message(body) for _ in range(n)).run()

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        wait_ms = round(timeout * 1000)
        return timed(n, lambda: noop.send(body).get_result(block=True, timeout=wait_ms))

    def close(self) -> None:
        broker.close()


PEER = DramatiqPeer(
    name="dramatiq",
    packages=("dramatiq", "redis"),
    one_api="noop.send(body)",
    bulk_api="group(noop.message(body) for _ in range(n)).run()",
    bulk_note="Dramatiq has no batched send: a group enqueues its messages one by one",
    roundtrip_api="noop.send(body).get_result(block=True, timeout=10_000)  "
    "(Results middleware, BRPOPLPUSH on the result key)",
    configs=[
        Config("processes", f"`dramatiq libs.dramatiq_peer -p 2 -t {THREADS}`: 2 worker "
               f"processes × {THREADS} threads (Dramatiq's default, and the fastest of 1, 2, 4, "
               "8 and 16 threads here); "
               "default middleware plus Results(RedisBackend)"),
    ],
)
