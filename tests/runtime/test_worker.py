"""``distq worker``: real supervisor and worker processes against real servers.

Each test starts ``python -m distq worker tasks_app:app`` as a subprocess
(the tasks are in ``tasks_app.py``, next to this file), queues calls from
this process, and always stops the worker by PID — SIGTERM, then SIGKILL
after a bound — checking that none of its processes is left behind.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from distq.connection.ops import Command, single
from distq.endpoints.app import App
from distq.endpoints.task import TaskHandle
from distq.errors import RemoteError
from distq.runtime import control
from distq.runtime.control import list_workers
from distq.runtime.worker import Worker, WorkerConfig
from processes import AppProcesses, Process, alive, child_env, cli, wait_for

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
tasks_app: ModuleType = importlib.import_module("tasks_app")


# Helpers -----------------------------------------------------------------------------


@pytest.fixture
def app(url: str, namespace: str) -> Iterator[App]:
    """``tasks_app.app``, pointed at this test's server and namespace."""
    the_app: App = tasks_app.app
    the_app.close()
    the_app.url, the_app.namespace = url, namespace
    try:
        yield the_app
    finally:
        the_app.close()


@pytest.fixture
def start_worker(
    url: str, namespace: str, tmp_path: Path, app: App
) -> Iterator[Callable[..., Process]]:
    """Factory of ``distq worker tasks_app:app --heartbeat 0.2 ARGS…`` subprocesses
    (``live=N``: once N processes are live); each is stopped (by PID) and checked
    at teardown."""
    env = child_env(url=url, namespace=namespace, path=HERE)
    with AppProcesses(tmp_path, HERE, "tasks_app", env, presence=app) as workers:
        yield functools.partial(workers.start, "worker")


def stats(app: App, queue: str = "default") -> dict[str, int]:
    """The raw counters of a queue (qstat shows all but ``stale``)."""
    raw = app.client.run(single(Command(("HGETALL", app.context.keys(queue).stats))))
    return {key.decode(): int(value) for key, value in raw.items()}


def dead_reasons(app: App, queue: str = "default") -> dict[str, str | None]:
    return {job.id: job.reason for job in app.client.deadletters(queue, 100)}


# Throughput ----------------------------------------------------------------------------


def test_2000_tasks_on_four_processes(app: App, start_worker: Callable[..., Process]) -> None:
    handles = tasks_app.add.map([(i, 1000 * i) for i in range(2000)])
    worker = start_worker("-c", "4", "--batch", "20")
    results = [handle.get(timeout=60) for handle in handles]
    assert results == [1001 * i for i in range(2000)]

    counters = stats(app)
    assert counters.get("acked") == 2000
    assert counters.get("out") == 2000  # each job delivered once
    assert "stale" not in counters  # no result refused as a duplicate
    qstat = app.client.qstat("default")
    assert (qstat["len"], qstat["leased"], qstat["delayed"], qstat["dead"]) == (0, 0, 0, 0)
    assert qstat["acked"] == 2000

    def all_counted() -> list[dict[str, Any]] | None:
        live = list_workers(app.client)
        return live if sum(w["done"] for w in live) == 2000 else None

    live = wait_for(all_counted, 10, "the workers' done counters to reach 2000")
    assert len(live) == 4
    assert {w["pid"] for w in live} == worker.children()
    assert worker.terminate() == 0


def test_async_task(app: App, start_worker: Callable[..., Process]) -> None:
    handles = tasks_app.aadd.map([(i, i) for i in range(50)])
    start_worker("-c", "1")
    assert [h.get(timeout=20) for h in handles] == [2 * i for i in range(50)]


# Dead processes ----------------------------------------------------------------------


def test_sigkilled_child_mid_task_runs_again(
    app: App, start_worker: Callable[..., Process]
) -> None:
    worker = start_worker("-c", "2")
    held = tasks_app.hold.delay("x")
    [victim] = wait_for(lambda: tasks_app.ledger("hold"), 20, "the task to start")
    assert victim in worker.children()
    os.kill(victim, signal.SIGKILL)

    assert held.get(timeout=20) == "held x"
    runs = tasks_app.ledger("hold")
    assert len(runs) == 2 and runs[1] != victim
    wait_for(lambda: not alive(victim), 5, "the killed process to be reaped")
    # The job was nacked (tried again at once), not left to its 60 s lease.
    assert stats(app).get("acked") == 1

    once = tasks_app.kill_once.delay(21)
    assert once.get(timeout=20) == 42
    assert len(tasks_app.ledger("kill_once")) == 2
    # Both dead processes were replaced.
    wait_for(lambda: len(worker.children()) == 2, 10, "two worker processes again")


