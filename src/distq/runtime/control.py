"""Worker presence and control queues (DisTcl's ``z:ID``, plus heartbeats).

Every worker process announces itself with a heartbeat and reads its own
control queue at each beat; anyone can list the live workers and send one a
message. Keys, all under the client's namespace ``<ns>``::

    <ns>:workers     zset   worker id → time of its last beat (ms, server time)
    <ns>:w:<id>      hash   one worker: host, pid, queues (comma-joined),
                            started (epoch s), done (jobs done), current (job
                            id or ""), beat (epoch s of the last beat, server
                            time), verbose (0/1). Each beat renews its expiry
                            to 3 heartbeat intervals, so the entry of a
                            worker that died disappears by itself.
    <ns>:z:<id>      list   the worker's control queue: messages RPUSHed by
                            anyone, popped (up to 10 at a time) at each beat;
                            it expires a day after the last message sent.
    <ns>:zr:<id>     list   answers to ``ping`` ("pong <id>"), expiring soon.

A worker is *live* while its hash exists. The zset only indexes the hashes:
:func:`list_workers` drops the ids whose hash expired, and each beat drops the
ids that have not beaten for a day. These keys never clash with queue keys,
which all start with ``<ns>:{``. The keys of one worker sit in different
cluster slots: like the rest of distq, this layout expects one server (with
its replicas), not a cluster.

Control messages are matched as DisTcl's server loop does (see
:func:`interpret`): ``stop`` ends the worker, anything starting with ``v``
turns verbose logging on, anything starting with ``q`` turns it off; distq
adds ``ping``, answered with ``pong <id>`` on the reply list. A worker only
reads its control queue when it beats, so a message takes effect within one
heartbeat interval.

Each call is one op (:mod:`distq.connection.ops`) and one round trip
(:func:`ping` waits in slices); the ``*_op`` functions are the same calls as
ops, for an :class:`~distq.AsyncClient` (``await client.run(workers_op(ns))``)
or a pipeline. :class:`Presence` is what a worker process uses.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from distq.connection.ops import Command, Op, ScriptCall, single
from distq.connection.scripts import load_scripts
from distq.errors import InvalidArgument, Timeout
from distq.queue.client import Client
from distq.queue.keys import MAX_QUEUE_NAME, new_process_id, validate_name

__all__ = [
    "CONTROL_BATCH",
    "CONTROL_TTL_S",
    "ControlKind",
    "Presence",
    "WorkerKeys",
    "interpret",
    "list_workers",
    "new_worker_id",
    "ping",
    "send_control",
    "validate_worker_id",
    # Ops (for an AsyncClient or a pipeline)
    "answer_ping_op",
    "beat_op",
    "leave_op",
    "ping_op",
    "send_control_op",
    "workers_op",
]

log = logging.getLogger(__name__)

#: What a control message asks for (see :func:`interpret`).
ControlKind = Literal["stop", "verbose", "quiet", "ping"]

#: The most control messages one beat pops.
CONTROL_BATCH = 10
#: Seconds a control queue lives after the last message sent to it.
CONTROL_TTL_S = 24 * 3600
#: Seconds a ``ping`` answer waits for its reader.
REPLY_TTL_S = 30
#: A worker's hash expires after this many heartbeat intervals without a beat.
EXPIRY_BEATS = 3
#: The longest heartbeat interval accepted (beats also drop zset ids a day old).
MAX_HEARTBEAT_S = 3600.0
#: Ids of the workers zset that have not beaten for this long are dropped.
STALE_MS = 24 * 3600 * 1000
#: The longest single BLPOP of :func:`ping` (well under the socket timeout).
WAIT_SLICE_S = 1.0
#: Longest worker id accepted.
MAX_WORKER_ID = MAX_QUEUE_NAME

_SCRIPTS = load_scripts("distq.runtime")
_BAD_ID_CHARS = re.compile(r"[{}\s\x00-\x1f\x7f]")


def validate_worker_id(worker_id: str) -> str:
    """Return ``worker_id`` if it can name a worker, else raise InvalidArgument."""
    return validate_name(
        worker_id, "worker id", _BAD_ID_CHARS, "no braces, spaces or control characters"
    )


def new_worker_id() -> str:
    """A new, short, unique worker id: ``<host>.<pid>.<random>``, e.g. ``"box.1234.a1b2c3"``.

    ``<host>`` is the first label of the host name, with anything but
    letters, digits, ``-`` and ``_`` replaced by ``-``.
    """
    return new_process_id()


def interpret(message: str) -> ControlKind | None:
    """What a control message asks for, matched like DisTcl's ``switch -glob``.

    ``stop`` (exactly) → ``"stop"``; ``ping`` (exactly) → ``"ping"``; any
    other message starting with ``v`` → ``"verbose"``, with ``q`` →
    ``"quiet"``; anything else → ``None`` (the caller logs and ignores it).
    Matching is case-sensitive, as in Tcl: ``"stopping"`` and ``"Verbose"``
    mean nothing.
    """
    if message == "stop":
        return "stop"
    if message == "ping":
        return "ping"
    if message.startswith("v"):
        return "verbose"
    if message.startswith("q"):
        return "quiet"
    return None


class WorkerKeys:
    """The keys of one worker in one namespace (the layout is in the module doc)."""

    __slots__ = ("control", "hash", "id", "replies", "workers")

    def __init__(self, namespace: str, worker_id: str) -> None:
        self.id = validate_worker_id(worker_id)
        self.workers = f"{namespace}:workers"
        self.hash = f"{namespace}:w:{worker_id}"
        self.control = f"{namespace}:z:{worker_id}"
        self.replies = f"{namespace}:zr:{worker_id}"


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


# Ops --------------------------------------------------------------------------


def beat_op(
    keys: WorkerKeys,
    fields: Mapping[str, str | int],
    expiry_ms: int,
    count: int = CONTROL_BATCH,
) -> Op[list[str]]:
    """One heartbeat with ``fields`` written to the worker's hash; pops control messages.

    Returns up to ``count`` pending control messages, oldest first.
    """
    args: list[str | int] = [keys.id, expiry_ms, count, STALE_MS]
    for name, value in fields.items():
        args += [name, value]
    reply = yield from single(
        ScriptCall(_SCRIPTS["beat"], (keys.workers, keys.hash, keys.control), args)
    )
    return [_text(message) for message in reply[1:]]


def leave_op(namespace: str, worker_id: str) -> Op[None]:
    """Remove a worker: its zset entry, its hash, its control and reply lists."""
    keys = WorkerKeys(namespace, worker_id)
    yield [
        Command(("ZREM", keys.workers, keys.id)),
        Command(("DEL", keys.hash, keys.control, keys.replies)),
    ]


def workers_op(namespace: str) -> Op[list[dict[str, Any]]]:
    """Every live worker (see :func:`list_workers`), pruning the expired ones."""
    reply = yield from single(
        ScriptCall(_SCRIPTS["workers"], (f"{namespace}:workers",), (f"{namespace}:w:",))
    )
    now_ms = int(reply[0])
    found = [
        _worker(_text(reply[i]), now_ms, float(reply[i + 1]), reply[i + 2])
        for i in range(1, len(reply), 3)
    ]
    return sorted(found, key=lambda worker: str(worker["id"]))


def _number(raw: str | None, kind: type[int] | type[float], default: Any) -> Any:
    try:
        return default if raw is None else kind(raw)
    except ValueError:
        return default


def _worker(worker_id: str, now_ms: int, beat_ms: float, flat: Sequence[Any]) -> dict[str, Any]:
    fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
    queues = fields.pop("queues", "")
    worker: dict[str, Any] = {
        "id": worker_id,
        "host": fields.pop("host", None),
        "pid": _number(fields.pop("pid", None), int, None),
        "queues": [name for name in queues.split(",") if name],
        "started": _number(fields.pop("started", None), float, None),
        "done": _number(fields.pop("done", None), int, 0),
        "current": fields.pop("current", "") or None,
        "beat": _number(fields.pop("beat", None), float, beat_ms / 1000),
        "verbose": fields.pop("verbose", "0") == "1",
        "age": max(0.0, (now_ms - beat_ms) / 1000),
    }
    worker.update(fields)  # fields added by later versions, as text
    return worker


def send_control_op(namespace: str, worker_id: str, message: str) -> Op[bool]:
    """Queue ``message`` on the worker's control queue; True if that worker is live."""
    if not isinstance(message, str) or not message:
        raise InvalidArgument("a control message must be a non-empty string")
    keys = WorkerKeys(namespace, worker_id)
    replies = yield [
        Command(("RPUSH", keys.control, message)),
        Command(("PEXPIRE", keys.control, CONTROL_TTL_S * 1000)),
        Command(("EXISTS", keys.hash)),
    ]
    return bool(replies[2])


