"""Results and errors as stored bytes.

A stored result is one status byte followed by a body in the format of
:mod:`distq.codec.body`::

    b"0" <fmt> <data>      the value returned
    b"1" j <json>          the exception raised: {"type", "message", "traceback"}

Errors are described, never rebuilt: no type named in a result is imported.
"""

from __future__ import annotations

import json
from typing import Any

from distq.codec.body import BodyCodec
from distq.errors import CodecError, RemoteError

__all__ = ["decode_result", "encode_error", "encode_value", "result_failed"]

_OK = b"0"
_ERROR = b"1"


def encode_value(codec: BodyCodec, value: Any) -> bytes:
    """The stored form of a returned value (raises CodecError if it cannot be)."""
    fmt, data = codec.encode(value)
    return _OK + fmt.encode() + data


def encode_error(error: RemoteError) -> bytes:
    """The stored form of a failure."""
    return _ERROR + b"j" + json.dumps(error.to_dict()).encode()


def result_failed(stored: bytes) -> bool:
    """True if ``stored`` holds a failure rather than a value."""
    return stored[:1] == _ERROR


def decode_result(codec: BodyCodec, stored: bytes, job_id: str | None = None) -> Any:
    """The value in ``stored``; raises the RemoteError it holds for a failure.

    Raises:
        RemoteError: the stored result is a failure.
        CodecError: the bytes are not a result.
    """
    status, fmt, data = stored[:1], stored[1:2].decode(errors="replace"), stored[2:]
    if status == _OK:
        return codec.decode(fmt, data, job_id)
    if status == _ERROR:
        fields = codec.decode(fmt, data, job_id)
        if isinstance(fields, dict):
            raise RemoteError.from_dict(fields)
    raise CodecError(f"job {job_id}: stored result is malformed", job_id)
