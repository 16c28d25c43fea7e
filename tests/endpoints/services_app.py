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
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distq.connection.ops import Command, single
from distq.endpoints.app import App
from distq.endpoints.service import Cached
from distq.runtime.control import list_workers

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


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while ``pid`` is a process that is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children_of(parent: int) -> set[int]:
    """The PIDs of the live direct children of ``parent`` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == parent and stat[0] not in ("Z", "X"):
                found.add(int(entry.name))
    return found


def kill_quietly(pid: int) -> None:
    """SIGKILL ``pid`` if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Served:
    """A running ``distq worker|serve services_app:app …`` and its log."""

    def __init__(self, url: str, namespace: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k != "DISTQ_NAMESPACE"}
        env["DISTQ_URL"] = url
        env["DISTQ_TEST_NAMESPACE"] = namespace
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p
        )
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "distq", *args],
                cwd=HERE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        self.seen_children: set[int] = set()

    def children(self) -> set[int]:
        found = children_of(self.pid)
        self.seen_children |= found
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM the supervisor; its exit code (SIGKILL and fail past ``timeout``)."""
        self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.pid} did not exit within {timeout} s of SIGTERM\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the supervisor and every child (by PID). The supervisor is stopped
        first, so that it cannot fork a replacement for a child killed before it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGSTOP)
        for child in self.children():
            kill_quietly(child)
        kill_quietly(self.pid)
        self.proc.wait(10)

    def assert_no_children_left(self, timeout: float = 10.0) -> None:
        """Every process of it ever seen is gone (SIGKILLed, and the test fails, if not)."""
        self.children()
        deadline = time.monotonic() + timeout
        left = {pid for pid in self.seen_children if alive(pid)}
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = {pid for pid in left if alive(pid)}
        for pid in left:
            kill_quietly(pid)
        assert not left, f"processes left behind: {sorted(left)}\n{self.log()}"


class Processes:
    """Starts ``distq`` subprocesses for a test; :meth:`stop_all` stops them by PID."""

    #: The heartbeat of every process under test (presence, leases, renewals).
    HEARTBEAT = "0.2"

    def __init__(self, url: str, namespace: str, log_dir: Path) -> None:
        self.url, self.namespace, self.log_dir = url, namespace, log_dir
        self.started: list[Served] = []

    def start(self, command: str, *args: str, live: int | None = None) -> Served:
        """``distq COMMAND services_app:app --heartbeat 0.2 ARGS…`` (worker or serve);
        with ``live``, wait until that many processes of the namespace are serving."""
        log_path = self.log_dir / f"{command}-{len(self.started)}.log"
        argv = (command, "services_app:app", "--heartbeat", self.HEARTBEAT, *args)
        served = Served(self.url, self.namespace, log_path, *argv)
        self.started.append(served)
        if live:
            wait_for(
                lambda: len(list_workers(app.client)) >= live,
                30,
                f"{live} live processes\n{served.log()}",
            )
        return served

    def stop_all(self) -> None:
        for served in self.started:
            if served.proc.poll() is None:
                served.children()
                served.proc.send_signal(signal.SIGTERM)
                try:
                    served.proc.wait(15)
                except subprocess.TimeoutExpired:
                    served.kill()
            served.assert_no_children_left()


def point_app(url: str, namespace: str) -> App:
    """``app``, pointed at a test's server and namespace, its DisTcl queues emptied."""
    app.close()
    app.url, app.namespace = url, namespace
    queues = [q for s in DISTCL_SERVICES for q in (f"q:{s}", f"p:{s}")]
    app.client.run(single(Command(("DEL", *queues))))
    return app
