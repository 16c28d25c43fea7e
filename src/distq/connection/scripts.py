"""Lua scripts: kept in ``.lua`` files, loaded once, called by SHA.

A package keeps its scripts in a ``lua/`` folder beside its modules, one
atomic step per file, each opening with a header that documents its KEYS,
ARGV, reply and errors. A file named ``_lib.lua`` in the same folder holds
helpers shared by the others and is prepended to each script that calls one.

Scripts are sent as EVALSHA; a server that does not know the SHA (it was
restarted, or its script cache flushed) answers NOSCRIPT, and the connection
resends the call as EVAL once, which also loads it for the next time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Script", "load_scripts"]

_LIB = "_lib.lua"


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: its file name (without ``.lua``), source and SHA1."""

    name: str
    source: bytes
    sha: str

    @classmethod
    def from_source(cls, name: str, source: bytes) -> Script:
        """Build a script, computing the SHA1 the server will know it by."""
        return cls(name, source, hashlib.sha1(source).hexdigest())


def _lua_files(package: str) -> dict[str, bytes]:
    folder = resources.files(package).joinpath("lua")
    return {
        entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".lua")
    }


def load_scripts(package: str, *, lib_from: str | None = None) -> dict[str, Script]:
    """Every ``lua/*.lua`` file of ``package``, by name, with ``_lib.lua`` prepended.

    ``lib_from`` names another package whose ``_lib.lua`` comes first, so a
    higher layer's scripts can use the queue scripts' helpers.
    """
    files = _lua_files(package)
    lib = _lua_files(lib_from).get(_LIB, b"") if lib_from else b""
    lib += files.pop(_LIB, b"")
    helpers = re.findall(rb"local function (\w+)", lib)
    return {
        name.removesuffix(".lua"): Script.from_source(
            name.removesuffix(".lua"), _with_lib(lib, helpers, source)
        )
        for name, source in sorted(files.items())
    }


def _with_lib(lib: bytes, helpers: list[bytes], source: bytes) -> bytes:
    """Prepend the helpers only to scripts that call one: defining them costs
    time at every call."""
    uses = any(re.search(rb"\b" + name + rb"\(", source) for name in helpers)
    return lib + source if uses else source
