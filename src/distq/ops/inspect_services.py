"""What the server knows of services: for ``distq services``.

A service leaves traces of three kinds, and :func:`services_op` gathers all
of them in a few round trips:

* **servers**: the live workers (presence, :mod:`distq.runtime.control`)
  whose queues include ``svc.<name>`` (a worker serving a native service)
  or ``distcl:<name>`` (a distq server of a DisTcl-protocol service);
* **keys**, counted by ``SCAN``: for the native protocol, the cached values
  ``<ns>:s:{<name>:<digest>}:v`` and the in-flight markers
  ``<ns>:s:{<name>:<digest>}:r`` (and the queue ``svc.<name>``, known once a
  request was added to it); for DisTcl, which does not use the namespace,
  the cached values ``v:<name>:<KEY>`` and the run lists ``r:<name>:<KEY>``
  (and the lists ``q:<name>``, ``p:<name>``, ``w:<name>:<KEY>``);
* **queued requests**: the length of the queue ``svc.<name>`` (native);
  ``LLEN q:<name>`` + ``LLEN p:<name>`` (DisTcl).

A service is listed if any of these shows it. The ``SCAN`` passes (one per
key pattern) run side by side, one pipelined round trip per round, and are
bounded: after ``max_rounds`` rounds the counts are partial and the report
says so (:attr:`ServicesReport.complete`). ``SCAN`` walks the whole
keyspace, so on a server holding millions of keys (jobs included) a listing
costs time on the server: it is an operator's tool, not something to poll.

Tcl's ``distcl::serve`` announces no presence: its services show only by
their keys. A DisTcl key is only recognised as a service's if the name it
carries could name a service (no braces, whitespace, glob characters or
colons), which keeps distq's own namespaced keys out of the DisTcl counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from distq.connection.ops import Command, Op, Stepper, single
from distq.endpoints.app import App
from distq.errors import InvalidArgument
from distq.queue import admin
from distq.queue.keys import SERVICE_QUEUE_PREFIX, service_queue
from distq.queue.ops import QueueContext
from distq.runtime.control import workers_op

__all__ = [
    "DISTCL_PRESENCE_PREFIX",
    "ServiceStat",
    "ServicesReport",
    "list_services",
    "services_op",
]

Protocol = Literal["native", "distcl"]

#: Presence queues of a DisTcl-protocol server start so (``distcl:<service>``).
DISTCL_PRESENCE_PREFIX = "distcl:"
#: Keys examined per SCAN round trip (a hint to the server).
SCAN_COUNT = 1000
#: The most SCAN rounds of one listing: the bound of every SCAN loop.
MAX_ROUNDS = 10_000

#: What a service name may be (see ``validate_service``): no glob characters,
#: braces, whitespace, control characters or colons.
_NAME = re.compile(r"[^{}*?\[\]\\\s\x00-\x1f\x7f:]{1,200}")


@dataclass(frozen=True, slots=True)
class ServiceStat:
    """One service under one protocol, as the server sees it now.

    Attributes:
        name: the service's name.
        protocol: ``"native"`` or ``"distcl"``.
        servers: ids of the live workers serving it, sorted.
        cached: cached values (one per request key).
        inflight: computations in flight: native in-flight markers (one per
            request queued or running), or DisTcl run lists.
        queued: requests waiting for a server.
    """

    name: str
    protocol: Protocol
    servers: tuple[str, ...] = ()
    cached: int = 0
    inflight: int = 0
    queued: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "protocol": self.protocol,
            "servers": list(self.servers),
            "cached": self.cached,
            "inflight": self.inflight,
            "queued": self.queued,
        }


@dataclass(frozen=True, slots=True)
class ServicesReport:
    """Every known service (sorted by name, then protocol), and how complete the count is.

    Attributes:
        services: one :class:`ServiceStat` per service and protocol.
        complete: False when a SCAN stopped at its bound (counts are partial
            and services may be missing).
        rounds: SCAN round trips made.
    """

    services: list[ServiceStat] = field(default_factory=list)
    complete: bool = True
    rounds: int = 0


# SCAN ------------------------------------------------------------------------------


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a ``SCAN MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def scan_op(
    pattern: str, *, count: int = SCAN_COUNT, max_rounds: int = MAX_ROUNDS
) -> Op[tuple[list[str], bool, int]]:
    """Every key matching ``pattern``: ``(keys, complete, rounds)``.

    A full SCAN iteration, stopped after ``max_rounds`` round trips (then
    ``complete`` is False). A key may be returned twice (SCAN's promise is
    at least once for keys present throughout), so duplicates are dropped.
    """
    if not isinstance(count, int) or count < 1:
        raise InvalidArgument(f"count must be a positive integer, not {count!r}")
    if not isinstance(max_rounds, int) or max_rounds < 1:
        raise InvalidArgument(f"max_rounds must be a positive integer, not {max_rounds!r}")
    found: dict[str, None] = {}
    cursor, rounds = 0, 0
    while rounds < max_rounds:
        reply = yield from single(Command(("SCAN", cursor, "MATCH", pattern, "COUNT", count)))
        rounds += 1
        cursor = int(reply[0])
        for key in reply[1]:
            found[bytes(key).decode(errors="replace")] = None
        if cursor == 0:
            return list(found), True, rounds
    return list(found), False, rounds


def together(ops: Sequence[Op[Any]]) -> Op[list[Any]]:
    """Run ``ops`` side by side: each round of all of them is one round trip.

    An error reply ends the whole op (raised by the driver into it).
    """
    stepper: Stepper[Any] = Stepper(ops)
    while not stepper.done:
        replies = yield stepper.requests()
        stepper.feed(replies)
    return [stepper.outcome(index) for index in range(len(ops))]


# Classifying keys --------------------------------------------------------------------


def _native_patterns(namespace: str) -> tuple[str, str]:
    ns = _glob_escape(namespace)
    # <ns>:s:{<name>:<digest>}:v|r|w, and the stats hash of each queue svc.<name>.
    return f"{ns}:s:{{*}}:?", f"{ns}:{{{_glob_escape(SERVICE_QUEUE_PREFIX)}*}}:stats"


#: DisTcl's keys (not namespaced): v:S:KEY, r:S:KEY, w:S:KEY, q:S, p:S.
DISTCL_PATTERN = "[vrwqp]:*"


@dataclass(slots=True)
class _Tally:
    names: set[str] = field(default_factory=set)
    cached: Counter[str] = field(default_factory=Counter)
    inflight: Counter[str] = field(default_factory=Counter)


def _native_tally(namespace: str, keys: list[str], stats: list[str]) -> _Tally:
    tally = _Tally()
    prefix = f"{namespace}:s:{{"
    for key in keys:
        if not key.startswith(prefix) or len(key) < len(prefix) + 4 or key[-3:-1] != "}:":
            continue
        name, colon, _digest = key[len(prefix) : -3].rpartition(":")
        if not colon or not _NAME.fullmatch(name):
            continue
        tally.names.add(name)
        if key[-1] == "v":
            tally.cached[name] += 1
        elif key[-1] == "r":
            tally.inflight[name] += 1
    queue_prefix = f"{namespace}:{{{SERVICE_QUEUE_PREFIX}"
    for key in stats:
        if key.startswith(queue_prefix) and key.endswith("}:stats"):
            name = key[len(queue_prefix) : -len("}:stats")]
            if _NAME.fullmatch(name):
                tally.names.add(name)
    return tally


def _distcl_tally(keys: list[str]) -> _Tally:
    tally = _Tally()
    for key in keys:
        kind, rest = key[:1], key[2:]
        if kind in "qp":
            if _NAME.fullmatch(rest):
                tally.names.add(rest)
            continue
        name, colon, _request = rest.partition(":")
        if not colon or not _NAME.fullmatch(name):
            continue
        tally.names.add(name)
        if kind == "v":
            tally.cached[name] += 1
        elif kind == "r":
            tally.inflight[name] += 1
    return tally


def _servers(workers: list[dict[str, Any]]) -> dict[tuple[str, Protocol], list[str]]:
    serving: dict[tuple[str, Protocol], list[str]] = {}
    for worker in workers:
        for queue in worker.get("queues", ()):
            if queue.startswith(SERVICE_QUEUE_PREFIX):
                key: tuple[str, Protocol] = (queue[len(SERVICE_QUEUE_PREFIX) :], "native")
            elif queue.startswith(DISTCL_PRESENCE_PREFIX):
                key = (queue[len(DISTCL_PRESENCE_PREFIX) :], "distcl")
            else:
                continue
            if _NAME.fullmatch(key[0]):
                serving.setdefault(key, []).append(str(worker["id"]))
    return serving


# The op ------------------------------------------------------------------------------


def services_op(
    ctx: QueueContext,
    protocol: Protocol | None = None,
    *,
    count: int = SCAN_COUNT,
    max_rounds: int = MAX_ROUNDS,
) -> Op[ServicesReport]:
    """Every known service of ``protocol`` (both when ``None``), with its counts.

    Round trips: one for presence, the SCAN rounds (the passes side by side),
    one for the queue lengths.
    """
    if protocol not in (None, "native", "distcl"):
        raise InvalidArgument(f"unknown protocol {protocol!r}: use 'native' or 'distcl'")
    workers = yield from workers_op(ctx.namespace)
    serving = _servers(workers)
    want_native = protocol in (None, "native")
    want_distcl = protocol in (None, "distcl")
    patterns = [
        *(_native_patterns(ctx.namespace) if want_native else ()),
        *([DISTCL_PATTERN] if want_distcl else []),
    ]
    scans = yield from together([scan_op(p, count=count, max_rounds=max_rounds) for p in patterns])
    complete = all(done for _, done, _ in scans)
    rounds = max((n for _, _, n in scans), default=0)
    tallies: dict[Protocol, _Tally] = {}
    if want_native:
        tallies["native"] = _native_tally(ctx.namespace, scans[0][0], scans[1][0])
    if want_distcl:
        tallies["distcl"] = _distcl_tally(scans[-1][0])
    for name, kind in serving:
        if kind in tallies:
            tallies[kind].names.add(name)

    known = sorted(
        ((name, kind) for kind, tally in tallies.items() for name in tally.names),
        key=lambda item: (item[0], item[1]),
    )
    lengths = yield from together([_queued_op(ctx, name, kind) for name, kind in known])
    services = [
        ServiceStat(
            name=name,
            protocol=kind,
            servers=tuple(sorted(serving.get((name, kind), []))),
            cached=tallies[kind].cached[name],
            inflight=tallies[kind].inflight[name],
            queued=queued,
        )
        for (name, kind), queued in zip(known, lengths, strict=True)
    ]
    return ServicesReport(services, complete, rounds)


def _queued_op(ctx: QueueContext, name: str, protocol: Protocol) -> Op[int]:
    if protocol == "native":
        return (yield from admin.qlen(ctx, service_queue(name)))
    lengths = yield [Command(("LLEN", f"q:{name}")), Command(("LLEN", f"p:{name}"))]
    return int(lengths[0]) + int(lengths[1])


def list_services(
    app: App,
    protocol: Protocol | None = None,
    *,
    count: int = SCAN_COUNT,
    max_rounds: int = MAX_ROUNDS,
) -> ServicesReport:
    """:func:`services_op` run on the app's blocking client, in the app's namespace."""
    return app.client.run(services_op(app.context, protocol, count=count, max_rounds=max_rounds))
