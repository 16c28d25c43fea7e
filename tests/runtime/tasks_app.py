"""The app the worker tests run: ``distq worker tasks_app:app`` (PYTHONPATH=tests/runtime).

The namespace comes from ``DISTQ_TEST_NAMESPACE`` and the server from
``DISTQ_URL`` (``App(url=None)``); a test process that imports this module
points ``app`` at its own server and namespace instead (see ``test_worker``).

Tasks that need to be counted append to a *ledger*: a plain list
``<namespace>:ledger:<name>`` on the server, one entry per run (the PID of
the process that ran it and the time), written before the task does anything else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Any

from distq.connection.ops import Command, single
from distq.endpoints.app import App
from distq.errors import SoftTimeLimit

app = App(namespace=os.environ.get("DISTQ_TEST_NAMESPACE", "distq-tests"))

log = logging.getLogger("distq.tests.tasks")


def ledger_key(name: str) -> str:
    """The key of one ledger (in the app's namespace, outside any queue's keys)."""
    return f"{app.namespace}:ledger:{name}"


def record(name: str) -> int:
    """Append ``<pid> <epoch s>`` to a ledger; return how many runs it now holds."""
    entry = f"{os.getpid()} {time.time():.6f}"
    runs: int = app.client.run(single(Command(("RPUSH", ledger_key(name), entry))))
    return runs


def ledger_entries(name: str) -> list[tuple[int, float]]:
    """The ``(pid, epoch s)`` of every run recorded in a ledger, oldest first."""
    raw = app.client.run(single(Command(("LRANGE", ledger_key(name), 0, -1))))
    entries = [item.decode().split() for item in raw]
    return [(int(pid), float(when)) for pid, when in entries]


def ledger(name: str) -> list[int]:
    """The PIDs recorded in a ledger, oldest first."""
    return [pid for pid, _ in ledger_entries(name)]


# Plain work ---------------------------------------------------------------------


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
async def aadd(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x + y


@app.task
def pid() -> int:
    """The PID of the worker process that ran it."""
    return os.getpid()


@app.task
def slow(x: int, seconds: float = 0.05) -> int:
    record("slow")
    time.sleep(seconds)
    return x


@app.task
def note(tag: str) -> str:
    """Log a DEBUG line (shown only by a verbose worker) naming ``tag`` and the PID."""
    log.debug("debug note %s from pid %d", tag, os.getpid())
    return tag


# Dying ------------------------------------------------------------------------------


@app.task(max_deliveries=3)
def hold(tag: str) -> str:
    """First run: record the PID and wait to be killed from outside; later runs return."""
    if record("hold") == 1:
        time.sleep(30)
    return f"held {tag}"


@app.task(lease=0.8, max_deliveries=5)
def outlasts_its_lease(tag: str) -> str:
    """Runs five times its lease: the worker's heartbeats must keep it leased."""
    run = record("outlasts")
    time.sleep(4.0)
    return f"{tag} run {run}"


@app.task(lease=1.0, max_deliveries=5)
def zombie(tag: str) -> str:
    """First run: stalls (the test SIGSTOPs its process past the lease); any run
    returns which run it was."""
    run = record("zombie")
    if run == 1:
        time.sleep(1.0)
    return f"{tag} run {run}"


@app.task(max_deliveries=3)
def kill_once(x: int) -> int:
    """SIGKILLs its own process on its first run only."""
    if record("kill_once") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 2


@app.task(max_deliveries=2)
def always_kill() -> None:
    """SIGKILLs its own process, every time."""
    record("always_kill")
    os.kill(os.getpid(), signal.SIGKILL)


# Limits ------------------------------------------------------------------------------


@app.task(time_limit=0.5, max_deliveries=2)
def stuck() -> str:
    """Runs past its hard time limit, every time."""
    record("stuck")
    time.sleep(20)
    return "never"


@app.task(soft_time_limit=0.3, retry=0)
def soft() -> str:
    """Runs past its soft time limit and does not catch it."""
    record("soft")
    time.sleep(10)
    return "never"


@app.task(soft_time_limit=0.3, retry=0)
def soft_cleanup() -> str:
    """Catches its soft time limit, cleans up and returns."""
    try:
        time.sleep(10)
    except SoftTimeLimit:
        return "cleaned up"
    return "never"


@app.task(soft_time_limit=0.3, retry=0)
async def asoft() -> str:
    """An ``async def`` task past its soft time limit."""
    await asyncio.sleep(10)
    return "never"


# Failing -----------------------------------------------------------------------------


@app.task(retry=2, backoff=0.05, backoff_max=0.2)
def flaky_always(tag: str) -> None:
    """Raises every time: tried 1 + 2 times, then a failure."""
    runs = record("flaky_always")
    raise ValueError(f"boom {tag} run {runs}")


@app.task(retry=0)
def fails_first(tag: str) -> str:
    """Raises on its first run only (no retry: the call is dead-lettered)."""
    if record("fails_first") == 1:
        raise ValueError(f"first run of {tag}")
    return f"ok {tag}"


@app.task(retry=3)
def unencodable() -> Any:
    """Returns a value the codec cannot encode."""
    record("unencodable")
    return object()
