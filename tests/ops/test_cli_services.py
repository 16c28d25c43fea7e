"""``distq get|prefetch|forget|services``, run as real subprocesses against real servers.

The services are in ``cli_services_app.py`` (next to this file), served by a
``distq worker cli_services_app:app -c 1`` subprocess started by the
``worker`` fixture and stopped by its PID (SIGTERM, then SIGKILL after a
bound). Set-up and checks that are not about the command line use the
library directly. Usage errors and ``--help`` run in-process (click's
``CliRunner``): no server, no process start.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import distq
from distq.connection.ops import Command, single
from distq.ops.cli import cli
from distq.runtime.control import list_workers
from processes import AppProcesses, child_env, wait_for
from processes import cli as run

HERE = Path(__file__).resolve().parent
APP_MODULE = "cli_services_app"
#: Bound on the worker starting.
START_S = 20.0


def distcl_name(base: str, namespace: str) -> str:
    """As ``cli_services_app.distcl_name`` (not imported: the worker's module)."""
    return f"{base}-{namespace}"


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout (stripped) of a command that must have succeeded."""
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout.strip()


def failed(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The stderr (stripped) of a command that must have failed with ``code``."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    return done.stderr.strip()


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


@pytest.fixture
def worker(
    url: str, namespace: str, client: distq.Client, tmp_path: Path
) -> Iterator[dict[str, list[str]]]:
    """A running ``distq --url URL worker cli_services_app:app -c 1`` (and its DisTcl
    process); yields the ids of its processes: ``{"native": […], "distcl": […]}``.
    Stopped by PID at the end; ignoring SIGTERM fails the test."""

    def ready() -> dict[str, list[str]] | None:
        ids: dict[str, list[str]] = {"native": [], "distcl": []}
        for found in list_workers(client):
            kind = "distcl" if any(q.startswith("distcl:") for q in found["queues"]) else "native"
            ids[kind].append(found["id"])
        return ids if ids["native"] and ids["distcl"] else None

    env = child_env(namespace=namespace, path=HERE)
    options = ("--url", url)
    with AppProcesses(tmp_path, HERE, APP_MODULE, env, options=options, strict=True) as workers:
        started = workers.start("worker", "-c", "1")
        yield started.serving(ready, START_S, "the worker's processes")


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
