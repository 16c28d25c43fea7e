"""Failure tests: real processes killed, real servers killed, stopped and fed garbage.

Each scenario of ``RELIABILITY.md`` section 2 that the queue layer alone can
show (T1, T5, T7, T8, T10, T15, T16, T17, T18, and the lease/dead-letter rules), on
every engine found. No mocks: consumers are subprocesses killed with SIGKILL,
servers are private processes killed with ``kill -9`` or stopped with
SIGSTOP. Every wait is bounded; leases are 1 s so the file stays quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import distq
from distq.connection.server import ServerProcess, free_port, pid_alive
from distq.queue.keys import QueueKeys, core_bytes, parse_id

#: The lease of the jobs these tests fetch, in seconds.
LEASE_S = 1
#: Slack on top of a lease for a redelivery to be seen (scheduling, slices).
SLACK_S = 2.0

#: A consumer: fetch one job, report it, then hang until killed.
CONSUMER = r"""
import os, sys, time
import distq
client = distq.connect(os.environ["DQ_URL"], namespace=os.environ["DQ_NAMESPACE"])
started = time.monotonic()
jobs = client.getjob(os.environ["DQ_QUEUE"], timeout=20)
if not jobs:
    sys.exit("no job within 20 s")
print(jobs[0].id, jobs[0].delivery, repr(started), flush=True)
time.sleep(120)
"""


#: A consumer whose wall clock is DQ_SKEW seconds off: it fetches one job (if
#: DQ_FETCH), holds it DQ_HOLD seconds, acks it (if DQ_ACK), and reports each step;
#: or (DQ_POLL) polls with nohang for DQ_HOLD seconds and reports what it got.
SKEWED = r"""
import os, time
skew = float(os.environ["DQ_SKEW"])
real_time, real_ns = time.time, time.time_ns
time.time = lambda: real_time() + skew
time.time_ns = lambda: real_ns() + int(skew * 1e9)
import distq
client = distq.connect(os.environ["DQ_URL"], namespace=os.environ["DQ_NAMESPACE"])
queue, hold = os.environ["DQ_QUEUE"], float(os.environ["DQ_HOLD"])
if os.environ.get("DQ_POLL"):
    got = []
    end = time.monotonic() + hold
    while time.monotonic() < end:
        got += [job.id for job in client.getjob(queue, nohang=True)]
        time.sleep(0.05)
    print("polled", len(got), *got, flush=True)
else:
    [job] = client.getjob(queue, timeout=10)
    print("fetched", job.id, job.delivery, flush=True)
    time.sleep(hold)
    if os.environ.get("DQ_ACK"):
        print("acked", client.ackjob(job), flush=True)
"""


# Helpers ---------------------------------------------------------------------


@contextlib.contextmanager
def consumer_process(url: str, namespace: str, queue: str) -> Iterator[subprocess.Popen[bytes]]:
    """A consumer subprocess (see CONSUMER), killed by its pid at the end if still alive."""
    env = {**os.environ, "DQ_URL": url, "DQ_NAMESPACE": namespace, "DQ_QUEUE": queue}
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def read_fetch(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> tuple[str, int, float]:
    """``(job id, delivery, monotonic time before the fetch)`` reported by a consumer."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else b""
    if not line:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"the consumer reported no job: {err.decode(errors='replace')[-2000:]}")
    job_id, delivery, started = line.decode().split()
    return job_id, int(delivery), float(started)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child we started and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def consumer_holds_the_job(url: str, namespace: str, queue: str, job_id: str) -> tuple[int, float]:
    """Let a consumer process fetch ``job_id``, check it is leased, then SIGKILL it.

    Returns the delivery the dead consumer held and when (monotonic) it was killed.
    """
    with consumer_process(url, namespace, queue) as proc:
        got, delivery, started = read_fetch(proc)
        assert got == job_id
        assert delivery == 1
        with distq.connect(url, namespace=namespace) as client:
            shown = client.show(job_id)
            assert shown is not None
            assert shown["state"] == "active"
            assert shown["deliveries"] == 1
            # While the lease runs, nobody else gets the job (checked only
            # when this call surely ended within the lease).
            early = client.getjob(queue, nohang=True)
            if time.monotonic() < started + LEASE_S * 0.9:
                assert early == []
        sigkill(proc)
        return delivery, time.monotonic()