def test_a_task_running_five_times_its_lease_runs_once(
    app: App, start_worker: Callable[..., Process]
) -> None:
    # RELIABILITY T13: heartbeats (every 0.2 s here) extend the 0.8 s lease of a
    # 4 s call; the other process, idle, never gets it.
    start_worker("-c", "2")
    handle = tasks_app.outlasts_its_lease.delay("long")
    assert handle.get(timeout=30) == "long run 1"
    assert len(tasks_app.ledger("outlasts")) == 1
    counters = stats(app)
    assert counters.get("out") == 1 and counters.get("acked") == 1
    assert counters.get("stale", 0) == 0


def test_a_zombie_run_past_its_lease_cannot_overwrite_the_result(
    app: App, start_worker: Callable[..., Process]
) -> None:
    # RELIABILITY T2: a stopped process's lease runs out, another process runs the
    # call again and stores its result; the stopped one, resumed, finishes too:
    # its result is refused as stale, and the worker logs the duplicate.
    worker = start_worker("-c", "2")
    handle = tasks_app.zombie.delay("z")
    [victim] = wait_for(lambda: tasks_app.ledger("zombie"), 20, "the first run to start")
    os.kill(victim, signal.SIGSTOP)
    try:
        assert handle.get(timeout=20) == "z run 2"
        assert tasks_app.ledger("zombie")[1] != victim
    finally:
        os.kill(victim, signal.SIGCONT)
    wait_for(lambda: stats(app).get("stale") == 1, 20, "the zombie's result to be refused")
    assert handle.get(timeout=5) == "z run 2"
    assert stats(app).get("acked") == 1
    assert len(tasks_app.ledger("zombie")) == 2
    wait_for(
        lambda: "refused as stale" in worker.log_path.read_text(), 10, "the duplicate logged"
    )


def test_task_killing_its_process_every_time_is_dead_lettered(
    app: App, start_worker: Callable[..., Process]
) -> None:
    start_worker("-c", "2")
    handle = tasks_app.always_kill.delay()
    with pytest.raises(RemoteError) as raised:
        handle.get(timeout=30)
    assert raised.value.type_name == "DeadLetter"
    assert "worker lost" in raised.value.message
    assert "max_deliveries=2" in raised.value.message
    assert len(tasks_app.ledger("always_kill")) == 2
    reason = dead_reasons(app)[handle.id]
    assert reason is not None and "worker lost" in reason and "SIGKILL" in reason
    assert handle.status() == "dead"


# Time limits -----------------------------------------------------------------------------


def test_hard_time_limit_kills_and_dead_letters(
    app: App, start_worker: Callable[..., Process]
) -> None:
    worker = start_worker("-c", "2")
    started = time.monotonic()
    handle = tasks_app.stuck.delay()
    with pytest.raises(RemoteError) as raised:
        handle.get(timeout=30)
    elapsed = time.monotonic() - started
    assert raised.value.type_name == "DeadLetter"
    assert "time limit" in raised.value.message
    runs = tasks_app.ledger("stuck")
    assert len(runs) == 2  # killed, tried again at once, killed again: max_deliveries=2
    assert elapsed < 15  # neither run slept its 20 s, nor waited for a lease
    reason = dead_reasons(app)[handle.id]
    assert reason is not None and "hard time limit of 0.5 s" in reason
    for pid in runs:
        wait_for(lambda pid=pid: not alive(pid), 5, f"killed process {pid} to be gone")
    assert "hard time limit" in worker.log()


def test_soft_time_limit(app: App, start_worker: Callable[..., Process]) -> None:
    start_worker("-c", "2")
    uncaught, cleanup, in_async = (
        tasks_app.soft.delay(),
        tasks_app.soft_cleanup.delay(),
        tasks_app.asoft.delay(),
    )
    with pytest.raises(RemoteError) as raised:
        uncaught.get(timeout=20)
    assert raised.value.type_name.endswith("SoftTimeLimit")
    assert "soft time limit" in raised.value.message
    assert "def soft" in raised.value.traceback or "in soft" in raised.value.traceback
    assert len(tasks_app.ledger("soft")) == 1  # retry=0

    assert cleanup.get(timeout=20) == "cleaned up"

    with pytest.raises(RemoteError) as raised_async:
        in_async.get(timeout=20)
    assert raised_async.value.type_name.endswith("SoftTimeLimit")


