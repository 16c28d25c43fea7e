"""Inspection ops: qlen, qpeek, dead letters, show, qstat, jscan, qscan, hello, info."""

from __future__ import annotations

from typing import Any

from distq.connection.ops import Command, Op, ScriptCall, single
from distq.errors import CodecError, InvalidArgument
from distq.queue.job import Job, JobState
from distq.queue.keys import QueueKeys, core_bytes, job_id, parse_id, validate_queue
from distq.queue.ops import FRESH_STATE, QueueContext, split_record

__all__ = [
    "deadletters",
    "durability",
    "durability_warnings",
    "hello",
    "info",
    "jscan",
    "qlen",
    "qpeek",
    "qscan",
    "qstat",
    "show",
]


def qstat(ctx: QueueContext, queue: str) -> Op[dict[str, Any]]:
    """The state of a queue.

    Returns a dict with ``name``; ``len`` (jobs waiting), ``leased``,
    ``delayed`` and ``dead`` (jobs in each state now); ``age`` (seconds the
    oldest waiting job has waited, or ``None``); and the counters since the
    queue was first used: ``jobs_in``, ``jobs_out`` (deliveries), ``acked``,
    ``dead_total``.
    """
    keys = ctx.keys(queue)
    reply = yield from single(ScriptCall(ctx.script("qstat"), keys.all(), ()))
    now_ms, length, leased, delayed, dead, oldest = (int(v) for v in reply[:6])
    stats = {reply[i].decode(): int(reply[i + 1]) for i in range(6, len(reply), 2)}
    return {
        "name": queue,
        "len": length,
        "leased": leased,
        "delayed": delayed,
        "dead": dead,
        "age": None if oldest < 0 else max(0, now_ms - oldest) / 1000,
        "jobs_in": stats.get("in", 0),
        "jobs_out": stats.get("out", 0),
        "acked": stats.get("acked", 0),
        "dead_total": stats.get("dead", 0),
    }


def qlen(ctx: QueueContext, queue: str) -> Op[int]:
    """How many jobs wait in ``queue`` (due delayed jobs and expired leases included)."""
    stat = yield from qstat(ctx, queue)
    return int(stat["len"])


def _peek(ctx: QueueContext, keys: QueueKeys, which: str, count: int) -> Op[list[Job]]:
    if not isinstance(count, int):
        raise InvalidArgument(f"count must be an integer, not {count!r}")
    if count == 0:
        return []
    reply = yield from single(ScriptCall(ctx.script("qpeek"), keys.all(), (count, which)))
    jobs = []
    for i in range(0, len(reply), 6):
        ref = job_id(reply[i], keys.name)
        fmt, data = split_record(reply[i + 1])
        try:
            body = ctx.codec.decode(fmt, data, ref)
        except CodecError:
            body = data  # a peek shows what is there, decodable or not
        reason = reply[i + 5].decode() or None
        jobs.append(Job(ref, keys.name, body, reply[i + 3], reply[i + 4], reply[i + 2], reason))
    return jobs


def qpeek(ctx: QueueContext, queue: str, count: int) -> Op[list[Job]]:
    """Look at up to ``count`` waiting jobs without leasing them.

    A positive ``count`` starts from the oldest; a negative one returns the
    newest first. A body that does not decode is shown as its raw bytes.
    """
    keys = ctx.keys(queue)
    return (yield from _peek(ctx, keys, "ready", count))


def deadletters(ctx: QueueContext, queue: str, count: int = 100) -> Op[list[Job]]:
    """The dead-lettered jobs of ``queue``, oldest first, each with its ``reason``.

    ``enqueue`` gives one another chance; ``deljob`` or ``ackjob`` removes it.
    """
    keys = ctx.keys(queue)
    return (yield from _peek(ctx, keys, "dead", count))


