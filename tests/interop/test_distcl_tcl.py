"""DisTcl interoperability against the real Tcl code, both ways.

``distcl.tcl`` (next to this file) is DisTcl reconstructed from the project's
seed, and ``retcl_shim.tcl`` a minimal Redis client standing in for retcl.
``tclsh`` runs them as subprocesses:

* a Python ``distq serve`` answers Tcl's ``distcl::get`` / ``prefetch`` /
  ``forget``;
* Tcl's ``distcl::serve`` answers Python's ``app.get`` for a service whose
  protocol is ``distcl``, and stops on DisTcl's ``stop``.

Words cross the process boundary hex-encoded (UTF-8), so nothing is quoted on
the way; DisTcl itself makes the KEYs. Without ``tclsh`` the tests fail.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from distq.endpoints.app import App
from distq.errors import RemoteError
from processes import AppProcesses, wait_for

HERE = Path(__file__).resolve().parent
ENDPOINTS = HERE.parent / "endpoints"
if str(ENDPOINTS) not in sys.path:
    sys.path.insert(0, str(ENDPOINTS))
services_app: ModuleType = importlib.import_module("services_app")
# The fixtures app, procs and raw, shared with the other tests of services_app.
fixtures: ModuleType = importlib.import_module("services_fixtures")
app, procs, raw = fixtures.app, fixtures.procs, fixtures.raw

#: Preamble of every Tcl script: the shim, DisTcl, and a connection to the server.
PREAMBLE = r"""
lassign $argv dir host port password
set argv [lrange $argv 4 end]
source [file join $dir retcl_shim.tcl]
source [file join $dir distcl.tcl]
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
set redis [retcl::connect $host $port $password]
"""

#: A DisTcl client call: argv OP SERVICE WORD…; prints "CODE HEX(RESULT)".
CLIENT = (
    PREAMBLE
    + r"""
set words [lmap h [lassign $argv op service] {unhex $h}]
set code [catch {distcl::$op $redis $service {*}$words} result]
puts "$code [hex $result]"
"""
)

#: A DisTcl server: argv SERVICE ID; serves until `stop` arrives on z:ID.
#: Each computation is appended to the list tcl-ledger:SERVICE first.
SERVER = (
    PREAMBLE
    + r"""
