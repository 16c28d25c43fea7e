"""The actors the actor tests run on real node processes, and a tiny node runner.

Run a node::

    python tests/endpoints/actors_app.py NODE_ID

It starts ``app.node(NODE_ID, heartbeat_s=DISTQ_TEST_HEARTBEAT)`` and waits
until SIGTERM (whose handler calls ``node.stop()``). Settings come from the
environment, set per test: the server from ``DISTQ_URL``, the namespace from
``DISTQ_TEST_NAMESPACE``, the cluster secret from ``DISTQ_SECRET`` and the
actors this node hosts from ``DISTQ_TEST_ACTORS`` (comma-separated names; all
declared actors when unset — names are unique, so two nodes of one namespace
host different ones).

``python tests/endpoints/actors_app.py --send SENDER COUNT`` is a sender
process instead: it sends ``[SENDER, seq]`` for seq in ``0..COUNT-1`` to the
actor ``collector``, the first part with plain ``send`` and the rest with
``send_many`` in chunks, in order.

What actors see is recorded in *ledgers*: a list ``<namespace>:ledger:<actor
id>`` on the server, one JSON entry per message (references as
``{"$ref": [node, actor]}``), written before the actor acts on it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from distq.connection.ops import Command, single
from distq.endpoints.actor import ActorRef, receive, reply, self_ref
from distq.endpoints.app import App

app = App(namespace=os.environ.get("DISTQ_TEST_NAMESPACE", "distq-tests"))

#: Messages a sender process sends with plain ``send`` before switching to ``send_many``.
PLAIN_SENDS = 500
#: Messages per ``send_many`` round trip.
SEND_CHUNK = 250


# Ledgers ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, ActorRef):
        return {"$ref": [value.node, value.actor]}
    raise TypeError(f"not recordable: {value!r}")


def ledger_key(actor: str) -> str:
    """The ledger of one actor (by actor id, e.g. ``n.echo``)."""
    return f"{app.namespace}:ledger:{actor}"


def record(value: Any, actor: str | None = None) -> None:
    """Append ``value`` to the calling actor's ledger (or to ``actor``'s)."""
    entry = json.dumps(value, default=_plain)
    key = ledger_key(actor or self_ref().actor)
    app.client.run(single(Command(("RPUSH", key, entry))))


def ledger(actor: str) -> list[Any]:
    """Every entry of an actor's ledger, oldest first."""
    raw = app.client.run(single(Command(("LRANGE", ledger_key(actor), 0, -1))))
    return [json.loads(item) for item in raw]


def flag_key(name: str) -> str:
    """A key a test sets to let an actor go on (see ``holder``)."""
    return f"{app.namespace}:flag:{name}"


def _incr(key: str) -> int:
    value: int = app.client.run(single(Command(("INCR", f"{app.namespace}:{key}"))))
    return value


# Actors --------------------------------------------------------------------------------


def recorder() -> None:
    """Records everything it receives; never answers. Declared under several names."""
    while True:
        record(receive())


for _name in ("inbox", "guarded", "doomed", "linked"):
    app.actor(_name)(recorder)
app.actor("trapper", trap_exit=True)(recorder)


@app.actor("echo")
class Echo:
    """Answers a call with its message; ``{"reply_to": ref, "body": x}`` is sent
    back to ``ref`` as ``{"echoed": x, "from": <echo's ref>}``."""

    def receive(self, message: Any) -> Any:
        record(message)
        if isinstance(message, dict) and isinstance(message.get("reply_to"), ActorRef):
            message["reply_to"].send({"echoed": message.get("body"), "from": self_ref()})
            return None
        return message


@app.actor("relay")
def relay() -> None:
    """Lives on the other node: ``{"op": "call", "to": name, "body": x}`` calls
    ``name`` and answers with what came back; ``{"op": "ask", "to": name,
    "body": x}`` sends ``{"reply_to": <relay's ref>, "body": x}`` to ``name``
    and records the answer that arrives in its own mailbox."""
    while True:
        message = receive()
        if message["op"] == "call":
            reply({"called": app.call(message["to"], message["body"], timeout=5)})
        elif message["op"] == "ask":
            target = app.whereis(message["to"])
            assert target is not None, f"no actor named {message['to']}"
            target.send({"reply_to": self_ref(), "body": message["body"]})
            record(receive(timeout=10))


@app.actor("process1")
def process1() -> None:
    """The seed's first example: answers every message with "Message Received!"."""
    while True:
        receive()
        reply("Message Received!")


