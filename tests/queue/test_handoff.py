"""Jobs handed off to a blocked fetcher in the reply of its BLPOP (see addjob.lua):
delivered once, in their first delivery, and never lost when the fetcher is gone."""

from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import distq
from distq.connection.ops import Command, ScriptCall, single
from distq.queue.ops import QueueContext


def _register_a_fetcher(client: distq.Client, queue: str, block_ms: int) -> None:
    """What a blocking getjob does before its BLPOP — and then never BLPOP: a
    fetcher that died between the two."""
    ctx = QueueContext(namespace=client.namespace)
    keys = ctx.keys(queue)
    call = ScriptCall(ctx.script("getjob"), keys.all(), (1, secrets.token_bytes(8), block_ms))
    assert client.run(single(call)) == [-1]


def _wake_list(client: distq.Client, queue: str) -> list[bytes]:
    wake = QueueContext(namespace=client.namespace).keys(queue).wake
    return [bytes(x) for x in client.run(single(Command(("LRANGE", wake, 0, -1))))]


def test_a_blocked_fetcher_gets_the_job_from_its_blpop(
    client: Any, make_client: Any, queue: str
) -> None:
    producer = make_client()
    got: list[list[distq.Job]] = []
    fetcher = threading.Thread(target=lambda: got.append(client.getjob(queue, timeout=10)))
    fetcher.start()
    deadline = time.monotonic() + 5
    # Wait until the fetcher is registered as waiting, then add: the job is handed off.
    waiting = QueueContext(namespace=producer.namespace).keys(queue).waiting
    while not producer.run(single(Command(("ZCARD", waiting)))) and time.monotonic() < deadline:
        time.sleep(0.01)
    job_id = producer.addjob(queue, {"n": 1})
    fetcher.join(10)
    [[job]] = got
    assert (job.id, job.body, job.delivery, job.nacks) == (job_id, {"n": 1}, 1, 0)
    shown = producer.show(job_id)
    assert (shown["state"], shown["deliveries"]) == ("active", 1)
    assert shown["next_requeue_within"] is not None
    assert _wake_list(producer, queue) == []
    # The fetcher was served: its registration went with the hand-off, so a job
    # added while it is busy is queued, not handed to it (it could then overtake an
    # earlier job nacked back to the head of the queue).
    later = producer.addjob(queue, "later")
    assert producer.show(later)["state"] == "queued"
    producer.deljob(later)
    assert client.ackjob(job) == 1
    assert producer.show(job_id) is None
    stat = producer.qstat(queue)
    assert (stat["jobs_in"], stat["jobs_out"], stat["acked"], stat["leased"]) == (2, 1, 1, 0)


def test_without_a_waiting_fetcher_jobs_are_queued(client: Any, queue: str) -> None:
    job_id = client.addjob(queue, "x")
    assert client.show(job_id)["state"] == "queued"
    assert client.qlen(queue) == 1
    assert _wake_list(client, queue) == [b"1"]


def test_a_job_handed_to_a_gone_fetcher_goes_to_the_next_getjob(
    make_client: Any, queue: str
) -> None:
    client = make_client()
    _register_a_fetcher(client, queue, 10_000)
    first = client.addjob(queue, "first")
    second = client.addjob(queue, "second")  # not idle any more: queued, with a token
    assert client.show(first)["state"] == "active"
    assert client.show(second)["state"] == "queued"
    assert len(_wake_list(client, queue)) == 2  # the hand-off, then a token
    jobs = client.getjob(queue, count=10, nohang=True)
    assert [(j.id, j.delivery) for j in jobs] == [(first, 1), (second, 1)]
    assert client.qstat(queue)["jobs_out"] == 2


def test_a_state_hash_of_the_wrong_type_takes_no_handoff(
    engine: Any, make_client: Any, namespace: str, queue: str
) -> None:
    # Another program overwrites the queue's state hash: the fetch fails before it
    # takes the job handed off on the wake list, which is still there once repaired.
    client = make_client()
    _register_a_fetcher(client, queue, 10_000)
    job_id = client.addjob(queue, "handed")
    st = QueueContext(namespace=namespace).keys(queue).st
    raw = engine.server.client()
    try:
        raw.rename(st, st + ":saved")
        raw.set(st, "not a hash")
        with pytest.raises(distq.ServerError, match="WRONGTYPE"):
            client.getjob(queue, nohang=True)
        assert len(_wake_list(client, queue)) == 1
        raw.delete(st)
        raw.rename(st + ":saved", st)
    finally:
        raw.close()
    [job] = client.getjob(queue, nohang=True)
    assert (job.id, job.delivery) == (job_id, 1)


