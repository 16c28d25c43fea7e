"""Actors on real node processes against real servers (the actors are in
``actors_app.py``, next to this file; each node is ``python actors_app.py
NODE_ID`` hosting the actors listed in ``DISTQ_TEST_ACTORS``).

Every node runs with a cluster secret (so every message is MAC'd) and a
heartbeat of 0.3 s. What actors see is read back from their ledgers. Every
process a test starts is stopped by PID in the fixture's teardown: SIGTERM,
then SIGKILL past a bound (see ``tests/processes.py``).
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from distq.connection.ops import Command, single
from distq.endpoints.actor import ActorRef
from distq.endpoints.app import App
from distq.errors import ActorNotFound, CodecError, NameTaken, RemoteError, Timeout
from distq.queue.keys import ActorKeys, mailbox_queue
from distq.queue.keys import job_id as job_id_of
from processes import Process, Processes, child_env, wait_for

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
actors_app: ModuleType = importlib.import_module("actors_app")
ledger: Callable[[str], list[Any]] = actors_app.ledger

#: The cluster secret of every node under test.
SECRET = "actors-test-secret"
#: The heartbeat of every node under test (a silent node is dead after 3 of them).
HEARTBEAT = 0.3


def ref_json(node: str, actor: str) -> dict[str, list[str]]:
    """How a reference looks in a ledger."""
    return {"$ref": [node, actor]}


# Processes ----------------------------------------------------------------------------------


class Cluster(Processes):
    """Starts node and sender processes (``python actors_app.py …``) of one test;
    stops them all by PID (:meth:`stop`, :meth:`stop_all`)."""

    def __init__(self, url: str, namespace: str, tmp_path: Path, app: App) -> None:
        super().__init__(tmp_path)
        self.app = app
        self.env = child_env(
            url=url,
            namespace=namespace,
            DISTQ_SECRET=SECRET,
            DISTQ_TEST_HEARTBEAT=str(HEARTBEAT),
        )

    def _start(self, label: str, args: list[str], **env: str) -> Process:
        argv = [sys.executable, str(HERE / "actors_app.py"), *args]
        return self.spawn(label, argv, {**self.env, **env}, HERE)

    def node(self, node_id: str, *actors: str) -> Process:
        """Start a node hosting ``actors``; return once it is up and they are registered."""
        proc = self._start(node_id, [node_id], DISTQ_TEST_ACTORS=",".join(actors))
        proc.serving(lambda: f"pid {proc.pid} up" in proc.log(), 20, f"node {node_id} to start")
        for name in actors:
            ref = self.app.whereis(name)
            assert ref is not None and ref.node == node_id, (name, ref)
        return proc

    def sender(self, sender: str, count: int) -> Process:
        return self._start(f"sender-{sender}", ["--send", sender, str(count)])


@pytest.fixture
def app(url: str, namespace: str) -> Iterator[App]:
    """``actors_app.app``, pointed at this test's server and namespace, with the secret."""
    the_app: App = actors_app.app
    the_app.close()
    the_app.url, the_app.namespace = url, namespace
    the_app.secret = SECRET.encode()
    try:
        yield the_app
    finally:
        the_app.close()


@pytest.fixture
def cluster(url: str, namespace: str, tmp_path: Path, app: App) -> Iterator[Cluster]:
    with Cluster(url, namespace, tmp_path, app) as started:
        yield started


def mailbox_stats(app: App, actor: str) -> dict[str, Any]:
    return app.client.qstat(mailbox_queue(actor))


# Names, calls, references ---------------------------------------------------------------------


def test_name_found_from_another_node_and_ref_in_message_used_to_reply(
    app: App, cluster: Cluster
) -> None:
    cluster.node("nodeA", "echo")
    cluster.node("nodeB", "relay")
    echo = app.whereis("echo")
    assert echo == ActorRef("nodeA", "n.echo")
    assert echo is not None and echo.call("direct") == "direct"
    assert app.call("echo", {"x": [1, 2]}) == {"x": [1, 2]}

    # The relay, on node B, looks echo up by name and calls it.
    assert app.call("relay", {"op": "call", "to": "echo", "body": "hello"}) == {"called": "hello"}

    # The relay sends echo its own reference; echo answers by sending to that ref.
    app.send("relay", {"op": "ask", "to": "echo", "body": "ping"})
    [answer] = wait_for(lambda: ledger("n.relay"), 10, "the relay to receive echo's answer")
    assert answer == {"echoed": "ping", "from": ref_json("nodeA", "n.echo")}
    seen = ledger("n.echo")
    assert seen == [
        "direct",
        {"x": [1, 2]},
        "hello",
        {"reply_to": ref_json("nodeB", "n.relay"), "body": "ping"},
    ]


