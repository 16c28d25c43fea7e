"""Operations as data: one definition serves the sync client, the async client
and pipelines.

An *op* is a generator. Each ``yield`` hands the driver a *step* — a list of
requests to send in one round trip — and receives the list of replies in the
same order. When the op returns, its return value is the result of the call.
An error reply is thrown into the op as a translated :class:`DistqError`, so an
op can handle it or let it propagate.

Because ops do no I/O themselves, the same ``addjob`` logic runs on a blocking
socket, on asyncio, or side by side with other ops inside one pipelined round
trip (:class:`Stepper` advances many ops in lockstep). Nothing here imports
redis.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

if TYPE_CHECKING:
    from distq.connection.scripts import Script

__all__ = ["Command", "Op", "Request", "ScriptCall", "Step", "Stepper"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Command:
    """A plain Redis command, e.g. ``Command(("BLPOP", "k", 1.5))``."""

    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A call of one of distq's Lua scripts (sent as EVALSHA, EVAL on NOSCRIPT)."""

    script: Script
    keys: Sequence[Any]
    args: Sequence[Any]


Request: TypeAlias = Command | ScriptCall
Step: TypeAlias = list[Request]
#: An operation: yields steps, receives their replies, returns its result.
Op: TypeAlias = Generator[Step, list[Any], T]


def single(request: Request) -> Generator[Step, list[Any], Any]:
    """An op step of one request, returning its one reply: ``x = yield from single(r)``."""
    replies = yield [request]
    return replies[0]


class Stepper(Generic[T]):
    """Advance several ops together so that each round is one round trip.

    The driver loops: ``requests()`` → send them all → ``feed(replies)`` until
    ``done``. Results (or the exception each op ended with) are kept in op order.
    """

    __slots__ = ("_errors", "_ops", "_pending", "results")

    def __init__(self, ops: Sequence[Op[T]]) -> None:
        self._ops = list(ops)
        self.results: list[T | None] = [None] * len(self._ops)
        self._errors: list[BaseException | None] = [None] * len(self._ops)
        self._pending: dict[int, Step] = {}
        for index in range(len(self._ops)):
            self._advance(index, None, None)

    @property
    def done(self) -> bool:
        """True when every op has returned or raised."""
        return not self._pending

    def requests(self) -> Step:
        """Every request of the current round, op by op."""
        return [request for step in self._pending.values() for request in step]

    def feed(self, replies: Sequence[Any]) -> None:
        """Hand each op its replies (an exception instance is thrown into it)."""
        offset = 0
        for index, step in list(self._pending.items()):
            chunk = list(replies[offset : offset + len(step)])
            offset += len(step)
            error = next((r for r in chunk if isinstance(r, BaseException)), None)
            self._advance(index, chunk, error)

    def outcome(self, index: int) -> T:
        """The result of op ``index``, or raise the error it ended with."""
        error = self._errors[index]
        if error is not None:
            raise error
        return self.results[index]  # type: ignore[return-value]

    def _advance(self, index: int, replies: list[Any] | None, error: BaseException | None) -> None:
        self._pending.pop(index, None)
        op = self._ops[index]
        try:
            if error is not None:
                self._pending[index] = op.throw(error)
            elif replies is None:
                self._pending[index] = next(op)
            else:
                self._pending[index] = op.send(replies)
        except StopIteration as stop:
            self.results[index] = stop.value
        except Exception as exc:  # an op's error belongs to its caller, not the batch
            self._errors[index] = exc
