"""arq: asyncio workers polling a Redis sorted set; 2 worker processes.

The worker settings and the no-op job (``arq libs.arq_peer.WorkerSettings``),
and the client side.
"""

from __future__ import annotations

import os
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool

from libs.base import PY, AsyncPeer, Config
from libs.common import QUEUE, amark_done, url

#: seconds between a worker's polls of the queue (arq's default is 0.5)
POLL_DELAY = float(os.environ.get("BENCH_ARQ_POLL_DELAY", "0.005"))
#: jobs run at once per worker process (arq's default is 10)
MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "100"))
#: seconds between a caller's polls for a result (arq's default is 0.5)
RESULT_POLL = 0.001


async def noop(ctx: dict[str, Any], body: str) -> None:
    """The no-op job: only counts itself."""
    await amark_done()


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 (arq reads class attributes)
    redis_settings = RedisSettings.from_dsn(url())
    queue_name = QUEUE
    poll_delay = POLL_DELAY
    max_jobs = MAX_JOBS
    keep_result = 3600


#: arq's --custom-log-dict: warnings only (the default logs every job)
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


class ArqPeer(AsyncPeer):
    _pool: ArqRedis | None = None

    async def pool(self) -> ArqRedis:
        if self._pool is None:
            self._pool = await create_pool(WorkerSettings.redis_settings)
        return self._pool

    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [[PY, "-m", "arq", "libs.arq_peer.WorkerSettings",
                 "--custom-log-dict", "libs.arq_peer.LOG_CONFIG"] for _ in range(processes)]

    def enqueue_one(self, n: int, body: str) -> None:
        async def go() -> None:
            pool = await self.pool()
            for _ in range(n):
                await pool.enqueue_job("noop", body, _queue_name=QUEUE)

        self.run(go())

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        async def call() -> None:
            job = await (await self.pool()).enqueue_job("noop", body, _queue_name=QUEUE)
            assert job is not None
            await job.result(timeout=timeout, poll_delay=RESULT_POLL)

        return self.run(self.timed(n, call))

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


PEER = ArqPeer(
    name="arq",
    packages=("arq", "redis"),
    one_api="await pool.enqueue_job('noop', body)",
    bulk_note="arq has no bulk enqueue",
    roundtrip_api=f"await (await pool.enqueue_job(…)).result(timeout=10, "
    f"poll_delay={RESULT_POLL})  (arq polls for results)",
    configs=[
        Config("asyncio", f"2 × `arq libs.arq_peer.WorkerSettings`: 2 processes, each an "
               f"event loop running up to max_jobs={MAX_JOBS} jobs at once and polling the "
               f"queue every poll_delay={POLL_DELAY} s (default 0.5 s: far slower here); "
               "logging at WARNING"),
    ],
)
