"""DisTcl's wire protocol: its Redis keys, its values, and Tcl lists.

DisTcl (Tcl) defines a protocol on plain Redis keys, which this module is the
one place to format. For service ``S`` and request key ``KEY``::

    q:S          list   requests that want the value: KEY pushed by ``get``
    p:S          list   prefetch requests: KEY pushed by ``prefetch``
    r:S:KEY      list   the run list: 1 per get and 0 per prefetch received
                        while KEY is computed; its first entry marks KEY in flight
    v:S:KEY      string the cached value, ``STATUS:VALUE`` (kept only when
                        the computation set an expiry)
    w:S:KEY      list   the waitlist: the result pushed once per get recorded
    z:ID         list   a server's control queue: ``stop``; ``v*`` verbose; ``q*`` quiet

KEY is the request's arguments joined as a Tcl list (:func:`tcl_join`); a
server splits it back into arguments (:func:`tcl_split`). STATUS is the Tcl
return code of the computation: 0 ok, 1 error (its VALUE the message).
"""

from __future__ import annotations

from collections.abc import Sequence

from distq.errors import CodecError

__all__ = [
    "DistclKeys",
    "format_value",
    "parse_value",
    "tcl_join",
    "tcl_quote",
    "tcl_split",
]

#: Characters that make a list element need quoting.
_SPECIAL = set(' \t\n\r\v\f;$[]\\{}"')
#: Characters that make Tcl prefer braces for an element holding them.
_BRACE_FRIENDLY = set(" \t\n\r\v\f;$[")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}
_HEX_WIDTHS = {"x": 2, "u": 4, "U": 8}
_UNESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class DistclKeys:
    """The DisTcl keys of one service."""

    __slots__ = ("get_queue", "prefetch_queue", "service")

    def __init__(self, service: str) -> None:
        self.service = service
        self.get_queue = f"q:{service}"
        self.prefetch_queue = f"p:{service}"

    def run_list(self, key: str) -> str:
        """``r:S:KEY``: gets (1) and prefetches (0) recorded while KEY is computed."""
        return f"r:{self.service}:{key}"

    def value(self, key: str) -> str:
        """``v:S:KEY``: the cached ``STATUS:VALUE``."""
        return f"v:{self.service}:{key}"

    def waitlist(self, key: str) -> str:
        """``w:S:KEY``: where waiting gets read their result."""
        return f"w:{self.service}:{key}"

    @staticmethod
    def control(server_id: str) -> str:
        """``z:ID``: a server's control queue."""
        return f"z:{server_id}"


# Tcl lists --------------------------------------------------------------------


def _scan(word: str, first: bool) -> str:
    """How Tcl's ``list`` quotes ``word``: ``"bare"``, ``"brace"``, ``"mask"``
    (backslashes, braces left alone) or ``"escape"`` (backslashes everywhere).

    Mirrors Tcl 8.6's scan of a list element: characters that braces quote
    best (space, ``[``, ``$``, ``;``, backslash…) prefer braces; ``"`` and
    ``]`` alone prefer backslashes; unbalanced braces, a final backslash or a
    backslash-newline require backslashes.
    """
    prefer_brace = word[0] in '{"' or (first and word[0] == "#")
    prefer_escape = require_escape = False
    depth, index = 0, 0
    while index < len(word):
        char = word[index]
        if char in "{}":
            depth += 1 if char == "{" else -1
            require_escape = require_escape or depth < 0
        elif char in _BRACE_FRIENDLY:
            prefer_brace = True
        elif char in ']"':
            prefer_escape = True
        elif char == "\\":
            prefer_brace = True
            following = word[index + 1 : index + 2]
            require_escape = require_escape or following in ("", "\n")
            index += 1 if following in ("{", "}", "\\") else 0  # escaped: not counted
        index += 1
    if require_escape or depth != 0:
        return "escape"
    if prefer_brace:
        return "brace"
    return "mask" if prefer_escape else "bare"


def tcl_quote(word: str, *, first: bool = False) -> str:
    """``word`` as a Tcl list element, exactly as Tcl's ``list`` writes it."""
    if word == "":
        return "{}"
    mode = _scan(word, first)
    if mode == "bare":
        return word
    if mode == "brace":
        return "{" + word + "}"
    out = []
    for char in word:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char in _SPECIAL and (mode == "escape" or char not in "{}"):
            out.append("\\" + char)
        else:
            out.append(char)
    if first and word.startswith("#"):
        out.insert(0, "\\")
    return "".join(out)


