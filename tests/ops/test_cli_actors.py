"""``distq node`` and ``distq actors``, run as real subprocesses against real servers.

The actors are in ``cli_actors_app.py`` (next to this file), hosted by a
``distq node cli_actors_app:app`` subprocess started by the ``node`` fixture
and stopped by its PID (SIGTERM, then SIGKILL after a bound). Messages are
sent with the library, as a program would.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import distq
from processes import AppProcesses, Process, child_env, cli, wait_for

HERE = Path(__file__).resolve().parent
APP_MODULE = "cli_actors_app"
ACTORS = ("counter", "echo")
#: Bound on the node starting.
START_S = 20.0


def run(url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m distq --url URL --namespace NS ARGS…`` in a subprocess, here."""
    return cli(url, namespace, *args, env=child_env(namespace=namespace, path=HERE), cwd=HERE)


def listing(url: str, namespace: str) -> dict[str, Any]:
    """``distq --json actors``, parsed."""
    done = run(url, namespace, "--json", "actors")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


@pytest.fixture
def app(url: str, namespace: str) -> Iterator[distq.App]:
    """A library app in the test's namespace (no actors of its own)."""
    made = distq.App(url, namespace=namespace)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def nodes(url: str, namespace: str, tmp_path: Path) -> Iterator[AppProcesses]:
    """Starts ``distq --url URL node cli_actors_app:app`` processes; stops them by PID."""
    env = child_env(namespace=namespace, path=HERE)
    with AppProcesses(tmp_path, HERE, APP_MODULE, env, options=("--url", url)) as started:
        yield started


@pytest.fixture
def node(url: str, namespace: str, nodes: AppProcesses) -> Process:
    """A started node whose actors are listed by ``distq actors``."""
    started = nodes.start("node")

    def ready() -> bool:
        names = {a["name"] for a in listing(url, namespace)["actors"] if a["alive"]}
        return names == set(ACTORS)

    started.serving(ready, START_S, "the node's actors")
    return started


def test_node_hosts_lists_and_stops(
    url: str, namespace: str, node: Process, app: distq.App
) -> None:
    shown = listing(url, namespace)
    [hosting] = shown["nodes"]
    assert hosting["pid"] == node.proc.pid
    assert hosting["alive"] is True
    assert hosting["actors"] == len(ACTORS)
    assert hosting["host"]
    assert 0 <= hosting["age"] < 5
    assert shown["complete"] is True
    by_name = {a["name"]: a for a in shown["actors"]}
    for name in ACTORS:
        assert by_name[name] == {
            "name": name,
            "actor": f"n.{name}",
            "node": hosting["id"],
            "alive": True,
            "mailbox": 0,
            "leased": 0,
            "dead": 0,
        }

    # The actors answer, through the names the listing shows.
    assert app.call("echo", {"hello": [1, 2]}, timeout=10) == {"hello": [1, 2]}
    counter = app.whereis("counter")
    assert counter is not None and counter.node == hosting["id"]
    for n in range(5):
        app.send(counter, n)
    assert app.call(counter, "how many?", timeout=10) == 6

    # SIGTERM: the node stops its actors, releases their names and leaves; exit 0.
    assert node.terminate() == 0, node.log()
    assert listing(url, namespace) == {"actors": [], "nodes": [], "complete": True}
    assert app.whereis("echo") is None
    assert "stopped" in node.log()


def test_actors_table_and_dead_letters(
    url: str, namespace: str, node: Process, app: distq.App
) -> None:
    # A message that is not an actor envelope is refused by the actor and dead-lettered.
    app.client.addjob("actor.n.echo", b"not an envelope")
    wait_for(
        lambda: {a["name"]: a["dead"] for a in listing(url, namespace)["actors"]}["echo"] == 1,
        10,
        "the refused message to be dead-lettered",
    )
    [dead] = app.client.deadletters("actor.n.echo")
    assert "not an actor message" in (dead.reason or "")

    table = run(url, namespace, "actors")
    assert table.returncode == 0, table.stderr
    for text in ("actors", "nodes", "n.echo", "n.counter", str(node.proc.pid)):
        assert text in table.stdout
    assert node.terminate() == 0, node.log()


def test_a_killed_node_shows_dead(url: str, namespace: str, node: Process, app: distq.App) -> None:
    [hosting] = listing(url, namespace)["nodes"]
    node.kill()  # SIGKILL: no goodbye; its heartbeats (every 0.2 s) stop

    def dead() -> dict[str, Any] | None:
        shown = listing(url, namespace)
        return shown if not any(a["alive"] for a in shown["actors"]) else None

    shown = wait_for(dead, 10, "the names to show a dead node")
    assert {a["name"] for a in shown["actors"]} == set(ACTORS)
    [gone] = shown["nodes"]
    assert gone["id"] == hosting["id"] and gone["alive"] is False
    assert gone["actors"] == len(ACTORS)  # its actor set stays until a live node reaps it
    # A lookup releases the stale name.
    assert app.whereis("echo") is None
    assert [a["name"] for a in listing(url, namespace)["actors"]] == ["counter"]


def test_empty_namespace(url: str, namespace: str) -> None:
    assert listing(url, namespace) == {"actors": [], "nodes": [], "complete": True}
    done = run(url, namespace, "actors")
    assert done.returncode == 0
    assert done.stdout == ""
    assert "no registered actors" in done.stderr and "no nodes" in done.stderr


def test_node_usage_errors(url: str, namespace: str) -> None:
    done = run(url, namespace, "node", "no_such_module_here:app")
    assert done.returncode == 2, done.stderr
    assert "cannot import" in done.stderr
    done = run(url, namespace, "node", f"{APP_MODULE}:app", "--id", "bad id")
    assert done.returncode == 2, done.stderr
    assert listing(url, namespace) == {"actors": [], "nodes": [], "complete": True}
    # An app that declares no actor has nothing to host.
    done = run(url, namespace, "node", "cli_services_app:app")
    assert done.returncode == 2, done.stderr
    assert "declares no actor" in done.stderr


def test_second_node_cannot_take_the_names(
    url: str, namespace: str, node: Process, nodes: AppProcesses
) -> None:
    before = listing(url, namespace)
    second = nodes.start("node")
    with contextlib.suppress(subprocess.TimeoutExpired):
        second.proc.wait(timeout=START_S)
    assert second.proc.returncode == 1, second.log()
    assert "is held by" in second.log()
    # The first node keeps its names; the second left no trace.
    after = listing(url, namespace)
    assert [a["node"] for a in after["actors"]] == [a["node"] for a in before["actors"]]
    assert [n["id"] for n in after["nodes"]] == [n["id"] for n in before["nodes"]]
