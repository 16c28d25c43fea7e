"""The Disque command set as ops: the logic shared by every client kind.

Each public function here takes a :class:`QueueContext` and returns an op
(see :mod:`distq.connection.ops`); :mod:`distq.queue.client` binds them to the
sync client, the async client and pipelines. Durations are seconds (``int``,
``float`` or ``timedelta``); the scripts get milliseconds and take the time
from the server.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from distq.codec import signing
from distq.codec.body import BodyCodec
from distq.connection.ops import Command, Op, ScriptCall, Step, single
from distq.connection.scripts import Script, load_scripts
from distq.errors import CodecError, InvalidArgument, NotReplicated, PayloadTooLarge
from distq.queue.job import Job
from distq.queue.keys import QueueKeys, core_bytes, job_id, new_id, parse_id

__all__ = ["DEFAULT_RETRY_S", "DEFAULT_TTL_S", "QueueContext"]

#: Default lease (Disque's RETRY): 5 minutes.
DEFAULT_RETRY_S = 300.0
#: Default time to live (Disque's TTL): 1 day.
DEFAULT_TTL_S = 86400.0
#: Default bound on one body: 16 MiB.
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
#: Jobs per script call in bulk adds; the calls of one batch share a round trip.
ADD_CHUNK = 500
#: Longest single blocking wait; a longer getjob timeout is sliced.
MAX_WAIT_SLICE_S = 2.0

#: Length of a job's core as the scripts know it (wake tokens are shorter,
#: jobs handed off on a wake list longer).
_CORE_BYTES = 12

Duration = float | int | timedelta
JobRef = str | Job

_SCRIPTS = load_scripts("distq.queue")

#: Where the queue layer logs (refused stale acks).
log = logging.getLogger("distq.queue")


@dataclass(frozen=True, slots=True)
class QueueContext:
    """What every queue op needs: namespace, codec, scripts and limits."""

    namespace: str = "distq"
    codec: BodyCodec = field(default_factory=BodyCodec)
    max_payload: int = DEFAULT_MAX_PAYLOAD
    scripts: dict[str, Script] | None = None
    #: Longest single blocking command; kept below the connection's socket timeout.
    wait_slice_s: float = MAX_WAIT_SLICE_S
    #: The cluster secret, and whether task calls and service requests are
    #: signed with it too (actor messages always are when there is a secret).
    secret: bytes | None = None
    sign_all: bool = False

    def seal(self, context: str, value: Any) -> Any:
        """``value`` as a job body: signed bytes when ``sign_all``, else as is."""
        if self.sign_all and self.secret is not None:
            return signing.seal(self.codec, self.secret, context, value)
        return value

    def script(self, name: str) -> Script:
        """The loaded script ``name``."""
        return (self.scripts or _SCRIPTS)[name]

    def keys(self, queue: str) -> QueueKeys:
        """The keys of ``queue``."""
        return queue_keys(self.namespace, queue)


@functools.lru_cache(maxsize=1024)
def queue_keys(namespace: str, queue: str) -> QueueKeys:
    """The keys of ``queue`` in ``namespace`` (made once: producers name few queues)."""
    return QueueKeys(namespace, queue)


def seconds_to_ms(value: Duration, what: str) -> int:
    """Milliseconds of a non-negative duration given in seconds."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not isinstance(seconds, int | float) or seconds < 0:
        raise InvalidArgument(f"{what} must be a non-negative number of seconds, not {value!r}")
    return round(seconds * 1000)


# Adding ---------------------------------------------------------------------


def addjob(
    ctx: QueueContext,
    queue: str,
    body: Any,
    *,
    delay: Duration = 0,
    retry: Duration = DEFAULT_RETRY_S,
    ttl: Duration = DEFAULT_TTL_S,
    maxlen: int | None = None,
    max_deliveries: int | None = None,
    replicate: int | None = None,
    timeout: Duration = 5.0,
    async_: bool = False,
) -> Op[str]:
    """Add a job to ``queue`` and return its id.

    Args:
        queue: the queue's name.
        body: ``bytes``/``str`` (stored as given) or a value for the codec.
        delay: seconds before the job can be fetched.
        retry: the lease: seconds after a fetch before an unacknowledged job
            is queued again. ``0`` makes the job at-most-once.
        ttl: seconds the job lives at most, whatever its state; more than
            0 and more than ``delay``.
        maxlen: refuse the job with ``QueueFull`` if the queue already holds
            this many jobs.
        max_deliveries: after this many deliveries a nacked job, or one whose
            lease expired, goes to the dead letters (``None``: no limit).
        replicate: wait until this many replicas hold the job (Redis ``WAIT``).
        timeout: seconds to wait for ``replicate`` replicas.
        async_: return at once, letting replication happen in the background.

    Raises:
        InvalidArgument: a bad queue name, a negative duration, ``ttl`` of
            0, or ``delay`` not shorter than ``ttl`` (all as Disque).
        QueueFull: ``maxlen`` would be exceeded.
        PayloadTooLarge: the encoded body is over ``max_payload``.
        NotReplicated: fewer than ``replicate`` replicas confirmed in time.
    """
    keys = ctx.keys(queue)
    new, job_args = _job_args(ctx, queue, body)
    yield [_add_call(ctx, keys, _add_options(delay, retry, ttl, maxlen, max_deliveries), job_args)]
    if replicate and not async_:
        yield from _wait_replicas(replicate, seconds_to_ms(timeout, "timeout"))
    return new