# How results travel -----------------------------------------------------------------------


def _directions(records: list[logging.LogRecord]) -> str:
    """The wire log as one character per request (">") and reply ("<")."""
    return "".join(r.getMessage()[:1] for r in records if r.name == "distq.wire")


@pytest.mark.parametrize(("queued", "expected"), [(1, "><><"), (3, ">><<")])
def test_results_travel_alone_only_when_the_queue_ran_dry(
    app: App, caplog: pytest.LogCaptureFixture, queued: int, expected: str
) -> None:
    worker = Worker(app, WorkerConfig(app="tasks_app:app", batch=3))
    first = [tasks_app.add.delay(n, 1) for n in range(queued)]
    assert worker.step() == queued  # results held back for the next round trip
    assert first[0].status() == "active"
    tasks_app.add.delay(10, 1)
    with caplog.at_level(logging.DEBUG, logger="distq.wire"):
        assert worker.step() == 1
    # A short batch's results go alone, then the fetch; a full batch's go with it.
    assert _directions(caplog.records).startswith(expected)
    assert [handle.get(timeout=5) for handle in first] == [n + 1 for n in range(queued)]


# Failures -------------------------------------------------------------------------------


def test_retries_with_backoff_then_remote_error(
    app: App, start_worker: Callable[..., Process]
) -> None:
    start_worker("-c", "1")
    handle = tasks_app.flaky_always.delay("t1")
    with pytest.raises(RemoteError) as raised:
        handle.get(timeout=20)
    error = raised.value
    runs = tasks_app.ledger_entries("flaky_always")
    assert len(runs) == 3  # 1 try + retry=2
    # backoff=0.05: retry n waits min(0.2, 0.05 * 2^(n-1)) * jitter in [0.5, 1].
    first_wait, second_wait = runs[1][1] - runs[0][1], runs[2][1] - runs[1][1]
    assert 0.02 <= first_wait < 1.0, first_wait
    assert 0.045 <= second_wait < 1.0, second_wait
    assert error.type_name == "ValueError"
    assert error.message == "boom t1 run 3"
    assert "flaky_always" in error.traceback
    assert "ValueError: boom t1 run 3" in error.traceback
    assert handle.status() == "failed"
    reason = dead_reasons(app)[handle.id]
    assert reason is not None and reason.startswith("failed after 3 attempts")
    counters = stats(app)
    assert counters.get("acked", 0) == 0 and counters.get("dead") == 1


def test_a_dead_call_enqueued_again_replaces_its_failure_with_its_result(
    app: App, start_worker: Callable[..., Process]
) -> None:
    start_worker("-c", "1")
    handle = tasks_app.fails_first.delay("d1")
    with pytest.raises(RemoteError, match="first run of d1"):
        handle.get(timeout=20)
    assert handle.status() == "failed" and dead_reasons(app)[handle.id] is not None

    assert app.client.enqueue(handle.id) == 1
    wait_for(lambda: handle.status() == "succeeded", 20, "the second run to succeed")
    assert handle.get(timeout=5) == "ok d1"
    assert len(tasks_app.ledger("fails_first")) == 2
    assert app.client.show(handle.id) is None  # done: job, state and reason are gone
    assert app.client.deadletters("default", 10) == []


def test_unencodable_result_fails_after_one_attempt(
    app: App, start_worker: Callable[..., Process]
) -> None:
    start_worker("-c", "1")
    handle = tasks_app.unencodable.delay()
    with pytest.raises(RemoteError) as raised:
        handle.get(timeout=20)
    assert "CodecError" in raised.value.type_name
    assert "encode" in raised.value.message
    assert len(tasks_app.ledger("unencodable")) == 1  # not retried, although retry=3


def test_unknown_task_is_dead_lettered(app: App, start_worker: Callable[..., Process]) -> None:
    start_worker("-c", "1")
    job_id = app.client.addjob("default", {"t": "nope", "a": [], "k": {}})
    known = tasks_app.add.delay(1, 2)
    assert known.get(timeout=20) == 3
    reasons = wait_for(lambda: dead_reasons(app), 10, "the unknown call to be dead-lettered")
    assert list(reasons) == [job_id]
    assert "unknown task 'nope'" in (reasons[job_id] or "")
    with pytest.raises(RemoteError, match="unknown task"):
        TaskHandle(app, job_id).get(timeout=5)


# Stopping -------------------------------------------------------------------------------


