"""Pre-forked worker processes: the execution engine under every distq worker.

A :class:`Pool` keeps up to ``workers`` child processes, forked on demand and
reused. The parent hands a child a *function* and a *job*; the child runs
``function(job)`` and answers with the result. Jobs and results cross the
process boundary through the body codec (JSON-compatible values, bytes, str),
so whatever the consumer receives is plain data; the function travels by
reference (module and name, over a private socket the parent made). A
function that cannot be referenced that way — a lambda, a closure — runs in a
child forked for that one job, which inherits it.

Children report back through :func:`report` (progress, heartbeats); the parent
sees those as :class:`Message` events. What the parent needs only should a
child die — which job it was running, what it held — goes on the pool's
shared memory instead, where publishing costs no system call and wakes no
one: a few integers on the *board* (:func:`board`) and a byte string, the
*note* (:func:`note`). A child that dies mid-job yields a
:class:`Done` event whose result is a :class:`~distq.errors.WorkerLost`.

Children ignore SIGINT (the parent decides what an interrupt means) and treat
SIGTERM as "finish the current job, then exit": :func:`stopping` tells a
long-running job that it should wrap up.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distq.codec.body import BodyCodec
from distq.errors import CodecError, DistqError, RemoteError, WorkerLost

__all__ = [
    "BOARD_SLOTS",
    "Done",
    "Message",
    "NOTE_BYTES",
    "Pool",
    "board",
    "in_worker_process",
    "note",
    "process_name",
    "report",
    "stopping",
]

log = logging.getLogger(__name__)

Logger = Callable[..., None]
#: Integers each worker process may publish on the pool's shared board.
BOARD_SLOTS = 4
#: The longest note a worker process may publish (bytes).
NOTE_BYTES = 16384
#: A note area: the current half (8 bytes), then two halves of (length, bytes).
_NOTE_HALF = 8 + NOTE_BYTES
_NOTE_AREA = 8 + 2 * _NOTE_HALF
_WORD = struct.Struct("=q")
_HEADER = struct.Struct(">I")
_REF = struct.Struct(">H")
_codec = BodyCodec()


def _encode(value: Any) -> bytes:
    fmt, data = _codec.encode(value)
    return fmt.encode() + data


def _decode(data: bytes) -> Any:
    return _codec.decode(data[:1].decode(), data[1:])


@dataclass(slots=True)
class Done:
    """A job finished: its result, or the error it ended with (and, for a
    process that died, what it last published on the shared board and its
    note)."""

    pid: int
    job: Any
    result: Any
    seconds: float
    board: list[int] = field(default_factory=list)
    note: bytes | None = None


@dataclass(slots=True)
class Message:
    """A value a child sent with :func:`report` while running a job."""

    pid: int
    value: Any


# The child side --------------------------------------------------------------


class _ChildState:
    sock: socket.socket | None = None
    stopping = False
    name: Any = None
    board: memoryview | None = None
    note: memoryview | None = None


_child = _ChildState()


def process_name() -> Any:
    """A value unique to the worker process calling it (its PID).

    Called outside a pool's worker process, returns a description of the
    calling (server) process instead.
    """
    if _child.sock is not None:
        return os.getpid()
    return _child.name or f"pool-server:{os.getpid()}"


def board() -> memoryview | None:
    """This worker process's slot of the pool's shared board: ``BOARD_SLOTS``
    integers the parent reads at any time (``Pool.board_of``) without a
    message. None outside a pool's worker process."""
    return _child.board


def note(data: bytes) -> bool:
    """Publish ``data`` as this worker process's note, replacing the last one:
    the parent reads it (``Done.note``) only if the process dies. Written to
    shared memory, so it costs no system call; a process killed while writing
    leaves the previous note whole.

    Returns False, and withdraws the last note, when ``data`` is longer than
    ``NOTE_BYTES`` (send it with :func:`report` then) or outside a pool's
    worker process.
    """
    area = _child.note
    if area is None:
        return False
    current = _WORD.unpack_from(area, 0)[0]
    if len(data) > NOTE_BYTES:
        _WORD.pack_into(area, 8 + current * _NOTE_HALF, -1)
        return False
    other = 1 - current
    start = 8 + other * _NOTE_HALF
    _WORD.pack_into(area, start, len(data))
    area[start + 8 : start + 8 + len(data)] = data
    _WORD.pack_into(area, 0, other)  # one aligned word: the switch is whole or not at all
    return True