def _job_args(ctx: QueueContext, queue: str, body: Any) -> tuple[str, list[Any]]:
    """A new job's id, and its arguments to the addjob script: core, format, body."""
    fmt, data = ctx.codec.encode(body)
    if len(data) > ctx.max_payload:
        raise PayloadTooLarge(
            f"body of {len(data)} bytes is over the limit of {ctx.max_payload} (max_payload)"
        )
    new, core = new_id(queue)
    return new, [bytes.fromhex(core), fmt, data]  # a Format is the str of its letter


def addjobs(
    ctx: QueueContext,
    queue: str,
    bodies: Iterable[Any],
    *,
    delay: Duration = 0,
    retry: Duration = DEFAULT_RETRY_S,
    ttl: Duration = DEFAULT_TTL_S,
    maxlen: int | None = None,
    max_deliveries: int | None = None,
    replicate: int | None = None,
    timeout: Duration = 5.0,
    async_: bool = False,
) -> Op[list[str]]:
    """Add many jobs to ``queue`` in one round trip; return their ids in order.

    Takes the options of :func:`addjob`, applied to every job. With ``maxlen``
    the jobs are added all together or not at all.
    """
    keys = ctx.keys(queue)
    options = _add_options(delay, retry, ttl, maxlen, max_deliveries)
    ids: list[str] = []
    step: Step = []
    chunk_args: list[Any] = []
    for body in bodies:
        new, job_args = _job_args(ctx, queue, body)
        ids.append(new)
        chunk_args += job_args
        if len(chunk_args) == 3 * ADD_CHUNK:
            step.append(_add_call(ctx, keys, options, chunk_args))
            chunk_args = []
    if chunk_args:
        step.append(_add_call(ctx, keys, options, chunk_args))
    if not step:
        return ids
    if maxlen and len(step) > 1:
        raise InvalidArgument(f"maxlen applies to at most {ADD_CHUNK} jobs added at once")
    yield step
    if replicate and not async_:
        yield from _wait_replicas(replicate, seconds_to_ms(timeout, "timeout"))
    return ids


@functools.lru_cache(maxsize=256)
def _add_options(
    delay: Duration, retry: Duration, ttl: Duration, maxlen: int | None, max_deliveries: int | None
) -> tuple[int, int, int, int, int]:
    """The checked options of addjob, as the script takes them (most calls
    repeat the same few, hence the cache)."""
    ttl_ms = seconds_to_ms(ttl, "ttl")
    delay_ms = seconds_to_ms(delay, "delay")
    if ttl_ms <= 0:
        raise InvalidArgument(f"ttl must be at least 1 ms, not {ttl!r}")
    if delay_ms >= ttl_ms:
        raise InvalidArgument(
            f"delay ({delay!r}) must be shorter than ttl ({ttl!r}): the job would expire first"
        )
    return (
        maxlen or 0,
        seconds_to_ms(retry, "retry"),
        ttl_ms,
        delay_ms,
        _max_deliveries(max_deliveries),
    )


def _max_deliveries(value: int | None) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"max_deliveries must be a positive integer or None, not {value!r}")
    return value


def _add_call(
    ctx: QueueContext, keys: QueueKeys, options: tuple[int, ...], job_args: list[Any]
) -> ScriptCall:
    return ScriptCall(
        ctx.script("addjob"),
        keys.add_keys,
        (*options, *job_args),
    )


def _wait_replicas(replicas: int, timeout_ms: int) -> Op[None]:
    confirmed = yield from single(Command(("WAIT", replicas, timeout_ms)))
    if int(confirmed) < replicas:
        raise NotReplicated(f"{confirmed} of {replicas} replicas confirmed within {timeout_ms} ms")


# Fetching -------------------------------------------------------------------


