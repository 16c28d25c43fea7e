"""An actor outlives a server outage: its fetch fails, it waits and retries."""

from __future__ import annotations

import time
from typing import Any

import distq


def test_an_actor_survives_a_server_restart(fresh_server: Any, namespace: str) -> None:
    server = fresh_server(appendfsync="always")
    app = distq.App(server.url, namespace=namespace)

    class Echo:
        def receive(self, message: Any) -> Any:
            return message

    with app.node(heartbeat_s=0.3) as node:
        ref = node.spawn(Echo, name="echo")
        assert app.call(ref, "before", timeout=5) == "before"
        server.kill()
        time.sleep(2.0)  # longer than the actor's idle wait: its fetches fail meanwhile
        server.restart()
        deadline = time.monotonic() + 15
        answer = None
        while answer is None and time.monotonic() < deadline:
            try:
                answer = app.call(ref, "after", timeout=3)
            except (distq.ConnectionFailed, distq.Timeout):
                time.sleep(0.2)
        assert answer == "after"
        assert ref.actor in node.actors  # the same actor, never crashed
    app.close()