def answer_ping_op(namespace: str, worker_id: str) -> Op[None]:
    """Push ``pong <id>`` to the worker's reply list (which expires soon)."""
    keys = WorkerKeys(namespace, worker_id)
    yield [
        Command(("RPUSH", keys.replies, f"pong {keys.id}")),
        Command(("PEXPIRE", keys.replies, REPLY_TTL_S * 1000)),
    ]


def ping_op(
    namespace: str, worker_id: str, timeout: float = 5.0, wait_slice_s: float = WAIT_SLICE_S
) -> Op[float]:
    """Ping a worker and wait for its pong; the round trip in seconds (see :func:`ping`).

    The wait is a series of BLPOPs of at most ``wait_slice_s`` seconds each
    (keep it under the connection's socket timeout).
    """
    if not isinstance(timeout, int | float) or not timeout > 0 or math.isinf(timeout):
        raise InvalidArgument(f"timeout must be a positive number of seconds, not {timeout!r}")
    keys = WorkerKeys(namespace, worker_id)
    start = time.monotonic()
    deadline = start + timeout
    yield [
        Command(("DEL", keys.replies)),  # a late pong of an earlier ping is not ours
        Command(("RPUSH", keys.control, "ping")),
        Command(("PEXPIRE", keys.control, CONTROL_TTL_S * 1000)),
    ]
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        wait_s = max(0.01, round(min(remaining, wait_slice_s), 3))
        reply = yield from single(Command(("BLPOP", keys.replies, wait_s)))
        if reply is not None:
            return time.monotonic() - start
    yield [Command(("LREM", keys.control, -1, "ping"))]  # withdraw the unanswered ping
    raise Timeout(
        f"no pong from worker {worker_id!r} within {timeout:g} s: it is not running, "
        "or too busy to beat (`distq workers` lists the live workers)"
    )