def with_option(url: str, option: str) -> str:
    """``url`` with one more query-string option."""
    return url + ("&" if "?" in url else "?") + option


def total_connections(raw: Any) -> int:
    """How many connections the server has accepted since it started."""
    return int(raw.info("stats")["total_connections_received"])


# 1 and 6: a consumer killed while it holds a job ------------------------------


def test_killed_consumer_job_is_redelivered_and_acked_once(
    url: str, namespace: str, queue: str
) -> None:
    with distq.connect(url, namespace=namespace) as client:
        job_id = client.addjob(queue, {"n": 1}, retry=LEASE_S)
        first_delivery, killed_at = consumer_holds_the_job(url, namespace, queue, job_id)

        jobs = client.getjob(queue, timeout=LEASE_S + SLACK_S + 2)
        waited = time.monotonic() - killed_at
        assert [job.id for job in jobs] == [job_id], "the job of the killed consumer is lost"
        [again] = jobs
        assert waited < LEASE_S + SLACK_S
        assert again.body == {"n": 1}
        assert again.additional_deliveries == 1
        assert again.nacks == 0
        assert again.delivery == first_delivery + 1

        # The dead consumer's delivery is fenced off.
        stale = distq.Job(job_id, queue, None, delivery=first_delivery)
        assert client.ackjob(stale) == 0
        with pytest.raises(distq.LeaseLost):
            client.working(stale)
        assert client.show(job_id)["state"] == "active"

        # Acknowledged exactly once.
        assert client.ackjob(again) == 1
        assert client.ackjob(again) == 0
        assert client.ackjob(job_id) == 0
        assert client.show(job_id) is None
        assert client.getjob(queue, timeout=LEASE_S + 0.3) == []  # the old lease is gone too
        assert client.qstat(queue)["acked"] == 1


def test_killed_consumer_job_is_refetched_with_the_async_client(
    url: str, namespace: str, queue: str
) -> None:
    with distq.connect(url, namespace=namespace) as client:
        job_id = client.addjob(queue, b"\x00async\xff", retry=LEASE_S)
    first_delivery, killed_at = consumer_holds_the_job(url, namespace, queue, job_id)

    async def refetch() -> None:
        async with distq.connect_async(url, namespace=namespace) as aclient:
            jobs = await aclient.getjob(queue, timeout=LEASE_S + SLACK_S + 2)
            assert time.monotonic() - killed_at < LEASE_S + SLACK_S
            assert [job.id for job in jobs] == [job_id]
            [again] = jobs
            assert again.body == b"\x00async\xff"
            assert again.additional_deliveries == 1
            assert again.delivery == first_delivery + 1
            stale = distq.Job(job_id, queue, None, delivery=first_delivery)
            assert await aclient.ackjob(stale) == 0
            assert await aclient.nack(stale) == 0
            assert await aclient.ackjob(again) == 1
            assert await aclient.ackjob(again) == 0
            assert await aclient.show(job_id) is None
            assert await aclient.getjob(queue, timeout=LEASE_S + 0.3) == []

    asyncio.run(refetch())


# 2: the server is killed (kill -9) and restarted -------------------------------


