"""The tasks of the demo: an App and a few tasks, for ``distq worker``.

Run a worker for them from the ``examples`` folder::

    cd examples
    distq worker tasks_demo:app -c 2

and call them from any program that imports this module::

    from tasks_demo import add
    handle = add.delay(2, 3)
    handle.get(timeout=10)        # 5

The app has no URL, so clients and workers use ``DISTQ_URL`` if it is set,
else the embedded default server. Both sides must import this module under
the same name (``tasks_demo``): a task is known by ``module.function``.
"""

from __future__ import annotations

import distq

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
