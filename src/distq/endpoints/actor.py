"""Actors: long-lived processes with a mailbox, names, references, send and call.

An actor lives on a *node* (a distq process hosting actors: ``app.node()`` or
``distq node MODULE:APP``). It has a unique id and an ordered mailbox — a
queue of distq's reliable queue core — so its messages are delivered at least
once, in order per sender, and a message being handled when its node dies is
handled again by the actor's next incarnation. An :class:`ActorRef` is a
small value (node, actor id) that travels inside any message, so the receiver
can answer. Names are unique cluster-wide and released when their actor stops
or its node dies.

A behaviour is a function that loops on :func:`receive` (as in the Factor
seed)::

    def process1():
        while True:
            receive()
            reply("Message Received!")

or a class with a ``receive(self, message)`` method, whose return value
answers a ``call``. With a cluster secret set, every actor message carries an
HMAC of its bytes; one without a valid MAC is refused, logged and
dead-lettered, never delivered.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from distq.codec import signing
from distq.codec.result import decode_result
from distq.connection.ops import Command, Op, ScriptCall, single
from distq.endpoints.task import SCRIPTS
from distq.errors import (
    ActorNotFound,
    CodecError,
    InvalidArgument,
    Timeout,
)
from distq.queue import ops as queue_ops
from distq.queue.keys import ActorKeys, mailbox_queue, validate_queue
from distq.queue.ops import Duration, QueueContext, seconds_to_ms

if TYPE_CHECKING:
    from distq.endpoints.app import App
    from distq.endpoints.node import _Actor

__all__ = ["ActorRef", "receive", "reply", "self_ref"]

log = logging.getLogger(__name__)

#: Seconds a mailbox message stays leased to its actor (renewed while held).
MAILBOX_LEASE_S = 30.0
#: Deliveries after which a message that keeps crashing its actor is dead-lettered.
MAILBOX_MAX_DELIVERIES = 5
#: Longest blocking wait of an idle actor before it looks at its stop flag.
IDLE_WAIT_S = 1.0
#: Pause before an actor fetches again after the server could not be reached.
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True, slots=True)
class ActorRef:
    """A reference to an actor: send it messages, call it, pass it in messages.

    Attributes:
        node: the node the actor lived on when the reference was made.
        actor: the actor's id (its mailbox); names give stable ids.
    """

    node: str
    actor: str
    app: App | None = field(default=None, compare=False, repr=False)

    def __distq_ref__(self) -> tuple[str, str]:
        return (self.node, self.actor)

    def _bound(self) -> App:
        if self.app is None:
            raise InvalidArgument("this ActorRef is not bound to an app: use app.send/app.call")
        return self.app

    def send(self, message: Any) -> None:
        """Put ``message`` in the actor's mailbox and return at once."""
        self._bound().send(self, message)

    def call(self, message: Any, timeout: Duration = 10.0) -> Any:
        """Send ``message`` and wait for the reply to that very message.

        Raises:
            RemoteError: the actor raised while handling it.
            Timeout: no reply in time.
        """
        return self._bound().call(self, message, timeout=timeout)


# Envelopes ----------------------------------------------------------------------


def seal(app: App, actor: str, envelope: dict[str, Any]) -> bytes:
    """The stored bytes of a message: encoded, MAC'd when the app has a secret."""
    return signing.seal(app.codec, app.secret, actor, envelope)


def unseal(app: App, actor: str, stored: bytes) -> dict[str, Any]:
    """The envelope in ``stored``, its MAC checked before anything is decoded.

    Raises:
        CodecError: no valid MAC (with a secret set), or not an envelope.
    """
    try:
        envelope = signing.unseal(app.codec, app.secret, actor, stored)
    except CodecError as exc:
        if "not a sealed message" in str(exc):
            raise CodecError("not an actor message (no envelope)") from exc
        raise
    if not isinstance(envelope, dict) or "m" not in envelope:
        raise CodecError("not an actor message")
    return envelope


# Sending and calling ------------------------------------------------------------


def make_envelope(message: Any) -> dict[str, Any]:
    """The envelope of a message; sent from inside an actor, it names the
    sender, so that the receiver's ``reply()`` reaches it (as in the seed)."""
    current = getattr(_local, "actor", None)
    if current is None:
        return {"m": message}
    return {"m": message, "f": current.ref}


