"""The key layout of queues and jobs: the one place that formats these keys.

Every key of a queue carries the queue name as its hash tag, so all of them —
and every job of the queue — live in one cluster slot, and each Lua script
touches one slot::

    <ns>:{<queue>}:ready     list    cores of jobs waiting to be fetched (FIFO)
    <ns>:{<queue>}:leased    zset    cores of fetched jobs → lease deadline (ms)
    <ns>:{<queue>}:delayed   zset    cores of delayed jobs → due time (ms)
    <ns>:{<queue>}:dead      list    cores of dead-lettered jobs, oldest first
    <ns>:{<queue>}:wake      list    a token that wakes one blocked fetcher, after
                                     any job handed off to one ("<core><record>")
    <ns>:{<queue>}:waiting   zset    fetchers blocked on the wake list → until (ms)
    <ns>:{<queue>}:stats     hash    counters: in, out, acked, dead
    <ns>:{<queue>}:jobs      hash    core → the job: options and body, written once
    <ns>:{<queue>}:st        hash    core → state and counters (none while the
                                     job is queued and was never fetched)
    <ns>:{<queue>}:why       hash    core → dead-letter reason or last error
    <ns>:{<queue>}:r:<core>  list    a task's stored result (one element), with a TTL

A job's *core* is the 12 bytes written as 24 hex digits in its id; inside
its queue it is known by these bytes alone (docs/protocol.md has the formats).

A cached service (native protocol) keeps, per request key (a digest of the
request's arguments), three keys under one hash tag, so they share a slot::

    <ns>:s:{<service>:<digest>}:v   string  the cached result (with its TTL)
    <ns>:s:{<service>:<digest>}:r   string  in flight: a computation is queued
                                            or running (expires with its lease)
    <ns>:s:{<service>:<digest>}:w   list    the latest result, for waiting gets

and its requests are jobs of the queue ``svc.<service>``. (DisTcl's own
layout is in :mod:`distq.endpoints.distcl`.)

Actors (see :mod:`distq.endpoints.actor`) keep their mailboxes as queues
named ``actor.<actor id>``, and these namespace-wide keys::

    <ns>:actors:names        hash    name → "<node> <actor id>"
    <ns>:nodes               zset    node id → time of its last beat (ms)
    <ns>:node:<node>         hash    host, pid, started: one live node
    <ns>:node:<node>:actors  set     the ids of the actors it hosts
    <ns>:mon:<actor id>      set     "<node> <actor id> <kind>" of its watchers
    <ns>:reply:<call id>     list    the answer to one call (short-lived)

A job id is ``D-<core>-<queue>``: ``<core>`` is 24 hex digits (milliseconds,
a per-process sequence, a per-process random origin), so ids are unique and
ordered by creation time, and the id alone locates the job and its queue.
The scripts get the core as its 12 bytes.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time

from distq.errors import InvalidArgument

__all__ = [
    "ActorKeys",
    "QueueKeys",
    "ServiceKeys",
    "core_bytes",
    "job_id",
    "mailbox_queue",
    "new_id",
    "new_process_id",
    "parse_id",
    "service_queue",
    "validate_name",
    "validate_queue",
]

#: Longest queue name accepted.
MAX_QUEUE_NAME = 200
#: Braces (the hash tag), whitespace, control characters, and the glob
#: characters of ``SCAN MATCH`` (a pattern naming the queue must match it alone).
_BAD_QUEUE_CHARS = re.compile(r"[{}*?\[\]\\\s\x00-\x1f\x7f]")
_CORE = re.compile(r"[0-9a-f]{24}")


def validate_name(name: str, what: str, bad: re.Pattern[str], rule: str) -> str:
    """Return ``name`` if it is a non-empty string of at most ``MAX_QUEUE_NAME``
    characters with none matching ``bad``; else raise InvalidArgument saying
    ``rule``. Names end up inside keys: this keeps them safe there."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"a {what} must be a non-empty string")
    if len(name) > MAX_QUEUE_NAME or bad.search(name):
        raise InvalidArgument(
            f"bad {what} {name[:40]!r}: at most {MAX_QUEUE_NAME} characters, {rule}"
        )
    return name


def validate_queue(name: str) -> str:
    """Return ``name`` if it can name a queue, else raise InvalidArgument."""
    return validate_name(
        name,
        "queue name",
        _BAD_QUEUE_CHARS,
        "no braces, whitespace, control characters or glob characters (* ? [ ] \\)",
    )