def test_seed_examples_and_async(app: App, cluster: Cluster) -> None:
    node = cluster.node("machine1", "process1", "logger")
    # send-synchronous: "test-message" to process1, which replies "Message Received!".
    assert app.call("process1", "test-message") == "Message Received!"
    # An asynchronous send to the logger, which prints it on machine 1.
    assert app.send("logger", "Log Message!") is None
    wait_for(lambda: "Log Message!" in node.log(), 10, "the logger to print the message")

    async def scenario() -> list[Any]:
        try:
            answer = await app.acall("process1", "async test-message", timeout=5)
            ref = app.whereis("logger")
            assert ref is not None
            await app.asend("logger", "async log 1")
            await app.asend(ref, "async log 2")
            with pytest.raises(ActorNotFound, match="nobody"):
                await app.acall("nobody", "hello?")
            with pytest.raises(ActorNotFound, match="nobody"):
                await app.asend("nobody", "hello?")
            return [answer]
        finally:
            await app.aclient.close()  # this loop's connections (App.close closes the sync ones)

    assert asyncio.run(scenario()) == ["Message Received!"]
    wait_for(
        lambda: ledger("n.logger") == ["Log Message!", "async log 1", "async log 2"],
        10,
        "the logger to receive the async sends in order",
    )
    assert "async log 2" in node.log()


def test_10000_sends_from_4_processes_arrive_in_order_per_sender(
    app: App, cluster: Cluster
) -> None:
    cluster.node("sink", "collector")
    started = time.monotonic()
    senders = [cluster.sender(f"s{i}", 2500) for i in range(4)]
    for proc in senders:
        try:
            code = proc.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"sender {proc.pid} still running\n{proc.log()}") from None
        assert code == 0, proc.log()

    def complete() -> dict[str, Any] | None:
        report: dict[str, Any] = app.call("collector", "report", timeout=10)
        return report if report["count"] >= 10_000 else None

    report = wait_for(complete, 60, "the collector to receive 10,000 messages")
    elapsed = time.monotonic() - started
    assert report["count"] == 10_000
    assert report["out_of_order"] == []
    assert report["last"] == {f"s{i}": 2499 for i in range(4)}
    stats = mailbox_stats(app, "n.collector")
    assert stats["dead"] == 0 and stats["dead_total"] == 0
    assert stats["jobs_in"] >= 10_000
    print(f"10,000 sends from 4 processes received in {elapsed:.2f} s")


# Dead nodes ------------------------------------------------------------------------------------


def test_sigkilled_node_releases_its_names_and_monitors_hear(app: App, cluster: Cluster) -> None:
    doomed_node = cluster.node("nodeA", "doomed")
    cluster.node("nodeB", "inbox")
    doomed, inbox = app.whereis("doomed"), app.whereis("inbox")
    assert doomed is not None and inbox is not None
    app.monitor(inbox, doomed)

    doomed_node.kill()
    killed = time.monotonic()
    wait_for(lambda: app.whereis("doomed") is None, 5, "the dead node's name to be released")
    released = time.monotonic() - killed
    # Dead after 3 heartbeats without a beat; the last beat was at most one heartbeat ago.
    assert released < 3 * HEARTBEAT + HEARTBEAT + 0.5, released

    down = {"down": ref_json("nodeA", "n.doomed"), "reason": "node down"}
    wait_for(lambda: down in ledger("n.inbox"), 5, "the monitor to be told")
    told = time.monotonic() - killed
    # Reaped by node B's heartbeat, at most one of its heartbeats after the death.
    assert told < 3 * HEARTBEAT + 2 * HEARTBEAT + 1.0, told
    assert ledger("n.inbox") == [down]
    keys = ActorKeys(app.namespace or "")
    assert app.client.run(single(Command(("ZSCORE", keys.nodes, "nodeA")))) is None
    print(f"name released {released:.2f} s, monitor told {told:.2f} s after SIGKILL")


