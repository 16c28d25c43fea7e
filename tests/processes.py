"""Subprocesses of the tests: ``distq worker|serve|node`` and the like, started with
the test's server and namespace, waited for until they serve, always stopped by
PID — SIGTERM, then SIGKILL past a bound — and checked to leave no child behind.

A plain module: ``tests/conftest.py`` puts this folder on ``sys.path``, and test
modules ``import processes``. Only the test process imports it: the apps the
subprocesses run (``tasks_app``, ``services_app``…) do not at import time
(``services_app.launcher`` imports it when a test calls it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from distq.endpoints.app import App
from distq.runtime.control import list_workers

#: Seconds a process gets to exit after SIGTERM before it is SIGKILLed.
STOP_TIMEOUT = 15.0
#: Variables of the test run's environment that a subprocess never inherits:
#: each test chooses its own server, namespace, secret and actors.
PRIVATE = ("DISTQ_URL", "DISTQ_NAMESPACE", "DISTQ_SECRET", "DISTQ_TEST_ACTORS")


# Waiting and /proc -------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """Poll ``predicate`` until it returns something true, and return that; fail after
    ``timeout`` s, saying ``what`` was awaited (a callable: computed at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said}")
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


# Starting ------------------------------------------------------------------------------


def child_env(
    *,
    url: str | None = None,
    namespace: str | None = None,
    path: Path | None = None,
    **more: str,
) -> dict[str, str]:
    """This process's environment without :data:`PRIVATE`, plus ``DISTQ_URL=url``,
    ``DISTQ_TEST_NAMESPACE=namespace`` (each if given), ``path`` first on
    ``PYTHONPATH`` (so that the subprocess imports the app next to a test) and ``more``."""
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE}
    if url is not None:
        env["DISTQ_URL"] = url
    if namespace is not None:
        env["DISTQ_TEST_NAMESPACE"] = namespace
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    env.update(more)
    return env


def distq_argv(*args: str) -> list[str]:
    """``python -m distq ARGS…`` with this interpreter."""
    return [sys.executable, "-m", "distq", *args]