lassign $argv service id
proc handle {op args} {
    $::redis -sync rpush tcl-ledger:$::service [list $op {*}$args]
    switch -- $op {
        upper {return -secs2keep 30 [string toupper [join $args |]]}
        plain {return "plain [join $args |]"}
        fail {error "tcl says no: [join $args |]"}
        default {error "unknown operation $op"}
    }
}
distcl::serve $redis $service handle $id
puts stderr "distcl::serve returned"
exit 0
"""
)

#: Arguments that need Tcl quoting (spaces, braces, brackets, backslashes, non-ASCII).
WORDS = ["a b", "{x", "}y{", "c{d}", "[$x;]", "back\\", 'q"q', "tab\there", "é ü"]
#: Tcl's list of WORDS (as tclsh makes it).
TCL_LIST = '{a b} \\{x \\}y\\{ c{d} {[$x;]} back\\\\ q\\"q {tab\there} {é ü}'


def _hex(text: str) -> str:
    return text.encode().hex() or "-"


def tclsh() -> str:
    found = shutil.which("tclsh")
    if found is None:
        pytest.fail(
            "tclsh not found: the DisTcl interop tests run the Tcl code itself; "
            "install Tcl 8.6 (Debian/Ubuntu: apt-get install tcl)"
        )
    return found


class Tcl:
    """Runs DisTcl scripts with tclsh against one server."""

    def __init__(self, url: str, scripts: Path) -> None:
        parts = urlsplit(url)
        self.connection = [str(HERE), parts.hostname or "127.0.0.1", str(parts.port or 6379)]
        self.connection.append(parts.password or "")
        self.client_script = scripts / "client.tcl"
        self.client_script.write_text(CLIENT)
        self.server_script = scripts / "server.tcl"
        self.server_script.write_text(SERVER)
        self.servers: list[subprocess.Popen[bytes]] = []
        self.tclsh = tclsh()

    def call(self, op: str, service: str, *words: str) -> tuple[int, str]:
        """``distcl::OP $redis SERVICE WORD…`` in a tclsh: (Tcl return code, result)."""
        argv = [self.tclsh, str(self.client_script), *self.connection, op, service]
        done = subprocess.run(
            [*argv, *(_hex(w) for w in words)], capture_output=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        code, result = done.stdout.decode().split()
        return int(code), "" if result == "-" else bytes.fromhex(result).decode()

    def get(self, service: str, *words: str) -> str:
        code, result = self.call("get", service, *words)
        assert code == 0, f"distcl::get failed ({code}): {result}"
        return result

    def serve(self, service: str, server_id: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``distcl::serve $redis SERVICE handle ID`` in a tclsh."""
        with open(log, "ab") as out:
            server = subprocess.Popen(
                [self.tclsh, str(self.server_script), *self.connection, service, server_id],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    server.send_signal(signal.SIGKILL)
            server.wait(10)


@pytest.fixture
def tcl(url: str, tmp_path: Path) -> Iterator[Tcl]:
    runner = Tcl(url, tmp_path)
    try:
        yield runner
    finally:
        runner.stop_all()


def runs(name: str, *args: Any) -> int:
    return sum(1 for _, _, a in services_app.ledger_entries(name) if a == list(args))


def test_python_server_answers_tcl_client(
    app: App, procs: AppProcesses, tcl: Tcl, raw: redis.Redis, namespace: str
) -> None:
    procs.start("serve", "-s", "dq_echo", "-s", "dq_fail", "-s", "dq_plain", live=1)
    expected = json.dumps([namespace, *WORDS], ensure_ascii=False)

    # distcl::get: computed by Python from the Tcl list DisTcl made of the words.
    assert tcl.get("dq_echo", namespace, *WORDS) == expected
    assert tcl.get("dq_echo", namespace, *WORDS) == expected  # from the cache
    assert runs("dq_echo", namespace, *WORDS) == 1
    assert app.get("dq_echo", namespace, *WORDS) == expected  # the same KEY from Python

    # An error: Tcl's get returns code 1 with the message.
    assert tcl.call("get", "dq_fail", namespace, "no good") == (1, "bad no good")
    # No expiry: delivered, not cached (computed again).
    assert tcl.get("dq_plain", namespace, "p") == "p run 1"
    assert tcl.get("dq_plain", namespace, "p") == "p run 2"

    # distcl::prefetch, then distcl::get from the cache.
    assert tcl.call("prefetch", "dq_echo", namespace, "pre {f}")[0] == 0  # (RPUSH's reply)
    value_key = f"v:dq_echo:{namespace} {{pre {{f}}}}"
    wait_for(lambda: raw.exists(value_key), 10, "the prefetched value")
    assert tcl.call("prefetch", "dq_echo", namespace, "pre {f}") == (0, "")  # cached: no request
    assert tcl.get("dq_echo", namespace, "pre {f}") == json.dumps([namespace, "pre {f}"])
    assert runs("dq_echo", namespace, "pre {f}") == 1

    # distcl::forget: the next get computes again.
    assert tcl.call("forget", "dq_echo", namespace, "pre {f}") == (0, "1")
    assert not raw.exists(value_key)
    assert tcl.get("dq_echo", namespace, "pre {f}") == json.dumps([namespace, "pre {f}"])
    assert runs("dq_echo", namespace, "pre {f}") == 2


def test_tcl_server_answers_python_client(
    url: str, tcl: Tcl, raw: redis.Redis, namespace: str, tmp_path: Path
) -> None:
    service, server_id = f"tcl{namespace}", f"{namespace}-tcl"
    ledger = f"tcl-ledger:{service}"
    server = tcl.serve(service, server_id, tmp_path / "tcl-server.log")
    client = App(url, namespace=namespace, protocol="distcl")  # the service is not registered
    try:
        # return -secs2keep 30: computed once, then cached for 30 s.
        assert client.get(service, "upper", *WORDS, timeout=15) == "|".join(WORDS).upper()
        assert client.get(service, "upper", *WORDS) == "|".join(WORDS).upper()
        assert raw.llen(ledger) == 1
        assert 25 <= raw.ttl(f"v:{service}:upper {TCL_LIST}") <= 30

        # A Tcl error: status 1, carried to the caller as a RemoteError.
        with pytest.raises(RemoteError) as raised:
            client.get(service, "fail", "x y")
        assert (raised.value.type_name, raised.value.message) == ("TclError", "tcl says no: x y")

        # No -secs2keep: delivered, not cached.
        assert client.get(service, "plain", "p") == "plain p"
        assert client.get(service, "plain", "p") == "plain p"
        assert raw.lrange(ledger, 1, -1) == ["fail {x y}", "plain p", "plain p"]

        # prefetch (served by Tcl), get from the cache; forget, get computes again.
        assert client.prefetch(service, "upper", "later") is True
        wait_for(lambda: raw.exists(f"v:{service}:upper later"), 10, "prefetch")
        assert client.prefetch(service, "upper", "later") is False
        assert client.get(service, "upper", "later") == "LATER"
        assert client.forget(service, "upper", "later") is True
        assert client.get(service, "upper", "later") == "LATER"
        assert raw.lrange(ledger, 4, -1) == ["upper later", "upper later"]
        assert client.get_many(service, [("upper", "a"), ("upper", "b")]) == ["A", "B"]

        # DisTcl's stop on z:ID ends distcl::serve.
        raw.rpush(f"z:{server_id}", "stop")
        deadline = time.monotonic() + 10
        while server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        log = (tmp_path / "tcl-server.log").read_text()
        assert server.poll() == 0, log
        assert f"Control queue is 'z:{server_id}'" in log
        assert "distcl::serve returned" in log
    finally:
        client.close()