def getjob(
    ctx: QueueContext,
    *queues: str,
    count: int = 1,
    timeout: Duration | None = None,
    nohang: bool = False,
    withcounters: bool = False,
) -> Op[list[Job]]:
    """Fetch and lease up to ``count`` jobs, from the first queues first.

    Blocks until a job is there, for at most ``timeout`` seconds (``None``:
    no limit); ``nohang=True`` never blocks. Returns ``[]`` when nothing came.
    Each job is leased for its retry time: ``ackjob`` it when done. The
    counters (``nacks``, ``additional_deliveries``) are always filled in;
    ``withcounters`` is accepted for Disque compatibility.

    Raises:
        CodecError: a fetched body could not be decoded. That job was moved to
            the dead letters with the reason; the others of the batch were put
            back at the head of their queues, uncounted.
    """
    del withcounters  # counters always come with the job
    if not queues:
        raise InvalidArgument("getjob needs at least one queue")
    if not isinstance(count, int) or count < 1:
        raise InvalidArgument(f"count must be a positive integer, not {count!r}")
    keysets = [ctx.keys(q) for q in queues]
    all_keys = [key for keys in keysets for key in keys.all()]
    wait_keys = [keys.wake for keys in keysets]
    fetcher = secrets.token_bytes(8)
    deadline = (
        None if timeout is None else time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000
    )
    while True:
        remaining = ctx.wait_slice_s if deadline is None else deadline - time.monotonic()
        block_ms = 0 if nohang else round(max(0.0, min(remaining, ctx.wait_slice_s)) * 1000)
        reply = yield from single(
            ScriptCall(ctx.script("getjob"), all_keys, (count, fetcher, block_ms))
        )
        if len(reply) > 1:
            return (yield from _decode_jobs(ctx, queues, reply))
        if block_ms <= 0:
            return []
        slice_s = block_ms / 1000
        next_due_ms = int(reply[0])
        if next_due_ms >= 0:
            slice_s = min(slice_s, max(next_due_ms, 1) / 1000)
        [popped] = yield [Command(("BLPOP", *wait_keys, round(slice_s, 3)))]
        if popped is not None and len(popped[1]) > _CORE_BYTES:
            # A job handed off by addjob: already leased to us, in its first delivery.
            key, handed = popped
            index = wait_keys.index(key.decode()) + 1
            handoff = [-1, index, handed[:_CORE_BYTES], handed[_CORE_BYTES:], 1, 0, 0]
            return (yield from _decode_jobs(ctx, queues, handoff))


def split_record(record: bytes) -> tuple[str, bytes]:
    """A stored job record's body format and body."""
    head, _, body = record.partition(b"\n")
    return head[: head.index(b" ")].decode(), body


#: The state entry of a job queued and never fetched (none is stored for it).
FRESH_STATE = b"q 0 0 0 0 0 0"


def state_requests(keys: QueueKeys, core: str) -> list[Command]:
    """What tells a job's state without a script: its state entry, whether it
    exists, and its reason (read back with :func:`state_letter`)."""
    raw = core_bytes(core)
    return [
        Command(("HGET", keys.st, raw)),
        Command(("HEXISTS", keys.jobs, raw)),
        Command(("HGET", keys.why, raw)),
    ]


def state_letter(state: bytes | None, exists: int) -> str | None:
    """The state letter from the first two replies of :func:`state_requests`
    (``None``: no such job)."""
    if state is not None:
        return state[:1].decode()
    return "q" if exists else None


def _decode_jobs(ctx: QueueContext, queues: Sequence[str], reply: Sequence[Any]) -> Op[list[Job]]:
    jobs: list[Job] = []
    bad: list[tuple[str, int, CodecError]] = []
    decode = ctx.codec.decode
    for i in range(1, len(reply), 6):
        queue = queues[reply[i] - 1]
        new = job_id(reply[i + 1], queue)
        delivery = reply[i + 3]
        fmt, data = split_record(reply[i + 2])
        try:
            body = decode(fmt, data, new)
        except CodecError as exc:
            bad.append((new, delivery, exc))
            continue
        jobs.append(Job(new, queue, body, reply[i + 4], reply[i + 5], delivery))
    if not bad:
        return jobs
    step: Step = []
    for ref, delivery, error in bad:
        step += per_queue(ctx, "deadletter", [(ref, delivery)], (f"undecodable body: {error}",))
    step += per_queue(ctx, "release", [(job.id, job.delivery) for job in jobs])
    yield step
    raise bad[0][2]


# Acting on jobs -------------------------------------------------------------


def _ref(job: JobRef) -> tuple[str, int | None]:
    if isinstance(job, Job):
        return job.id, job.delivery
    return job, None


