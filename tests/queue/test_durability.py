"""The start-up check of what a server's settings risk (RELIABILITY rule 6)."""

from __future__ import annotations

from typing import Any

import pytest

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


def test_a_full_server_refuses_new_jobs_and_still_drains(engine: Any, fresh_server: Any) -> None:
    # maxmemory reached under noeviction: the producer gets a typed OutOfMemory,
    # every add it was told succeeded is kept, and consumers can still drain.
    server = fresh_server(
        engine_name=engine.name, appendonly=False, maxmemory="3mb", maxmemory_policy="noeviction"
    )
    with distq.connect(server.url) as client:
        body = "x" * 20_000
        added: list[str] = []
        with pytest.raises(distq.OutOfMemory) as refused:
            for _ in range(1_000):  # 20 MB: well past 3 MB
                added.append(client.addjob("full", body))
        assert "maxmemory" in str(refused.value) or "OOM" in str(refused.value)
        assert added and client.qlen("full") == len(added)

        drained: list[str] = []
        for _ in range(len(added) + 1):
            jobs = client.getjob("full", count=10, nohang=True)
            if not jobs:
                break
            assert client.ackjob(*jobs) == len(jobs)
            drained += [job.id for job in jobs]
        assert drained == added
        assert client.addjob("full", body)  # room again
