"""Nodes: the processes that host actors, and the actors' running threads.

A :class:`Node` announces itself with a heartbeat, spawns actors (each on its
own thread, reading its mailbox), registers their names, renews the leases of
the messages they hold, and reaps nodes that died: their names are released
and whoever watched their actors is told. See :mod:`distq.endpoints.actor`
for references, envelopes, sending and calling.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distq.codec.result import encode_error, encode_value
from distq.connection.ops import Command, Op, ScriptCall, Step, single
from distq.endpoints.actor import (
    IDLE_WAIT_S,
    RETRY_PAUSE_S,
    ActorRef,
    _local,
    _requests,
    register_op,
    reply_request,
    send_op,
    unseal,
)
from distq.endpoints.task import SCRIPTS
from distq.errors import (
    ActorStopped,
    CodecError,
    ConnectionFailed,
    DistqError,
    InvalidArgument,
    NameTaken,
    RemoteError,
    Timeout,
)
from distq.queue.job import Job
from distq.queue.keys import ActorKeys, job_id, mailbox_queue, new_process_id, validate_queue

if TYPE_CHECKING:
    from distq.endpoints.app import App

__all__ = ["Node"]

log = logging.getLogger("distq.endpoints.actor")


@dataclass(slots=True)
class _Held:
    job: Job
    envelope: dict[str, Any]


class _Actor:
    """One actor's thread: its mailbox, its behaviour, its acknowledgements."""

    def __init__(self, node: Node, ref: ActorRef, behaviour: Any, options: dict[str, Any]) -> None:
        self.node = node
        self.ref = ref
        self.behaviour = behaviour
        self.name: str | None = options.get("name")
        self.supervise = bool(options.get("supervise", False))
        self.trap_exit = bool(options.get("trap_exit", False))
        self.queue = mailbox_queue(ref.actor)
        self.buffer: deque[Job] = deque()
        self.current: _Held | None = None
        self.done: list[Job] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name=f"actor-{ref.actor}", daemon=True)
        self.stopped = threading.Event()
        self.reason = "normal"

    # -- inside the actor's thread

    def receive(self, timeout: float | None) -> Any:
        app = self.node.app
        self._finish_current()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.node.stopping.is_set():
                raise ActorStopped(f"node {self.node.id} is stopping")
            if not self.buffer:
                try:
                    self._refill(deadline)
                except (ConnectionFailed, Timeout) as exc:
                    # The server is unreachable: keep waiting, as a blocked fetch would.
                    log.warning("actor %s: fetch failed (%s); retrying", self.ref.actor, exc)
                    self.node.stopping.wait(RETRY_PAUSE_S)
                    continue
                if not self.buffer:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise Timeout(f"nothing received within {timeout} s")
                    continue
            job = self.buffer.popleft()
            try:
                envelope = unseal(app, self.ref.actor, job.body)
            except CodecError as exc:
                log.error("actor %s: message %s %s; dead-lettered", self.ref.actor, job.id, exc)
                app.client.deadletter(job, reason=str(exc))
                continue
            with self.lock:
                self.current = _Held(job, envelope)
            return self._system(envelope["m"])

    def _system(self, message: Any) -> Any:
        if (
            isinstance(message, dict)
            and "exit" in message
            and not self.trap_exit
            and message.get("reason") != "normal"
        ):
            raise ActorStopped(f"linked actor exited: {message.get('reason')}")
        return message

    def _refill(self, deadline: float | None) -> None:
        wait = (
            IDLE_WAIT_S
            if deadline is None
            else max(0.0, min(IDLE_WAIT_S, deadline - time.monotonic()))
        )
        with self.lock:
            done, self.done = self.done, []
        client = self.node.app.client
        jobs: list[Job] = []
        if done:
            try:
                with client.pipeline() as pipe:
                    pipe.ackjob(*done)
                    pipe.getjob(self.queue, count=self.node.batch, nohang=True)
            except DistqError:
                with self.lock:  # not acknowledged: try again with the next fetch
                    self.done = done + self.done
                raise
            jobs = pipe.results[1]
        if not jobs and wait > 0:
            jobs = client.getjob(self.queue, count=self.node.batch, timeout=wait)
        self.buffer.extend(jobs)

    def _finish_current(self) -> None:
        with self.lock:
            if self.current is not None:
                self.done.append(self.current.job)
                self.current = None

    def reply(self, value: Any) -> None:
        app = self.node.app
        with self.lock:
            held = self.current
        if held is None:
            raise InvalidArgument("reply() outside the handling of a message")
        if held.envelope.get("c"):
            stored = encode_value(app.codec, value)
            self._send_reply(held.envelope["c"], stored)
        elif isinstance(held.envelope.get("f"), ActorRef):
            app.send(held.envelope["f"], value)
        else:
            log.warning("actor %s: reply() to a message that asked for none", self.ref.actor)

    def _fail_call(self, error: BaseException) -> None:
        with self.lock:
            held = self.current
        if held is not None and held.envelope.get("c"):
            stored = encode_error(RemoteError.from_exception(error))
            self._send_reply(held.envelope["c"], stored)

    def _send_reply(self, call_id: str, stored: bytes) -> None:
        """Push the answer to a call, waiting out a server outage (as a fetch
        does) rather than losing work that is already done."""
        app = self.node.app
        while True:
            try:
                app.client.run(_requests(reply_request(app.context, call_id, stored)))
                return
            except (ConnectionFailed, Timeout) as exc:
                if self.node.stopping.is_set():
                    raise
                log.warning("actor %s: reply failed (%s); retrying", self.ref.actor, exc)
                self.node.stopping.wait(RETRY_PAUSE_S)

    def _main(self) -> None:
        _local.actor = self
        try:
            while True:
                try:
                    self._run_behaviour()
                    self.reason = "normal"
                    return
                except ActorStopped as stop:
                    self.reason = "normal" if self.node.stopping.is_set() else str(stop)
                    return
                except Exception as exc:
                    self.reason = f"crashed: {type(exc).__name__}: {exc}"
                    log.exception("actor %s crashed", self.ref.actor)
                    self._fail_call(exc)
                    self._give_back_current(self.reason)
                    if not self.supervise or self.node.stopping.is_set():
                        return
                    log.info("actor %s restarting (supervised)", self.ref.actor)
                    time.sleep(0.1)
        finally:
            try:
                self._flush_acks()
                self.node._actor_stopped(self)  # its name released, its watchers told
            finally:
                self.stopped.set()  # only now: a stopping node may exit right after

    def _run_behaviour(self) -> None:
        behaviour = self.behaviour
        if isinstance(behaviour, type):
            behaviour = behaviour()
        handler = getattr(behaviour, "receive", None)
        if handler is None:
            behaviour()
            return
        while True:
            message = self.receive(None)
            try:
                result = handler(message)
            except Exception as exc:  # a failed call is the caller's error, not the actor's end
                self._fail_call(exc)
                continue
            with self.lock:
                held = self.current
            if held is not None and held.envelope.get("c"):
                try:
                    self.reply(result)
                except CodecError as exc:  # a reply no codec can store fails the call only
                    self._fail_call(exc)

    def _give_back_current(self, reason: str) -> None:
        with self.lock:
            held, self.current = self.current, None
        if held is not None:
            self.node.app.client.nack(held.job, reason=f"actor {reason}")

    def _flush_acks(self) -> None:
        self._finish_current()
        with self.lock:
            done, self.done = self.done, []
            unread = list(self.buffer)
            self.buffer.clear()
        try:
            if done:
                self.node.app.client.ackjob(*done)
            if unread:
                self.node.app.client.release(*unread)
        except DistqError as exc:
            log.warning(
                "actor %s: could not settle its mailbox (%s); leases will", self.ref.actor, exc
            )

    def held(self) -> list[Job]:
        """Every message leased to this actor and not yet acknowledged."""
        with self.lock:
            return [*self.buffer, *self.done, *([self.current.job] if self.current else [])]


