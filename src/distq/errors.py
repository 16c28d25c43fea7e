"""The one error tree of distq.

Every error distq raises is a :class:`DistqError`; Redis exceptions are
translated at the connection layer (``raise … from exc`` keeps the cause)::

    DistqError
    ├── ConnectionFailed          the server could not be used
    │   └── ServerUnavailable     no connection within the retry budget
    ├── AuthenticationError       wrong password or unknown ACL user (never retried)
    ├── PermissionDenied          the ACL user may not run a command or touch a key
    ├── ServerError               any other error reply from the server
    │   └── OutOfMemory           the server refused a write (maxmemory reached)
    ├── Timeout                   a wait ran out (also a builtin ``TimeoutError``)
    ├── InvalidArgument           a bad value from the caller (also a ``ValueError``)
    ├── QueueError
    │   ├── QueueFull             ``maxlen`` refused the job
    │   ├── JobNotFound           no such job (or no longer)
    │   ├── LeaseLost             the job is no longer leased to this caller
    │   └── NotReplicated         fewer replicas than asked confirmed a job
    ├── CodecError                a body could not be encoded or decoded
    │   └── PayloadTooLarge       a body over the configured size limit
    ├── ActorError
    │   ├── ActorNotFound         no live actor has this name
    │   └── NameTaken             the name is registered to another live actor
    ├── RemoteError               code run elsewhere raised (type, message, traceback)
    ├── SoftTimeLimit             raised inside a task that ran past its soft time limit
    ├── WorkerLost                the process running a job died before answering
    ├── EmbeddedServerError       the private default server could not be run
    └── Stop                      raised by a pool's producer to end the pool

Outside the tree, on purpose: :class:`ActorStopped`, a ``BaseException``
raised inside an actor's ``receive()`` when its node stops it, so that a
behaviour's own ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "ActorNotFound",
    "ActorStopped",
    "NameTaken",
    "AuthenticationError",
    "CodecError",
    "ConnectionFailed",
    "DistqError",
    "EmbeddedServerError",
    "InvalidArgument",
    "JobNotFound",
    "LeaseLost",
    "NotReplicated",
    "OutOfMemory",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueError",
    "QueueFull",
    "RemoteError",
    "ServerError",
    "ServerUnavailable",
    "SoftTimeLimit",
    "Stop",
    "Timeout",
    "WorkerLost",
]


class DistqError(Exception):
    """Root of every error raised by distq."""


class ConnectionFailed(DistqError):
    """The Redis/Valkey server could not be used."""


class ServerUnavailable(ConnectionFailed):
    """No connection could be made within the retry budget."""


class AuthenticationError(DistqError):
    """The server refused the password or the ACL user. Never retried."""


class PermissionDenied(DistqError):
    """The ACL user may not run this command or touch this key."""


class ServerError(DistqError):
    """The server answered with an error reply."""


class OutOfMemory(ServerError):
    """The server refused a write because ``maxmemory`` is reached."""


class Timeout(DistqError, TimeoutError):
    """A wait ran out before an answer came."""


class InvalidArgument(DistqError, ValueError):
    """A value given by the caller is not acceptable."""


class QueueError(DistqError):
    """An operation on a queue or a job was refused."""


class QueueFull(QueueError):
    """The queue already holds ``maxlen`` jobs; the job was not added."""


class JobNotFound(QueueError):
    """No job has this id (it was acknowledged, deleted, or expired)."""


class LeaseLost(QueueError):
    """The job is not leased (any more) under the caller's delivery."""


class NotReplicated(QueueError):
    """Fewer than ``replicate`` replicas confirmed the job within ``timeout``.

    The job was added on the primary and may still reach the replicas.
    """


class CodecError(DistqError):
    """A body could not be encoded or decoded.

    Attributes:
        job_id: the job whose body failed to decode, when there is one.
    """

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class PayloadTooLarge(CodecError):
    """An encoded body is larger than the configured ``max_payload``."""


class EmbeddedServerError(DistqError):
    """The private default server could not be found, started or stopped."""


class RemoteError(DistqError):
    """Code run in another process raised an exception.

    Nothing named in a message is ever imported: the remote exception is
    described, not rebuilt.

    Attributes:
        type_name: the remote exception's qualified type name, e.g. ``"ValueError"``.
        message: ``str()`` of the remote exception.
        traceback: the remote traceback as text ("" when there is none).
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    @classmethod
    def from_exception(cls, exc: BaseException) -> RemoteError:
        """Describe a local exception, traceback included."""
        import traceback as tb

        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        return cls(name, str(exc), "".join(tb.format_exception(exc)))

    def to_dict(self) -> dict[str, str]:
        """The fields as a JSON-compatible dict."""
        return {"type": self.type_name, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> RemoteError:
        """Rebuild from :meth:`to_dict`'s output."""
        return cls(
            str(data.get("type", "?")), str(data.get("message", "")), str(data.get("traceback", ""))
        )


class SoftTimeLimit(DistqError):
    """Raised inside a task that ran past its ``soft_time_limit``: clean up and return."""


class WorkerLost(DistqError):
    """The process running a job died (killed, crashed, exited) before answering."""


class Stop(DistqError):
    """Raised by a pool's producer to end the pool (wodehaus's ``#:stop``)."""


class ActorError(DistqError):
    """An actor could not be found, named or reached."""


class ActorNotFound(ActorError):
    """No live actor is registered under this name."""


class NameTaken(ActorError):
    """The name is registered to another actor, on a node that is alive."""


class ActorStopped(BaseException):
    """Raised inside an actor's ``receive()`` when its node stops it.

    A ``BaseException``, so a behaviour's ``except Exception`` does not
    swallow it; let it propagate.
    """