def cli(
    url: str,
    namespace: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m distq --url URL --namespace NS ARGS…`` run to its end (30 s at most),
    its output captured as text; ``env`` defaults to :func:`child_env`."""
    return subprocess.run(
        distq_argv("--url", url, "--namespace", namespace, *args),
        capture_output=True,
        text=True,
        timeout=30,
        env=child_env() if env is None else dict(env),
        cwd=cwd,
        check=False,
    )


class Process:
    """A subprocess of a test, in a session of its own, its output (stdout and
    stderr) in a log file; signalled by PID only."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        #: Every child seen by :meth:`children`: checked to be gone at the end.
        self.seen_children: set[int] = set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def children(self) -> set[int]:
        """Its live children now (remembered, for :meth:`assert_no_children_left`)."""
        found = children_of(self.pid)
        self.seen_children |= found
        return found

    def serving(self, ready: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``ready()`` until it returns something true, and return that; fail at
        once if the process exits first, and past ``timeout`` s (with its log)."""

        def check() -> Any:
            if not self.running():
                raise AssertionError(
                    f"pid {self.pid} exited ({self.proc.returncode}) before {what}\n{self.log()}"
                )
            return ready()

        return wait_for(check, timeout, lambda: f"{what}\n{self.log()}")

    def send_term(self) -> None:
        """SIGTERM by PID, if it is still running (its children noted first)."""
        self.children()
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def reap(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait up to ``timeout`` s for it to exit; past that, :meth:`kill` it.
        True if it exited by itself."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        return True

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM; its exit code. Past ``timeout``: SIGKILL, and the test fails."""
        self.send_term()
        if not self.reap(timeout):
            raise AssertionError(
                f"pid {self.pid} did not exit within {timeout} s of SIGTERM\n{self.log()}"
            )
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL it and every child it has (by PID), and reap it. It is stopped
        first (SIGSTOP), so that it cannot fork a replacement for a child killed
        before it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGSTOP)
        for child in self.children():
            kill_quietly(child)
        kill_quietly(self.pid)
        self.proc.wait(10)

    def assert_no_children_left(self, timeout: float = 10.0) -> None:
        """Every child of it ever seen is gone (SIGKILLed, and the test fails, if not)."""
        self.children()
        deadline = time.monotonic() + timeout
        left = {pid for pid in self.seen_children if alive(pid)}
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = {pid for pid in left if alive(pid)}
        for pid in left:
            kill_quietly(pid)
        assert not left, f"processes of pid {self.pid} left behind: {sorted(left)}\n{self.log()}"


class Processes:
    """The subprocesses of one test; a context manager that stops them all at its end.

    ``strict``: at the end, a process that had to be SIGKILLed because it ignored
    SIGTERM fails the test too (by default it is only killed).
    """

    def __init__(self, log_dir: Path, *, strict: bool = False) -> None:
        self.log_dir = log_dir
        self.strict = strict
        self.started: list[Process] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def spawn(self, label: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Process:
        """Start ``argv``, its log in ``LABEL-N.log``."""
        log_path = self.log_dir / f"{label}-{len(self.started)}.log"
        proc = Process(argv, env, cwd, log_path)
        self.started.append(proc)
        return proc

    def stop(self, *procs: Process, timeout: float = STOP_TIMEOUT) -> list[int]:
        """SIGTERM each (by PID), then wait for each; SIGKILL those still there past
        ``timeout`` (-9 then). Their exit codes."""
        return [code for code, _ in self._stop(procs, timeout)]

    def stop_all(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every process started (see :meth:`stop`), then check that none of
        them left a child behind."""
        ignored = [proc for _, proc in self._stop(self.started, timeout) if proc is not None]
        failures = []
        for proc in self.started:
            try:
                proc.assert_no_children_left()
            except AssertionError as failure:
                failures.append(str(failure))
        if self.strict:
            failures += [f"pid {p.pid} ignored SIGTERM for {timeout} s\n{p.log()}" for p in ignored]
        assert not failures, "\n".join(failures)

    @staticmethod
    def _stop(procs: Sequence[Process], timeout: float) -> list[tuple[int, Process | None]]:
        """(exit code, the process if it had to be SIGKILLed) of each."""
        for proc in procs:
            proc.send_term()
        stopped: list[tuple[int, Process | None]] = []
        for proc in procs:
            if proc.reap(timeout):
                stopped.append((proc.proc.wait(), None))
            else:
                stopped.append((-signal.SIGKILL, proc))
        return stopped


class AppProcesses(Processes):
    """``distq [OPTIONS…] COMMAND MODULE:app --heartbeat 0.2 ARGS…`` processes of a
    test app, run in ``folder`` with ``env`` (:func:`child_env`, with ``folder`` on
    its ``PYTHONPATH``).

    ``presence``: the app whose live processes :meth:`start` counts (``live=``),
    as ``distq workers`` lists them.
    """

    #: The heartbeat of every process under test (presence, leases, control messages).
    HEARTBEAT = "0.2"

    def __init__(
        self,
        log_dir: Path,
        folder: Path,
        module: str,
        env: Mapping[str, str],
        *,
        options: Sequence[str] = (),
        presence: App | None = None,
        live_timeout: float = 20.0,
        strict: bool = False,
    ) -> None:
        super().__init__(log_dir, strict=strict)
        self.folder, self.module, self.env = folder, module, env
        self.options, self.presence, self.live_timeout = options, presence, live_timeout

    def start(self, command: str, *args: str, live: int | None = None) -> Process:
        """Start ``distq COMMAND MODULE:app …``; with ``live``, return once that many
        processes of the namespace are live."""
        argv = [*self.options, command, f"{self.module}:app", "--heartbeat", self.HEARTBEAT]
        proc = self.spawn(command, distq_argv(*argv, *args), self.env, self.folder)
        if live:
            assert self.presence is not None, "no app to count live processes with"
            app = self.presence
            proc.serving(
                lambda: len(list_workers(app.client)) >= live,
                self.live_timeout,
                f"{live} live processes",
            )
        return proc
