"""``distq get|prefetch|forget|services``, run as real subprocesses against real servers.

The services are in ``cli_services_app.py`` (next to this file), served by a
``distq worker cli_services_app:app -c 1`` subprocess started by the
``worker`` fixture and stopped by its PID (SIGTERM, then SIGKILL after a
bound). Set-up and checks that are not about the command line use the
library directly. Usage errors and ``--help`` run in-process (click's
``CliRunner``): no server, no process start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import distq
from distq.connection.ops import Command, single
from distq.ops.cli import cli
from distq.runtime.control import list_workers

HERE = Path(__file__).resolve().parent
APP_MODULE = "cli_services_app"
#: Bound on the worker starting, and on stopping after SIGTERM.
START_S = 20.0
STOP_S = 15.0


def distcl_name(base: str, namespace: str) -> str:
    """As ``cli_services_app.distcl_name`` (not imported: the worker's module)."""
    return f"{base}-{namespace}"


def run(url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m distq --url URL --namespace NS ARGS…`` in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISTQ_URL", "DISTQ_NAMESPACE")}
    return subprocess.run(
        [sys.executable, "-m", "distq", "--url", url, "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout (stripped) of a command that must have succeeded."""
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout.strip()


def failed(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The stderr (stripped) of a command that must have failed with ``code``."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    return done.stderr.strip()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def by_name(listing: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``distq --json services`` keyed by (name, protocol)."""
    return {(row["name"], row["protocol"]): row for row in listing}


@pytest.fixture
def client(url: str, namespace: str) -> Iterator[distq.Client]:
    """A library client in the test's namespace; deletes the test's DisTcl keys at the end."""
    with distq.connect(url, namespace=namespace) as made:
        try:
            yield made
        finally:
            for pattern in (f"[vrwqp]:*-{namespace}", f"[vrw]:*-{namespace}:*"):
                cursor = None
                while cursor != 0:
                    reply = made.run(
                        single(Command(("SCAN", cursor or 0, "MATCH", pattern, "COUNT", 1000)))
                    )
                    cursor = int(reply[0])
                    if reply[1]:
                        made.run(single(Command(("DEL", *reply[1]))))


class Worker:
    """A running ``distq worker cli_services_app:app -c 1`` (and its DisTcl process)."""

    def __init__(self, url: str, namespace: str, log_path: Path) -> None:
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k not in ("DISTQ_URL", "DISTQ_NAMESPACE")}
        env["DISTQ_TEST_NAMESPACE"] = namespace
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "distq", "--url", url, "worker", f"{APP_MODULE}:app"]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "-c", "1", "--heartbeat", "0.2"],
                cwd=HERE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM by PID and a bounded wait; SIGKILL by PID if it is still there."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_S)
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            raise AssertionError(f"the worker ignored SIGTERM for {STOP_S} s\n{self.log()}")


@pytest.fixture
def worker(
    url: str, namespace: str, client: distq.Client, tmp_path: Path
) -> Iterator[dict[str, list[str]]]:
    """A running worker; yields the ids of its processes: ``{"native": […], "distcl": […]}``."""
    started = Worker(url, namespace, tmp_path / "worker.log")

    def ready() -> dict[str, list[str]] | None:
        if started.proc.poll() is not None:
            raise AssertionError(f"the worker exited with {started.proc.returncode}")
        ids: dict[str, list[str]] = {"native": [], "distcl": []}
        for found in list_workers(client):
            kind = "distcl" if any(q.startswith("distcl:") for q in found["queues"]) else "native"
            ids[kind].append(found["id"])
        return ids if ids["native"] and ids["distcl"] else None

    try:
        yield wait_for(ready, START_S, "the worker's processes")
    except BaseException:
        print(started.log())
        raise
    finally:
        started.stop()


def computed(client: distq.Client, namespace: str) -> int:
    raw = client.run(single(Command(("GET", f"{namespace}:computed"))))
    return int(raw or 0)


# With a worker -----------------------------------------------------------------------


def test_get_prints_values_and_errors(
    url: str, namespace: str, worker: dict[str, list[str]]
) -> None:
    # Arguments are strings by default; a string value prints as it is, others as JSON.
    assert ok(run(url, namespace, "get", "echo", "a", "b c")) == '["a", "b c"]'
    assert ok(run(url, namespace, "get", "--json-args", "square", "7")) == "49"
    shown = json.loads(
        ok(run(url, namespace, "--json", "get", "--json-args", "echo", "1", '"x"', "[2]"))
    )
    assert shown == {"service": "echo", "args": [1, "x", [2]], "value": [1, "x", [2]]}

    # A computation that raised: one error line, exit 1.
    assert failed(run(url, namespace, "get", "square", "7")).startswith("error: TypeError: ")
    assert failed(run(url, namespace, "get", "boom", "bad thing")) == "error: ValueError: bad thing"

    # DisTcl: the arguments travel as a Tcl list; the value is a string.
    tjoin, tboom = distcl_name("tjoin", namespace), distcl_name("tboom", namespace)
    got = ok(run(url, namespace, "get", "--protocol", "distcl", tjoin, "a b", "{c", "d"))
    assert got == "a b|{c|d"
    error = failed(run(url, namespace, "get", "--protocol", "distcl", tboom, "no luck"))
    assert error == "error: TclError: no luck"


def test_prefetch_forget_and_services(
    url: str, namespace: str, worker: dict[str, list[str]], client: distq.Client
) -> None:
    assert ok(run(url, namespace, "prefetch", "counted", "k")) == "requested"
    wait_for(lambda: computed(client, namespace) == 1, 10, "the prefetch to be computed")
    assert ok(run(url, namespace, "prefetch", "counted", "k")) == "already cached or in flight"
    assert ok(run(url, namespace, "get", "counted", "k")) == "computed k"
    tjoin = distcl_name("tjoin", namespace)
    assert ok(run(url, namespace, "get", "--protocol", "distcl", tjoin, "x")) == "x"
    assert computed(client, namespace) == 1  # the get was served from the cache

    listing = by_name(json.loads(ok(run(url, namespace, "--json", "services"))))
    native_ids, distcl_ids = sorted(worker["native"]), sorted(worker["distcl"])
    assert listing[("counted", "native")] == {
        "name": "counted",
        "protocol": "native",
        "servers": native_ids,
        "cached": 1,
        "inflight": 0,
        "queued": 0,
    }
    for name in ("echo", "square", "boom"):  # known by presence alone
        assert listing[(name, "native")]["servers"] == native_ids
    assert listing[(tjoin, "distcl")] == {
        "name": tjoin,
        "protocol": "distcl",
        "servers": distcl_ids,
        "cached": 1,
        "inflight": 0,
        "queued": 0,
    }
    assert listing[(distcl_name("tboom", namespace), "distcl")]["cached"] == 0

    only = json.loads(ok(run(url, namespace, "--json", "services", "--protocol", "distcl")))
    assert {row["protocol"] for row in only} == {"distcl"}
    table = ok(run(url, namespace, "services", "--protocol", "native"))
    assert "counted" in table and native_ids[0] in table and tjoin not in table

    assert ok(run(url, namespace, "forget", "counted", "k")) == "forgotten"
    assert ok(run(url, namespace, "forget", "counted", "k")) == "not cached"
    forgot = json.loads(ok(run(url, namespace, "--json", "forget", "counted", "k")))
    assert forgot == {"service": "counted", "args": ["k"], "forgotten": False}
    assert ok(run(url, namespace, "get", "counted", "k")) == "computed k"
    assert computed(client, namespace) == 2  # computed again after the forget


# Without a worker --------------------------------------------------------------------


def test_services_shows_requests_waiting_for_a_server(
    url: str, namespace: str, client: distq.Client
) -> None:
    # Native keys are namespaced (DisTcl's are not: other tests' may show).
    assert ok(run(url, namespace, "services", "--protocol", "native")) == ""  # a note on stderr
    assert ok(run(url, namespace, "--json", "services", "--protocol", "native")) == "[]"

    lonely = distcl_name("lonely", namespace)
    assert ok(run(url, namespace, "prefetch", "idle", "x")) == "requested"
    assert ok(run(url, namespace, "prefetch", "--protocol", "distcl", lonely, "x")) == "requested"
    error = failed(run(url, namespace, "get", "--timeout", "0.3", "idle", "y"))
    assert error.startswith("error: no server answered idle")

    listing = by_name(json.loads(ok(run(url, namespace, "--json", "services"))))
    # Two requests, each marked in flight and queued, no server.
    assert listing[("idle", "native")] == {
        "name": "idle",
        "protocol": "native",
        "servers": [],
        "cached": 0,
        "inflight": 2,
        "queued": 2,
    }
    # DisTcl: the request waits in p:S; a run list only exists once a server took it.
    assert listing[(lonely, "distcl")] == {
        "name": lonely,
        "protocol": "distcl",
        "servers": [],
        "cached": 0,
        "inflight": 0,
        "queued": 1,
    }
    # A cached DisTcl value written by anyone (a Tcl server) is counted too.
    client.run(single(Command(("SET", f"v:{lonely}:{{a b}} c", "0:value", "EX", 60))))
    listing = by_name(json.loads(ok(run(url, namespace, "--json", "services"))))
    assert listing[(lonely, "distcl")]["cached"] == 1
    assert listing[(lonely, "distcl")]["queued"] == 1


# In-process: usage errors and help ---------------------------------------------------


def test_usage_errors_exit_2_without_a_server() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["get", "--protocol", "distcl", "--json-args", "s", "1"])
    assert result.exit_code == 2
    assert "error: --json-args is for native services" in result.output
    result = runner.invoke(cli, ["prefetch", "--json-args", "s", "not json"])
    assert result.exit_code == 2
    assert "ARG 1 is not JSON" in result.output
    result = runner.invoke(cli, ["forget", "--protocol", "tcl", "s"])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["get", "s", "--timeout", "0"])
    assert result.exit_code == 2


@pytest.mark.parametrize("command", ["get", "prefetch", "forget", "services"])
def test_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples:" in result.output
    assert "--protocol" in result.output
    assert command == "services" or "--json-args" in result.output
