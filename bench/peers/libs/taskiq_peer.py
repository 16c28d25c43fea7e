"""taskiq: taskiq-redis ListQueueBroker and RedisAsyncResultBackend.

The broker and its no-op task (``taskiq worker libs.taskiq_peer:broker``),
and the client side.
"""

from __future__ import annotations

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from libs.base import PY, AsyncPeer, Config
from libs.common import QUEUE, amark_done, url

#: seconds between a caller's polls for a result (taskiq's default is 0.2)
RESULT_POLL = 0.001

broker = ListQueueBroker(url(), queue_name=QUEUE).with_result_backend(
    RedisAsyncResultBackend(url(), result_ex_time=3600)
)


@broker.task(task_name="bench.noop")
async def noop(body: str) -> None:
    """The no-op job: only counts itself."""
    await amark_done()


class TaskiqPeer(AsyncPeer):
    _started = False

    async def broker(self) -> ListQueueBroker:
        if not self._started:
            await broker.startup()
            self._started = True
        return broker

    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [[PY, "-m", "taskiq", "worker", "libs.taskiq_peer:broker",
                 "--workers", str(processes), "--log-level", "WARNING"]]

    def enqueue_one(self, n: int, body: str) -> None:
        async def go() -> None:
            await self.broker()
            for _ in range(n):
                await noop.kiq(body)

        self.run(go())

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        async def call() -> None:
            await self.broker()
            task = await noop.kiq(body)
            await task.wait_result(check_interval=RESULT_POLL, timeout=timeout)

        return self.run(self.timed(n, call))

    async def aclose(self) -> None:
        if self._started:
            await broker.shutdown()
            self._started = False


PEER = TaskiqPeer(
    name="taskiq",
    packages=("taskiq", "taskiq-redis", "redis"),
    one_api="await noop.kiq(body)",
    bulk_note="taskiq has no bulk enqueue",
    roundtrip_api=f"await (await noop.kiq(body)).wait_result(check_interval={RESULT_POLL}, "
    "timeout=10)  (taskiq polls for results)",
    configs=[
        Config("asyncio", "`taskiq worker libs.taskiq_peer:broker --workers 2`: 2 processes, "
               "each an event loop (max 100 async tasks); ListQueueBroker (BRPOP, no acks: "
               "taskiq-redis's fastest broker) and RedisAsyncResultBackend"),
    ],
)
