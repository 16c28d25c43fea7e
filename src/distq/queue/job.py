"""Jobs as the client sees them, and their states."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Job", "JobState"]


class JobState(StrEnum):
    """Where a job is."""

    QUEUED = "queued"  #: in the ready list, waiting to be fetched
    ACTIVE = "active"  #: fetched and leased to a consumer
    DELAYED = "delayed"  #: hidden until its delay is over
    IDLE = "idle"  #: taken out of the queue by ``dequeue``
    DEAD = "dead"  #: in the dead letters, with a reason

    @classmethod
    def from_code(cls, code: str) -> JobState:
        """The state stored as one letter in the job hash."""
        return _CODES[code]

    @property
    def code(self) -> str:
        """The one letter the scripts store for this state."""
        return _LETTERS[self]


_CODES = {
    "q": JobState.QUEUED,
    "a": JobState.ACTIVE,
    "d": JobState.DELAYED,
    "i": JobState.IDLE,
    "x": JobState.DEAD,
}
_LETTERS = {state: code for code, state in _CODES.items()}


@dataclass(frozen=True, slots=True)
class Job:
    """A job fetched with ``getjob`` or seen with ``qpeek``.

    Attributes:
        id: the job id (``D-…-queue``); unique, time-ordered.
        queue: the queue it belongs to.
        body: the decoded body.
        nacks: how many times it was nacked.
        additional_deliveries: how many times its lease expired and it came back.
        delivery: the job's delivery number: 1 for the first fetch, higher
            for every later one (a fetch handed back with ``release``
            included, so numbers never repeat). Passing the Job (not just its
            id) to ``ackjob``/``nack``/``working`` fences the call: it is
            refused if the job was delivered again since.
        reason: for a dead-lettered job, why it was dead-lettered.
    """

    id: str
    queue: str
    body: Any = field(repr=False)
    nacks: int = 0
    additional_deliveries: int = 0
    delivery: int = 0
    reason: str | None = None
