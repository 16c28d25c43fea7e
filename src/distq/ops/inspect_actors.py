"""What the server knows of actors and nodes: for ``distq actors``.

Everything is read from the keys of :class:`~distq.queue.keys.ActorKeys`,
in three round trips (plus one per extra ``HSCAN`` page of the names):

1. the server's clock (``TIME``), the nodes (``<ns>:nodes``: node id → the
   time it counts as dead unless it beats again, in ms) and the first page
   of the names (``<ns>:actors:names``: name → ``"<node> <actor id>"``);
2. the further pages of the names, if any;
3. each node's hash (``<ns>:node:<id>``: host, pid, beat) and the size of
   its set of actors (``<ns>:node:<id>:actors``), and the lengths of each
   named actor's mailbox (the queue ``actor.<actor id>``): its ready list,
   its leased set and its dead letters.

Only plain reads: unlike ``qstat``, the listing does not requeue expired
leases, so looking at the mailbox of a dead node's actor leaves its held
messages where they are, for the next incarnation to take back in order.

A node is *alive* while its deadline is in the future by the server's
clock. A dead node stays listed (and its names resolve to nothing) until a
live node's heartbeat reaps it, or a ``whereis``/``register`` of one of its
names releases that name. Every loop is bounded: at most ``max_nodes`` nodes
and ``max_names`` names are read; past that the report says it is partial
(:attr:`ActorsReport.complete`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from distq.connection.ops import Command, Op, Stepper
from distq.errors import InvalidArgument
from distq.queue.client import Client
from distq.queue.keys import ActorKeys, mailbox_queue
from distq.queue.ops import QueueContext

__all__ = [
    "MAX_NAMES",
    "MAX_NODES",
    "ActorsReport",
    "NamedActor",
    "NodeInfo",
    "actors_op",
    "list_actors",
]

#: The most names one listing reads.
MAX_NAMES = 10_000
#: The most nodes one listing reads.
MAX_NODES = 1_000
#: Fields asked for per HSCAN round trip (a hint to the server).
HSCAN_COUNT = 1_000


@dataclass(frozen=True, slots=True)
class NamedActor:
    """A registered name and the actor it points to.

    Attributes:
        name: the name.
        actor: the actor's id (its mailbox is the queue ``actor.<id>``).
        node: the node the actor lives on.
        alive: whether that node is alive (else the name is stale: it is
            released at the next ``whereis``, ``register`` or reap).
        mailbox: messages waiting in the mailbox.
        leased: messages fetched by the actor and not yet acknowledged
            (those of a dead node's actor included, until taken back).
        dead: dead letters of the mailbox (refused or poison messages).
    """

    name: str
    actor: str
    node: str
    alive: bool
    mailbox: int = 0
    leased: int = 0
    dead: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "name": self.name,
            "actor": self.actor,
            "node": self.node,
            "alive": self.alive,
            "mailbox": self.mailbox,
            "leased": self.leased,
            "dead": self.dead,
        }


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node known to the server.

    Attributes:
        id: the node's id.
        host: the machine it runs on (None once its hash expired).
        pid: its process id (None once its hash expired).
        actors: how many actors it hosts (named and unnamed).
        alive: whether it beat recently enough, by the server's clock.
        age: seconds since its last beat (None if unknown).
    """

    id: str
    host: str | None
    pid: int | None
    actors: int
    alive: bool
    age: float | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "actors": self.actors,
            "alive": self.alive,
            "age": self.age,
        }


@dataclass(frozen=True, slots=True)
class ActorsReport:
    """The named actors (sorted by name) and the nodes (sorted by id).

    Attributes:
        names: one :class:`NamedActor` per registered name.
        nodes: one :class:`NodeInfo` per node in ``<ns>:nodes``.
        complete: False when a bound cut the listing short.
    """

    names: list[NamedActor] = field(default_factory=list)
    nodes: list[NodeInfo] = field(default_factory=list)
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"actors": […], "nodes": […], "complete": …}``."""
        return {
            "actors": [named.as_dict() for named in self.names],
            "nodes": [node.as_dict() for node in self.nodes],
            "complete": self.complete,
        }


def _text(value: Any) -> str:
    return bytes(value).decode(errors="replace") if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> list[tuple[str, str]]:
    return [(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


def _together(ops: Sequence[Op[Any]]) -> Op[list[Any]]:
    """Run ``ops`` side by side, each round of all of them one round trip."""
    stepper: Stepper[Any] = Stepper(ops)
    while not stepper.done:
        replies = yield stepper.requests()
        stepper.feed(replies)
    return [stepper.outcome(index) for index in range(len(ops))]


def _node_op(keys: ActorKeys, node: str) -> Op[tuple[dict[str, str], int]]:
    replies = yield [
        Command(("HGETALL", keys.node(node))),
        Command(("SCARD", keys.node_actors(node))),
    ]
    raw = replies[0]
    fields = (
        {_text(k): _text(v) for k, v in raw.items()} if isinstance(raw, dict) else dict(_pairs(raw))
    )
    return fields, int(replies[1])


def _mailbox_op(ctx: QueueContext, actor: str) -> Op[tuple[int, int, int]]:
    """``(waiting, leased, dead)`` of an actor's mailbox, by plain reads."""
    keys = ctx.keys(mailbox_queue(actor))
    replies = yield [
        Command(("LLEN", keys.ready)),
        Command(("ZCARD", keys.leased)),
        Command(("LLEN", keys.dead)),
    ]
    return int(replies[0]), int(replies[1]), int(replies[2])