def show(ctx: QueueContext, job_id: str) -> Op[dict[str, Any] | None]:
    """Everything known about a job, or ``None`` if there is no such job.

    Keys: ``id``, ``queue``, ``state``, ``ctime`` (epoch seconds), ``delay``,
    ``retry``, ``ttl`` (seconds left to live, ``None`` if it does not expire),
    ``max_deliveries``, ``deliveries`` (fetches, less the ones released:
    what counts towards ``max_deliveries``), ``nacks``, ``additional_deliveries``,
    ``next_requeue_within`` (seconds until the lease ends, for an active
    job), ``next_awake_within`` (for a delayed job), ``reason`` (for a dead
    one) and ``body``.
    """
    core, queue = parse_id(job_id)
    reply = yield from single(
        ScriptCall(ctx.script("show"), ctx.keys(queue).all(), (core_bytes(core),))
    )
    if not reply:
        return None
    now_ms, record, state, reason, lease, due = reply
    fmt, data = split_record(record)
    _fmt, expires, retry, maxdel = record.partition(b"\n")[0].split()
    fields = (state or FRESH_STATE).split()
    code = fields[0].decode()
    delivered, released, nacks, additional, _failed, delay = map(int, fields[1:])
    try:
        body = ctx.codec.decode(fmt, data, job_id)
    except CodecError:
        body = data
    return {
        "id": job_id,
        "queue": queue,
        "state": JobState.from_code(code).value,
        "ctime": int(core[:12], 16) / 1000,
        "delay": delay / 1000,
        "retry": int(retry) / 1000,
        "ttl": None if code == "x" or not int(expires) else (int(expires) - now_ms) / 1000,
        "max_deliveries": int(maxdel) or None,
        "deliveries": delivered - released,
        "nacks": nacks,
        "additional_deliveries": additional,
        "next_requeue_within": _within(lease, now_ms),
        "next_awake_within": _within(due, now_ms),
        "reason": reason.decode() if code == "x" and reason else None,
        "body": body,
    }


def _within(score: bytes | None, now_ms: int) -> float | None:
    return None if score is None else max(0.0, (float(score) - now_ms) / 1000)


def _scan(match: str, cursor: int, count: int, busyloop: bool) -> Op[tuple[int, list[bytes]]]:
    found: list[bytes] = []
    while True:
        reply = yield from single(Command(("SCAN", cursor, "MATCH", match, "COUNT", count)))
        cursor = int(reply[0])
        found += reply[1]
        if cursor == 0 or not busyloop:
            return cursor, found


def jscan(
    ctx: QueueContext,
    cursor: int = 0,
    *,
    count: int = 100,
    queue: str | None = None,
    state: str | JobState | None = None,
    busyloop: bool = False,
) -> Op[tuple[int, list[str]]]:
    """Iterate over job ids (Disque's JSCAN); returns ``(next_cursor, ids)``.

    Start with cursor 0 and call again with the returned cursor until it is 0
    (``busyloop=True`` does that in one call). ``queue`` and ``state`` filter.

    Raises:
        InvalidArgument: a bad queue name, or a state that is not a ``JobState``.
    """
    code = "" if state is None else _job_state(state).code
    if queue is not None:
        return (yield from _scan_queue(ctx, validate_queue(queue), cursor, count, code, busyloop))
    # Every queue's jobs: one SCAN step over the queues, each of them scanned whole.
    prefix = f"{ctx.namespace}:{{"
    pattern = f"{_glob_escape(ctx.namespace)}:{{*}}:jobs"
    cursor, keys = yield from _scan(pattern, cursor, count, busyloop)
    ids: list[str] = []
    for key in keys:
        name = key.decode()[len(prefix) : -len("}:jobs")]
        ids += (yield from _scan_queue(ctx, name, 0, count, code, True))[1]
    return cursor, ids


def _scan_queue(
    ctx: QueueContext, queue: str, cursor: int, count: int, code: str, busyloop: bool
) -> Op[tuple[int, list[str]]]:
    keys = ctx.keys(queue)
    ids: list[str] = []
    while True:
        call = ScriptCall(ctx.script("jscan"), keys.all(), (cursor, count, code))
        reply = yield from single(call)
        cursor = int(reply[0])
        ids += (job_id(core, queue) for core in reply[1:])
        if cursor == 0 or not busyloop:
            return cursor, ids