class Node:
    """A process hosting actors: spawns them, keeps their names and presence.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        app: the app (connection, codec, secret).
        node_id: this node's id (default: a new unique one).
        heartbeat_s: seconds between heartbeats; a node silent for three is dead.
        batch: messages fetched at once per actor.
    """

    def __init__(
        self, app: App, node_id: str | None = None, *, heartbeat_s: float = 1.0, batch: int = 100
    ) -> None:
        self.app = app
        self.id = node_id or new_process_id()
        validate_queue(self.id)
        self.heartbeat_s = heartbeat_s
        self.batch = batch
        self.keys = ActorKeys(app.context.namespace)
        self.stopping = threading.Event()
        self.actors: dict[str, _Actor] = {}
        self._beater: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def dead_after_ms(self) -> int:
        """How long a silent node counts as alive."""
        return round(3 * self.heartbeat_s * 1000)

    def start(self) -> Node:
        """Announce the node and spawn the app's declared actors."""
        self._beat()
        self._beater = threading.Thread(target=self._heartbeat, name="distq-node", daemon=True)
        self._beater.start()
        for name, (behaviour, options) in self.app.actors.items():
            self.spawn(behaviour, name=name, **options)
        return self

    def spawn(
        self,
        behaviour: Any,
        name: str | None = None,
        *,
        supervise: bool = False,
        trap_exit: bool = False,
    ) -> ActorRef:
        """Start an actor from a behaviour (a function looping on ``receive()``,
        or a class, or an object, with ``receive(self, message)``).

        A name registers it cluster-wide and gives it a stable id (its mailbox
        outlives the node). ``supervise=True`` restarts it when it crashes.

        Raises:
            NameTaken: a live actor elsewhere holds the name.
        """
        actor_id = f"n.{name}" if name else f"a.{secrets.token_hex(8)}"
        ref = ActorRef(self.id, actor_id, self.app)
        options = {"name": name, "supervise": supervise, "trap_exit": trap_exit}
        runner = _Actor(self, ref, behaviour, options)
        with self._lock:
            if actor_id in self.actors:
                raise NameTaken(f"{name} is held by {actor_id} on {self.id} (this node)")
        if name:
            # Registered first: an actor refused its name is not counted as this node's.
            self.app.client.run(register_op(self.app, name, ref))
        self.app.client.run(
            _requests([Command(("SADD", self.keys.node_actors(self.id), actor_id))])
        )
        if name:
            self._recover_mailbox(runner.queue)
        with self._lock:
            self.actors[actor_id] = runner
        runner.thread.start()
        return ref

    def _recover_mailbox(self, queue: str) -> None:
        """Give back at once the messages a dead incarnation of a named actor held.

        A mailbox has one consumer, the holder of its name: once this node holds
        it, messages still leased belong to an incarnation whose node died (they
        would otherwise wait out their lease). Nacked oldest last, so they go
        back to the head of the mailbox in their order, each counted as delivered.
        """
        client = self.app.client
        leased = client.run(single(Command(("ZRANGE", self.app.context.keys(queue).leased, 0, -1))))
        held = sorted((job_id(bytes(core), queue) for core in leased), reverse=True)
        if held:
            log.warning("actor mailbox %s: %d message(s) of a lost incarnation", queue, len(held))
            client.nack(*held, reason="actor's node lost")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every actor (they see ActorStopped in ``receive()``), then leave."""
        self.stopping.set()
        for runner in list(self.actors.values()):
            runner.stopped.wait(timeout)
        if self._beater is not None:
            self._beater.join(timeout=self.heartbeat_s + 5)
        self.app.client.run(
            _requests(
                [
                    Command(("ZREM", self.keys.nodes, self.id)),
                    Command(("DEL", self.keys.node(self.id), self.keys.node_actors(self.id))),
                ]
            )
        )

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> None:
        """Block until the node is stopped (by :meth:`stop` from another thread)."""
        while not self.stopping.wait(1.0):
            pass

    # -- bookkeeping

    def _actor_stopped(self, runner: _Actor) -> None:
        with self._lock:
            self.actors.pop(runner.ref.actor, None)
        app = self.app
        try:
            watchers = app.client.run(_stopped_op(app, self, runner))
            _tell_watchers(app, runner.ref, [bytes(w).decode() for w in watchers], runner.reason)
        except DistqError as exc:
            log.warning(
                "actor %s stopped, but its watchers were not told: %s", runner.ref.actor, exc
            )

    def _beat(self) -> None:
        import os
        import socket

        fields = ["host", socket.gethostname(), "pid", os.getpid()]
        self.app.client.run(
            single(
                ScriptCall(
                    SCRIPTS["node_beat"],
                    (self.keys.nodes, self.keys.node(self.id)),
                    (self.id, self.dead_after_ms, *fields),
                )
            )
        )

    def _heartbeat(self) -> None:
        while not self.stopping.wait(self.heartbeat_s):
            try:
                self._beat()
                self._extend_leases()
                self._reap()
            except DistqError as exc:
                log.warning("node %s heartbeat failed: %s", self.id, exc)

    def _extend_leases(self) -> None:
        held = [job for runner in list(self.actors.values()) for job in runner.held()]
        if held:
            with self.app.client.pipeline() as pipe:
                for job in held:
                    pipe.working(job)
            pipe.execute(raise_on_error=False)

    def _reap(self) -> None:
        dead = self.app.client.run(
            single(
                ScriptCall(
                    SCRIPTS["node_reap"],
                    (self.keys.nodes, self.keys.names),
                    (self.keys.namespace,),
                )
            )
        )
        for entry in dead:
            node, actor, *watchers = (bytes(x).decode() for x in entry)
            log.warning("node %s is gone: actor %s is down", node, actor)
            _tell_watchers(self.app, ActorRef(node, actor, self.app), watchers, "node down")


def _stopped_op(app: App, node: Node, runner: _Actor) -> Op[list[Any]]:
    keys = ActorKeys(app.context.namespace)
    steps: Step = [
        Command(("SMEMBERS", keys.watchers(runner.ref.actor))),
        Command(("DEL", keys.watchers(runner.ref.actor))),
        Command(("SREM", keys.node_actors(node.id), runner.ref.actor)),
    ]
    if runner.name:
        steps.append(Command(("HDEL", keys.names, runner.name)))
    replies = yield steps
    return list(replies[0])


def _tell_watchers(app: App, ref: ActorRef, watchers: list[str], reason: str) -> None:
    ops = []
    for entry in watchers:
        node, actor, kind = entry.split(" ")
        message = {"exit" if kind == "link" else "down": ref, "reason": reason}
        ops.append(send_op(app, ActorRef(node, actor, app), {"m": message}))
    if ops:
        app.client._conn.run_many(ops)
