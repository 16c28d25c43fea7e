"""``distq node`` and ``distq actors``, run as real subprocesses against real servers.

The actors are in ``cli_actors_app.py`` (next to this file), hosted by a
``distq node cli_actors_app:app`` subprocess started by the ``node`` fixture
and stopped by its PID (SIGTERM, then SIGKILL after a bound). Messages are
sent with the library, as a program would.
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

import distq

HERE = Path(__file__).resolve().parent
APP_MODULE = "cli_actors_app"
ACTORS = ("counter", "echo")
#: Bound on the node starting, and on stopping after SIGTERM.
START_S = 20.0
STOP_S = 15.0


def _env(namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISTQ_URL", "DISTQ_NAMESPACE")}
    env["DISTQ_TEST_NAMESPACE"] = namespace
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env


def run(url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m distq --url URL --namespace NS ARGS…`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "distq", "--url", url, "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(namespace),
        cwd=HERE,
        check=False,
    )


def listing(url: str, namespace: str) -> dict[str, Any]:
    """``distq --json actors``, parsed."""
    done = run(url, namespace, "--json", "actors")
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


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


class NodeProcess:
    """A running ``distq node cli_actors_app:app`` (its output in a log file)."""

    def __init__(self, url: str, namespace: str, log_path: Path, *extra: str) -> None:
        self.log_path = log_path
        command = [sys.executable, "-m", "distq", "--url", url, "node", f"{APP_MODULE}:app"]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "--heartbeat", "0.2", *extra],
                cwd=HERE,
                env=_env(namespace),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def terminate(self) -> int:
        """SIGTERM by PID and a bounded wait: the exit status."""
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the node ignored SIGTERM for {STOP_S} s\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL by PID if it is still running, and reap it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def app(url: str, namespace: str) -> Iterator[distq.App]:
    """A library app in the test's namespace (no actors of its own)."""
    made = distq.App(url, namespace=namespace)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def node(url: str, namespace: str, tmp_path: Path) -> Iterator[NodeProcess]:
    """A started node whose actors are listed by ``distq actors``."""
    started = NodeProcess(url, namespace, tmp_path / "node.log")

    def ready() -> bool:
        if started.proc.poll() is not None:
            raise AssertionError(f"the node exited with {started.proc.returncode}")
        names = {a["name"] for a in listing(url, namespace)["actors"] if a["alive"]}
        return names == set(ACTORS)

    try:
        wait_for(ready, START_S, "the node's actors")
        yield started
    except BaseException:
        print(started.log())
        raise
    finally:
        started.kill()


def test_node_hosts_lists_and_stops(
    url: str, namespace: str, node: NodeProcess, app: distq.App
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
    url: str, namespace: str, node: NodeProcess, app: distq.App
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


def test_a_killed_node_shows_dead(
    url: str, namespace: str, node: NodeProcess, app: distq.App
) -> None:
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
    url: str, namespace: str, node: NodeProcess, tmp_path: Path
) -> None:
    before = listing(url, namespace)
    second = NodeProcess(url, namespace, tmp_path / "second.log")
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            second.proc.wait(timeout=START_S)
        assert second.proc.returncode == 1, second.log()
        assert "is held by" in second.log()
    finally:
        second.kill()
    # The first node keeps its names; the second left no trace.
    after = listing(url, namespace)
    assert [a["node"] for a in after["actors"]] == [a["node"] for a in before["actors"]]
    assert [n["id"] for n in after["nodes"]] == [n["id"] for n in before["nodes"]]
