"""Worker presence and control queues, against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import distq
from distq.connection.ops import Command, single
from distq.runtime.control import (
    Presence,
    interpret,
    list_workers,
    new_worker_id,
    ping,
    send_control,
    workers_op,
)
from processes import cli


@pytest.fixture
def client(url: str, namespace: str) -> Iterator[distq.Client]:
    with distq.connect(url, namespace=namespace) as made:
        yield made


def _zset_ids(client: distq.Client) -> list[str]:
    raw = client.run(single(Command(("ZRANGE", f"{client.namespace}:workers", 0, -1))))
    return [item.decode() for item in raw]


class _Worker:
    """A thread standing in for a worker process: beats, answers pings, obeys stop."""

    def __init__(self, client: distq.Client, heartbeat_s: float = 0.05) -> None:
        self.presence = Presence(client, new_worker_id(), ["q1"], heartbeat_s=heartbeat_s)
        self.seen: list[str] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._halt.is_set():
            for message in self.presence.beat(0, None):
                self.seen.append(message)
                kind = interpret(message)
                if kind == "ping":
                    self.presence.answer_ping(message)
                elif kind == "stop":
                    self.presence.leave()
                    return
            self._halt.wait(self.presence.heartbeat_s)

    def __enter__(self) -> _Worker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(timeout=5)


# interpret (no server) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("verbose", "verbose"),
        ("v", "verbose"),
        ("vvv", "verbose"),
        ("quiet", "quiet"),
        ("q!", "quiet"),
        ("q", "quiet"),
        ("stop", "stop"),
        ("stopping", None),
        ("Stop", None),
        (" stop", None),
        ("ping", "ping"),
        ("pingx", None),
        ("Verbose", None),
        ("", None),
        ("hello", None),
    ],
)
def test_interpret_matches_distcl(message: str, kind: str | None) -> None:
    assert interpret(message) == kind


def test_new_worker_id_is_short_unique_and_plain() -> None:
    ids = {new_worker_id() for _ in range(200)}
    assert len(ids) == 200
    for worker_id in ids:
        host, pid, rand = worker_id.split(".")
        assert pid == str(os.getpid())
        assert re.fullmatch(r"[A-Za-z0-9_-]+", host)
        assert re.fullmatch(r"[0-9a-f]{6}", rand)


def test_bad_arguments(client: distq.Client) -> None:
    with pytest.raises(distq.InvalidArgument):
        Presence(client, "has space", ["q"])
    with pytest.raises(distq.InvalidArgument):
        Presence(client, "{x}", ["q"])
    with pytest.raises(distq.InvalidArgument):
        Presence(client, "ok", ["q"], heartbeat_s=0)
    with pytest.raises(distq.InvalidArgument):
        send_control(client, "ok", "")
    with pytest.raises(distq.InvalidArgument):
        ping(client, "ok", timeout=0)


# Presence ----------------------------------------------------------------------


def test_beat_then_list_workers_shows_the_fields(client: distq.Client) -> None:
    presence = Presence(client, new_worker_id(), ["emails", "sms"], heartbeat_s=5)
    before = time.time()
    assert presence.beat(0, None) == []
    [worker] = list_workers(client)
    assert worker["id"] == presence.worker_id
    assert worker["host"] == socket.gethostname()
    assert worker["pid"] == os.getpid()
    assert worker["queues"] == ["emails", "sms"]
    assert worker["done"] == 0
    assert worker["current"] is None
    assert worker["verbose"] is False
    assert 0 <= worker["age"] < 1
    assert abs(worker["started"] - before) < 5
    assert abs(worker["beat"] - time.time()) < 5  # server time, same machine

    assert presence.beat(7, "D-abc-emails") == []
    [worker] = list_workers(client)
    assert (worker["done"], worker["current"]) == (7, "D-abc-emails")
    ttl = client.run(single(Command(("PTTL", f"{client.namespace}:w:{presence.worker_id}"))))
    assert 10_000 < ttl <= 15_000

    presence.leave()
    assert list_workers(client) == []
    assert _zset_ids(client) == []


def test_age_grows_without_beats(client: distq.Client) -> None:
    presence = Presence(client, new_worker_id(), ["q"], heartbeat_s=5)
    presence.beat(0, None)
    time.sleep(0.3)
    [worker] = list_workers(client)
    assert 0.25 <= worker["age"] < 2


def test_entry_disappears_after_three_heartbeats(client: distq.Client) -> None:
    alive = Presence(client, new_worker_id(), ["q"], heartbeat_s=0.2)
    dying = Presence(client, new_worker_id(), ["q"], heartbeat_s=0.2)
    alive.beat(0, None)
    dying.beat(0, None)
    last_beat = time.monotonic()
    both = {alive.worker_id, dying.worker_id}
    assert {w["id"] for w in list_workers(client)} == both
    while time.monotonic() < last_beat + 0.3:  # under 3 x 0.2 s: still there
        alive.beat(0, None)
        time.sleep(0.05)
    listed = {w["id"] for w in list_workers(client)}
    if time.monotonic() < last_beat + 0.5:  # unless this machine was too slow to tell
        assert listed == both
    while time.monotonic() < last_beat + 0.8:  # past 3 x 0.2 s since dying's beat
        alive.beat(0, None)
        time.sleep(0.05)
    alive.beat(0, None)
    assert [w["id"] for w in list_workers(client)] == [alive.worker_id]
    assert _zset_ids(client) == [alive.worker_id]  # the expired id was pruned


def test_several_workers_sorted_by_id(client: distq.Client) -> None:
    presences = [Presence(client, f"w{n}", ["q"], heartbeat_s=5) for n in (3, 1, 2)]
    for presence in presences:
        presence.beat(0, None)
    assert [w["id"] for w in list_workers(client)] == ["w1", "w2", "w3"]


def test_namespaces_are_separate(url: str, namespace: str, client: distq.Client) -> None:
    Presence(client, "same", ["q"], heartbeat_s=5).beat(0, None)
    with distq.connect(url, namespace=namespace + "x") as other:
        assert list_workers(other) == []
        assert send_control(other, "same", "stop") is False
    assert Presence(client, "same", ["q"]).beat(0, None) == []


# Control messages ----------------------------------------------------------------


def test_control_messages_round_trip_in_order(client: distq.Client) -> None:
    presence = Presence(client, new_worker_id(), ["q"], heartbeat_s=5)
    assert send_control(client, presence.worker_id, "first") is False  # not beaten yet
    assert presence.beat(0, None) == ["first"]
    for n in range(12):
        assert send_control(client, presence.worker_id, f"m{n}") is True
    assert presence.beat(0, None) == [f"m{n}" for n in range(10)]
    assert presence.beat(0, None) == ["m10", "m11"]
    assert presence.beat(0, None) == []


def test_verbose_and_quiet_set_the_flag(client: distq.Client) -> None:
    presence = Presence(client, new_worker_id(), ["q"], heartbeat_s=5)
    presence.beat(0, None)
    send_control(client, presence.worker_id, "vvv")
    assert presence.beat(0, None) == ["vvv"]
    assert presence.verbose is True
    presence.beat(0, None)
    assert list_workers(client)[0]["verbose"] is True
    send_control(client, presence.worker_id, "q!")
    presence.beat(0, None)
    assert presence.verbose is False


def test_control_queue_expires(client: distq.Client) -> None:
    send_control(client, "ghost", "stop")
    ttl = client.run(single(Command(("PTTL", f"{client.namespace}:z:ghost"))))
    assert 0 < ttl <= 24 * 3600 * 1000


# ping --------------------------------------------------------------------------


def test_ping_a_live_worker(client: distq.Client) -> None:
    with _Worker(client) as worker:
        seconds = ping(client, worker.presence.worker_id, timeout=5)
        assert 0 < seconds < 5
        assert ping(client, worker.presence.worker_id, timeout=5) > 0
    assert worker.seen == ["ping", "ping"]


def test_ping_an_unknown_worker_times_out(client: distq.Client) -> None:
    start = time.monotonic()
    with pytest.raises(distq.Timeout, match=r"no pong from worker 'nobody' within 0\.5 s"):
        ping(client, "nobody", timeout=0.5)
    assert 0.5 <= time.monotonic() - start < 2
    # the unanswered ping was withdrawn: a worker starting later does not see it
    assert Presence(client, "nobody", ["q"]).beat(0, None) == []


def test_ping_op_on_an_async_client(url: str, namespace: str, client: distq.Client) -> None:
    Presence(client, "aw", ["q"], heartbeat_s=5).beat(0, None)

    async def main() -> list[str]:
        async with distq.connect_async(url, namespace=namespace) as aclient:
            return [w["id"] for w in await aclient.run(workers_op(namespace))]

    assert asyncio.run(main()) == ["aw"]


# CLI ---------------------------------------------------------------------------


def test_cli_workers_json(url: str, namespace: str, client: distq.Client) -> None:
    empty = cli(url, namespace, "--json", "workers")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == []
    presence = Presence(client, new_worker_id(), ["a", "b"], heartbeat_s=10)
    presence.beat(4, "D-xyz-a")
    done = cli(url, namespace, "--json", "workers")
    assert done.returncode == 0, done.stderr
    [worker] = json.loads(done.stdout)
    assert worker["id"] == presence.worker_id
    assert worker["queues"] == ["a", "b"]
    assert (worker["done"], worker["current"], worker["pid"]) == (4, "D-xyz-a", os.getpid())
    table = cli(url, namespace, "workers")
    assert table.returncode == 0, table.stderr
    assert presence.worker_id in table.stdout and "D-xyz-a" in table.stdout


def test_cli_ctl_stop(url: str, namespace: str, client: distq.Client) -> None:
    presence = Presence(client, new_worker_id(), ["q"], heartbeat_s=10)
    presence.beat(0, None)
    done = cli(url, namespace, "ctl", "stop", presence.worker_id)
    assert done.returncode == 0, done.stderr
    assert presence.worker_id in done.stdout
    verbose = cli(url, namespace, "--json", "ctl", "verbose", presence.worker_id)
    assert json.loads(verbose.stdout) == {
        "worker": presence.worker_id,
        "message": "verbose",
        "live": True,
    }
    assert presence.beat(0, None) == ["stop", "verbose"]
    unknown = cli(url, namespace, "ctl", "quiet", "ghost")
    assert unknown.returncode == 0
    assert "no live worker" in unknown.stderr


def test_cli_ctl_ping(url: str, namespace: str, client: distq.Client) -> None:
    with _Worker(client) as worker:
        done = cli(url, namespace, "--json", "ctl", "ping", worker.presence.worker_id)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ms"] > 0
        text = cli(url, namespace, "ctl", "ping", worker.presence.worker_id)
        assert text.stdout.startswith(f"pong from {worker.presence.worker_id} in ")
    failed = cli(url, namespace, "ctl", "ping", "ghost", "--timeout", "0.3")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: no pong from worker 'ghost'")
