"""The tasks and the service of the demo: an App, a few tasks and a slow
service, for ``distq worker``.

Run a worker for them from the ``examples`` folder::

    cd examples
    distq worker tasks_demo:app -c 2

and call them from any program that imports this module::

    from tasks_demo import add
    handle = add.delay(2, 3)
    handle.get(timeout=10)        # 5

and ask the service for a value (computed once, then cached for a minute)::

    from tasks_demo import app
    app.get("slow-square", 12)    # 144, after a second; then at once

Its two actors run on a node (``distq node tasks_demo:app``)::

    app.call("process1", "test-message")   # "Message Received!"
    app.send("logger", "Log Message!")     # printed by the node

The app has no URL, so clients and workers use ``DISTQ_URL`` if it is set,
else the embedded default server. Both sides must import this module under
the same name (``tasks_demo``): a task is known by ``module.function``.
"""

from __future__ import annotations

import time

import distq
from distq.connection.ops import Command, Op, single

# The demo submits 10,000 calls per run: keep their results an hour, not a day.
app = distq.App(queue="tasks-demo", result_ttl=3600)


@app.task
def add(x: int, y: int) -> int:
    """A fast task: the worker's overhead is all there is to measure."""
    return x + y


@app.task(retry=1, backoff=0.1)
def fail(message: str) -> None:
    """A task that always raises: tried twice (0.05-0.1 s apart), then dead-lettered."""
    raise ValueError(message)


def computations_key(x: int) -> str:
    """The counter of ``slow-square``'s computations for ``x`` (a plain key)."""
    return f"{app.context.namespace}:demo:computed:{x}"


def computations(x: int) -> int:
    """How many times ``slow-square`` computed ``x``."""
    return int(app.client.run(single(Command(("GET", computations_key(x))))) or 0)


@app.service("slow-square", ttl=60)
def slow_square(x: int) -> int:
    """A service that takes a second: counts its computation, sleeps, returns x²."""
    app.client.run(_count(computations_key(x)))
    time.sleep(1.0)
    return x * x


def _count(key: str) -> Op[None]:
    """INCR the counter, and let it expire (one round trip)."""
    yield [Command(("INCR", key)), Command(("EXPIRE", key, 600))]


# Actors (hosted by ``distq node tasks_demo:app``): the Factor seed's two examples.


@app.actor("process1")
def process1() -> None:
    """Blocks until a message arrives, replies "Message Received!", and loops."""
    while True:
        distq.receive()
        distq.reply("Message Received!")


@app.actor("logger")
def logger() -> None:
    """Prints every message it receives (on the node's standard output)."""
    while True:
        print(distq.receive(), flush=True)
