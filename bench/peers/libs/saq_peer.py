"""saq: asyncio workers, blocking dequeue (BLMOVE), pub/sub job updates.

The queue, its settings and the no-op job (``saq libs.saq_peer.settings``),
and the client side.
"""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from libs.base import PY, AsyncPeer, Config
from libs.common import QUEUE, amark_done, url

#: jobs run at once per worker process (saq's default is 10)
CONCURRENCY = int(os.environ.get("BENCH_SAQ_CONCURRENCY", "10"))

#: seconds between a caller's polls for a result (Queue.apply's default is 0.5)
RESULT_POLL = 0.001

queue = Queue.from_url(url(), name=QUEUE)


async def noop(ctx: dict[str, Any], *, body: str) -> None:
    """The no-op job: only counts itself."""
    await amark_done()


settings = {"queue": queue, "functions": [noop], "concurrency": CONCURRENCY}


class SaqPeer(AsyncPeer):
    _connected = False

    async def queue(self) -> Queue:
        if not self._connected:
            await queue.connect()
            self._connected = True
        return queue

    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [[PY, "-m", "saq", "libs.saq_peer.settings", "--workers", str(processes)]]

    def enqueue_one(self, n: int, body: str) -> None:
        async def go() -> None:
            q = await self.queue()
            for _ in range(n):
                await q.enqueue("noop", body=body)

        self.run(go())

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        async def call() -> None:
            q = await self.queue()
            await q.apply("noop", timeout=timeout, poll_interval=RESULT_POLL, body=body)

        return self.run(self.timed(n, call))

    async def aclose(self) -> None:
        if self._connected:
            await queue.disconnect()
            self._connected = False


PEER = SaqPeer(
    name="saq",
    packages=("saq", "redis"),
    one_api="await queue.enqueue('noop', body=body)",
    bulk_note="saq has no bulk enqueue (Queue.map enqueues and then waits for every result)",
    roundtrip_api=f"await queue.apply('noop', timeout=10, poll_interval={RESULT_POLL}, "
    "body=body)  (polls the job; Job.refresh(until_complete=…), which waits on pub/sub, "
    "missed a completion here and waited out its timeout)",
    configs=[
        Config("asyncio", f"`saq libs.saq_peer.settings --workers 2`: 2 processes, each an "
               f"event loop with concurrency={CONCURRENCY} blocking dequeues (BLMOVE)"),
    ],
)
