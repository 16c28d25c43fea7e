"""distq: ``distq worker libs.distq_peer:app -c 2``.

The app and its no-op task (imported by the workers), and the client side.
"""

from __future__ import annotations

import os
import time
from typing import Any

import distq
from libs.base import PY, Config, Peer, timed
from libs.common import QUEUE, mark_done, url

#: jobs each worker process leases per fetch (``distq worker --batch``)
BATCH = int(os.environ.get("BENCH_DISTQ_BATCH", "100"))

app = distq.App(url(), queue=QUEUE)


@app.task(name="bench.noop")
def noop(body: str) -> None:
    """The no-op job: only counts itself."""
    mark_done()


# What distq alone has: a cached service and an actor, on an app of their own so
# that the drain's workers serve the task queue only.
extras = distq.App(url())


@extras.service("bench.echo", ttl=3600)
def echo(value: str) -> str:
    """A cached service: computed once by a worker, then read from the cache."""
    return value


@extras.actor("bench-echo")
class Echo:
    """An actor on a node of its own: answers every call with the message."""

    def receive(self, message: Any) -> Any:
        return message


class DistqPeer(Peer):
    def worker_commands(self, config: str, processes: int) -> list[list[str]]:
        return [
            [PY, "-m", "distq", "--url", url(), "worker", "libs.distq_peer:app",
             "-c", str(processes), "--batch", str(BATCH)]
        ]

    def enqueue_one(self, n: int, body: str) -> None:
        for _ in range(n):
            noop.delay(body)

    def enqueue_bulk(self, n: int, body: str) -> None:
        noop.map([body] * n)

    def roundtrips(self, n: int, body: str, timeout: float) -> list[float]:
        return timed(n, lambda: noop.delay(body).get(timeout=timeout))

    def extra_commands(self) -> list[list[str]]:
        base = [PY, "-m", "distq", "--url", url()]
        return [
            [*base, "worker", "libs.distq_peer:extras", "-c", "1"],
            [*base, "node", "libs.distq_peer:extras"],
        ]

    def latencies(self, n: int, timeout: float) -> dict[str, list[float]]:
        deadline = time.monotonic() + 30  # both extra processes up before timing anything
        while (ref := extras.whereis("bench-echo")) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the node did not register bench-echo within 30 s")
            time.sleep(0.05)
        extras.forget("bench.echo", "hello")
        extras.get("bench.echo", "hello", timeout=timeout)  # computed once, then cached
        timed(20, lambda: extras.get("bench.echo", "hello", timeout=timeout))
        service = timed(n, lambda: extras.get("bench.echo", "hello", timeout=timeout))
        timed(20, lambda: extras.call(ref, "warm", timeout=timeout))
        actor = timed(n, lambda: extras.call(ref, "hello", timeout=timeout))
        return {"service_get": service, "actor_call": actor}

    def close(self) -> None:
        app.close()
        extras.close()


PEER = DistqPeer(
    name="distq",
    packages=("distq", "redis", "hiredis"),
    one_api="noop.delay(body)",
    bulk_api="noop.map([body] * n)",
    bulk_note="one round trip; script calls of 500 jobs",
    roundtrip_api="noop.delay(body).get(timeout=10)  (BLMOVE on the result key: no polling)",
    configs=[
        Config(
            "prefork",
            f"`distq worker libs.distq_peer:app -c 2 --batch {BATCH}`: a supervisor and 2 "
            f"pre-forked worker processes, each leasing up to {BATCH} jobs per fetch and "
            "storing results and acks of a batch in one pipelined round trip; default task "
            "options (results kept a day, 3 retries, 60 s lease)",
        )
    ],
)
