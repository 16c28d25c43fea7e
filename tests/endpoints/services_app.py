"""The app the service tests run: ``distq worker services_app:app`` or ``distq serve
services_app:app`` (PYTHONPATH=tests/endpoints).

The namespace comes from ``DISTQ_TEST_NAMESPACE`` and the server from
``DISTQ_URL`` (``App(url=None)``); a test process that imports this module
points ``app`` at its own server and namespace instead (see ``test_services``).

Computations are counted in *ledgers*: a plain list ``<namespace>:ledger:<name>``
on the server, one entry per run, written before the service does anything
else: ``[pid, epoch seconds, [arguments]]`` as JSON.

DisTcl-protocol keys (``q:S``, ``v:S:KEY``…) are not namespaced: the tests
pass their namespace as the first argument of every DisTcl request, so that
no two tests (nor the two engines' runs) share a KEY.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from distq.connection.ops import Command, single
from distq.endpoints.app import App
from distq.endpoints.service import Cached

app = App(namespace=os.environ.get("DISTQ_TEST_NAMESPACE", "distq-tests"))

#: The DisTcl-protocol services of the app (their q:/p: queues are global keys).
DISTCL_SERVICES = ("dq_echo", "dq_plain", "dq_fail", "dq_brief", "dq_slow", "dq_hold", "dq_raw")


def ledger_key(name: str) -> str:
    """The key of one ledger (in the app's namespace)."""
    return f"{app.namespace}:ledger:{name}"


def record(name: str, *args: Any) -> int:
    """Append this run to a ledger; return how many runs it now holds."""
    entry = json.dumps([os.getpid(), time.time(), list(args)])
    runs: int = app.client.run(single(Command(("RPUSH", ledger_key(name), entry))))
    return runs


def ledger_entries(name: str) -> list[tuple[int, float, list[Any]]]:
    """``(pid, epoch s, arguments)`` of every run recorded in a ledger, oldest first."""
    raw = app.client.run(single(Command(("LRANGE", ledger_key(name), 0, -1))))
    return [tuple(json.loads(item)) for item in raw]  # type: ignore[misc]


def ledger(name: str) -> list[int]:
    """The PIDs recorded in a ledger, oldest first."""
    return [pid for pid, _, _ in ledger_entries(name)]


# Native protocol ------------------------------------------------------------------------


@app.service("shared", ttl=60)
def shared(tag: str, seconds: float = 0.5) -> str:
    """Cached for a minute; slow enough for many clients to ask while it runs."""
    record("shared", tag)
    time.sleep(seconds)
    return f"shared {tag}"


@app.service("uncached")
def uncached(tag: str) -> str:
    """No ttl: handed to the waiting clients, never cached."""
    runs = record("uncached", tag)
    return f"{tag} run {runs}"


@app.service("per_result", ttl=60)
def per_result(tag: str, ttl: float) -> Any:
    """Chooses the expiry of its own result (DisTcl's ``-secs2keep``)."""
    runs = record("per_result", tag)
    return Cached(f"{tag} run {runs}", ttl=ttl)


@app.service("failing", ttl=60)
def failing(tag: str) -> str:
    record("failing", tag)
    raise ValueError(f"bad {tag}")


@app.service("unencodable", ttl=60)
def unencodable(tag: str) -> Any:
    """Returns a value no codec can store (RELIABILITY T18)."""
    record("unencodable", tag)
    return {tag: object()}


@app.service("square", ttl=60)
def square(x: int, seconds: float = 0.0) -> int:
    record("square", x)
    time.sleep(seconds)
    return x * x


@app.service("asquare", ttl=60)
async def asquare(x: int) -> int:
    """An ``async def`` service."""
    record("asquare", x)
    await asyncio.sleep(0.05)
    return x * x


@app.service("hold", ttl=60, lease=2.0)
def hold(tag: str) -> str:
    """First run: record the PID and wait to be killed from outside; later runs return."""
    if record("hold", tag) == 1:
        time.sleep(30)
    return f"held {tag}"


# DisTcl protocol ------------------------------------------------------------------------


@app.service("dq_echo", protocol="distcl", ttl=60)
def dq_echo(*words: str) -> str:
    """Its arguments (split from the Tcl list KEY) as a JSON list; cached a minute."""
    record("dq_echo", *words)
    return json.dumps(list(words), ensure_ascii=False)


@app.service("dq_plain", protocol="distcl")
def dq_plain(token: str, tag: str) -> str:
    """No ttl: delivered to the waiters, not cached."""
    runs = record("dq_plain", token, tag)
    return f"{tag} run {runs}"


@app.service("dq_fail", protocol="distcl", ttl=60)
def dq_fail(token: str, tag: str) -> str:
    record("dq_fail", token, tag)
    raise ValueError(f"bad {tag}")


@app.service("dq_brief", protocol="distcl", ttl=60)
def dq_brief(token: str, tag: str, ttl: str) -> Any:
    """Cached for the ``ttl`` seconds it is given (``return -secs2keep``)."""
    runs = record("dq_brief", token, tag)
    return Cached(f"{tag} run {runs}", ttl=float(ttl))


@app.service("dq_slow", protocol="distcl")
def dq_slow(token: str, tag: str, seconds: str, ttl: str) -> Any:
    """Takes ``seconds``; cached for ``ttl`` seconds (not cached if ``ttl`` is empty)."""
    runs = record("dq_slow", token, tag, seconds, ttl)
    time.sleep(float(seconds))
    return Cached(f"{tag} run {runs}", ttl=float(ttl) if ttl else None)


@app.service("dq_hold", protocol="distcl", ttl=60, lease=2.0)
def dq_hold(token: str, tag: str) -> str:
    """First run: record the PID and wait to be killed; later runs return."""
    if record("dq_hold", token, tag) == 1:
        time.sleep(30)
    return f"held {tag}"


@app.service("dq_raw", protocol="distcl", ttl=60)
def dq_raw(*words: str) -> str:
    """Never served by Python in the tests: a test plays its Tcl server."""
    raise AssertionError("dq_raw is served by the test itself")


# Test helpers (used by the test process only) --------------------------------------------

HERE = Path(__file__).resolve().parent


def point_app(url: str, namespace: str) -> App:
    """``app``, pointed at a test's server and namespace, its DisTcl queues emptied."""
    app.close()
    app.url, app.namespace = url, namespace
    queues = [q for s in DISTCL_SERVICES for q in (f"q:{s}", f"p:{s}")]
    app.client.run(single(Command(("DEL", *queues))))
    return app


def launcher(url: str, namespace: str, log_dir: Path) -> Any:
    """The ``distq worker|serve services_app:app`` processes of one test: a
    ``processes.AppProcesses`` (``.start("worker", "-c", "2", live=3)``, waiting up
    to 30 s for ``live``) that stops them by PID at the end of its ``with`` block."""
    # tests/processes.py is on the test process's sys.path (tests/conftest.py), not
    # on the worker processes' that import this module: import it only here.
    import processes

    env = processes.child_env(url=url, namespace=namespace, path=HERE)
    return processes.AppProcesses(log_dir, HERE, "services_app", env, presence=app, live_timeout=30)
