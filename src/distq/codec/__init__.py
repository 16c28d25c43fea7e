"""Encoding and decoding of job bodies (and, later, results and messages)."""

from distq.codec.body import BodyCodec as BodyCodec
from distq.codec.body import Format as Format

__all__ = ["BodyCodec", "Format"]
