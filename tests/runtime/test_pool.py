"""``distq.pool``: the local forking job server (wodehaus's API), with real processes.

No server is needed: these tests never use the ``url`` fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from distq.errors import CodecError, RemoteError, WorkerLost
from distq.pool import Stop, process_name, start
from distq.runtime.pool import NOTE_BYTES, Done, Pool, note

pytestmark = pytest.mark.timeout(60)

Pair = tuple[Callable[[Any], Any], Any]


# Workers (module-level: reused processes find them by name) -------------------------


def timed(job: dict[str, Any]) -> dict[str, Any]:
    """Sleep, and say when, where and in which process."""
    began = time.time()
    time.sleep(job["sleep"])
    return {
        "n": job["n"],
        "pid": os.getpid(),
        "name": process_name(),
        "start": began,
        "end": time.time(),
    }


def double(n: int) -> int:
    return 2 * n


def fails(n: int) -> int:
    raise ValueError(f"bad job {n}")


def returns_a_set(n: int) -> Any:
    return {n}


def killed(how: str) -> None:
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def noted_then_killed(notes: list[str]) -> None:
    """Publish each note in turn (one too long withdraws the last), then die."""
    for text in notes:
        note(b"x" * (NOTE_BYTES + 1) if text == "too long" else text.encode())
    os.kill(os.getpid(), signal.SIGKILL)


# Helpers ----------------------------------------------------------------------------


def producer_of(pairs: Iterable[Pair]) -> Callable[[], Pair]:
    """A producer handing out ``pairs``, then raising Stop."""
    items = iter(pairs)

    def produce() -> Pair:
        try:
            return next(items)
        except StopIteration:
            raise Stop from None

    return produce


def run(
    pairs: Iterable[Pair], workers: int = 4, logger: Callable[..., None] | None = None
) -> list[tuple[Any, Any, int]]:
    """Run a pool over ``pairs``; every ``(job, result, pid of the consumer)``."""
    received: list[tuple[Any, Any, int]] = []

    def consumer(job: Any, result: Any) -> None:
        received.append((job, result, os.getpid()))

    start(producer_of(pairs), consumer, logger, workers)
    return received


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at once (an end at t comes before a start at t)."""
    spans = list(intervals)
    edges = sorted(
        [(begin, 1) for begin, _ in spans] + [(end, -1) for _, end in spans],
        key=lambda edge: (edge[0], edge[1]),
    )
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def alive(pid: int) -> bool:
    """True while ``pid`` is a process that is not a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return raw[raw.rindex(")") + 2 :].split()[0] not in ("Z", "X")


# Tests ------------------------------------------------------------------------------


def test_concurrency_never_exceeds_workers() -> None:
    jobs = [{"n": n, "sleep": 0.1} for n in range(15)]
    received = run([(timed, job) for job in jobs], workers=3)

    assert sorted(result["n"] for _, result, _ in received) == list(range(15))
    assert all(job["n"] == result["n"] for job, result, _ in received)
    assert {consumer_pid for _, _, consumer_pid in received} == {os.getpid()}
    results = [result for _, result, _ in received]
    overlap = max_overlap((r["start"], r["end"]) for r in results)
    assert 2 <= overlap <= 3, overlap  # parallel, never more than `workers`
    pids = {r["pid"] for r in results}
    assert len(pids) <= 3  # processes are reused
    assert all(r["name"] == r["pid"] for r in results)
    assert os.getpid() not in pids


def test_process_name_differs_per_worker_and_describes_the_server() -> None:
    received = run([(timed, {"n": n, "sleep": 0.2}) for n in range(4)], workers=4)
    names = [result["name"] for _, result, _ in received]
    assert len(set(names)) == 4  # four jobs at once: four processes, four names
    here = process_name()
    assert isinstance(here, str) and str(os.getpid()) in here and "pool" in here
    assert here not in names


def test_stop_ends_it() -> None:
    produced: list[int] = []

    def producer() -> Pair:
        if len(produced) == 5:
            raise Stop
        produced.append(len(produced))
        return double, produced[-1]

    received: list[tuple[Any, Any]] = []
    started = time.monotonic()
    start(producer, lambda job, result: received.append((job, result)), workers=2)
    assert time.monotonic() - started < 10
    assert sorted(received) == [(n, 2 * n) for n in range(5)]
    assert produced == [0, 1, 2, 3, 4]  # not called again after Stop

    start(producer_of([]))  # a producer that stops at once; no consumer at all


def test_worker_exception_arrives_as_remote_error_and_is_logged() -> None:
    events: list[tuple[str, str]] = []

    def logger(level: str, fmt: str, *args: Any) -> None:
        events.append((level, fmt % args))

    received = run([(fails, 7), (double, 8)], workers=2, logger=logger)
    results = {job: result for job, result, _ in received}
    assert results[8] == 16
    error = results[7]
    assert isinstance(error, RemoteError)
    assert error.type_name == "ValueError"
    assert error.message == "bad job 7"
    assert "in fails" in error.traceback and "ValueError: bad job 7" in error.traceback

    levels = {level for level, _ in events}
    assert levels <= {"info", "error"}
    assert any(level == "info" and "started" in text for level, text in events)
    assert any(level == "error" and "bad job 7" in text for level, text in events)


def test_unencodable_job_or_result_is_a_codec_error_without_hanging() -> None:
    unencodable: list[Any] = [{1, 2}, object(), {"nested": {3}}]
    started = time.monotonic()
    received = run(
        [(double, job) for job in unencodable] + [(double, 5), (returns_a_set, 6)], workers=2
    )
    assert time.monotonic() - started < 10
    assert len(received) == 5
    by_job = {id(job): result for job, result, _ in received}
    for job in unencodable:
        error = by_job[id(job)]
        assert isinstance(error, CodecError), error
        assert str(error)
    results = {job: result for job, result, _ in received if isinstance(job, int)}
    assert results[5] == 10
    assert isinstance(results[6], CodecError)
    assert "cannot be encoded" in str(results[6])


def test_lambda_and_closure_workers_run_in_a_process_each() -> None:
    offset = 100

    def closure(n: int) -> list[int]:
        return [n + offset, os.getpid()]

    received = run(
        [(lambda n: [n * 3, os.getpid()], n) for n in range(4)] + [(closure, n) for n in range(4)],
        workers=2,
    )
    values = sorted(result[0] for _, result, _ in received)
    assert values == sorted([n * 3 for n in range(4)] + [n + 100 for n in range(4)])
    pids = [result[1] for _, result, _ in received]
    assert len(set(pids)) == 8  # forked per job: the function is inherited, not sent
    assert os.getpid() not in pids


def test_a_worker_that_dies_arrives_as_worker_lost() -> None:
    received = run(
        [(killed, "kill"), (killed, "exit"), (double, 1), (double, 2), (double, 3)], workers=2
    )
    results = {job: result for job, result, _ in received}
    assert isinstance(results["kill"], WorkerLost) and "SIGKILL" in str(results["kill"])
    assert isinstance(results["exit"], WorkerLost) and "exit code 3" in str(results["exit"])
    assert [results[n] for n in (1, 2, 3)] == [2, 4, 6]


@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        ([], None),
        (["held a", "held a b"], b"held a b"),
        (["", "held c"], b"held c"),
        (["held a"], b"held a"),
        (["held a", "too long"], None),
        (["held a", "too long", "held d"], b"held d"),
        (["held " + "e" * (NOTE_BYTES - 5)], b"held " + b"e" * (NOTE_BYTES - 5)),
    ],
)
def test_a_dead_process_leaves_its_last_note(notes: list[str], expected: bytes | None) -> None:
    with Pool(1) as pool:
        pid = pool.submit(noted_then_killed, notes)
        deadline = time.monotonic() + 20
        events: list[Any] = []
        while not events and time.monotonic() < deadline:
            events = [e for e in pool.wait(1.0) if isinstance(e, Done)]
    [done] = events
    assert done.pid == pid and isinstance(done.result, WorkerLost)
    assert done.note == expected


def test_note_outside_a_worker_process_publishes_nothing() -> None:
    assert note(b"anything") is False


# SIGINT -------------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import itertools, json, sys, time
    import distq.pool

    pids_path, mode = sys.argv[1], sys.argv[2]
    seconds = 30.0 if mode == "twice" else 1.0

    def long_job(n):
        with open(pids_path, "a") as out:
            out.write(f"{distq.pool.process_name()}\\n")
        time.sleep(seconds)
        return n * 10

    counter = itertools.count()

    def producer():
        n = next(counter)
        if mode == "blocking" and n >= 2:
            time.sleep(60)  # waits for work that never comes
        return long_job, n

    done = []
    distq.pool.start(producer, lambda job, result: done.append([job, result]), workers=3)
    print(json.dumps(sorted(done)), flush=True)
    """
)