def tcl_join(words: Sequence[str]) -> str:
    """The Tcl list of ``words`` (DisTcl's KEY of a request)."""
    return " ".join(tcl_quote(str(w), first=i == 0) for i, w in enumerate(words))


def _backslash(text: str, index: int) -> tuple[str, int]:
    """The substitution of the backslash sequence at ``text[index]``; the next index."""
    if index + 1 >= len(text):
        return "\\", index + 1
    char = text[index + 1]
    if char in _UNESCAPES:
        return _UNESCAPES[char], index + 2
    if char == "\n":
        end = index + 2
        while end < len(text) and text[end] in " \t":
            end += 1
        return " ", end
    if char in _HEX_WIDTHS:
        digits = _digits(text, index + 2, _HEX_WIDTHS[char], "0123456789abcdefABCDEF")
        if digits:
            return chr(int(digits, 16)), index + 2 + len(digits)
        return char, index + 2
    if char in "01234567":
        digits = _digits(text, index + 1, 3, "01234567")
        return chr(int(digits, 8) & 0xFF), index + 1 + len(digits)
    return char, index + 2


def _digits(text: str, start: int, most: int, allowed: str) -> str:
    end = start
    while end < len(text) and end - start < most and text[end] in allowed:
        end += 1
    return text[start:end]


def tcl_split(text: str) -> list[str]:
    """Split a Tcl list into its elements (what ``{*}$list`` passes as arguments).

    Raises:
        CodecError: the text is not a well-formed Tcl list.
    """
    words: list[str] = []
    index, size = 0, len(text)
    while True:
        while index < size and text[index] in " \t\n\r\v\f":
            index += 1
        if index >= size:
            return words
        if text[index] == "{":
            word, index = _braced(text, index)
        elif text[index] == '"':
            word, index = _quoted(text, index)
        else:
            word, index = _bare(text, index)
        words.append(word)


def _braced(text: str, index: int) -> tuple[str, int]:
    depth, start, index = 1, index + 1, index + 1
    parts: list[str] = []
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            if text[index + 1] == "\n":
                parts.append(text[start:index])
                sub, index = _backslash(text, index)
                parts.append(sub)
                start = index
                continue
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                parts.append(text[start:index])
                return "".join(parts), _after_element(text, index + 1)
        index += 1
    raise CodecError("unmatched open brace in Tcl list")


def _quoted(text: str, index: int) -> tuple[str, int]:
    index += 1
    out: list[str] = []
    while index < len(text):
        char = text[index]
        if char == "\\":
            sub, index = _backslash(text, index)
            out.append(sub)
            continue
        if char == '"':
            return "".join(out), _after_element(text, index + 1)
        out.append(char)
        index += 1
    raise CodecError("unmatched open quote in Tcl list")


def _bare(text: str, index: int) -> tuple[str, int]:
    out: list[str] = []
    while index < len(text) and text[index] not in " \t\n\r\v\f":
        if text[index] == "\\":
            sub, index = _backslash(text, index)
            out.append(sub)
            continue
        out.append(text[index])
        index += 1
    return "".join(out), index


def _after_element(text: str, index: int) -> int:
    if index < len(text) and text[index] not in " \t\n\r\v\f":
        raise CodecError("a Tcl list element in braces or quotes is followed by a non-space")
    return index


# Values -----------------------------------------------------------------------


def format_value(status: int, value: str) -> str:
    """DisTcl's stored result: ``STATUS:VALUE``."""
    return f"{status}:{value}"


def parse_value(raw: bytes | str, where: str) -> tuple[int, str]:
    """Split a stored ``STATUS:VALUE`` (as DisTcl's ``get`` checks it).

    Raises:
        CodecError: not ``<digit>:`` at the start ("Malformed result", in DisTcl's words).
    """
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    if len(text) < 2 or text[1] != ":" or not text[0].isdigit():
        raise CodecError(f"Malformed result for '{where}'.")
    return int(text[0]), text[2:]
