"""Tcl lists (DisTcl's request KEYs) made and split by Python, checked against tclsh.

A few hundred random words over an alphabet of everything Tcl quotes (space,
tab, newline, braces, brackets, ``$``, ``;``, quotes, backslash, ``#``) and
non-ASCII letters, from a fixed seed. Tcl reads the words (hex-encoded UTF-8,
so nothing is quoted on the way in) and writes back, hex-encoded again, what
``list`` makes of each list and of each word alone, and how it splits the
lists Python made. Without ``tclsh`` the tests fail: they never skip.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from distq.endpoints.distcl import tcl_join, tcl_quote, tcl_split

#: The characters of the random words: Tcl's specials, letters, non-ASCII.
ALPHABET = [" ", "\t", "\n", "{", "}", "[", "]", "$", ";", '"', "\\", "#"]
ALPHABET += ["a", "b", "Z", "0", "-", ":", "é", "ß", "中", "Ω"]

#: Reads lines of hex-encoded UTF-8 words (one list a line, words separated by
#: spaces, "-" for an empty word); for each line writes three lines: Tcl's
#: `list` of the words, then `list` of each word alone (one per word, as
#: `[list $word]` quotes a word that is a whole list), then the elements of the
#: next input line (a list made by Python) as Tcl splits it, all hex-encoded.
TCL_SCRIPT = r"""
fconfigure stdin -translation lf -encoding ascii
fconfigure stdout -translation lf -encoding ascii
proc unhex {h} {
    if {$h eq "-"} {return ""}
    return [encoding convertfrom utf-8 [binary decode hex $h]]
}
proc hex {s} {
    set h [binary encode hex [encoding convertto utf-8 $s]]
    if {$h eq ""} {return "-"}
    return $h
}
while {[gets stdin line] >= 0} {
    set words {}
    foreach h [split $line " "] {lappend words [unhex $h]}
    puts [hex [list {*}$words]]
    set quoted {}
    foreach word $words {lappend quoted [hex [list $word]]}
    puts [join $quoted " "]
    if {[gets stdin python] < 0} {error "missing Python's list"}
    set elements {}
    foreach element [unhex $python] {lappend elements [hex $element]}
    puts [join $elements " "]
}
"""


def _hex(text: str) -> str:
    return text.encode().hex() or "-"


def _unhex(text: str) -> str:
    return "" if text == "-" else bytes.fromhex(text).decode()


def random_lists(seed: int = 20240611, count: int = 300) -> list[list[str]]:
    """``count`` lists of 1 to 5 random words (0 to 10 characters each)."""
    rng = random.Random(seed)
    lists = []
    for _ in range(count):
        words = []
        for _ in range(rng.randint(1, 5)):
            words.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 10))))
        lists.append(words)
    # Cases worth having for sure, whatever the seed draws.
    lists += [
        ["#first", "#second"],
        ["a\\", "\\", "{", "}", "}{", "{}", "{{}", '"', '"a"'],
        ["a b", "{x", "c{d}", "[$x;]", "tab\there", "new\nline", "é ü"],
        ["\\\n", "a\\\nb", "{\\}", "\\{", "\\}", "x\\ y"],
        [""],
        ["", "", "x"],
    ]
    return lists


def run_tclsh(lists: list[list[str]], script: Path) -> list[tuple[str, list[str], list[str]]]:
    """Per list: Tcl's ``list`` of it, ``[list $word]`` per word, and Tcl's split of
    Python's ``tcl_join`` of it."""
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.fail(
            "tclsh not found: these tests compare Python's Tcl lists with Tcl's own; "
            "install Tcl 8.6 (Debian/Ubuntu: apt-get install tcl)"
        )
    script.write_text(TCL_SCRIPT)
    lines = []
    for words in lists:
        lines.append(" ".join(_hex(w) for w in words))
        lines.append(_hex(tcl_join(words)))
    done = subprocess.run(
        [tclsh, str(script)],
        input=("\n".join(lines) + "\n").encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = done.stdout.decode().split("\n")
    assert len(out) == 3 * len(lists) + 1 and out[-1] == "", done.stdout[-500:]
    results = []
    for index in range(len(lists)):
        joined, quoted, split = out[3 * index : 3 * index + 3]
        results.append(
            (
                _unhex(joined),
                [_unhex(h) for h in quoted.split(" ")],
                [_unhex(h) for h in split.split(" ")] if split else [],
            )
        )
    return results


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[str], Any]]:
    lists = random_lists()
    script = tmp_path_factory.mktemp("tcl") / "lists.tcl"
    return list(zip(lists, run_tclsh(lists, script), strict=True))


def test_the_random_words_cover_the_alphabet(compared: list[tuple[list[str], Any]]) -> None:
    words = [w for words, _ in compared for w in words]
    assert len(words) >= 600
    assert set("".join(words)) >= set(ALPHABET)


def test_join_is_tcl_list(compared: list[tuple[list[str], Any]]) -> None:
    mismatches = [(words, tcl_join(words), tcl) for words, (tcl, _, _) in compared]
    mismatches = [m for m in mismatches if m[1] != m[2]]
    assert not mismatches, f"{len(mismatches)} lists differ from Tcl's, first: {mismatches[0]!r}"


def test_quote_is_tcl_list_of_one_word(compared: list[tuple[list[str], Any]]) -> None:
    for words, (_, quoted, _) in compared:
        for word, tcl in zip(words, quoted, strict=True):
            # A single-element list quotes a leading "#" as a first element must be.
            assert tcl_quote(word, first=True) == tcl, (word, tcl)


def test_split_undoes_tcl_list(compared: list[tuple[list[str], Any]]) -> None:
    for words, (tcl, _, _) in compared:
        assert tcl_split(tcl) == words, (tcl, words)


def test_tcl_splits_python_lists(compared: list[tuple[list[str], Any]]) -> None:
    for words, (_, _, split) in compared:
        assert split == words, (tcl_join(words), words)
