"""Celery: Redis broker and Redis result backend; prefork and solo pools.

The app and its no-op task (``celery -A libs.celery_peer worker``), and the
client side.
"""

from __future__ import annotations

import os

from celery import Celery, group

from libs.base import PY, Config, Peer, timed
from libs.common import QUEUE, mark_done, url

#: messages each worker process may hold unacknowledged (Celery's docs: raise it
#: for many short tasks)
PREFETCH = int(os.environ.get("BENCH_CELERY_PREFETCH", "64"))

app = Celery("bench", broker=url(), backend=url())
app.conf.update(
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=PREFETCH,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_disable_rate_limits=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(body: str) -> None:
    """The no-op job: only counts itself."""
    mark_done()


COMMON = ["-Q", QUEUE, "-l", "WARNING", "--without-gossip", "--without-mingle",
          "--without-heartbeat"]


class CeleryPeer(Peer):
    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        base = [PY, "-m", "celery", "-A", "libs.celery_peer", "worker"]
        if config == "prefork":
            return [[*base, "-P", "prefork", "-c", str(processes), "-n", "prefork@%h", *COMMON]]
        return [[*base, "-P", "solo", "-n", f"solo{i}@%h", *COMMON] for i in range(processes)]

    def enqueue_one(self, n: int, body: str) -> None:
        for _ in range(n):
            noop.delay(body)

    def enqueue_bulk(self, n: int, body: str) -> None:
        group(noop.s(body) for _ in range(n)).apply_async()

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        return timed(n, lambda: noop.delay(body).get(timeout=timeout))

    def close(self) -> None:
        app.close()


OPTIONS = (
    f"worker_prefetch_multiplier={PREFETCH}, --without-gossip --without-mingle "
    "--without-heartbeat, -l WARNING, rate limits off, acks early (the default), "
    "results in Redis (result_expires=3600)"
)

PEER = CeleryPeer(
    name="celery",
    packages=("celery", "kombu", "redis"),
    one_api="noop.delay(body)",
    bulk_api="group(noop.s(body) for _ in range(n)).apply_async()",
    bulk_note="Celery has no batched send: a group publishes one message per task",
    roundtrip_api="noop.delay(body).get(timeout=10)  (the Redis backend's pub/sub)",
    configs=[
        Config("prefork", f"`celery worker -P prefork -c 2`: one consumer process feeding 2 "
               f"pool processes; {OPTIONS}"),
        Config("solo", f"2 × `celery worker -P solo`: two single-process workers; {OPTIONS}"),
    ],
)
