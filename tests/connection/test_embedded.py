"""The embedded default server, with real daemonized servers.

Each test gets its own ``DISTQ_HOME`` (and so its own server), stopped at
teardown; the session's embedded server is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from distq.connection import embedded
from distq.connection.server import pid_alive
from distq.connection.url import ConnectionSettings
from distq.errors import EmbeddedServerError


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, short DISTQ_HOME; its server is stopped afterwards."""
    path = Path(tempfile.mkdtemp(prefix="dqe", dir="/tmp"))
    monkeypatch.setenv("DISTQ_HOME", str(path))
    try:
        yield path
    finally:
        try:
            embedded.stop(timeout_s=10)
        finally:
            shutil.rmtree(path, ignore_errors=True)


def _client(url: str, **overrides: Any) -> redis.Redis:
    settings = ConnectionSettings.from_url(url)
    assert settings.path is not None
    options: dict[str, Any] = {
        "unix_socket_path": settings.path,
        "password": settings.password,
        "socket_timeout": 5,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
    }
    options.update(overrides)
    return redis.Redis(**options)


def test_session_home_is_isolated(distq_home: Path) -> None:
    assert os.environ["DISTQ_HOME"] == str(distq_home)
    assert str(distq_home).startswith("/tmp/")
    assert "DISTQ_URL" not in os.environ


def test_ensure_running_twice_gives_one_server(home: Path) -> None:
    url = embedded.ensure_running()
    first = embedded.status()
    assert embedded.ensure_running() == url
    assert embedded.ensure_running(recheck=True) == url
    second = embedded.status()
    assert first["running"] and second["running"]
    assert first["pid"] == second["pid"] and pid_alive(first["pid"])
    assert url.startswith(f"unix://{home}/distq.sock?password=")
    password = ConnectionSettings.from_url(url).password
    assert password and password not in json.dumps(second)
    assert second["url_redacted"].endswith("password=***")
    assert second["dir"] == str(home)
    assert second["data_dir"] == str(home / "data")
    assert second["aof"].startswith(str(home / "data"))
    assert second["engine"] in ("valkey", "redis") and second["version"]
    with _client(url) as client:
        assert client.info("server")["process_id"] == first["pid"]


