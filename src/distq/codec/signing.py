"""Signed messages: an HMAC-SHA256 of a message's bytes, checked before decoding.

A sealed message is ``H1:<hex mac>:<fmt><data>`` where ``<fmt><data>`` is the
value encoded by the body codec, and the MAC covers a *context* (the actor or
queue the message is addressed to) and those bytes, so a message cannot be
moved to another mailbox or queue and pass. Verification uses a constant-time
comparison and happens before anything is decoded; nothing in a message is
ever imported or evaluated.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from distq.codec.body import BodyCodec
from distq.errors import CodecError

__all__ = ["is_sealed", "seal", "unseal"]

_PREFIX = b"H1:"


def _mac(secret: bytes, context: str, data: bytes) -> bytes:
    return hmac.new(secret, context.encode() + b"\n" + data, hashlib.sha256).hexdigest().encode()


def seal(codec: BodyCodec, secret: bytes | None, context: str, value: Any) -> bytes:
    """The stored bytes of ``value``: encoded, and MAC'd when there is a secret."""
    fmt, payload = codec.encode(value)
    data = fmt.encode() + payload
    if secret is None:
        return data
    return _PREFIX + _mac(secret, context, data) + b":" + data


def is_sealed(stored: Any) -> bool:
    """Whether ``stored`` carries a MAC."""
    return isinstance(stored, bytes) and stored.startswith(_PREFIX)


def unseal(codec: BodyCodec, secret: bytes | None, context: str, stored: Any) -> Any:
    """The value in ``stored``; with a secret, only if its MAC is valid.

    Raises:
        CodecError: no valid MAC while a secret is set, or undecodable bytes.
    """
    if not isinstance(stored, bytes):  # a body added raw (JSON, text): never sealed
        if secret is not None:
            raise CodecError("refused: the message carries no MAC and a secret is set")
        raise CodecError("not a sealed message")
    if stored.startswith(_PREFIX):
        mac, _, data = stored[len(_PREFIX) :].partition(b":")
        if secret is not None and not hmac.compare_digest(mac, _mac(secret, context, data)):
            raise CodecError("refused: the message's MAC does not match (wrong secret?)")
    elif secret is not None:
        raise CodecError("refused: the message carries no MAC and a secret is set")
    else:
        data = stored
    fmt = data[:1].decode(errors="replace")
    if fmt not in ("j", "m"):
        raise CodecError("not a sealed message (no encoded value)")
    return codec.decode(fmt, data[1:])