# Sync API ---------------------------------------------------------------------


class Presence:
    """A worker's heartbeat and control queue, for a (sync) worker process.

    Call :meth:`beat` every ``heartbeat_s`` seconds (more often is fine) and
    handle the messages it returns; call :meth:`leave` when the worker ends.
    If beats stop, the worker's entry disappears after ``3 * heartbeat_s`` seconds.

    Attributes:
        worker_id: this worker's id.
        verbose: DisTcl's verbose flag: reported at each beat, and set by the
            ``v*``/``q*`` messages :meth:`beat` pops (the caller may set it too).
    """

    def __init__(
        self,
        client: Client,
        worker_id: str,
        queues: Sequence[str],
        heartbeat_s: float = 2.0,
    ) -> None:
        """Describe a worker; nothing is written before the first :meth:`beat`.

        Args:
            client: the client to write with (its namespace holds the keys).
            worker_id: the worker's id (see :func:`new_worker_id`).
            queues: the queues the worker serves (shown by ``distq workers``).
            heartbeat_s: the interval between beats, in seconds.

        Raises:
            InvalidArgument: a bad id or heartbeat interval.
        """
        if not isinstance(heartbeat_s, int | float) or not 0 < heartbeat_s <= MAX_HEARTBEAT_S:
            raise InvalidArgument(
                f"heartbeat_s must be in (0, {MAX_HEARTBEAT_S:g}] seconds, not {heartbeat_s!r}"
            )
        if isinstance(queues, str):
            queues = [queues]
        self._client = client
        self._keys = WorkerKeys(client.namespace, worker_id)
        self.worker_id = worker_id
        self.queues = list(queues)
        self.heartbeat_s = float(heartbeat_s)
        self.verbose = False
        self._expiry_ms = max(1, math.ceil(EXPIRY_BEATS * self.heartbeat_s * 1000))
        self._static: dict[str, str | int] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": ",".join(self.queues),
            "started": f"{time.time():.3f}",
        }

    def beat(self, done: int, current: str | None) -> list[str]:
        """Record a heartbeat and pop pending control messages, in one round trip.

        Args:
            done: how many jobs this worker has finished so far.
            current: the id of the job it is running, or ``None``.

        Returns:
            Up to 10 control messages, oldest first (more wait for the next
            beat). ``v*``/``q*`` messages have already set :attr:`verbose`
            (taking effect in the hash at the next beat); acting on them, and
            on ``stop`` and ``ping``, is the caller's job.
        """
        fields = {
            **self._static,
            "done": int(done),
            "current": current or "",
            "verbose": int(self.verbose),
        }
        messages = self._client.run(beat_op(self._keys, fields, self._expiry_ms))
        for message in messages:
            kind = interpret(message)
            if kind == "verbose":
                self.verbose = True
            elif kind == "quiet":
                self.verbose = False
        if messages:
            log.debug("worker %s: control messages %r", self.worker_id, messages)
        return messages

    def answer_ping(self, message: str = "ping") -> None:
        """Answer a ``ping`` control message with ``pong <id>`` on the reply list."""
        log.debug("worker %s: answering %r", self.worker_id, message)
        self._client.run(answer_ping_op(self._client.namespace, self.worker_id))

    def leave(self) -> None:
        """Remove this worker's entries (it no longer shows as live)."""
        self._client.run(leave_op(self._client.namespace, self.worker_id))

    def __repr__(self) -> str:
        return f"<distq.Presence {self.worker_id!r} queues={self.queues!r}>"