def test_acked_add_survives_server_kill_and_client_reconnects(
    engine: Any, fresh_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = fresh_server(engine.name, appendfsync="always")
    body = {"text": "héllo wörld", "n": [1, 2.5, None, True], "pad": "x" * 10_000}
    raw = os.urandom(4096)
    with distq.connect(server.url, namespace=namespace) as client:
        leased_id = client.addjob("q", "leased", retry=LEASE_S)
        [leased] = client.getjob("q", nohang=True)
        assert leased.id == leased_id
        json_id = client.addjob("q", body)
        raw_id = client.addjob("q", raw)

        old_pid = server.pid
        assert old_pid is not None
        server.kill()  # SIGKILL: nothing flushed beyond what fsync=always wrote
        assert not pid_alive(old_pid)
        server.restart()
        assert server.pid != old_pid

        # The same client object carries on; the lease taken before the
        # crash still runs out and the job comes back.
        seen: dict[str, distq.Job] = {}
        deadline = time.monotonic() + LEASE_S + SLACK_S + 2
        while len(seen) < 3 and time.monotonic() < deadline:
            for job in client.getjob("q", count=3, timeout=max(0.1, deadline - time.monotonic())):
                seen[job.id] = job
        assert set(seen) == {leased_id, json_id, raw_id}
        assert seen[json_id].body == body
        assert seen[raw_id].body == raw
        assert seen[leased_id].additional_deliveries == 1
        assert seen[json_id].delivery == seen[raw_id].delivery == 1
        assert client.ackjob(*seen.values()) == 3

        # The server is down when the next call is made and comes back while
        # the client backs off: the call succeeds without the caller's help.
        later_id = client.addjob("q", "after the crash")
        server.kill()
        restarter = threading.Timer(0.3, server.start)
        restarter.start()
        started = time.monotonic()
        try:
            jobs = client.getjob("q", timeout=5)
        finally:
            restarter.join(timeout=30)
        assert time.monotonic() - started >= 0.25
        assert [job.id for job in jobs] == [later_id]
        assert jobs[0].body == "after the crash"
        assert client.ackjob(*jobs) == 1


# 3: delays, TTLs, maxlen, nacks, dead letters, leases ---------------------------


# T10: clocks skewed ----------------------------------------------------------------


def _skewed(url: str, namespace: str, queue: str, skew: float, hold: float, **flags: str) -> str:
    """Run SKEWED with a wall clock ``skew`` s off; its report (bounded)."""
    env = {
        **os.environ, "DQ_URL": url, "DQ_NAMESPACE": namespace, "DQ_QUEUE": queue,
        "DQ_SKEW": str(skew), "DQ_HOLD": str(hold), **flags,
    }
    done = subprocess.run(
        [sys.executable, "-c", SKEWED], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_skewed_client_clocks_neither_reclaim_early_nor_strand_jobs(
    url: str, namespace: str, queue: str
) -> None:
    # Leases are kept in server time: a consumer 300 s ahead holding a job within its
    # lease while one 300 s behind polls, and then a lease that really runs out.
    with distq.connect(url, namespace=namespace) as client:
        kept = client.addjob(queue, "kept", retry=3)
        with ThreadPoolExecutor(2) as pool:
            holder = pool.submit(_skewed, url, namespace, queue, 300, 1.5, DQ_ACK="1")
            time.sleep(0.5)  # the holder has fetched by now (it reports it)
            poller = pool.submit(_skewed, url, namespace, queue, -300, 1.0, DQ_POLL="1")
            held, polled = holder.result(), poller.result()
        assert held.split() == ["fetched", kept, "1", "acked", "1"]
        assert polled.split() == ["polled", "0"]  # no early reclaim
        assert client.qstat(queue)["jobs_out"] == 1

        lost = client.addjob(queue, "lost", retry=LEASE_S)
        assert _skewed(url, namespace, queue, -300, 0).split() == ["fetched", lost, "1"]
        # Its lease runs out in server time: a consumer 300 s ahead gets it back, no
        # sooner than the lease, as its second delivery.
        started = time.monotonic()
        again = _skewed(url, namespace, queue, 300, 0, DQ_ACK="1").split()
        waited = time.monotonic() - started
        assert again == ["fetched", lost, "2", "acked", "1"]
        assert LEASE_S - 0.2 <= waited < LEASE_S + SLACK_S + 5  # 5 s: interpreter start-up
        assert client.qlen(queue) == 0 and client.getjob(queue, nohang=True) == []


def test_delayed_job_is_invisible_until_due(make_client: Any, queue: str) -> None:
    client = make_client()
    before = time.monotonic()
    job_id = client.addjob(queue, "later", delay=1)
    assert client.show(job_id)["state"] == "delayed"
    assert client.getjob(queue, nohang=True) == []
    jobs = client.getjob(queue, timeout=5)
    waited = time.monotonic() - before
    assert [job.id for job in jobs] == [job_id]
    assert 0.95 <= waited < 1 + SLACK_S
    assert jobs[0].body == "later"


def test_expired_job_is_gone(make_client: Any, queue: str) -> None:
    client = make_client()
    before = time.monotonic()
    job_id = client.addjob(queue, "short-lived", ttl=1)
    assert client.show(job_id) is not None
    deadline = before + 5
    while client.show(job_id) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.show(job_id) is None
    assert time.monotonic() - before >= 0.95
    assert client.getjob(queue, nohang=True) == []
    kept = client.addjob(queue, "next")  # the queue still works
    assert [job.id for job in client.getjob(queue, nohang=True)] == [kept]


def test_maxlen_refuses_and_adds_nothing(make_client: Any, queue: str) -> None:
    client = make_client()
    client.addjob(queue, 1, maxlen=2)
    client.addjob(queue, 2, maxlen=2)
    with pytest.raises(distq.QueueFull):
        client.addjob(queue, 3, maxlen=2)
    with pytest.raises(distq.QueueFull):
        client.addjobs(queue, [4, 5], maxlen=3)  # all or nothing
    assert client.qlen(queue) == 2
    assert client.qstat(queue)["jobs_in"] == 2
    assert len(client.jscan(queue=queue, busyloop=True)[1]) == 2
    assert [job.body for job in client.getjob(queue, count=10, nohang=True)] == [1, 2]


def test_nack_counts_and_requeues_at_once(make_client: Any, queue: str) -> None:
    client = make_client()
    job_id = client.addjob(queue, "nacked")
    other_id = client.addjob(queue, "other")
    [first] = client.getjob(queue, nohang=True)
    assert first.id == job_id
    assert client.nack(first) == 1
    [second] = client.getjob(queue, nohang=True)  # back at the head, at once
    assert second.id == job_id
    assert (second.nacks, second.additional_deliveries, second.delivery) == (1, 0, 2)
    assert client.nack(first) == 0  # a superseded delivery cannot nack
    assert client.nack(second) == 1
    [third] = client.getjob(queue, nohang=True)
    assert (third.id, third.nacks, third.delivery) == (job_id, 2, 3)
    assert client.show(job_id)["nacks"] == 2
    assert [job.id for job in client.getjob(queue, nohang=True)] == [other_id]


def test_dead_letter_after_max_deliveries_by_nacks(make_client: Any, queue: str) -> None:
    client = make_client()
    job_id = client.addjob(queue, "poison", max_deliveries=2)
    for _ in range(2):
        [job] = client.getjob(queue, nohang=True)
        assert job.id == job_id
        assert client.nack(job) == 1
    assert client.getjob(queue, nohang=True) == []
    dead = client.deadletters(queue)
    assert [job.id for job in dead] == [job_id]
    assert dead[0].reason is not None
    assert "max_deliveries=2" in dead[0].reason
    assert "nack" in dead[0].reason
    assert dead[0].body == "poison"
    shown = client.show(job_id)
    assert shown["state"] == "dead"
    assert shown["reason"] == dead[0].reason

    assert client.enqueue(job_id) == 1  # one more chance, by hand
    assert client.deadletters(queue) == []
    [back] = client.getjob(queue, nohang=True)
    assert (back.id, back.body) == (job_id, "poison")
    assert client.ackjob(back) == 1


def test_dead_letter_after_max_deliveries_by_lease_expiry(make_client: Any, queue: str) -> None:
    client = make_client()
    job_id = client.addjob(queue, "slow", retry=LEASE_S, max_deliveries=2)
    [first] = client.getjob(queue, nohang=True)
    [second] = client.getjob(queue, timeout=LEASE_S + SLACK_S)
    second_at = time.monotonic()
    assert second.id == job_id
    assert (second.additional_deliveries, second.delivery) == (1, 2)

    # The second lease runs out too: now the job goes to the dead letters.
    deadline = second_at + LEASE_S + SLACK_S
    while time.monotonic() < deadline:
        client.qstat(queue)  # requeues expired leases, as getjob does
        if client.show(job_id)["state"] == "dead":
            break
        time.sleep(0.05)
    assert client.show(job_id)["state"] == "dead"
    assert time.monotonic() - second_at >= LEASE_S * 0.9
    [dead] = client.deadletters(queue)
    assert dead.id == job_id
    assert dead.reason is not None
    assert "lease expired" in dead.reason
    assert "max_deliveries=2" in dead.reason
    assert client.getjob(queue, nohang=True) == []
    assert client.ackjob(first) == 0  # a superseded delivery is fenced off
    assert client.enqueue(job_id) == 1
    assert [job.id for job in client.getjob(queue, nohang=True)] == [job_id]


def test_working_keeps_the_lease(make_client: Any, queue: str) -> None:
    client, rival = make_client(), make_client()
    job_id = client.addjob(queue, "long", retry=LEASE_S)
    [job] = client.getjob(queue, nohang=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(rival.getjob, queue, timeout=2.0)
        started = time.monotonic()
        beats = 0
        while time.monotonic() - started < 2.0:
            assert client.working(job) == LEASE_S
            beats += 1
            time.sleep(0.4)
        assert waiting.result(timeout=10) == []
    assert beats >= 4
    shown = client.show(job_id)
    assert shown["state"] == "active"
    assert shown["additional_deliveries"] == 0

    # Without heartbeats the lease runs out and the rival gets the job.
    jobs = rival.getjob(queue, timeout=LEASE_S + SLACK_S)
    assert [again.id for again in jobs] == [job_id]
    assert jobs[0].additional_deliveries == 1
    with pytest.raises(distq.LeaseLost):
        client.working(job)


# 4: bad input ------------------------------------------------------------------


def test_unreachable_server_is_server_unavailable(namespace: str) -> None:
    port = free_port()  # nothing listens there
    with distq.connect(f"redis://127.0.0.1:{port}/0", namespace=namespace) as client:
        started = time.monotonic()
        with pytest.raises(distq.ServerUnavailable):
            client.qlen("q")
        assert time.monotonic() - started < 10
        started = time.monotonic()
        with pytest.raises(distq.ServerUnavailable):
            client.addjob("q", "never stored")
        assert time.monotonic() - started < 10


def test_wrong_password_is_a_quick_authentication_error(engine: Any, namespace: str) -> None:
    server = engine.server
    right = server.password
    assert right, "the session servers have a password"
    wrong = "not-the-" + os.urandom(6).hex()
    raw = server.client()
    try:
        before = total_connections(raw)
        for url in (
            f"redis://:{wrong}@127.0.0.1:{server.port}/0",
            f"redis://127.0.0.1:{server.port}/0",
        ):
            with distq.connect(url, namespace=namespace) as client:
                started = time.monotonic()
                with pytest.raises(distq.AuthenticationError) as caught:
                    client.addjob("q", "never stored")
                assert time.monotonic() - started < 3
                for text in (str(caught.value), repr(client)):
                    assert wrong not in text
                    assert right not in text
        assert total_connections(raw) - before <= 4  # no retry storm
    finally:
        raw.close()
    with distq.connect(engine.url, namespace=namespace) as client:
        assert client.qlen("q") == 0


def test_garbage_in_the_ready_list_is_dead_lettered(
    engine: Any, make_client: Any, namespace: str, queue: str
) -> None:
    client = make_client()
    keys = QueueKeys(namespace, queue)
    # Not 12 bytes, so not a core (a 12-byte entry is the core of a job or of none).
    garbage = [os.urandom(16), b"not a job core", b"", b"D-xyz-" + queue.encode()]
    missing = bytes(12)  # core-shaped, but no such job: skipped
    first = client.addjob(queue, "first")
    raw = engine.server.client()
    try:
        raw.rpush(keys.ready, *garbage, missing)
    finally:
        raw.close()
    last = client.addjob(queue, "last")

    jobs = client.getjob(queue, count=10, nohang=True)
    assert [job.id for job in jobs] == [first, last]
    assert [job.body for job in jobs] == ["first", "last"]
    dead = client.deadletters(queue)
    assert sorted(job.body for job in dead) == sorted(garbage)
    for job in dead:
        assert job.reason is not None and job.reason.startswith("malformed")
        assert client.show(job.id)["state"] == "dead"
    assert client.qlen(queue) == 0
    assert client.deljob(*dead) == len(garbage)
    assert client.deadletters(queue) == []


def test_a_job_entered_twice_in_the_ready_list_is_leased_once(
    engine: Any, make_client: Any, namespace: str, queue: str
) -> None:
    client = make_client()
    ids = [client.addjob(queue, f"job {n}") for n in range(3)]
    raw = engine.server.client()
    try:  # a second entry of each job, among the first ones and after them
        cores = [core_bytes(parse_id(job_id)[0]) for job_id in ids]
        raw.linsert(QueueKeys(namespace, queue).ready, "AFTER", cores[0], cores[0])
        raw.rpush(QueueKeys(namespace, queue).ready, *cores)
    finally:
        raw.close()

    first = client.getjob(queue, count=2, nohang=True)
    rest = client.getjob(queue, count=10, nohang=True)
    assert [job.id for job in first + rest] == ids
    assert all(job.delivery == 1 for job in first + rest)
    assert client.getjob(queue, count=10, nohang=True) == []


def test_a_queue_key_of_the_wrong_type_is_a_typed_error_for_that_queue_only(
    engine: Any, make_client: Any, namespace: str, queue: str
) -> None:
    # RELIABILITY T16: another program SETs a queue's list to a string.
    client = make_client()
    raw = engine.server.client()
    try:
        raw.set(QueueKeys(namespace, queue).ready, "not a list")
        for call in (
            lambda: client.addjob(queue, "x"),
            lambda: client.getjob(queue, nohang=True),
            lambda: client.qlen(queue),
        ):
            with pytest.raises(distq.ServerError, match="WRONGTYPE"):
                call()
        other = queue + "-other"
        job_id = client.addjob(other, "fine")
        assert [job.id for job in client.getjob(other, nohang=True)] == [job_id]
        raw.delete(QueueKeys(namespace, queue).ready)  # repaired: the queue works again
        queued = [client.addjob(queue, n) for n in range(3)]

        # A job hash of the wrong type: the fetch fails before it takes any entry.
        raw.set(QueueKeys(namespace, queue).st, "not a hash")
        with pytest.raises(distq.ServerError, match="WRONGTYPE"):
            client.getjob(queue, count=10, nohang=True)
        assert client.qlen(queue) == 3
        raw.delete(QueueKeys(namespace, queue).st)
        assert [job.id for job in client.getjob(queue, count=10, nohang=True)] == queued
    finally:
        raw.close()


def test_corrupt_body_is_dead_lettered_and_the_batch_released(
    engine: Any, make_client: Any, namespace: str, queue: str
) -> None:
    client = make_client()
    good_ids = [client.addjob(queue, {"ok": 1})]
    bad_id = client.addjob(queue, {"ok": 0})
    good_ids.append(client.addjob(queue, {"ok": 2}))
    raw = engine.server.client()
    try:
        core = core_bytes(parse_id(bad_id)[0])
        jobs = QueueKeys(namespace, queue).jobs
        head = raw.hget(jobs, core).partition(b"\n")[0]
        raw.hset(jobs, core, head + b'\n{"ok": tru\xff')
    finally:
        raw.close()

    with pytest.raises(distq.CodecError) as caught:
        client.getjob(queue, count=10, nohang=True)
    assert caught.value.job_id == bad_id
    assert bad_id in str(caught.value)

    [dead] = client.deadletters(queue)
    assert dead.id == bad_id
    assert dead.reason is not None and "undecodable" in dead.reason
    assert client.show(bad_id)["state"] == "dead"
    for good_id in good_ids:
        shown = client.show(good_id)
        assert (shown["state"], shown["deliveries"]) == ("queued", 0)

    # The good jobs of the batch are back at once, in order, uncounted: the
    # released fetch is not a delivery, but its number (the fence) is not reused.
    jobs = client.getjob(queue, count=10, nohang=True)
    assert [job.id for job in jobs] == good_ids
    assert [job.body for job in jobs] == [{"ok": 1}, {"ok": 2}]
    assert [(job.delivery, job.additional_deliveries) for job in jobs] == [(2, 0), (2, 0)]
    assert [client.show(job.id)["deliveries"] for job in jobs] == [1, 1]
    assert client.ackjob(*jobs) == 2


def test_bad_queue_names_are_invalid_arguments(make_client: Any) -> None:
    client = make_client()
    for name in ("", "a b", "{x}"):
        with pytest.raises(distq.InvalidArgument):
            client.addjob(name, "x")
        with pytest.raises(distq.InvalidArgument):
            client.getjob(name, nohang=True)
        with pytest.raises(distq.InvalidArgument):
            client.qlen(name)
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError too
        client.addjob("", "x")


def test_payload_limit_and_a_100_mb_round_trip(url: str, namespace: str, queue: str) -> None:
    limit = 16 * 1024 * 1024
    big = os.urandom(100 * 1024 * 1024)
    digest = hashlib.sha256(big).hexdigest()
    with distq.connect(url, namespace=namespace) as client:
        with pytest.raises(distq.PayloadTooLarge):
            client.addjob(queue, big)
        with pytest.raises(distq.PayloadTooLarge):
            client.addjob(queue, big[: limit + 1])
        with pytest.raises(distq.CodecError):  # PayloadTooLarge is a CodecError
            client.addjobs(queue, [b"small", big])
        assert client.qstat(queue)["jobs_in"] == 0
        assert client.jscan(queue=queue, busyloop=True)[1] == []
        at_limit = client.addjob(queue, big[:limit])  # exactly the limit is fine
        [job] = client.getjob(queue, nohang=True)
        assert job.id == at_limit and job.body == big[:limit]
        assert client.ackjob(job) == 1

    with distq.connect(url, namespace=namespace, max_payload=128 * 1024 * 1024) as client:
        job_id = client.addjob(queue, big)
        [job] = client.getjob(queue, nohang=True)
        assert job.id == job_id
        assert isinstance(job.body, bytes)
        assert len(job.body) == len(big)
        assert hashlib.sha256(job.body).hexdigest() == digest
        assert client.ackjob(job) == 1


def test_unencodable_bodies_are_codec_errors(make_client: Any, queue: str) -> None:
    client = make_client()
    for body in (lambda: None, float("nan"), {"x": float("inf")}, {1, 2}, object()):
        with pytest.raises(distq.CodecError):
            client.addjob(queue, body)
    with pytest.raises(distq.CodecError):
        client.addjobs(queue, ["fine", lambda: 0])  # nothing of the batch is added
    assert client.qstat(queue)["jobs_in"] == 0
    assert client.jscan(queue=queue, busyloop=True)[1] == []
    assert client.getjob(queue, nohang=True) == []


# T8: the server pauses writes (CLIENT PAUSE WRITE) ----------------------------------


def test_a_write_pause_shorter_than_the_lease_reclaims_nothing(
    engine: Any, make_client: Any, queue: str
) -> None:
    holder, other = make_client(), make_client()
    job_id = holder.addjob(queue, "paused", retry=3)
    [job] = holder.getjob(queue, nohang=True)
    raw = engine.server.client()
    try:
        raw.execute_command("CLIENT", "PAUSE", 1000, "WRITE")
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            fetched = pool.submit(other.getjob, queue, nohang=True)
            assert holder.ackjob(job) == 1  # waits out the pause, then counts
            assert time.monotonic() - started >= 0.8
            assert fetched.result(timeout=10) == []
    finally:
        raw.execute_command("CLIENT", "UNPAUSE")
        raw.close()
    assert job.id == job_id and holder.qstat(queue)["jobs_out"] == 1


def test_a_write_pause_longer_than_the_lease_is_fenced(
    engine: Any, make_client: Any, queue: str
) -> None:
    # The lease runs out during the pause; the holder's ack and another consumer's
    # fetch both wait for it. Whichever the server takes first, the job is done once:
    # acked by its holder (the fetch finds nothing), or delivered again (the late ack
    # is refused as stale).
    holder, other = make_client(), make_client()
    holder.addjob(queue, "paused", retry=LEASE_S)
    [job] = holder.getjob(queue, nohang=True)
    raw = engine.server.client()
    try:
        raw.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
        time.sleep(LEASE_S + 0.2)  # the lease is over, in server time
        with ThreadPoolExecutor(2) as pool:
            acked = pool.submit(holder.ackjob, job)
            time.sleep(0.1)
            fetched = pool.submit(other.getjob, queue, nohang=True)
            acked_count, refetched = acked.result(timeout=10), fetched.result(timeout=10)
    finally:
        raw.execute_command("CLIENT", "UNPAUSE")
        raw.close()
    if acked_count == 1:
        assert refetched == []
        assert holder.qstat(queue)["jobs_out"] == 1
    else:
        [again] = refetched
        assert (again.id, again.delivery, again.additional_deliveries) == (job.id, 2, 1)
        assert other.ackjob(again) == 1
    assert holder.qlen(queue) == 0 and holder.getjob(queue, nohang=True) == []
    assert holder.qstat(queue)["jobs_out"] <= 2  # no reclaim storm


# 5: the server stops answering (SIGSTOP) ---------------------------------------


def test_stopped_server_gives_a_timeout_then_recovers(
    engine: Any, fresh_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = fresh_server(engine.name, appendonly=False)
    assert server.pid is not None
    raw = server.client(socket_timeout=10)
    try:
        with distq.connect(
            with_option(server.url, "socket_timeout=1"), namespace=namespace
        ) as client:
            job_id = client.addjob("q", "kept")
            assert client.qlen("q") == 1
            before = total_connections(raw)
            os.kill(server.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(distq.Timeout):
                    client.qlen("q")
                elapsed = time.monotonic() - started
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert 0.9 <= elapsed < 3  # one attempt: no retries on a timeout
            assert client.qlen("q") == 1
            [job] = client.getjob("q", nohang=True)
            assert (job.id, job.body) == (job_id, "kept")
            assert client.ackjob(job) == 1
            assert total_connections(raw) - before <= 3  # no retry storm
    finally:
        raw.close()


def test_blocking_getjob_with_a_short_socket_timeout(url: str, namespace: str, queue: str) -> None:
    with distq.connect(with_option(url, "socket_timeout=1"), namespace=namespace) as client:
        started = time.monotonic()
        assert client.getjob(queue, timeout=1.5) == []
        assert 1.4 <= time.monotonic() - started < 3
