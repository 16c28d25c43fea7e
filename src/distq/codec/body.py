"""Job bodies: ``bytes`` and ``str`` as given, other values as JSON or msgpack.

Each stored body carries a one-letter format beside it (in the job's metadata,
not inside the body, so other readers see the bytes exactly as sent):

========  ==========================================
``b``     bytes, stored as given
``s``     str, stored as UTF-8
``j``     JSON text (the default codec for other values)
``m``     msgpack (``codec="msgpack"``, needs the ``msgpack`` extra)
========  ==========================================

Decoding follows the stored format, whatever codec the reader prefers for
writing, so a msgpack producer and a JSON consumer interoperate. Nothing is
ever unpickled or imported from a body.

References (actor references) travel inside any value: an object with a
``__distq_ref__()`` method returning ``(node, actor)`` is written as
``{"$ref": [node, actor]}`` in JSON (an extension type in msgpack), and a
codec given ``make_ref`` turns those back into references when decoding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from distq.errors import CodecError, InvalidArgument

__all__ = ["BodyCodec", "Format"]


class Format(StrEnum):
    """How a stored body is encoded."""

    BYTES = "b"
    TEXT = "s"
    JSON = "j"
    MSGPACK = "m"


def _msgpack() -> Any:
    try:
        import msgpack
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CodecError(
            "the msgpack codec needs the msgpack package: pip install distq[msgpack]"
        ) from exc
    return msgpack


class BodyCodec:
    """Encodes values for storage and decodes stored bodies.

    Args:
        name: ``"json"`` (default) or ``"msgpack"``: how values other than
            ``bytes`` and ``str`` are written.
        make_ref: builds a reference from ``(node, actor)`` when one is decoded
            (without it, references decode as ``{"$ref": [node, actor]}``).
    """

    __slots__ = ("_encode_value", "_json_decode", "make_ref", "name", "value_format")

    def __init__(self, name: str = "json", make_ref: MakeRef | None = None) -> None:
        self.make_ref = make_ref
        # One decoder for every call (json.loads with an object_hook builds one each time).
        hook = self._json_ref if make_ref else None
        self._json_decode = json.JSONDecoder(object_hook=hook).decode
        if name == "json":
            self.value_format = Format.JSON
            self._encode_value = _json_encode
        elif name == "msgpack":
            self.value_format = Format.MSGPACK
            self._encode_value = _msgpack_encode
            _msgpack()
        else:
            raise InvalidArgument(f"unknown codec {name!r}: use 'json' or 'msgpack'")
        self.name = name

    def encode(self, value: Any) -> tuple[Format, bytes]:
        """The format and bytes to store for ``value``.

        Raises:
            CodecError: the value cannot be represented (a lambda, a set, NaN…).
        """
        if isinstance(value, bytes):
            return Format.BYTES, value
        if isinstance(value, str):
            return Format.TEXT, value.encode()
        return self.value_format, self._encode_value(value)

    def decode(self, fmt: str, data: bytes, job_id: str | None = None) -> Any:
        """The value stored as ``data`` in format ``fmt``.

        Raises:
            CodecError: the bytes are not valid in their format (naming ``job_id``).
        """
        try:
            if fmt == Format.BYTES:
                return data
            if fmt == Format.TEXT:
                return data.decode()
            if fmt == Format.JSON:
                return self._json_decode(data.decode())
            if fmt == Format.MSGPACK:
                return _msgpack().unpackb(
                    data, raw=False, strict_map_key=False, ext_hook=self._msgpack_ref
                )
        except (ValueError, UnicodeDecodeError, TypeError) as exc:
            raise CodecError(
                f"job {job_id}: body is not valid {Format(fmt).name}: {exc}", job_id
            ) from exc
        except Exception as exc:  # msgpack raises its own hierarchy
            raise CodecError(f"job {job_id}: body cannot be decoded: {exc}", job_id) from exc
        raise CodecError(f"job {job_id}: unknown body format {fmt!r}", job_id)

    def _json_ref(self, obj: dict[str, Any]) -> Any:
        ref = obj.get(_REF_KEY) if len(obj) == 1 else None
        if isinstance(ref, list) and len(ref) == 2 and self.make_ref is not None:
            return self.make_ref(str(ref[0]), str(ref[1]))
        return obj

    def _msgpack_ref(self, code: int, data: bytes) -> Any:
        if code != _REF_EXT:
            return _msgpack().ExtType(code, data)
        node, actor = _msgpack().unpackb(data, raw=False)
        return self.make_ref(node, actor) if self.make_ref else {_REF_KEY: [node, actor]}


#: A reference's JSON form is {"$ref": [node, actor]}; in msgpack, extension 1.
_REF_KEY = "$ref"
_REF_EXT = 1
MakeRef = Callable[[str, str], Any]


def _ref_parts(value: Any) -> list[str] | None:
    method = getattr(value, "__distq_ref__", None)
    return list(method()) if callable(method) else None


def _json_default(value: Any) -> Any:
    parts = _ref_parts(value)
    if parts is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return {_REF_KEY: parts}


def _msgpack_default(value: Any) -> Any:
    parts = _ref_parts(value)
    if parts is None:
        raise TypeError(f"can not serialize {type(value).__name__!r} object")
    return _msgpack().ExtType(_REF_EXT, _msgpack().packb(parts))


#: One encoder for every call (``json.dumps`` with options builds a new one each
#: time): the C encoder itself where there is one (``JSONEncoder.encode`` makes it
#: again for each value), without the check for circular values, whose recursion
#: error is reported instead.
_JSON = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)
try:
    from _json import make_encoder as _make_c_encoder
except ImportError:  # pragma: no cover - an interpreter without the C accelerator
    _c_encode = None
else:
    _c_encode = _make_c_encoder(
        None, _json_default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )


def _json_encode(value: Any) -> bytes:
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0)).encode()
        return _JSON.encode(value).encode()
    except (TypeError, ValueError) as exc:
        raise CodecError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc
    except RecursionError as exc:
        raise CodecError(
            f"cannot encode {type(value).__name__} as JSON: circular or too deeply nested"
        ) from exc


def _msgpack_encode(value: Any) -> bytes:
    try:
        data: bytes = _msgpack().packb(value, use_bin_type=True, default=_msgpack_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {type(value).__name__} as msgpack: {exc}") from exc
    return data