def list_workers(client: Client) -> list[dict[str, Any]]:
    """Every live worker, sorted by id, in one round trip (pruning expired ids).

    Each is a dict with ``id``, ``host``, ``pid`` (int), ``queues`` (list of
    names), ``started`` (epoch s), ``done`` (int), ``current`` (job id or
    ``None``), ``beat`` (epoch s of the last heartbeat, server time),
    ``verbose`` (bool) and ``age`` (seconds since the last heartbeat, by the
    server's clock). A queue name containing a comma shows split.
    """
    return client.run(workers_op(client.namespace))


def send_control(client: Client, worker_id: str, message: str) -> bool:
    """Queue ``message`` on a worker's control queue (RPUSH), for its next beat.

    Returns:
        Whether a live worker has this id. The message is queued either way
        (a worker started later with this id reads it; it expires after a day).
    """
    return client.run(send_control_op(client.namespace, worker_id, message))


def ping(client: Client, worker_id: str, timeout: float = 5.0) -> float:
    """Send ``ping`` to a worker and wait for its ``pong``.

    The worker reads its control queue when it beats, so the round trip
    includes up to one heartbeat interval.

    Returns:
        The round trip in seconds.

    Raises:
        Timeout: no pong within ``timeout`` seconds (the ping is withdrawn).
    """
    wait_slice_s = max(0.01, min(WAIT_SLICE_S, client.settings.socket_timeout_s / 2))
    return client.run(ping_op(client.namespace, worker_id, timeout, wait_slice_s))