def _start_script(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    script, pids = tmp_path / "server.py", tmp_path / "pids"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pids), mode],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc, pids


def _recorded(pids: Path) -> list[int]:
    return [int(line) for line in pids.read_text().split()] if pids.exists() else []


def _wait_recorded(proc: subprocess.Popen[str], pids: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 20
    while len(_recorded(pids)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the pool's jobs did not start"
        time.sleep(0.05)
    return _recorded(pids)


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the pool did not exit within {timeout} s\n{err}") from None
    return proc.returncode, out, err


def _assert_gone(pids: Iterable[int]) -> None:
    left = set(pids)
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if alive(pid)}
        time.sleep(0.05)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes left behind: {sorted(left)}"


@pytest.mark.parametrize("mode", ["busy", "blocking"])
def test_sigint_ends_it_cleanly(tmp_path: Path, mode: str) -> None:
    proc, pids = _start_script(tmp_path, mode)
    try:
        running = 3 if mode == "busy" else 2
        workers = _wait_recorded(proc, pids, running)
        proc.send_signal(signal.SIGINT)
        code, out, err = _finish(proc, 15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0, err
    # The running jobs finished and reached the consumer; no new job was started.
    assert json.loads(out) == [[n, n * 10] for n in range(running)]
    assert _recorded(pids) == workers
    assert len(set(workers)) == running and proc.pid not in workers
    _assert_gone(workers)


def test_second_sigint_kills_the_workers_at_once(tmp_path: Path) -> None:
    proc, pids = _start_script(tmp_path, "twice")
    try:
        workers = _wait_recorded(proc, pids, 3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert proc.poll() is None  # waiting for the 30 s jobs
        proc.send_signal(signal.SIGINT)
        code, _, err = _finish(proc, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code != 0 and "KeyboardInterrupt" in err
    _assert_gone(workers)