def _names_op(
    keys: ActorKeys, first: Sequence[Any], max_names: int
) -> Op[tuple[dict[str, str], bool]]:
    """Every name, from the first HSCAN page on (bounded by ``max_names``)."""
    names: dict[str, str] = {}
    page = first
    while True:
        names.update(_pairs(page[1]))
        cursor = int(page[0])
        if cursor == 0:
            return names, len(names) <= max_names
        if len(names) >= max_names:
            return names, False
        replies = yield [Command(("HSCAN", keys.names, cursor, "COUNT", HSCAN_COUNT))]
        page = replies[0]


def actors_op(
    ctx: QueueContext, *, max_names: int = MAX_NAMES, max_nodes: int = MAX_NODES
) -> Op[ActorsReport]:
    """The named actors and the nodes of ``ctx``'s namespace (see the module doc)."""
    for what, bound in (("max_names", max_names), ("max_nodes", max_nodes)):
        if not isinstance(bound, int) or bound < 1:
            raise InvalidArgument(f"{what} must be a positive integer, not {bound!r}")
    keys = ActorKeys(ctx.namespace)
    clock, zrange, first = yield [
        Command(("TIME",)),
        Command(("ZRANGE", keys.nodes, 0, max_nodes, "WITHSCORES")),
        Command(("HSCAN", keys.names, 0, "COUNT", HSCAN_COUNT)),
    ]
    now_ms = int(clock[0]) * 1000 + int(clock[1]) // 1000
    deadlines = _deadlines(zrange)
    complete = len(deadlines) <= max_nodes
    deadlines = dict(list(deadlines.items())[:max_nodes])
    names, names_complete = yield from _names_op(keys, first, max_names)
    chosen = sorted(names.items())[:max_names]
    refs = [(name, *_split(value)) for name, value in chosen]

    node_ids = sorted(deadlines)
    results = yield from _together(
        [
            *(_node_op(keys, node) for node in node_ids),
            *(_mailbox_op(ctx, actor) for _, _, actor in refs),
        ]
    )
    nodes = [
        _node_info(node, fields, count, deadlines[node] >= now_ms, now_ms)
        for node, (fields, count) in zip(node_ids, results[: len(node_ids)], strict=True)
    ]
    stats = results[len(node_ids) :]
    named = [
        NamedActor(
            name=name,
            actor=actor,
            node=node,
            alive=deadlines.get(node, -1) >= now_ms,
            mailbox=ready,
            leased=leased,
            dead=dead,
        )
        for (name, node, actor), (ready, leased, dead) in zip(refs, stats, strict=True)
    ]
    return ActorsReport(named, nodes, complete and names_complete)


def _deadlines(zrange: Any) -> dict[str, float]:
    """``{node: deadline ms}`` from a ZRANGE WITHSCORES reply (RESP2 or RESP3)."""
    if zrange and isinstance(zrange[0], list | tuple):
        return {_text(member): float(score) for member, score in zrange}
    return {member: float(score) for member, score in _pairs(zrange)}


def _split(value: str) -> tuple[str, str]:
    node, _, actor = value.partition(" ")
    return node, actor


def _node_info(node: str, fields: dict[str, str], count: int, alive: bool, now_ms: int) -> NodeInfo:
    pid = fields.get("pid")
    beat = fields.get("beat")
    return NodeInfo(
        id=node,
        host=fields.get("host"),
        pid=int(pid) if pid and pid.isdigit() else None,
        actors=count,
        alive=alive,
        age=max(0, now_ms - int(beat)) / 1000 if beat and beat.isdigit() else None,
    )


def list_actors(
    client: Client, *, max_names: int = MAX_NAMES, max_nodes: int = MAX_NODES
) -> ActorsReport:
    """:func:`actors_op` run on ``client``, in its namespace."""
    ctx = QueueContext(namespace=client.namespace)
    return client.run(actors_op(ctx, max_names=max_names, max_nodes=max_nodes))