@app.actor("logger")
def logger() -> None:
    """The seed's logger: prints every message it is sent (and records it)."""
    while True:
        message = receive()
        print(message, flush=True)
        record(message)


@app.actor("collector")
class Collector:
    """Counts ``[sender, seq]`` messages, checking that each sender's come in
    order; the call ``"report"`` answers with what it saw."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, int] = {}
        self.out_of_order: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "report":
            return {"count": self.count, "last": self.last, "out_of_order": self.out_of_order}
        sender, seq = message
        if seq != self.last.get(sender, -1) + 1 and len(self.out_of_order) < 20:
            self.out_of_order.append([sender, self.last.get(sender), seq])
        self.last[sender] = seq
        self.count += 1
        return None


@app.actor("silent")
def silent() -> None:
    """Receives and never replies: its callers time out."""
    while True:
        record(receive())


@app.actor("raiser")
class Raiser:
    """A class actor: raising answers the call with the error; the actor lives on."""

    def receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom from raiser")
        if message == "unencodable":
            return {"a set": {1, 2}}  # a reply no codec can store
        return {"ok": message}


@app.actor("phoenix", supervise=True)
def phoenix() -> None:
    """Supervised: ``{"crash": token}`` crashes it the first time that token is
    seen (the message is then given back and seen again by the next
    incarnation); anything else is answered with the incarnation number."""
    incarnation = _incr("phoenix:incarnations")
    while True:
        message = receive()
        record({"incarnation": incarnation, "message": message})
        if isinstance(message, dict) and "crash" in message:
            if _incr(f"phoenix:crash:{message['crash']}") == 1:
                raise RuntimeError(f"phoenix crashed on {message['crash']}")
            continue
        reply({"pong": message, "incarnation": incarnation})


@app.actor("partner")
def partner() -> None:
    """Not supervised: ``"crash"`` kills it (its links hear of it)."""
    while True:
        message = receive()
        record(message)
        if message == "crash":
            raise RuntimeError("partner crashed")
        reply(message)


@app.actor("finisher")
def finisher() -> None:
    """Stops normally (its behaviour returns) on ``"stop"``."""
    while True:
        message = receive()
        record(message)
        if message == "stop":
            return
        reply(message)


@app.actor("holder")
def holder() -> None:
    """``{"hold": token}``: records ``[pid, token]`` then holds the message until
    the flag ``token`` is set (20 s at most); then records ``["done", token]``."""
    while True:
        message = receive()
        if isinstance(message, dict) and "hold" in message:
            token = message["hold"]
            record([os.getpid(), token])
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if app.client.run(single(Command(("EXISTS", flag_key(token))))):
                    break
                time.sleep(0.05)
            record(["done", token])
        else:
            reply({"pid": os.getpid(), "message": message})


# Runner ----------------------------------------------------------------------------------


def run_node(node_id: str) -> None:
    """Host this node's actors until SIGTERM."""
    wanted = os.environ.get("DISTQ_TEST_ACTORS")
    if wanted is not None:
        names = [name for name in wanted.split(",") if name]
        app.actors = {name: app.actors[name] for name in names}
    heartbeat = float(os.environ.get("DISTQ_TEST_HEARTBEAT", "0.3"))
    node = app.node(node_id, heartbeat_s=heartbeat)

    def on_sigterm(signum: int, frame: Any) -> None:
        # Stop from another thread: the handler returns at once, node.wait() sees it.
        threading.Thread(target=node.stop, name="stopper").start()

    signal.signal(signal.SIGTERM, on_sigterm)
    node.start()
    print(f"node {node_id} pid {os.getpid()} up: {', '.join(app.actors)}", flush=True)
    node.wait()
    for thread in threading.enumerate():
        if thread.name == "stopper":
            thread.join(30)
    print(f"node {node_id} stopped", flush=True)


def run_sender(sender: str, count: int) -> None:
    """Send ``[sender, seq]`` to ``collector`` for seq in order."""
    target = app.whereis("collector")
    assert target is not None, "no collector"
    plain = min(PLAIN_SENDS, count)
    for seq in range(plain):
        app.send(target, [sender, seq])
    for start in range(plain, count, SEND_CHUNK):
        stop = min(count, start + SEND_CHUNK)
        app.send_many((target, [sender, seq]) for seq in range(start, stop))
    print(f"sender {sender} sent {count}", flush=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    if len(argv) == 4 and argv[1] == "--send":
        run_sender(argv[2], int(argv[3]))
    elif len(argv) == 2:
        run_node(argv[1])
    else:
        print(f"usage: {argv[0]} NODE_ID | --send SENDER COUNT", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