def test_message_in_flight_on_sigkill_is_handled_again_after_restart(
    app: App, cluster: Cluster
) -> None:
    """What the actor sees: the very same message (same job id) a second time,
    the job's delivery count at 2 — delivery is at least once. The restarted
    node's actor gets it back at once (the dead incarnation's leased messages
    are given back when the name is taken again), not after the 30 s lease."""
    first = cluster.node("nodeA", "holder")
    token = uuid.uuid4().hex
    app.send("holder", {"hold": token})
    wait_for(lambda: ledger("n.holder"), 10, "the holder to take the message")
    assert ledger("n.holder") == [[first.pid, token]]
    queue = mailbox_queue("n.holder")
    leased = app.client.run(single(Command(("ZRANGE", app.context.keys(queue).leased, 0, -1))))
    [job_id] = [job_id_of(bytes(core), queue) for core in leased]
    shown = app.client.show(job_id)
    assert shown is not None and (shown["state"], shown["deliveries"]) == ("active", 1)

    first.kill()
    restarted_at = time.monotonic()
    second = cluster.node("nodeA", "holder")
    wait_for(lambda: len(ledger("n.holder")) == 2, 10, "the message to be handled again")
    redelivered_after = time.monotonic() - restarted_at
    assert ledger("n.holder") == [[first.pid, token], [second.pid, token]]
    shown = app.client.show(job_id)
    assert shown is not None
    assert shown["state"] == "active"
    assert shown["deliveries"] == 2  # > 1: the same job, delivered again
    assert redelivered_after < 10

    app.client.run(single(Command(("SET", actors_app.flag_key(token), 1))))
    wait_for(lambda: ["done", token] in ledger("n.holder"), 10, "the holder to finish")
    assert app.call("holder", "ping") == {"pid": second.pid, "message": "ping"}
    assert app.client.show(job_id) is None  # acknowledged at last: handled, and gone
    assert ledger("n.holder") == [[first.pid, token], [second.pid, token], ["done", token]]
    assert cluster.stop(second) == [0]


# Security ---------------------------------------------------------------------------------------


def test_messages_without_a_valid_mac_are_refused_and_dead_lettered(
    app: App, cluster: Cluster, url: str, namespace: str
) -> None:
    node = cluster.node("nodeA", "guarded")
    queue = mailbox_queue("n.guarded")
    fmt, payload = app.codec.encode({"m": "forged: no MAC"})
    unsealed = fmt.encode() + payload
    raw_ids = [
        app.client.addjob(queue, unsealed),  # raw bytes lacking the MAC
        app.client.addjob(queue, b"H1:" + b"0" * 64 + b":" + unsealed),  # a MAC that does not match
        app.client.addjob(queue, {"m": "forged: a plain JSON body"}),  # not even bytes
        app.client.addjob(queue, "forged: a plain text body"),
    ]
    wrong = App(url, namespace=namespace, secret="not-the-secret")
    try:
        wrong.send("guarded", "forged: wrong secret")
    finally:
        wrong.close()
    app.send("guarded", "genuine")

    wait_for(lambda: ledger("n.guarded"), 10, "the genuine message")
    assert ledger("n.guarded") == ["genuine"]  # the actor never saw the forged ones
    dead = app.client.deadletters(queue, 100)
    assert len(dead) == 5
    assert set(raw_ids) <= {job.id for job in dead}
    for job in dead:
        assert job.reason is not None and "MAC" in job.reason, job
    reasons = sorted(job.reason or "" for job in dead)
    assert sum("no MAC" in r for r in reasons) == 3
    assert sum("does not match" in r for r in reasons) == 2
    assert "dead-lettered" in node.log()
    stats = mailbox_stats(app, "n.guarded")
    assert stats["dead"] == 5 and stats["len"] == 0


# Failures of calls and sends ------------------------------------------------------------------