def test_files_are_private(home: Path) -> None:
    url = embedded.ensure_running()
    socket_path = ConnectionSettings.from_url(url).path
    assert socket_path is not None and len(socket_path.encode()) < 100
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "data").stat().st_mode) == 0o700
    for name in ("password", "server.conf", "server.json", "server.log"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o700
    assert list((home / "data").glob("appendonlydir/*"))


def test_server_is_configured_as_documented(home: Path) -> None:
    url = embedded.ensure_running()
    with _client(url) as client:
        config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["port"] == "0"
    assert config["unixsocketperm"] == "700"
    assert config["proto-max-bulk-len"] == str(1024**3)
    assert config["dir"] == str(home / "data")


def test_wrong_password_is_refused(home: Path) -> None:
    url = embedded.ensure_running()
    with _client(url, password="not-the-password") as client, pytest.raises(
        redis.AuthenticationError
    ):
        client.ping()
    with _client(url, password=None) as client, pytest.raises(redis.AuthenticationError):
        client.ping()


def test_stop_then_status(home: Path) -> None:
    embedded.ensure_running()
    pid = embedded.status()["pid"]
    assert embedded.stop() is True
    after = embedded.status()
    assert after["running"] is False
    assert after["pid"] is None
    assert not pid_alive(pid)
    assert embedded.stop() is False


def test_data_and_password_survive_a_stop(home: Path) -> None:
    url = embedded.ensure_running()
    pid = embedded.status()["pid"]
    with _client(url) as client:
        client.set("kept", "yes")
    assert embedded.stop() is True
    assert embedded.ensure_running() == url  # the stop forgot the cached URL
    assert embedded.status()["pid"] != pid
    with _client(url) as client:
        assert client.get("kept") == "yes"


def test_a_crashed_server_is_replaced_on_recheck(home: Path) -> None:
    url = embedded.ensure_running()
    pid = embedded.status()["pid"]
    os.kill(pid, signal.SIGKILL)  # the server this test started
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert embedded.status()["running"] is False
    assert embedded.ensure_running() == url  # cached: no round trip
    assert embedded.ensure_running(recheck=True) == url
    status = embedded.status()
    assert status["running"] and status["pid"] != pid


_STARTER = """
import sys, time
from distq.connection import embedded
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
url = embedded.ensure_running()
print(url, embedded.status()["pid"])
"""


def test_concurrent_processes_start_one_server(home: Path) -> None:
    start_at = time.time() + 1.0
    env = {**os.environ, "DISTQ_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _STARTER, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        outputs.append(out.split())
    assert len({tuple(out) for out in outputs}) == 1, outputs
    url, pid = outputs[0]
    assert embedded.ensure_running() == url
    assert embedded.status()["pid"] == int(pid)
    log = (home / "server.log").read_text()
    assert log.count("Server initialized") == 1


def test_long_home_moves_the_socket(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    base = Path(tempfile.mkdtemp(prefix="dql", dir="/tmp"))
    deep = base / ("d" * 110)
    monkeypatch.setenv("DISTQ_HOME", str(deep))
    caplog.set_level(logging.INFO, logger="distq.connection.embedded")
    socket_dir: Path | None = None
    try:
        url = embedded.ensure_running()
        socket_path = ConnectionSettings.from_url(url).path
        assert socket_path is not None
        socket_dir = Path(socket_path).parent
        assert len(socket_path.encode()) < 100
        assert socket_path.startswith(f"/tmp/distq-{os.getuid()}-")
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert (deep / "password").exists() and (deep / "data").is_dir()
        assert "too long" in caplog.text
        password = ConnectionSettings.from_url(url).password
        assert password and password not in caplog.text
    finally:
        embedded.stop()
        shutil.rmtree(base, ignore_errors=True)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)


def test_layout_without_distq_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DISTQ_HOME")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    lay = embedded.layout()
    assert lay.home == Path("/tmp/distq")
    assert lay.data_dir == tmp_path / "distq"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    lay = embedded.layout()
    assert lay.home == Path(f"/tmp/distq-{os.getuid()}")
    assert lay.data_dir == tmp_path / ".local" / "share" / "distq"
    assert lay.socket_path == f"/tmp/distq-{os.getuid()}/distq.sock"


def test_status_and_stop_create_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    monkeypatch.setenv("DISTQ_HOME", str(missing))
    assert embedded.status()["running"] is False
    assert embedded.stop() is False
    assert not missing.exists()


def test_a_home_owned_by_a_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DISTQ_HOME", str(blocker))
    with pytest.raises(EmbeddedServerError):
        embedded.ensure_running(recheck=True)


def test_each_engine_can_be_the_embedded_one(home: Path, engine: Any) -> None:
    url = embedded.ensure_running(engine=engine.binary)
    assert embedded.status()["engine"] == engine.name
    with _client(url) as client:
        assert client.ping()


def test_an_unidentified_server_on_the_socket_is_not_doubled(home: Path) -> None:
    embedded.ensure_running()
    pid = embedded.status()["pid"]
    saved = (home / "password").read_text()
    for name in ("server.json", "server.pid"):
        (home / name).unlink()
    (home / "password").write_text("another-password\n")
    try:
        with pytest.raises(EmbeddedServerError, match="not usable"):
            embedded.ensure_running(recheck=True)
        assert pid_alive(pid)
    finally:
        (home / "password").write_text(saved)
    assert embedded.status()["pid"] == pid


def test_a_recorded_server_refusing_the_password_is_replaced(home: Path) -> None:
    embedded.ensure_running()
    pid = embedded.status()["pid"]
    (home / "password").write_text("another-password\n")
    url = embedded.ensure_running(recheck=True)
    assert ConnectionSettings.from_url(url).password == "another-password"
    assert not pid_alive(pid)
    status = embedded.status()
    assert status["running"] and status["pid"] != pid