def _job_state(state: str | JobState) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        names = ", ".join(repr(s.value) for s in JobState)
        raise InvalidArgument(f"unknown job state {state!r}: use one of {names}") from None


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def qscan(
    ctx: QueueContext,
    cursor: int = 0,
    *,
    count: int = 100,
    busyloop: bool = False,
    minlen: int | None = None,
    maxlen: int | None = None,
) -> Op[tuple[int, list[str]]]:
    """Iterate over the names of known queues (Disque's QSCAN).

    A queue is known once a job was added to it. ``minlen``/``maxlen``
    filter on the number of waiting jobs.
    """
    prefix = f"{ctx.namespace}:{{"
    pattern = f"{_glob_escape(ctx.namespace)}:{{*}}:stats"
    cursor, keys = yield from _scan(pattern, cursor, count, busyloop)
    names = sorted(key.decode()[len(prefix) : -len("}:stats")] for key in keys)
    if (minlen is None and maxlen is None) or not names:
        return cursor, names
    lengths = yield [Command(("LLEN", ctx.keys(name).ready)) for name in names]
    return cursor, [
        name
        for name, length in zip(names, lengths, strict=True)
        if (minlen is None or length >= minlen) and (maxlen is None or length <= maxlen)
    ]


def info(ctx: QueueContext, section: str | None = None) -> Op[dict[str, Any]]:
    """The server's ``INFO`` as a dict (numbers converted)."""
    del ctx
    args = ("INFO", section) if section else ("INFO",)
    return parse_info((yield from single(Command(args))))


def hello(ctx: QueueContext) -> Op[dict[str, Any]]:
    """Who answers (Disque's HELLO): protocol version, node id, server and version."""
    server = yield from info(ctx, "server")
    name = "valkey" if "valkey_version" in server else "redis"
    return {
        "version": 2,  # the storage layout of docs/protocol.md
        "node_id": server.get("run_id"),
        "server": name,
        "server_version": server.get("valkey_version", server.get("redis_version")),
        "namespace": ctx.namespace,
    }


def parse_info(raw: bytes | str) -> dict[str, Any]:
    """Parse the text of ``INFO`` into a flat dict."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        out[key] = _number(value)
    return out


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def durability(ctx: QueueContext) -> Op[dict[str, Any]]:
    """What the server promises about keeping jobs: ``aof`` (bool), ``appendfsync``
    (``None`` when CONFIG is not allowed) and ``maxmemory_policy``."""
    del ctx
    persistence, memory, fsync = yield [
        Command(("INFO", "persistence")),
        Command(("INFO", "memory")),
        Command(("CONFIG", "GET", "appendfsync")),
    ]
    fsync_value = None
    if isinstance(fsync, list) and len(fsync) == 2:  # RESP2: [name, value]
        fsync_value = bytes(fsync[1]).decode()
    elif isinstance(fsync, dict) and fsync:  # RESP3: {name: value}
        fsync_value = bytes(next(iter(fsync.values()))).decode()
    return {
        "aof": parse_info(persistence).get("aof_enabled") == 1,
        "appendfsync": fsync_value,
        "maxmemory_policy": parse_info(memory).get("maxmemory_policy"),
    }


def durability_warnings(state: dict[str, Any]) -> list[str]:
    """Plain warnings about what a server's settings risk (RELIABILITY rule 6)."""
    warnings = []
    if not state["aof"]:
        warnings.append("AOF is off: a server restart loses every job not yet acknowledged")
    elif state["appendfsync"] == "no":
        warnings.append("appendfsync is 'no': a server crash may lose the last seconds of jobs")
    policy = state["maxmemory_policy"]
    if policy and policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy!r}: the server may evict jobs; use 'noeviction'"
        )
    return warnings
