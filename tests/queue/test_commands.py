"""The Disque command set, on every engine, with the sync and the async client."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

import distq
from distq.queue.keys import parse_id

BODIES: list[Any] = [b"\x00\xffraw", "text é", {"a": [1, 2.5, None, True]}, [1, "x"], 42, None]


def test_addjob_getjob_ackjob_round_trip(client: Any, queue: str) -> None:
    ids = [client.addjob(queue, body) for body in BODIES]
    assert client.qlen(queue) == len(BODIES)
    jobs = client.getjob(queue, count=len(BODIES), timeout=1)
    assert [job.id for job in jobs] == ids  # FIFO
    assert [job.body for job in jobs] == BODIES
    assert all(job.queue == queue and job.delivery == 1 for job in jobs)
    assert client.ackjob(*jobs) == len(BODIES)
    assert client.ackjob(*ids) == 0  # already gone
    assert client.qlen(queue) == 0


def test_ids_are_unique_and_time_ordered(client: Any, queue: str) -> None:
    ids = client.addjobs(queue, range(2000))
    assert len(set(ids)) == 2000
    assert ids == sorted(ids)
    assert all(parse_id(i)[1] == queue for i in ids)
    later = client.addjob(queue, "later")
    assert later > ids[-1]


def test_bulk_add_spans_several_script_calls(client: Any, queue: str) -> None:
    ids = client.addjobs(queue, (str(n) for n in range(1203)))
    assert client.qlen(queue) == 1203
    jobs = client.getjob(queue, count=1203, timeout=1)
    assert [job.id for job in jobs] == ids
    assert [job.body for job in jobs] == [str(n) for n in range(1203)]


def test_getjob_takes_from_the_first_queue_first(client: Any, queue: str) -> None:
    other = queue + "-2"
    client.addjob(other, "second")
    client.addjob(queue, "first")
    jobs = client.getjob(queue, other, count=5, nohang=True)
    assert [job.body for job in jobs] == ["first", "second"]
    assert [job.queue for job in jobs] == [queue, other]


def test_getjob_nohang_and_elapsed_timeout_return_empty(client: Any, queue: str) -> None:
    assert client.getjob(queue, nohang=True) == []
    started = time.monotonic()
    assert client.getjob(queue, timeout=0.3) == []
    assert 0.25 <= time.monotonic() - started < 2.0


def test_blocked_getjob_wakes_when_another_process_adds(
    client: Any, queue: str, url: str, namespace: str
) -> None:
    producer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, distq; time.sleep(0.5); "
            "distq.connect(sys.argv[1], namespace=sys.argv[2]).addjob(sys.argv[3], 'hello')",
            url,
            namespace,
            queue,
        ]
    )
    try:
        started = time.monotonic()
        jobs = client.getjob(queue, timeout=10)
        waited = time.monotonic() - started
    finally:
        producer.wait(timeout=10)
    assert [job.body for job in jobs] == ["hello"]
    assert waited < 5


def test_nack_puts_back_at_once_and_counts(client: Any, queue: str) -> None:
    client.addjob(queue, "a")
    client.addjob(queue, "b")
    [first] = client.getjob(queue)
    assert client.nack(first) == 1
    assert client.nack(first) == 0  # no longer active
    [again] = client.getjob(queue)
    assert again.id == first.id  # back at the head
    assert (again.nacks, again.delivery) == (1, 2)
    shown = client.show(again.id)
    assert shown["nacks"] == 1 and shown["state"] == "active"


def test_working_extends_and_reports_the_retry_time(client: Any, queue: str) -> None:
    job_id = client.addjob(queue, "x", retry=7)
    with pytest.raises(distq.LeaseLost):
        client.working(job_id)  # queued, not leased
    [job] = client.getjob(queue)
    assert client.working(job) == 7
    lease = client.show(job_id)["next_requeue_within"]
    assert 6 < lease <= 7
    with pytest.raises(distq.JobNotFound):
        client.working(job_id.replace(job_id[2:10], "00000000"))


def test_fenced_ack_refuses_a_superseded_delivery(client: Any, queue: str) -> None:
    client.addjob(queue, "x", retry=30)
    [first] = client.getjob(queue)
    assert client.nack(first) == 1
    [second] = client.getjob(queue)
    assert client.ackjob(first) == 0  # stale delivery
    assert client.show(first.id) is not None
    assert client.ackjob(second) == 1


def test_retry_zero_is_at_most_once(client: Any, queue: str) -> None:
    job_id = client.addjob(queue, "once", retry=0)
    [job] = client.getjob(queue)
    assert job.id == job_id
    time.sleep(0.3)
    assert client.getjob(queue, nohang=True) == []
    assert client.show(job_id)["state"] == "active"
    assert client.working(job) == 0


def test_qpeek_from_both_ends(client: Any, queue: str) -> None:
    ids = client.addjobs(queue, ["a", "b", "c", "d"])
    assert [j.id for j in client.qpeek(queue, 2)] == ids[:2]
    assert [j.id for j in client.qpeek(queue, -2)] == [ids[3], ids[2]]
    assert client.qpeek(queue, 0) == []
    assert [j.body for j in client.qpeek(queue, 10)] == ["a", "b", "c", "d"]
    assert client.qlen(queue) == 4  # peeking leases nothing


def test_dequeue_enqueue_deljob(client: Any, queue: str) -> None:
    ids = client.addjobs(queue, ["a", "b", "c"])
    assert client.dequeue(ids[0], ids[1]) == 2
    assert client.dequeue(ids[0]) == 0
    assert client.show(ids[0])["state"] == "idle"
    assert [j.id for j in client.getjob(queue, count=5, nohang=True)] == [ids[2]]
    assert client.enqueue(ids[0]) == 1
    assert client.enqueue(ids[0]) == 0  # already queued
    assert client.deljob(ids[0], ids[1], ids[2]) == 3
    assert client.deljob(ids[0]) == 0
    assert client.show(ids[1]) is None
    assert client.getjob(queue, nohang=True) == []


def test_enqueue_brings_a_delayed_job_forward(client: Any, queue: str) -> None:
    job_id = client.addjob(queue, "later", delay=60)
    assert client.show(job_id)["state"] == "delayed"
    assert 59 < client.show(job_id)["next_awake_within"] <= 60
    assert client.getjob(queue, nohang=True) == []
    assert client.enqueue(job_id) == 1
    assert [j.id for j in client.getjob(queue, nohang=True)] == [job_id]


def test_show_reports_everything(client: Any, queue: str) -> None:
    before = time.time()
    job_id = client.addjob(queue, {"k": "v"}, retry=12, ttl=3600, delay=0, max_deliveries=4)
    shown = client.show(job_id)
    assert shown["id"] == job_id and shown["queue"] == queue
    assert shown["state"] == "queued" and shown["body"] == {"k": "v"}
    assert shown["retry"] == 12 and shown["max_deliveries"] == 4
    assert 3590 < shown["ttl"] <= 3600
    assert before - 5 < shown["ctime"] < time.time() + 5
    assert shown["nacks"] == shown["additional_deliveries"] == shown["deliveries"] == 0
    assert client.show("D-" + "0" * 24 + "-" + queue) is None
    with pytest.raises(distq.InvalidArgument):
        client.show("not-an-id")


def test_qstat(client: Any, queue: str) -> None:
    client.addjobs(queue, ["a", "b", "c"])
    client.addjob(queue, "d", delay=60)
    [job] = client.getjob(queue)
    client.ackjob(job)
    client.getjob(queue)
    stat = client.qstat(queue)
    assert stat["name"] == queue
    assert (stat["len"], stat["leased"], stat["delayed"], stat["dead"]) == (1, 1, 1, 0)
    assert (stat["jobs_in"], stat["jobs_out"], stat["acked"]) == (4, 2, 1)
    assert stat["age"] is not None and stat["age"] >= 0


def test_jscan_and_qscan(client: Any, queue: str) -> None:
    ids = client.addjobs(queue, range(30))
    client.getjob(queue, count=10)
    cursor, found = client.jscan(queue=queue, count=1000, busyloop=True)
    assert cursor == 0 and sorted(found) == ids
    _, active = client.jscan(queue=queue, state="active", busyloop=True)
    assert sorted(active) == ids[:10]
    _, names = client.qscan(busyloop=True)
    assert queue in names
    _, long_queues = client.qscan(busyloop=True, minlen=25)
    assert queue not in long_queues
    _, short_queues = client.qscan(busyloop=True, minlen=20, maxlen=20)
    assert queue in short_queues


def test_hello_and_info(client: Any, engine: Any) -> None:
    hello = client.hello()
    assert hello["version"] == 2 and hello["server"] == engine.name and hello["node_id"]
    info = client.info("memory")
    assert isinstance(info["used_memory"], int)


def test_bad_arguments_are_typed_errors(client: Any, queue: str) -> None:
    for call in (
        lambda: client.addjob("", "x"),
        lambda: client.addjob("has space", "x"),
        lambda: client.addjob("{tag}", "x"),
        lambda: client.addjob(queue, "x", retry=-1),
        lambda: client.addjob(queue, "x", max_deliveries=0),
        lambda: client.getjob(),
        lambda: client.getjob(queue, count=0),
        lambda: client.ackjob("D-bad"),
    ):
        with pytest.raises(distq.InvalidArgument):
            call()
    circular: list[Any] = []
    circular.append(circular)
    for unencodable in ({1, 2}, {"x": float("nan")}, circular, {"deep": object()}):
        with pytest.raises(distq.CodecError):
            client.addjob(queue, unencodable)
    assert client.qlen(queue) == 0
    # The encoder is shared: a failed encoding leaves nothing behind for the next.
    job_id = client.addjob(queue, {"after": [1, "é", None]})
    assert client.getjob(queue, nohang=True)[0].body == {"after": [1, "é", None]}
    assert client.show(job_id) is not None


def test_pipeline_sends_commands_together(url: str, namespace: str, queue: str) -> None:
    with distq.connect(url, namespace=namespace) as client:
        with client.pipeline() as pipe:
            pipe.addjob(queue, "a")
            pipe.addjobs(queue, ["b", "c"])
            pipe.qlen(queue)
            pipe.show("D-" + "0" * 24 + "-" + queue)
        first, more, length, missing = pipe.results
        assert parse_id(first)[1] == queue and len(more) == 2
        assert length == 3 and missing is None
        with client.pipeline() as pipe:
            pipe.getjob(queue, count=3, nohang=True)
            pipe.qlen(queue)
        jobs, length = pipe.results
        assert [j.body for j in jobs] == ["a", "b", "c"] and length == 0


def test_pipeline_reports_errors_in_place(url: str, namespace: str, queue: str) -> None:
    with distq.connect(url, namespace=namespace) as client:
        pipe = client.pipeline()
        pipe.addjob(queue, "a", maxlen=1)
        pipe.addjob(queue, "b", maxlen=1)
        assert len(pipe) == 2
        first, second = pipe.execute(raise_on_error=False)
        assert parse_id(first)[1] == queue
        assert isinstance(second, distq.QueueFull)


def test_async_pipeline(url: str, namespace: str, queue: str) -> None:
    import asyncio

    async def scenario() -> list[Any]:
        async with distq.connect_async(url, namespace=namespace) as client:
            async with client.pipeline() as pipe:
                pipe.addjobs(queue, [1, 2])
                pipe.qlen(queue)
            return pipe.results

    ids, length = asyncio.run(scenario())
    assert len(ids) == 2 and length == 2


def test_msgpack_codec_interoperates(url: str, namespace: str, queue: str) -> None:
    with (
        distq.connect(url, namespace=namespace, codec="msgpack") as packer,
        distq.connect(url, namespace=namespace) as reader,
    ):
        packer.addjob(queue, {"n": [1, 2, 3], "b": b"\x01"})
        [job] = reader.getjob(queue, nohang=True)
        assert job.body == {"n": [1, 2, 3], "b": b"\x01"}
    with pytest.raises(distq.InvalidArgument):
        distq.connect(url, codec="pickle")