def test_call_timeout_remote_error_unknown_name_and_unencodable(app: App, cluster: Cluster) -> None:
    cluster.node("nodeA", "silent", "raiser", "echo")

    started = time.monotonic()
    with pytest.raises(Timeout):
        app.call("silent", "anyone there?", timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5, elapsed
    wait_for(lambda: ledger("n.silent") == ["anyone there?"], 5, "silent to get the message")

    with pytest.raises(RemoteError) as raised:
        app.call("raiser", "boom")
    assert raised.value.type_name == "ValueError"
    assert raised.value.message == "boom from raiser"
    assert "boom from raiser" in raised.value.traceback
    assert app.call("raiser", "fine") == {"ok": "fine"}  # a class actor lives on
    with pytest.raises(RemoteError) as raised:  # a reply that cannot be encoded (T18)
        app.call("raiser", "unencodable")
    assert "CodecError" in raised.value.type_name and "set" in raised.value.message
    assert app.call("raiser", "still fine") == {"ok": "still fine"}

    with pytest.raises(ActorNotFound, match="nobody"):
        app.call("nobody", "hello?")
    with pytest.raises(ActorNotFound, match="nobody"):
        app.send("nobody", "hello?")

    echo = app.whereis("echo")
    assert echo is not None
    before = mailbox_stats(app, "n.echo")
    for bad in ({1, 2}, object()):
        with pytest.raises(CodecError):
            app.send(echo, bad)
        with pytest.raises(CodecError):
            app.send("echo", {"nested": bad})
        with pytest.raises(CodecError):
            app.call(echo, bad, timeout=1)
    with pytest.raises(CodecError):
        app.send_many([(echo, "fine"), (echo, {3})])
    after = mailbox_stats(app, "n.echo")
    assert after["jobs_in"] == before["jobs_in"]  # nothing was added
    assert after["len"] == 0
    assert app.call("echo", "still fine") == "still fine"
    assert ledger("n.echo") == ["still fine"]


# Supervision, links, names ------------------------------------------------------------------


def test_supervised_actor_is_restarted_after_a_crash(app: App, cluster: Cluster) -> None:
    cluster.node("nodeA", "phoenix")
    ref = app.whereis("phoenix")
    assert app.call("phoenix", "ping") == {"pong": "ping", "incarnation": 1}
    with pytest.raises(RemoteError) as raised:
        app.call("phoenix", {"crash": "t1"})
    assert raised.value.type_name == "RuntimeError"
    assert "phoenix crashed on t1" in raised.value.message
    assert app.call("phoenix", "after", timeout=10) == {"pong": "after", "incarnation": 2}
    assert app.whereis("phoenix") == ref  # same name, same mailbox throughout
    # The message it crashed on was given back, and the next incarnation saw it again.
    assert [(e["incarnation"], e["message"]) for e in ledger("n.phoenix")] == [
        (1, "ping"),
        (1, {"crash": "t1"}),
        (2, {"crash": "t1"}),
        (2, "after"),
    ]


def test_links_monitors_and_normal_stop(app: App, cluster: Cluster) -> None:
    cluster.node("nodeA", "partner", "linked", "trapper", "finisher", "inbox")
    partner, linked, trapper, finisher, inbox = (
        app.whereis(n) for n in ("partner", "linked", "trapper", "finisher", "inbox")
    )
    assert partner and linked and trapper and finisher and inbox
    app.link(partner, linked)
    app.link(partner, trapper)
    app.link(finisher, linked)
    app.monitor(inbox, finisher)

    # A normal stop: the name is released, the monitor is told, the linked actor lives on.
    assert app.call("finisher", "hi") == "hi"
    app.send("finisher", "stop")
    wait_for(lambda: app.whereis("finisher") is None, 5, "the finisher's name to be released")
    normal_down = {"down": ref_json("nodeA", "n.finisher"), "reason": "normal"}
    wait_for(lambda: ledger("n.inbox") == [normal_down], 5, "the monitor to be told")
    normal_exit = {"exit": ref_json("nodeA", "n.finisher"), "reason": "normal"}
    wait_for(lambda: ledger("n.linked") == [normal_exit], 5, "linked to hear of the normal exit")
    assert app.whereis("linked") == linked

    # A crash: the linked actor stops too; the one trapping exits is told and lives on.
    with pytest.raises(RemoteError, match="partner crashed"):
        app.call("partner", "crash")
    wait_for(lambda: app.whereis("partner") is None, 5, "the partner's name to be released")
    wait_for(lambda: app.whereis("linked") is None, 5, "the linked actor to stop")
    crash_exit = {
        "exit": ref_json("nodeA", "n.partner"),
        "reason": "crashed: RuntimeError: partner crashed",
    }
    wait_for(lambda: ledger("n.trapper") == [crash_exit], 5, "the trapper to be told")
    assert ledger("n.linked") == [normal_exit]  # it stopped on the exit, never handled it
    app.send("trapper", "still here")
    wait_for(lambda: ledger("n.trapper") == [crash_exit, "still here"], 5, "the trapper")
    assert app.whereis("trapper") == trapper


def test_name_taken_while_held_and_free_once_released(
    app: App, cluster: Cluster, url: str, namespace: str
) -> None:
    holder = cluster.node("nodeA", "echo")
    with pytest.raises(NameTaken, match="echo"):
        app.register("echo", ActorRef("intruder", "a.0123456789abcdef"))

    other = App(url, namespace=namespace, secret=SECRET)
    intruder = other.node("intruder", heartbeat_s=HEARTBEAT).start()
    try:
        with pytest.raises(NameTaken, match="echo"):
            intruder.spawn(actors_app.recorder, name="echo")
        keys = ActorKeys(namespace)
        hosted = other.client.run(single(Command(("SMEMBERS", keys.node_actors("intruder")))))
        assert b"n.echo" not in hosted  # the refused actor is not counted as the intruder's
        assert app.whereis("echo") == ActorRef("nodeA", "n.echo")
        assert app.call("echo", "mine") == "mine"

        # A clean stop releases the name at once; then another node may take it.
        assert cluster.stop(holder) == [0]
        assert app.whereis("echo") is None
        taken = intruder.spawn(actors_app.recorder, name="echo")
        assert app.whereis("echo") == taken == ActorRef("intruder", "n.echo")
        app.send("echo", "to the new holder")
        wait_for(lambda: "to the new holder" in ledger("n.echo"), 5, "the new echo")
    finally:
        intruder.stop()
        other.close()
    assert app.whereis("echo") is None
