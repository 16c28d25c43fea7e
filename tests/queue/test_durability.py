"""The start-up check of what a server's settings risk (RELIABILITY rule 6)."""

from __future__ import annotations

from typing import Any

import distq
from distq.queue import admin


def _state(url: str) -> dict[str, Any]:
    with distq.connect(url) as client:
        return client.run(admin.durability(client._ctx))


def test_aof_off_is_reported(url: str) -> None:
    state = _state(url)  # the session servers run without AOF
    assert state["aof"] is False
    assert any("AOF is off" in w for w in admin.durability_warnings(state))


def test_aof_always_and_noeviction_raise_no_warning(fresh_server: Any) -> None:
    server = fresh_server(appendfsync="always")
    state = _state(server.url)
    assert state == {"aof": True, "appendfsync": "always", "maxmemory_policy": "noeviction"}
    assert admin.durability_warnings(state) == []


def test_an_evicting_policy_is_reported(fresh_server: Any) -> None:
    server = fresh_server(maxmemory_policy="allkeys-lru")
    warnings = admin.durability_warnings(_state(server.url))
    assert any("allkeys-lru" in w and "noeviction" in w for w in warnings)