def per_queue(
    ctx: QueueContext,
    script: str,
    jobs: Iterable[tuple[str, int | None]],
    head: tuple[Any, ...] = (),
) -> Step:
    """One call of a multi-job script per queue, all in one step."""
    groups: dict[str, list[Any]] = {}
    for ref, token in jobs:
        core, queue = parse_id(ref)
        groups.setdefault(queue, []).extend((core_bytes(core), "" if token is None else token))
    return [
        ScriptCall(ctx.script(script), ctx.keys(queue).all(), (*head, *args))
        for queue, args in groups.items()
    ]


def _count(
    ctx: QueueContext, script: str, jobs: Sequence[JobRef], head: tuple[Any, ...] = ()
) -> Op[int]:
    step = per_queue(ctx, script, map(_ref, jobs), head)
    if not step:
        return 0
    replies = yield step
    return sum(int(r) for r in replies)


def _ack(ctx: QueueContext, jobs: Sequence[JobRef]) -> Op[int]:
    step = per_queue(ctx, "ackjob", map(_ref, jobs))
    if not step:
        return 0
    replies = yield step
    acked = sum(int(reply[0]) for reply in replies)
    stale = sum(int(reply[1]) for reply in replies)
    if stale:
        log.warning("refused %d stale ack(s): the job was delivered again since", stale)
    return acked


def ackjob(ctx: QueueContext, *jobs: JobRef) -> Op[int]:
    """Acknowledge jobs as done (they are deleted); return how many were known.

    Pass ``Job`` objects rather than ids to fence the ack: an ack from a
    delivery that has since been superseded (its lease expired and another
    consumer got the job) is refused, not counted, and logged as a WARNING
    on the ``distq.queue`` logger. An ack from the latest delivery is
    accepted even after its lease expired, as long as nobody fetched the job
    since: the work was done, so the job is done.
    """
    return (yield from _ack(ctx, jobs))


def fastack(ctx: QueueContext, *jobs: JobRef) -> Op[int]:
    """Acknowledge jobs (Disque's best-effort ack; on one primary the same as ``ackjob``)."""
    return (yield from _ack(ctx, jobs))


def nack(ctx: QueueContext, *jobs: JobRef, reason: str = "nacked") -> Op[int]:
    """Put leased jobs back at the head of their queues at once, counting a nack.

    A job that has had ``max_deliveries`` deliveries goes to the dead letters
    instead, with ``reason`` (and the delivery count) kept. Returns how many
    active jobs were nacked.
    """
    return (yield from _count(ctx, "nack", jobs, (reason,)))


def release(ctx: QueueContext, *jobs: JobRef) -> Op[int]:
    """Hand leased jobs back unprocessed, as if never delivered.

    The fetch is not counted as a delivery (``show``'s ``deliveries``,
    ``max_deliveries``), but its delivery number is never reused: the next
    fetch gets a higher one, so the released ``Job`` stays fenced off.
    """
    return (yield from _count(ctx, "release", jobs))


def deadletter(ctx: QueueContext, *jobs: JobRef, reason: str) -> Op[int]:
    """Move jobs to their queues' dead letters with ``reason``; return how many."""
    return (yield from _count(ctx, "deadletter", jobs, (reason,)))


def enqueue(ctx: QueueContext, *jobs: JobRef) -> Op[int]:
    """Queue jobs now, whatever their state (delayed, active, idle, dead).

    A dead job gets a fresh start: its dead-letter reason, its count of
    failed attempts and any failure stored as its result are cleared.
    """
    refs = [_ref(job) for job in jobs]
    step = per_queue(ctx, "enqueue", refs)
    if not step:
        return 0
    results = [Command(("DEL", ctx.keys(q).result(c))) for c, q in (parse_id(r) for r, _ in refs)]
    replies = yield [*step, *results]
    return sum(int(r) for r in replies[: len(step)])


def dequeue(ctx: QueueContext, *jobs: JobRef) -> Op[int]:
    """Take queued jobs out of their queue (they stay stored, idle)."""
    return (yield from _count(ctx, "dequeue", jobs))


def deljob(ctx: QueueContext, *jobs: JobRef) -> Op[int]:
    """Delete jobs wherever they are; return how many existed."""
    return (yield from _count(ctx, "deljob", jobs))


def working(ctx: QueueContext, job: JobRef) -> Op[float]:
    """Extend the lease of a job being worked on; return the seconds granted.

    Raises:
        JobNotFound: no such job.
        LeaseLost: the job is not active (or, given a ``Job``, not under its delivery).
    """
    ref, token = _ref(job)
    core, queue = parse_id(ref)
    call = ScriptCall(
        ctx.script("working"),
        ctx.keys(queue).all(),
        (core_bytes(core), "" if token is None else token, ref),
    )
    return int((yield from single(call))) / 1000
