"""Edge cases of the command set, on every engine, with the sync and the async client:
resent adds under ``maxlen``, wake-ups for delayed adds, TTL and delay bounds,
stale acks, delivery numbers across releases, argument checks, namespaces."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

import distq
from distq.connection.ops import ScriptCall, single
from distq.queue import ops
from distq.queue.ops import QueueContext

STALE_WARNING = "refused 1 stale ack(s): the job was delivered again since"


def test_a_resent_add_with_maxlen_is_not_refused(url: str, namespace: str, queue: str) -> None:
    """The first attempt created the jobs and filled the queue: the resend
    finds them and must not count them against maxlen again."""
    with distq.connect(url, namespace=namespace) as client:
        client.addjob(queue, "before", maxlen=3)
        op = ops.addjobs(QueueContext(namespace=namespace), queue, ["a", "b"], maxlen=3)
        step = next(op)
        conn = client._conn
        assert conn.roundtrip(step) == [2]
        assert conn.roundtrip(step) == [0]  # the reply was "lost": resent, nothing created
        assert client.qlen(queue) == 3
        assert client.qstat(queue)["jobs_in"] == 3
        with pytest.raises(distq.QueueFull):  # new jobs still count
            client.addjob(queue, "c", maxlen=3)


def test_blocked_getjob_sees_a_delayed_job_added_meanwhile(
    client: Any, make_client: Any, queue: str
) -> None:
    producer = make_client()
    assert client.qlen(queue) == 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(client.getjob, queue, timeout=5)
        time.sleep(0.3)  # the consumer is now blocked in its first (2 s) slice
        assert not waiting.done()
        added = time.monotonic()
        job_id = producer.addjob(queue, "soon", delay=0.3)
        jobs = waiting.result(timeout=10)
        seen_after = time.monotonic() - added
    assert [job.id for job in jobs] == [job_id]
    assert 0.2 <= seen_after < 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"ttl": 0},
        {"ttl": 0.0001},  # rounds to 0 ms
        {"ttl": timedelta(0)},
        {"ttl": -1},
        {"delay": 10, "ttl": 10},
        {"delay": 11, "ttl": 10},
        {"delay": timedelta(seconds=5), "ttl": 5},
    ],
    ids=["ttl0", "ttl-under-1ms", "ttl-timedelta0", "ttl-negative", "delay-eq-ttl",
         "delay-over-ttl", "delay-eq-ttl-timedelta"],
)
def test_ttl_of_zero_and_delay_not_below_ttl_are_refused(
    client: Any, queue: str, options: dict[str, Any]
) -> None:
    with pytest.raises(distq.InvalidArgument):
        client.addjob(queue, "x", **options)
    with pytest.raises(distq.InvalidArgument):
        client.addjobs(queue, ["x", "y"], **options)
    assert client.qstat(queue)["jobs_in"] == 0
    job_id = client.addjob(queue, "x", delay=9.999, ttl=10)  # just below is fine
    assert client.show(job_id)["state"] == "delayed"


def test_a_stale_ack_is_logged(client: Any, queue: str, caplog: pytest.LogCaptureFixture) -> None:
    client.addjob(queue, "x", retry=30)
    [first] = client.getjob(queue, nohang=True)
    assert client.nack(first) == 1
    [second] = client.getjob(queue, nohang=True)
    with caplog.at_level(logging.WARNING, logger="distq.queue"):
        assert client.ackjob(first) == 0
        assert client.fastack(first) == 0
    warnings = [r for r in caplog.records if r.name == "distq.queue"]
    assert [r.getMessage() for r in warnings] == [STALE_WARNING, STALE_WARNING]
    assert all(r.levelno == logging.WARNING for r in warnings)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="distq.queue"):
        assert client.ackjob(second) == 1
        assert client.ackjob(second) == 0  # gone, not stale: nothing to warn about
        assert client.ackjob(first.id) == 0
    assert not [r for r in caplog.records if r.name == "distq.queue"]


def test_release_never_reuses_a_delivery_number(client: Any, queue: str) -> None:
    job_id = client.addjob(queue, "x", retry=30)
    [first] = client.getjob(queue, nohang=True)
    assert client.release(first) == 1
    assert client.show(job_id)["deliveries"] == 0
    [second] = client.getjob(queue, nohang=True)
    assert second.id == job_id
    assert second.delivery > first.delivery
    assert client.show(job_id)["deliveries"] == 1
    # The released Job is fenced off: the job was delivered again since.
    assert client.ackjob(first) == 0
    assert client.nack(first) == 0
    assert client.release(first) == 0
    with pytest.raises(distq.LeaseLost):
        client.working(first)
    assert client.show(job_id)["state"] == "active"
    assert client.ackjob(second) == 1


def test_released_fetches_do_not_count_towards_max_deliveries(client: Any, queue: str) -> None:
    job_id = client.addjob(queue, "x", max_deliveries=2)
    numbers = []
    for _ in range(3):
        [job] = client.getjob(queue, nohang=True)
        numbers.append(job.delivery)
        assert client.release(job) == 1
    [job] = client.getjob(queue, nohang=True)
    numbers.append(job.delivery)
    assert numbers == sorted(set(numbers))  # strictly increasing
    assert client.show(job_id)["deliveries"] == 1
    assert client.nack(job) == 1
    [job] = client.getjob(queue, nohang=True)
    assert client.show(job_id)["deliveries"] == 2
    assert client.nack(job) == 1  # the second counted delivery: dead-lettered
    assert client.getjob(queue, nohang=True) == []
    [dead] = client.deadletters(queue)
    assert dead.id == job_id
    assert dead.reason is not None and "after 2 deliveries (max_deliveries=2)" in dead.reason
    assert client.ackjob(dead) == 1  # the peeked Job carries the current fence


def test_jscan_refuses_an_unknown_state_upfront(client: Any, queue: str) -> None:
    with pytest.raises(distq.InvalidArgument):
        client.jscan(queue=queue, state="bogus", busyloop=True)  # no jobs at all
    job_id = client.addjob(queue, "x")
    with pytest.raises(distq.InvalidArgument):
        client.jscan(queue=queue, state="bogus", busyloop=True)
    assert client.jscan(queue=queue, state="queued", busyloop=True)[1] == [job_id]
    assert client.jscan(queue=queue, state=distq.JobState.ACTIVE, busyloop=True)[1] == []


@pytest.mark.parametrize("name", ["a*", "q?", "[ab]", "x]", "back\\slash"])
def test_glob_characters_in_queue_names_are_refused(client: Any, name: str) -> None:
    with pytest.raises(distq.InvalidArgument):
        client.addjob(name, "x")
    with pytest.raises(distq.InvalidArgument):
        client.getjob(name, nohang=True)
    with pytest.raises(distq.InvalidArgument):
        client.qlen(name)
    with pytest.raises(distq.InvalidArgument):
        client.jscan(queue=name, busyloop=True)


def test_scans_match_the_namespace_literally(url: str, namespace: str, queue: str) -> None:
    """A namespace with glob characters does not scan other namespaces."""
    with (
        distq.connect(url, namespace=namespace + "x") as other,
        distq.connect(url, namespace=namespace + "?") as globby,
    ):
        other.addjob(queue, "not yours")
        assert globby.jscan(busyloop=True, count=1000)[1] == []
        assert globby.qscan(busyloop=True, count=1000)[1] == []
        mine = globby.addjob(queue, "yours")
        assert globby.jscan(busyloop=True, count=1000)[1] == [mine]
        assert globby.qscan(busyloop=True, count=1000)[1] == [queue]


def test_qpeek_script_with_count_zero_returns_nothing(url: str, namespace: str, queue: str) -> None:
    ctx = QueueContext(namespace=namespace)
    keys = ctx.keys(queue)

    def peek(count: int) -> ScriptCall:
        return ScriptCall(ctx.script("qpeek"), keys.all(), (count, "ready"))

    with distq.connect(url, namespace=namespace) as client:
        client.addjobs(queue, ["a", "b"])
        assert client.run(single(peek(0))) == []
        assert len(client.run(single(peek(5)))) == 2 * 6
        assert len(client.run(single(peek(-1)))) == 6
        assert client.qpeek(queue, 0) == []


def test_namespace_defaults_to_distq_namespace_env(
    url: str, namespace: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTQ_NAMESPACE", namespace)
    with distq.connect(url) as client, distq.connect(url, namespace=namespace) as explicit:
        assert client.namespace == namespace
        client.addjob(queue, "x")
        assert explicit.qlen(queue) == 1
    aclient = distq.connect_async(url)
    assert aclient.namespace == namespace
    asyncio.run(aclient.close())
    with distq.connect(url, namespace="other") as client:  # the argument wins
        assert client.namespace == "other"
    monkeypatch.setenv("DISTQ_NAMESPACE", "")
    with distq.connect(url) as client:
        assert client.namespace == "distq"
    monkeypatch.delenv("DISTQ_NAMESPACE")
    with distq.connect(url) as client:
        assert client.namespace == "distq"
    monkeypatch.setenv("DISTQ_NAMESPACE", "has space")
    with pytest.raises(distq.InvalidArgument):
        distq.connect(url)
    with pytest.raises(distq.InvalidArgument):
        distq.connect(url, namespace="")  # an explicit empty namespace is still refused
