"""RQ: ``rq worker`` with SimpleWorker (no fork per job) and the forking Worker.

The job function (imported by the workers) and the client side.
"""

from __future__ import annotations

import uuid

from redis import Redis
from rq import Queue

from libs.base import PY, Config, Peer, timed
from libs.common import QUEUE, mark_done, url


def noop(body: str) -> None:
    """The no-op job: only counts itself."""
    mark_done()


#: jobs per drain for the forking worker (a fork per job: 10,000 would take minutes)
FORK_JOBS = 500

CLASSES = {"simple": "rq.worker.SimpleWorker", "fork": "rq.worker.Worker"}


class RqPeer(Peer):
    _queue: Queue | None = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            self._queue = Queue(QUEUE, connection=Redis.from_url(url()))
        return self._queue

    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [
            [PY, "-m", "rq.cli", "worker", "-u", url(), "-w", CLASSES[config], "-q",
             "-n", f"{config}{i}-{uuid.uuid4().hex[:8]}", QUEUE]
            for i in range(processes)
        ]

    def enqueue_one(self, n: int, body: str) -> None:
        enqueue = self.queue.enqueue
        for _ in range(n):
            enqueue(noop, body)

    def enqueue_bulk(self, n: int, body: str) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, (body,)) for _ in range(n)])

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        def call() -> None:
            result = self.queue.enqueue(noop, body).latest_result(timeout=round(timeout))
            if result is None:
                raise TimeoutError(f"no RQ result within {timeout} s")

        return timed(n, call)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.connection.close()


PEER = RqPeer(
    name="rq",
    packages=("rq", "redis"),
    one_api="queue.enqueue(noop, body)",
    bulk_api="queue.enqueue_many([Queue.prepare_data(noop, (body,)), …])",
    bulk_note="one pipeline",
    roundtrip_api="queue.enqueue(noop, body).latest_result(timeout=10)  (blocking XREAD)",
    configs=[
        Config("simple", "2 × `rq worker -w rq.worker.SimpleWorker -q`: each runs jobs in "
               "its own process (no fork per job); pickle serializer (the default)"),
        Config("fork", "2 × `rq worker -w rq.worker.Worker -q`: the default worker, which "
               f"forks a work horse per job (so it drains {FORK_JOBS:,} jobs, not 10,000: about "
               "50-60 jobs/s here)", jobs=FORK_JOBS),
    ],
)