class QueueKeys:
    """The keys of one queue in one namespace."""

    __slots__ = (
        "add_keys",
        "dead",
        "delayed",
        "jobs",
        "leased",
        "name",
        "ready",
        "result_prefix",
        "st",
        "stats",
        "waiting",
        "wake",
        "why",
    )

    def __init__(self, namespace: str, queue: str) -> None:
        base = f"{namespace}:{{{validate_queue(queue)}}}:"
        self.name = queue
        self.ready = base + "ready"
        self.leased = base + "leased"
        self.delayed = base + "delayed"
        self.dead = base + "dead"
        self.wake = base + "wake"
        self.stats = base + "stats"
        self.jobs = base + "jobs"
        self.st = base + "st"
        self.why = base + "why"
        self.waiting = base + "waiting"
        #: The keys of the addjob script, in its order.
        self.add_keys = (
            self.ready,
            self.delayed,
            self.wake,
            self.stats,
            self.jobs,
            self.st,
            self.leased,
            self.waiting,
        )
        self.result_prefix = base + "r:"

    def all(self) -> tuple[str, ...]:
        """The ten queue keys in the order the scripts take them."""
        return (
            self.ready,
            self.leased,
            self.delayed,
            self.dead,
            self.wake,
            self.stats,
            self.jobs,
            self.st,
            self.why,
            self.waiting,
        )

    def result(self, core: str) -> str:
        """The key of the stored result of the job with this core."""
        return self.result_prefix + core


#: Queues whose names start so carry native service requests.
SERVICE_QUEUE_PREFIX = "svc."


def service_queue(service: str) -> str:
    """The queue carrying the requests of a native-protocol service."""
    return validate_queue(SERVICE_QUEUE_PREFIX + service)


class ServiceKeys:
    """The keys of one request key of a native-protocol service."""

    __slots__ = ("inflight", "value", "waitlist")

    def __init__(self, namespace: str, service: str, digest: str) -> None:
        base = f"{namespace}:s:{{{service}:{digest}}}:"
        self.value = base + "v"
        self.inflight = base + "r"
        self.waitlist = base + "w"

    def all(self) -> tuple[str, str, str]:
        """The three keys in the order the scripts take them."""
        return (self.value, self.inflight, self.waitlist)


#: Queues whose names start so are actor mailboxes.
MAILBOX_PREFIX = "actor."


def mailbox_queue(actor: str) -> str:
    """The queue holding the messages of one actor."""
    return validate_queue(MAILBOX_PREFIX + actor)


class ActorKeys:
    """The namespace-wide keys of actors and nodes."""

    __slots__ = ("names", "namespace", "nodes")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.names = f"{namespace}:actors:names"
        self.nodes = f"{namespace}:nodes"

    def node(self, node: str) -> str:
        """A live node's hash."""
        return f"{self.namespace}:node:{node}"

    def node_actors(self, node: str) -> str:
        """The set of actor ids a node hosts."""
        return f"{self.namespace}:node:{node}:actors"

    def watchers(self, actor: str) -> str:
        """The set of watchers (monitors and links) of an actor."""
        return f"{self.namespace}:mon:{actor}"

    def reply(self, call_id: str) -> str:
        """Where the answer to one call is pushed."""
        return f"{self.namespace}:reply:{call_id}"


def core_bytes(core: str) -> bytes:
    """The 12 bytes of a core given as 24 hex digits (as the scripts know it)."""
    return bytes.fromhex(core)


def job_id(core: bytes, queue: str) -> str:
    """The id of the job of ``queue`` whose core the scripts gave as 12 bytes."""
    return f"D-{core.hex()}-{queue}"


def parse_id(job_id: str) -> tuple[str, str]:
    """Split a job id into ``(core, queue)``; raise InvalidArgument if malformed."""
    if (
        not isinstance(job_id, str)
        or len(job_id) < 28
        or not job_id.startswith("D-")
        or job_id[26] != "-"
        or not _CORE.fullmatch(job_id, 2, 26)
    ):
        raise InvalidArgument(f"not a job id: {str(job_id)[:60]!r}")
    return job_id[2:26], job_id[27:]


class _IdSource:
    """Per-process generator of time-ordered unique id cores (fork-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._origin = os.urandom(4).hex()
        self._last_ms = 0
        self._seq = 0

    def next(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                self._seq += 1
                if self._seq > 0xFFFF:  # 65,536 ids in one ms: borrow the next ms
                    ms += 1
                    self._seq = 0
            else:
                self._seq = 0
            self._last_ms = ms
            return f"{ms:012x}{self._seq:04x}{self._origin}"


_ids = _IdSource()


_HOST_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def new_process_id() -> str:
    """A new, short, unique id of a process (a worker, a node):
    ``<host>.<pid>.<random>``, e.g. ``"box.1234.a1b2c3"``."""
    host = _HOST_CHARS.sub("-", socket.gethostname().split(".")[0]).strip("-") or "host"
    return f"{host}.{os.getpid()}.{secrets.token_hex(3)}"


def new_id(queue: str) -> tuple[str, str]:
    """A fresh ``(id, core)`` for a job of ``queue``."""
    core = _ids.next()
    return f"D-{core}-{queue}", core