def test_a_handoff_nobody_takes_comes_back_uncounted_when_its_lease_ends(
    make_client: Any, queue: str
) -> None:
    client = make_client()
    _register_a_fetcher(client, queue, 10_000)
    job_id = client.addjob(queue, "lonely", retry=0.3, max_deliveries=1)
    assert client.show(job_id)["state"] == "active"
    time.sleep(0.5)
    assert client.qlen(queue) == 1  # qstat requeued it: the lease ended
    shown = client.show(job_id)
    assert (shown["state"], shown["deliveries"], shown["additional_deliveries"]) == (
        "queued",
        0,
        0,
    )
    assert b"lonely" not in b"".join(_wake_list(client, queue))
    # max_deliveries=1 and it was never delivered: it is delivered now, not dead-lettered.
    [job] = client.getjob(queue, nohang=True)
    assert (job.id, job.delivery) == (job_id, 2)
    assert client.show(job_id)["deliveries"] == 1


def test_acting_on_a_handed_off_job_takes_it_off_the_wake_list(
    make_client: Any, queue: str
) -> None:
    client = make_client()
    acts = [
        client.deljob,
        client.ackjob,
        client.enqueue,
        client.nack,
        client.release,
        lambda job_id: client.deadletter(job_id, reason="by hand"),
    ]
    wake = QueueContext(namespace=client.namespace).keys(queue).wake
    for act in acts:
        client.run(single(Command(("DEL", wake))))  # a token left by the last round
        _register_a_fetcher(client, queue, 10_000)
        job_id = client.addjob(queue, "x")
        assert len(_wake_list(client, queue)) == 1
        assert client.dequeue(job_id) == 0  # active, not queued: left where it is
        assert len(_wake_list(client, queue)) == 1
        assert act(job_id) == 1 or act is client.ackjob
        assert _wake_list(client, queue) in ([], [b"1"]), act
        client.deljob(job_id)
        assert client.getjob(queue, nohang=True) == []


def test_a_burst_reaches_every_blocked_fetcher(make_client: Any, queue: str) -> None:
    """One job is handed off; the rest are queued with a token, so the other
    blocked fetchers wake too (they do not wait for the first to finish)."""
    fetchers = [make_client() for _ in range(3)]
    got: list[list[distq.Job]] = []
    threads = [
        threading.Thread(target=lambda c=c: got.append(c.getjob(queue, timeout=10)))
        for c in fetchers
    ]
    for thread in threads:
        thread.start()
    producer = make_client()
    waiting = QueueContext(namespace=producer.namespace).keys(queue).waiting
    deadline = time.monotonic() + 5
    while producer.run(single(Command(("ZCARD", waiting)))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    ids = [producer.addjob(queue, n) for n in range(3)]
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 2
    assert sorted(job.id for batch in got for job in batch) == sorted(ids)


def test_a_fetcher_killed_after_taking_a_handoff_loses_nothing(
    url: str, namespace: str, make_client: Any, queue: str
) -> None:
    """A real process blocked in getjob gets the job from its BLPOP, then is
    SIGKILLed before acknowledging: the lease brings the job back as delivery 2."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, distq\n"
            "client = distq.connect(sys.argv[1], namespace=sys.argv[2])\n"
            "[job] = client.getjob(sys.argv[3], timeout=30)\n"
            "print(job.id, job.delivery, flush=True)\n"
            "time.sleep(60)\n",
            url,
            namespace,
            queue,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        producer = make_client()
        waiting = QueueContext(namespace=namespace).keys(queue).waiting
        deadline = time.monotonic() + 15
        while not producer.run(single(Command(("ZCARD", waiting)))):
            assert time.monotonic() < deadline and child.poll() is None, "never waited"
            time.sleep(0.01)
        job_id = producer.addjob(queue, "precious", retry=1)
        assert child.stdout is not None
        assert child.stdout.readline().split() == [job_id, "1"]
        assert producer.show(job_id)["state"] == "active"
    finally:
        child.kill()  # SIGKILL: no ack, no release
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    [again] = producer.getjob(queue, timeout=10)
    assert (again.id, again.body, again.delivery, again.additional_deliveries) == (
        job_id,
        "precious",
        2,
        1,
    )
    assert producer.ackjob(again) == 1