def send_op(app: App, ref: ActorRef, message: dict[str, Any]) -> Op[str]:
    """Add an envelope, sealed, to an actor's mailbox."""
    return queue_ops.addjob(
        app.context,
        mailbox_queue(ref.actor),
        seal(app, ref.actor, message),
        retry=MAILBOX_LEASE_S,
        max_deliveries=MAILBOX_MAX_DELIVERIES,
    )


def send_many_op(app: App, ref: ActorRef, envelopes: list[dict[str, Any]]) -> Op[list[str]]:
    """Add many envelopes, sealed and in order, to one actor's mailbox."""
    return queue_ops.addjobs(
        app.context,
        mailbox_queue(ref.actor),
        [seal(app, ref.actor, message) for message in envelopes],
        retry=MAILBOX_LEASE_S,
        max_deliveries=MAILBOX_MAX_DELIVERIES,
    )


def call_op(app: App, ref: ActorRef, message: Any, timeout: Duration) -> Op[Any]:
    """Send a message and wait for the reply to it."""
    call_id = secrets.token_hex(12)
    reply_key = ActorKeys(app.context.namespace).reply(call_id)
    yield from send_op(app, ref, {"m": message, "c": call_id})
    deadline = time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout(f"no reply from actor {ref.actor} within {timeout} s")
        wait_s = round(max(0.001, min(app.context.wait_slice_s, remaining)), 3)
        found = yield from single(Command(("BLPOP", reply_key, wait_s)))
        if found is not None:
            return decode_result(app.codec, bytes(found[1]))


def reply_request(ctx: QueueContext, call_id: str, stored: bytes) -> list[Command]:
    """The commands that hand a call its reply (kept a minute for a slow reader)."""
    key = ActorKeys(ctx.namespace).reply(call_id)
    return [Command(("RPUSH", key, stored)), Command(("PEXPIRE", key, 60_000))]


# The running actor ----------------------------------------------------------------

_local = threading.local()


def _actor() -> _Actor:
    actor = getattr(_local, "actor", None)
    if actor is None:
        raise InvalidArgument("receive(), reply() and self_ref() work only inside an actor")
    return actor  # type: ignore[no-any-return]


def receive(timeout: float | None = None) -> Any:
    """The next message of the calling actor, waiting up to ``timeout`` s (None: forever).

    Raises:
        Timeout: nothing arrived in time.
        ActorStopped: the actor's node is stopping it (let it propagate).
    """
    return _actor().receive(timeout)


def reply(value: Any) -> None:
    """Answer the sender of the message being handled (a ``call`` gets it as its result)."""
    _actor().reply(value)


def self_ref() -> ActorRef:
    """The reference of the calling actor."""
    return _actor().ref


def _requests(step: Sequence[Command]) -> Op[list[Any]]:
    replies = yield list(step)
    return replies


def register_op(app: App, name: str, ref: ActorRef) -> Op[Any]:
    """Register ``name`` for ``ref`` (refused while a live actor holds it)."""
    keys = ActorKeys(app.context.namespace)
    return single(
        ScriptCall(
            SCRIPTS["actor_register"],
            (keys.names, keys.nodes),
            (_valid_name(name), ref.node, ref.actor),
        )
    )


def whereis_op(app: App, name: str) -> Op[ActorRef | None]:
    """The reference registered under ``name`` (None: no live actor has it)."""
    keys = ActorKeys(app.context.namespace)
    found = yield from single(
        ScriptCall(SCRIPTS["actor_whereis"], (keys.names, keys.nodes), (_valid_name(name),))
    )
    if found is None:
        return None
    node, actor = bytes(found).decode().split(" ", 1)
    return ActorRef(node, actor, app)


def watch_op(app: App, watcher: ActorRef, watched: ActorRef, kind: str) -> Op[Any]:
    """Record that ``watcher`` wants to hear when ``watched`` stops."""
    keys = ActorKeys(app.context.namespace)
    entry = f"{watcher.node} {watcher.actor} {kind}"
    return _requests([Command(("SADD", keys.watchers(watched.actor), entry))])


def _valid_name(name: str) -> str:
    if not isinstance(name, str) or not name or " " in name:
        raise InvalidArgument(f"bad actor name {name!r}")
    validate_queue(name)
    return name


def need(ref: ActorRef | None, name: str) -> ActorRef:
    """``ref``, or ActorNotFound naming ``name``."""
    if ref is None:
        raise ActorNotFound(f"no live actor is registered as {name!r}")
    return ref
