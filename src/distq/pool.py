"""A local forking job server, with wodehaus's API.

::

    import distq.pool

    def square(n):                       # a worker: job -> result
        return n * n

    jobs = iter(range(10))

    def producer():                      # -> (worker, job); raise Stop to end
        try:
            return square, next(jobs)
        except StopIteration:
            raise distq.pool.Stop from None

    def consumer(job, result):           # called in this process
        print(job, result)

    distq.pool.start(producer, consumer, workers=4)

Each ``worker(job)`` runs in a separate OS process, at most ``workers`` at
once; the processes are forked on demand and reused (a lambda or closure that
cannot be found by name runs in a process forked for it). Jobs and results
cross processes through distq's codec — JSON-compatible values, ``bytes`` and
``str`` — so they are read/write-invariant by construction. When a worker
raises, the consumer receives a :class:`~distq.errors.RemoteError` as the
result; when its process dies, a :class:`~distq.errors.WorkerLost`; when a job
or a result cannot be encoded, a :class:`~distq.errors.CodecError`. Nothing
hangs.

SIGINT (Ctrl-C) shuts the server down cleanly: no new job is produced, the
running ones finish and reach the consumer, the worker processes exit. A
second SIGINT kills the workers at once and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from distq.errors import CodecError, Stop
from distq.runtime.pool import Done, Pool, process_name

__all__ = ["Stop", "process_name", "start"]

Producer = Callable[[], tuple[Callable[[Any], Any], Any]]
Consumer = Callable[[Any, Any], Any]
Logger = Callable[..., None]

#: How often (s) a waiting server looks at its interrupt flag.
_TICK = 0.2


class _Interrupted(BaseException):
    """Unwinds the server loop on SIGINT (a BaseException: user code can't swallow it)."""


class _Interrupts:
    """Counts SIGINTs; interrupts a blocked producer, or anything on the second."""

    def __init__(self) -> None:
        self.count = 0
        self.breakable = False

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.breakable or self.count >= 2:
            raise _Interrupted

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread; nothing to install
            return
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def start(
    producer: Producer,
    consumer: Consumer | None = None,
    logger: Logger | None = None,
    workers: int = 4,
) -> None:
    """Run a job server until ``producer`` raises :class:`Stop` (or SIGINT).

    Args:
        producer: called repeatedly for ``(worker, job)`` pairs; it may block
            until a job is available; raises ``distq.pool.Stop`` to end.
        consumer: called in this process with ``(job, result)`` for each
            finished job; its own result is discarded.
        logger: ``logger(level, fmt, *args)`` with level ``"error"`` or ``"info"``.
        workers: the most worker processes running at once (default 4).
    """
    interrupts = _Interrupts()
    deliver = consumer or (lambda job, result: None)
    with Pool(workers, logger=logger) as pool, interrupts.installed():
        with suppress(Stop, _Interrupted):
            _serve(pool, producer, deliver, interrupts)
        _drain(pool, deliver, interrupts)
    if interrupts.count >= 2:
        raise KeyboardInterrupt


def _serve(pool: Pool, producer: Producer, deliver: Consumer, interrupts: _Interrupts) -> None:
    while not interrupts.count:
        _hand_over(pool.wait(0), deliver)
        if pool.free < 1:
            _hand_over(pool.wait(_TICK), deliver)
            continue
        interrupts.breakable = True
        try:
            worker, job = producer()
        finally:
            interrupts.breakable = False
        try:
            pool.submit(worker, job)
        except CodecError as exc:
            deliver(job, exc)


def _drain(pool: Pool, deliver: Consumer, interrupts: _Interrupts) -> None:
    """Let running jobs finish (all of them reach the consumer), then stop."""
    while pool.busy and interrupts.count < 2:
        try:
            _hand_over(pool.wait(_TICK), deliver)
        except _Interrupted:
            break
    _hand_over(pool.stop(graceful=interrupts.count < 2), deliver)


def _hand_over(events: list[Any], deliver: Consumer) -> None:
    for event in events:
        if isinstance(event, Done):
            deliver(event.job, event.result)
