"""A server of DisTcl-protocol services, speaking DisTcl's wire protocol exactly.

It loops as ``distcl::serve`` does: ``BLPOP z:ID q:S p:S …``; a control
message ``stop`` ends it (``v*`` turns verbose logging on, ``q*`` off); a
request is recorded on the run list ``r:S:KEY`` and computed only by the
first server to record it; the result is cached in ``v:S:KEY`` when it has
an expiry and pushed to ``w:S:KEY`` once per waiting get. Tcl clients and
Tcl servers share the same keys.

What it adds, invisibly to Tcl peers: the run list lives for twice the lease
and is renewed while the computation runs (not a fixed 10 s, so a long
computation is not started twice), and each claimed request is recorded in a
processing set; when a server dies mid-computation, another server takes the
request over — run list and waiters intact — instead of the clients timing out.
Requests for a KEY that queued up behind its computation (one server computes
one request at a time, so DisTcl would compute each of them again) are served
its result; one taken off the queue once KEY is cached is answered from the cache.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from typing import Any

from distq.connection.ops import Command, Op, ScriptCall, single
from distq.endpoints.app import App
from distq.endpoints.distcl import DistclKeys, format_value, tcl_split
from distq.endpoints.service import Service
from distq.endpoints.task import SCRIPTS
from distq.errors import CodecError, DistqError, InvalidArgument
from distq.runtime import pool
from distq.runtime.control import Presence, interpret, new_worker_id

__all__ = ["DistclServer"]

log = logging.getLogger(__name__)

#: Seconds of one blocking wait (DisTcl waits 60; shorter lets stop flags and
#: the take-over of abandoned requests be seen sooner).
WAIT_S = 1.0


class DistclServer:
    """Serves an app's DisTcl-protocol services until told to stop.

    Args:
        app: the app defining the services.
        services: the services to serve (default: every DisTcl one of the app).
        server_id: names the control queue ``z:ID`` (default: a new worker id).
        heartbeat_s: seconds between renewals of the running computation's lease.
    """

    def __init__(
        self,
        app: App,
        services: list[Service] | None = None,
        server_id: str | None = None,
        heartbeat_s: float = 2.0,
    ) -> None:
        self.app = app
        chosen = services or [s for s in app.services.values() if s.options.protocol == "distcl"]
        if not chosen:
            raise InvalidArgument("no DisTcl-protocol service to serve")
        self.services = {s.name: s for s in chosen}
        self.id = server_id or new_worker_id()
        self.heartbeat_s = heartbeat_s
        self.control = DistclKeys.control(self.id)
        self.processing = f"{app.context.namespace}:distcl:processing"
        self._queues: dict[bytes, tuple[Service, int]] = {}
        for service in chosen:
            self._queues[service.distcl.get_queue.encode()] = (service, 1)
            self._queues[service.distcl.prefetch_queue.encode()] = (service, 0)
        self._current: tuple[Service, str] | None = None
        self._lock = threading.Lock()
        self.stopped = False
        self.done = 0

    # -- the loop

    def run(self) -> dict[str, Any]:
        """Serve until ``stop`` (on ``z:ID``, or the native control queue) or SIGTERM."""
        log.info("Control queue is '%s'", self.control)
        queues = [s.name for s in self.services.values()]
        presence = Presence(
            self.app.client, self.id, [f"distcl:{q}" for q in queues], self.heartbeat_s
        )
        done = threading.Event()
        beater = threading.Thread(target=self._heartbeat, args=(presence, done), daemon=True)
        beater.start()
        try:
            while not self.stopped and not pool.stopping():
                self.step()
        finally:
            done.set()
            beater.join(timeout=self.heartbeat_s + 5)
            presence.leave()
        return {"done": self.done, "stopped": "control" if self.stopped else "signal"}

    def step(self) -> None:
        """Wait for one request (or control message) and handle it."""
        keys = [self.control, *(k.decode() for k in self._queues)]
        reply = self.app.client.run(single(Command(("BLPOP", *keys, WAIT_S))))
        if reply is None:
            self._take_over()
            return
        queue, request = bytes(reply[0]), bytes(reply[1]).decode(errors="replace")
        if queue == self.control.encode():
            self._control(request)
            return
        service, is_get = self._queues[queue]
        log.debug("QUEUE %s REQUEST '%s'", queue.decode(), request)
        member = json.dumps([service.name, request])
        claimed = self.app.client.run(single(self._claim(service, request, is_get, member)))
        if claimed == 1:  # (0: in flight elsewhere; 2: cached meanwhile, answered)
            self._compute(service, request, member)

    def _control(self, message: str) -> None:
        kind = interpret(message)
        if kind == "stop":
            self.stopped = True
        elif kind in ("verbose", "quiet"):
            logging.getLogger("distq").setLevel(
                logging.DEBUG if kind == "verbose" else logging.INFO
            )
        else:
            log.warning("unknown control message %r on %s", message, self.control)

    def _claim(self, service: Service, key: str, is_get: int, member: str) -> ScriptCall:
        lease_ms = round(service.options.lease * 1000)
        keys = service.distcl
        return ScriptCall(
            SCRIPTS["distcl_claim"],
            (keys.run_list(key), self.processing, keys.value(key), keys.waitlist(key)),
            (is_get, max(1, round(2 * service.options.lease)), member, lease_ms),
        )

    def _compute(self, service: Service, key: str, member: str) -> None:
        with self._lock:
            self._current = (service, key)
        try:
            status, value, expiry = _call(service, key)
        finally:
            with self._lock:
                self._current = None
        keys = service.distcl
        self.app.client.run(
            single(
                ScriptCall(
                    SCRIPTS["distcl_done"],
                    (
                        keys.value(key),
                        keys.run_list(key),
                        keys.waitlist(key),
                        self.processing,
                        keys.get_queue,
                        keys.prefetch_queue,
                    ),
                    (
                        format_value(status, value),
                        "" if expiry is None else max(1, round(expiry)),
                        member,
                        key,
                    ),
                )
            )
        )
        self.done += 1

    def _take_over(self) -> None:
        """Compute the requests whose server stopped renewing them."""
        lease_ms = round(min(s.options.lease for s in self.services.values()) * 1000)
        members = self.app.client.run(
            single(
                ScriptCall(SCRIPTS["distcl_reap"], (self.processing,), (lease_ms, *self.services))
            )
        )
        for raw in members:
            member = bytes(raw).decode()
            name, key = json.loads(member)
            service = self.services.get(name)
            if service is None:
                continue  # another server's service: leave it to them
            log.warning("taking over %s '%s' from a server that stopped", name, key)
            self._compute(service, key, member)

    # -- the heartbeat thread

    def _heartbeat(self, presence: Presence, done: threading.Event) -> None:
        while not done.is_set():
            try:
                for message in presence.beat(self.done, None):
                    self._control(message)
                with self._lock:
                    current = self._current
                if current is not None:
                    self.app.client.run(self._renew(*current))
            except DistqError as exc:
                log.warning("heartbeat failed: %s", exc)
            done.wait(self.heartbeat_s)

    def _renew(self, service: Service, key: str) -> Op[Any]:
        lease_ms = round(service.options.lease * 1000)
        member = json.dumps([service.name, key])
        replies = yield [
            Command(("PEXPIRE", service.distcl.run_list(key), 2 * lease_ms)),
            ScriptCall(SCRIPTS["distcl_renew"], (self.processing,), (lease_ms, member)),
        ]
        return replies


def _call(service: Service, key: str) -> tuple[int, str, float | None]:
    """Run the service on the request's arguments: (Tcl status, value, expiry)."""
    try:
        args = tcl_split(key)
        value = service.fn(*args)
        if inspect.isawaitable(value):
            import asyncio

            value = asyncio.run(_awaited(value))
        delivered, expiry = service.outcome(value)
        return 0, _text(delivered), expiry
    except CodecError as exc:
        return 1, f"malformed request '{key}': {exc}", None
    except Exception as exc:  # the computation's failure is its result (status 1)
        log.info("service %s '%s' raised %s", service.name, key, exc)
        return 1, str(exc), None


async def _awaited(value: Any) -> Any:
    return await value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else str(value)
