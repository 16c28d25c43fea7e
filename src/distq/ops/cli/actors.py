"""``distq node MODULE:APP`` and ``distq actors``: host actors, and list them.

``distq node`` runs a :class:`~distq.endpoints.actor.Node` spawning the
actors the app declares (``@app.actor(name)``) until SIGINT or SIGTERM. The
listing is :mod:`distq.ops.inspect_actors`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import click

from distq.errors import DistqError, InvalidArgument
from distq.ops.cli.common import State, load_app_from, pass_state
from distq.ops.inspect_actors import MAX_NAMES, list_actors

__all__ = ["actors", "node"]

log = logging.getLogger("distq.node")


@click.command("node")
@click.argument("app_ref", metavar="MODULE:APP")
@click.option(
    "--id",
    "node_id",
    metavar="NODE_ID",
    help="The node's id (default: <host>.<pid>.<random>). Letters, digits, '.', '-', '_'.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between heartbeats; a node silent for three is dead and its names freed.",
)
@pass_state
def node(state: State, app_ref: str, node_id: str | None, heartbeat: float) -> None:
    """Host the actors of MODULE:APP (e.g. `myproject.actors:app`) until stopped.

    Every actor the app declares with `@app.actor(NAME)` is spawned and
    registered as NAME, cluster-wide (it fails if a live actor elsewhere
    holds a name). The node beats every --heartbeat seconds, renewing the
    leases of the messages its actors hold. With a cluster secret
    (DISTQ_SECRET, or the app's `secret=`), messages without a valid MAC are
    refused and dead-lettered. SIGINT/SIGTERM: the actors see ActorStopped in
    `receive()`, their names are released, the node leaves; exit 0. A second
    signal exits at once (status 1); unacknowledged messages come back after
    their lease.

    \b
    Examples:
      distq node myproject.actors:app
      distq --url redis://db:6379/0 node myproject.actors:app --id web-1
    """
    app = load_app_from(state, app_ref)
    if not app.actors:
        raise InvalidArgument(f"{app_ref} declares no actor (use @app.actor(name))")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second signal: exiting at once")
            os._exit(1)
        log.info("%s: stopping the node", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    running = app.node(node_id, heartbeat_s=heartbeat)
    try:
        try:
            running.start()
        except BaseException:
            with contextlib.suppress(DistqError):
                running.stop(timeout=5.0)  # what was spawned stops; the node leaves
            raise
        log.info(
            "node %s (pid %d) hosts %s", running.id, os.getpid(), ", ".join(sorted(app.actors))
        )
        while not stop.wait(1.0):
            pass
        running.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        app.close()
    log.info("node %s stopped", running.id)


def _age(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds:.1f} s ago"


@click.command("actors")
@click.option(
    "--max-names",
    type=click.IntRange(min=1),
    default=MAX_NAMES,
    show_default=True,
    help="The most names read (a bound on the listing's cost).",
)
@pass_state
def actors(state: State, max_names: int) -> None:
    """List the registered actors and the nodes.

    For each name: the actor's id, its node, whether that node is alive,
    the messages waiting in its mailbox, those leased to it (being handled)
    and the mailbox's dead letters. For each node: id, host, pid, actors
    hosted (named or not), alive, last beat. A dead node is listed until a
    live node reaps it. With --json: an object with `actors` (name, actor,
    node, alive, mailbox, leased, dead), `nodes` (id, host, pid, actors,
    alive, age) and `complete`.

    \b
    Examples:
      distq actors
      distq --json actors
    """
    report = list_actors(state.client(), max_names=max_names)
    if not report.complete:
        state.out.note("note: the listing was cut short by its bounds (raise --max-names)")
    if state.json:
        state.out.json(report.as_dict())
        return
    if report.names:
        rows: list[list[Any]] = [
            [a.name, a.actor, a.node, a.alive, a.mailbox, a.leased, a.dead] for a in report.names
        ]
        columns = ["name", "actor id", "node", "alive", "mailbox", "leased", "dead letters"]
        state.out.table(columns, rows, title="actors", keep=("name", "actor id", "node"))
    else:
        state.out.note("no registered actors")
    if report.nodes:
        rows = [[n.id, n.host, n.pid, n.actors, n.alive, _age(n.age)] for n in report.nodes]
        columns = ["id", "host", "pid", "actors", "alive", "last beat"]
        state.out.table(columns, rows, title="nodes", keep=("id",))
    else:
        state.out.note("no nodes")