def in_worker_process() -> bool:
    """True inside a pool's worker process."""
    return _child.sock is not None


def stopping() -> bool:
    """True in a worker process that was asked to stop after its current job."""
    return _child.stopping


def report(value: Any) -> None:
    """Send a codec-encodable value to the parent (a :class:`Message` event there)."""
    if _child.sock is None:
        raise DistqError("report() is only available inside a pool worker process")
    _send(_child.sock, b"M" + _encode(value))


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def _recv(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    return _recv_exact(sock, _HEADER.unpack(header)[0])


def _on_sigterm(signum: int, frame: Any) -> None:
    _child.stopping = True


def _run_one(function: Callable[[Any], Any], job: Any) -> bytes:
    try:
        result = function(job)
    except Exception as exc:  # the job's failure is its result, reported to the parent
        return b"R1" + _encode(RemoteError.from_exception(exc).to_dict())
    try:
        return b"R0" + _encode(result)
    except CodecError as exc:
        name = getattr(function, "__qualname__", repr(function))
        return b"R2" + _encode({"message": f"the result of {name} cannot be encoded: {exc}"})


def _child_main(sock: socket.socket, inherited: Callable[[Any], Any] | None, max_jobs: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _child.sock, _child.stopping = sock, False
    done = 0
    while not _child.stopping:
        frame = _recv(sock)
        if frame is None:
            break
        (size,) = _REF.unpack_from(frame, 1)
        start = 1 + _REF.size
        function = pickle.loads(frame[start : start + size]) if size else inherited
        try:
            job = _decode(frame[start + size :])
        except CodecError as exc:
            _send(sock, b"R2" + _encode({"message": f"the job cannot be decoded: {exc}"}))
            continue
        assert function is not None
        _send(sock, _run_one(function, job))
        done += 1
        if max_jobs and done >= max_jobs:
            break


# The parent side -------------------------------------------------------------


@dataclass(slots=True)
class _Child:
    pid: int
    sock: socket.socket
    job: Any = None
    busy: bool = False
    started: float = 0.0
    dedicated: bool = False
    jobs_done: int = 0
    slot: int = 0
    buffer: bytearray = field(default_factory=bytearray)


class Pool:
    """Up to ``workers`` reusable child processes running ``function(job)``.

    Args:
        workers: the most child processes alive at once (and so the most
            jobs running at once).
        max_jobs_per_child: a child exits after this many jobs (0: never) and
            a fresh one is forked for the next.
        logger: ``logger(level, fmt, *args)`` receives ``"info"`` and
            ``"error"`` events (wodehaus's logger); the ``logging`` module
            gets them too.
    """

    def __init__(
        self, workers: int = 4, *, max_jobs_per_child: int = 0, logger: Logger | None = None
    ) -> None:
        if workers < 1:
            raise DistqError(f"a pool needs at least one worker, not {workers}")
        self.workers = workers
        self.max_jobs_per_child = max_jobs_per_child
        self._logger = logger
        self._children: dict[int, _Child] = {}
        self._selector = selectors.DefaultSelector()
        self._events: list[Done | Message] = []
        self._refs: dict[Callable[[Any], Any], bytes] = {}
        # Shared anonymous memory, inherited by every fork: one slot per process.
        # (Twice the workers: a process that answered stays until its exit is seen.)
        self._board = mmap.mmap(-1, 2 * workers * BOARD_SLOTS * 8)
        self._notes = mmap.mmap(-1, 2 * workers * _NOTE_AREA)
        self._free_slots = list(range(2 * workers))

    # -- state

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        return sum(1 for child in self._children.values() if child.busy)

    @property
    def free(self) -> int:
        """How many more jobs can be submitted without waiting."""
        return self.workers - self.busy

    def running(self) -> dict[int, tuple[Any, float]]:
        """``{pid: (job, started)}`` of every child running a job."""
        return {c.pid: (c.job, c.started) for c in self._children.values() if c.busy}

    def board_of(self, pid: int) -> list[int]:
        """What the worker process ``pid`` published on the shared board (zeros if none)."""
        child = self._children.get(pid)
        view = self._slot_view(child.slot) if child is not None else None
        if view is None:
            return [0] * BOARD_SLOTS
        published = list(view)
        view.release()
        return published

    def _note_view(self, slot: int) -> memoryview | None:
        if slot < 0:
            return None
        return memoryview(self._notes)[slot * _NOTE_AREA : (slot + 1) * _NOTE_AREA]

    def _read_note(self, slot: int) -> bytes | None:
        """What the process in ``slot`` last published with :func:`note` (None: nothing)."""
        area = self._note_view(slot)
        if area is None:
            return None
        with area:
            start = 8 + _WORD.unpack_from(area, 0)[0] * _NOTE_HALF
            size = _WORD.unpack_from(area, start)[0]
            return None if size < 0 else bytes(area[start + 8 : start + 8 + size])

    def _slot_view(self, slot: int) -> memoryview | None:
        if slot < 0:
            return None
        start = slot * BOARD_SLOTS * 8
        return memoryview(self._board)[start : start + BOARD_SLOTS * 8].cast("q")

    def pids(self) -> list[int]:
        """The PIDs of every live child."""
        return list(self._children)

    # -- submitting

    def submit(self, function: Callable[[Any], Any], job: Any) -> int:
        """Start ``function(job)`` in a child; return the child's PID.

        Raises:
            DistqError: no child is free (check :attr:`free` first).
            CodecError: ``job`` cannot be encoded.
        """
        if self.free < 1:
            raise DistqError("no free worker process: wait for a job to finish first")
        body = _encode(job)
        ref = self._reference(function)
        child = self._fork(function) if not ref else (self._idle_child() or self._fork(None))
        child.busy, child.job, child.started = True, job, time.monotonic()
        _send(child.sock, b"J" + _REF.pack(len(ref)) + ref + body)
        return child.pid

    def _reference(self, function: Callable[[Any], Any]) -> bytes:
        """How a reused child finds ``function`` (b"" when it must be inherited)."""
        ref = self._refs.get(function)
        if ref is None:
            try:
                ref = pickle.dumps(function)  # by module and name: no code travels
                if pickle.loads(ref) is not function or len(ref) > 0xFFFF:
                    ref = b""
            except Exception:
                ref = b""
            self._refs[function] = ref
        return ref

    def _idle_child(self) -> _Child | None:
        return next((c for c in self._children.values() if not c.busy and not c.dedicated), None)

    def _fork(self, inherited: Callable[[Any], Any] | None) -> _Child:
        if len(self._children) >= self.workers:
            self._retire_idle()
        parent_sock, child_sock = socket.socketpair()
        slot = self._free_slots.pop(0) if self._free_slots else -1
        view, notes = self._slot_view(slot), self._note_view(slot)
        if view is not None:
            for index in range(BOARD_SLOTS):
                view[index] = 0
        if notes is not None:
            for half in (0, 1):  # nothing published yet
                _WORD.pack_into(notes, 8 + half * _NOTE_HALF, -1)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                parent_sock.close()
                for other in self._children.values():
                    other.sock.close()
                _child.board, _child.note = view, notes
                _child_main(child_sock, inherited, 1 if inherited else self.max_jobs_per_child)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        child_sock.close()
        for shared in (view, notes):
            if shared is not None:
                shared.release()
        child = _Child(pid, parent_sock, dedicated=inherited is not None, slot=slot)
        self._children[pid] = child
        self._selector.register(parent_sock, selectors.EVENT_READ, child)
        self._log("info", "worker process %d started", pid)
        return child

    def _retire_idle(self) -> None:
        idle = self._idle_child()
        if idle is not None:
            self._close(idle)
            _reap(idle.pid, block=True)

    # -- waiting

    def wait(self, timeout: float | None = None) -> list[Done | Message]:
        """Events since the last call, waiting up to ``timeout`` s for one."""
        if not self._events:
            for key, _ in self._selector.select(timeout):
                self._read(key.data)
        events, self._events = self._events, []
        return events

    def _read(self, child: _Child) -> None:
        try:
            chunk = child.sock.recv(1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            self._lost(child)
            return
        child.buffer += chunk
        while len(child.buffer) >= _HEADER.size:
            size = _HEADER.unpack_from(child.buffer)[0]
            if len(child.buffer) < _HEADER.size + size:
                break
            frame = bytes(child.buffer[_HEADER.size : _HEADER.size + size])
            del child.buffer[: _HEADER.size + size]
            self._frame(child, frame)

    def _frame(self, child: _Child, frame: bytes) -> None:
        if frame[:1] == b"M":
            self._events.append(Message(child.pid, _decode(frame[1:])))
            return
        status, value = frame[1:2], _decode(frame[2:])
        if status == b"1":
            value = RemoteError.from_dict(value)
            self._log("error", "job failed in worker %d: %s", child.pid, value)
        elif status == b"2":
            value = CodecError(value["message"])
            self._log("error", "worker %d: %s", child.pid, value)
        self._events.append(Done(child.pid, child.job, value, time.monotonic() - child.started))
        child.busy, child.job = False, None
        child.jobs_done += 1  # at max_jobs_per_child the child exits: it is not given more

    def _lost(self, child: _Child) -> None:
        published, note = self.board_of(child.pid), self._read_note(child.slot)
        self._close(child)
        status = _reap(child.pid, block=True)
        if child.busy:
            error = WorkerLost(
                f"worker process {child.pid} died ({_describe(status)}) running a job"
            )
            self._log("error", "%s", error)
            seconds = time.monotonic() - child.started
            self._events.append(Done(child.pid, child.job, error, seconds, published, note))
        else:
            self._log("info", "worker process %d exited", child.pid)

    def _close(self, child: _Child) -> None:
        if self._children.pop(child.pid, None) is not None and child.slot >= 0:
            self._free_slots.append(child.slot)
        self._selector.unregister(child.sock)
        child.sock.close()

    # -- stopping

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Signal one child (SIGKILL by default); its job ends as WorkerLost."""
        if pid in self._children:
            os.kill(pid, sig)

    def stop(
        self,
        *,
        graceful: bool = True,
        timeout: float = 30.0,
        abort: Callable[[], bool] | None = None,
    ) -> list[Done | Message]:
        """End every child; return the events that came in meanwhile.

        Graceful: idle children are told to exit, busy ones get SIGTERM (they
        finish their job first) and are waited for up to ``timeout`` s; then,
        or when not graceful, or as soon as ``abort()`` is true, whatever is
        left is killed.
        """
        events: list[Done | Message] = []
        if graceful:
            for child in list(self._children.values()):
                if child.busy:
                    os.kill(child.pid, signal.SIGTERM)
                else:
                    self._close(child)
                    _reap(child.pid, block=True)
            deadline = time.monotonic() + timeout
            while self._children and time.monotonic() < deadline:
                if abort is not None and abort():
                    break
                events += self.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        for child in list(self._children.values()):
            os.kill(child.pid, signal.SIGKILL)
        while self._children:
            events += self.wait(1.0)
        return events

    def close(self) -> None:
        """Kill any child left and release the selector."""
        if self._children:
            self.stop(graceful=False)
        self._selector.close()
        self._board.close()
        self._notes.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log(self, level: str, fmt: str, *args: Any) -> None:
        (log.error if level == "error" else log.info)(fmt, *args)
        if self._logger is not None:
            try:
                self._logger(level, fmt, *args)
            except Exception:  # a failing logger must not take the pool down
                log.exception("pool logger failed")


def _reap(pid: int, *, block: bool) -> int | None:
    try:
        waited, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
    return status if waited else None


def _describe(status: int | None) -> str:
    if status is None:
        return "status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