def test_sigterm_during_batch_loses_nothing(app: App, start_worker: Callable[..., Process]) -> None:
    total = 200
    handles = tasks_app.slow.map([(i, 0.05) for i in range(total)])
    worker = start_worker("-c", "2", "--batch", "50")
    # Each process leases 50 jobs, and stores their results when the batch is
    # done (2.5 s): a signal after 10 runs comes in the middle of the first batches.
    wait_for(lambda: len(tasks_app.ledger("slow")) >= 10, 20, "some jobs to run")
    signalled = time.monotonic()
    assert worker.terminate(timeout=10) == 0
    exited_in = time.monotonic() - signalled

    qstat = app.client.qstat("default")
    done = qstat["acked"]
    assert 10 <= done < total, qstat
    assert qstat["leased"] == 0 and qstat["delayed"] == 0 and qstat["dead"] == 0, qstat
    assert qstat["len"] + done == total, qstat
    # Every run finished and was acknowledged: nothing ran without its result stored.
    assert len(tasks_app.ledger("slow")) == done
    statuses = [h.status() for h in handles]
    assert statuses.count("succeeded") == done
    assert statuses.count("queued") == total - done
    assert exited_in < 10
    # Stopped mid-batch: the fetched but unstarted jobs were handed back, not left leased.
    assert "unstarted job(s) back" in worker.log()


def _workers_json(url: str, namespace: str) -> list[dict[str, Any]]:
    done = cli(url, namespace, "--json", "workers")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


def test_ctl_stop_stops_exactly_that_worker(
    url: str, namespace: str, app: App, start_worker: Callable[..., Process]
) -> None:
    worker = start_worker("-c", "3", live=3)
    listed = _workers_json(url, namespace)
    assert len(listed) == 3 and {w["pid"] for w in listed} == worker.children()
    target, *others = listed

    sent = cli(url, namespace, "ctl", "stop", target["id"])
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: not alive(target["pid"]), 10, "the stopped worker process to exit")
    time.sleep(0.5)  # a replacement, if the supervisor wrongly forked one, would show by now
    after = _workers_json(url, namespace)
    assert sorted(w["id"] for w in after) == sorted(w["id"] for w in others)
    assert worker.children() == {w["pid"] for w in others}
    assert worker.proc.poll() is None

    # The others keep serving.
    handles = tasks_app.pid.map([() for _ in range(40)])
    pids = {h.get(timeout=20) for h in handles}
    assert pids <= {w["pid"] for w in others}
    assert worker.terminate() == 0


def _debug_lines(worker: Process, text: str) -> list[str]:
    return [line for line in worker.log().splitlines() if " DEBUG " in line and text in line]


def test_ctl_verbose_changes_its_logging(
    url: str, namespace: str, app: App, start_worker: Callable[..., Process]
) -> None:
    worker = start_worker("-c", "2", live=2)
    loud, calm = list_workers(app.client)

    def ping(worker_id: str) -> None:
        control.ping(app.client, worker_id, timeout=10)

    ping(loud["id"])
    assert not _debug_lines(worker, "answering")  # INFO by default

    sent = cli(url, namespace, "ctl", "verbose", loud["id"])
    assert sent.returncode == 0, sent.stderr
    assert "verbose" in sent.stdout
    wait_for(
        lambda: {w["id"]: w["verbose"] for w in list_workers(app.client)}.get(loud["id"]),
        10,
        "the worker to report verbose",
    )
    ping(loud["id"])
    ping(calm["id"])
    wait_for(lambda: _debug_lines(worker, loud["id"]), 5, f"a DEBUG line\n{worker.log()}")
    assert not _debug_lines(worker, calm["id"])  # only that process turned verbose
    # A task's debug log shows only when run by the verbose process.
    notes = [h.get(timeout=20) for h in tasks_app.note.map([f"n{i}" for i in range(20)])]
    assert len(notes) == 20
    logged = {line.rsplit("pid ", 1)[1] for line in _debug_lines(worker, "debug note")}
    assert logged <= {str(loud["pid"])}

    sent = cli(url, namespace, "ctl", "quiet", loud["id"])
    assert sent.returncode == 0, sent.stderr
    wait_for(
        lambda: not {w["id"]: w["verbose"] for w in list_workers(app.client)}[loud["id"]],
        10,
        "the worker to report quiet",
    )
    time.sleep(0.3)
    before = len(_debug_lines(worker, ""))
    ping(loud["id"])
    time.sleep(0.3)
    assert len(_debug_lines(worker, "")) == before
    assert worker.terminate() == 0
