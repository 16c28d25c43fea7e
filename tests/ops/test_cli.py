"""The ``distq`` command line, run as a real subprocess against real servers.

Each subprocess costs ~0.4 s (interpreter, redis-py, click), so the tests
use few of them; the wider command set and every ``--help`` are exercised
in-process with click's ``CliRunner`` (same code, no process start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import distq
from distq.connection import embedded
from distq.connection.url import ConnectionSettings
from distq.ops.cli import cli

QUEUE = "cliq"


def run(
    *args: str, url: str | None = None, namespace: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m distq [--url URL] [--namespace NS] ARGS…`` in a subprocess."""
    command = [sys.executable, "-m", "distq"]
    if url is not None:
        command += ["--url", url]
    if namespace is not None:
        command += ["--namespace", namespace]
    environ = {k: v for k, v in os.environ.items() if k not in ("DISTQ_URL", "DISTQ_NAMESPACE")}
    environ.update(env)
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=30, env=environ, check=False
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return done.stdout


def password_of(url: str) -> str:
    password = ConnectionSettings.from_url(url).password
    assert password, "the test servers have passwords"
    return password


@pytest.fixture
def client(url: str, namespace: str) -> Iterator[distq.Client]:
    """A library client in the test's namespace, to set up and check state."""
    with distq.connect(url, namespace=namespace) as made:
        yield made


# Subprocess -----------------------------------------------------------------


def test_addjob_getjob_ackjob_round_trip(url: str, namespace: str) -> None:
    job_id = json.loads(ok(run("--json", "addjob", QUEUE, "hello", url=url, namespace=namespace)))[
        "id"
    ]
    assert job_id.startswith("D-") and job_id.endswith(f"-{QUEUE}")
    assert json.loads(ok(run("--json", "qlen", QUEUE, url=url, namespace=namespace))) == {
        "queue": QUEUE,
        "len": 1,
    }

    fetched = ok(run("--json", "getjob", QUEUE, "--timeout", "5", url=url, namespace=namespace))
    [job] = json.loads(fetched)
    assert job["id"] == job_id
    assert job["queue"] == QUEUE
    assert job["body"] == "hello"
    assert (job["nacks"], job["additional_deliveries"]) == (0, 0)

    acked = ok(run("--json", "ackjob", job_id, url=url, namespace=namespace))
    assert json.loads(acked) == {"count": 1}
    assert ok(run("qlen", QUEUE, url=url, namespace=namespace)).strip() == "0"


def test_show_of_an_unknown_job_exits_1(url: str, namespace: str) -> None:
    done = run("show", f"D-{'0' * 24}-{QUEUE}", url=url, namespace=namespace)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: no job D-")
    assert "Traceback" not in done.stderr


def test_qpeek_negative_count_newest_first(
    url: str, namespace: str, client: distq.Client
) -> None:
    for body in ("a", "b", "c"):
        client.addjob(QUEUE, body)
    peeked = json.loads(ok(run("--json", "qpeek", QUEUE, "-2", url=url, namespace=namespace)))
    assert [job["body"] for job in peeked] == ["c", "b"]
    assert client.qlen(QUEUE) == 3  # peeking fetches nothing


def test_qstat_table_names_the_queue(url: str, namespace: str, client: distq.Client) -> None:
    client.addjob(QUEUE, "x")
    out = ok(run("qstat", QUEUE, url=url, namespace=namespace))
    assert f"queue {QUEUE}" in out
    assert "jobs_in" in out and "leased" in out


def test_wrong_password_is_one_clean_error_line(url: str, namespace: str) -> None:
    settings = ConnectionSettings.from_url(url)
    wrong = settings.replace(password="not-" + password_of(url)).to_url()
    started = time.monotonic()
    done = run("qlen", QUEUE, url=wrong, namespace=namespace)
    assert time.monotonic() - started < 5
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert password_of(url) not in done.stderr


def test_vv_logs_wire_traffic_without_the_password(url: str, namespace: str) -> None:
    done = run("-vv", "qlen", QUEUE, url=url, namespace=namespace)
    assert ok(done).strip() == "0"
    assert "distq.wire: > EVALSHA" in done.stderr
    assert "distq.wire: < " in done.stderr
    assert password_of(url) not in done.stderr

    quiet = run("-v", "qlen", QUEUE, url=url, namespace=namespace)
    assert ok(quiet).strip() == "0"
    assert "distq.wire" not in quiet.stderr


def test_help_lists_every_command() -> None:
    out = ok(run("--help"))
    for name in cli.commands:
        assert name in out
    assert "--json" in out and "--url" in out


def test_server_start_status_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    home = tempfile.mkdtemp(prefix="dqc", dir="/tmp")
    monkeypatch.setenv("DISTQ_HOME", home)
    try:
        started = json.loads(ok(run("--json", "server", "start", DISTQ_HOME=home)))
        assert started["running"] is True and started["pid"]
        assert started["url_redacted"].endswith("password=***")
        password = Path(home, "password").read_text().strip()

        shown = run("server", "status", DISTQ_HOME=home)
        assert "running" in ok(shown) and password not in shown.stdout + shown.stderr

        assert json.loads(ok(run("--json", "server", "stop", DISTQ_HOME=home))) == {
            "stopped": True
        }
        stopped = run("--json", "server", "status", DISTQ_HOME=home)
        assert stopped.returncode == 3
        assert json.loads(stopped.stdout)["running"] is False
    finally:
        embedded.stop(timeout_s=10)
        subprocess.run(["rm", "-rf", home], check=False)


# In-process -----------------------------------------------------------------


def invoke(*args: str) -> Result:
    """Run the group in this process (for the cheap checks)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def commands() -> Iterator[list[str]]:
    for name, command in cli.commands.items():
        yield [name]
        if isinstance(command, click.Group):
            for sub in command.commands:
                yield [name, sub]


@pytest.mark.parametrize("path", [" ".join(p) for p in commands()])
def test_every_command_has_help(path: str) -> None:
    result = invoke(*path.split(), "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: distq {path}")
    summary = result.stdout.split("\n\n")[1].strip()
    assert len(summary) > 20, f"{path}: no help text"


def in_ns(url: str, namespace: str, *args: str) -> Result:
    return invoke("--url", url, "--namespace", namespace, "--json", *args)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_job_life_cycle_commands(url: str, namespace: str, client: distq.Client) -> None:
    added = in_ns(url, namespace, "addjob", QUEUE, '{"n": 1}', "--json-body", "--max-deliveries=1")
    job_id = as_json(added)["id"]
    shown = client.show(job_id)
    assert shown is not None and shown["body"] == {"n": 1}
    [job] = as_json(in_ns(url, namespace, "getjob", QUEUE, "--nohang"))
    assert job["body"] == {"n": 1}
    assert as_json(in_ns(url, namespace, "working", job_id))["seconds"] > 0
    assert as_json(in_ns(url, namespace, "nack", job_id)) == {"count": 1}

    [dead] = as_json(in_ns(url, namespace, "deadletters", QUEUE))
    assert dead["id"] == job_id and dead["reason"]
    assert as_json(in_ns(url, namespace, "jscan", "--state", "dead")) == [job_id]
    assert as_json(in_ns(url, namespace, "enqueue", job_id)) == {"count": 1}
    assert as_json(in_ns(url, namespace, "dequeue", job_id)) == {"count": 1}
    assert as_json(in_ns(url, namespace, "show", job_id))["state"] == "idle"
    assert as_json(in_ns(url, namespace, "qscan")) == [QUEUE]
    assert as_json(in_ns(url, namespace, "qscan", "--minlen", "1")) == []
    assert as_json(in_ns(url, namespace, "deljob", job_id)) == {"count": 1}
    assert as_json(in_ns(url, namespace, "fastack", job_id)) == {"count": 0}
    assert as_json(in_ns(url, namespace, "getjob", QUEUE, "--nohang")) == []


def test_server_facts_and_table_output(url: str, namespace: str) -> None:
    hello = as_json(in_ns(url, namespace, "hello"))
    assert hello["namespace"] == namespace and hello["server"] in ("valkey", "redis")
    assert "redis_version" in as_json(in_ns(url, namespace, "info", "server"))

    table = invoke("--url", url, "--namespace", namespace, "qpeek", QUEUE, "5")
    assert table.exit_code == 0 and "no jobs" in table.stderr


def test_usage_errors_exit_2(url: str, namespace: str) -> None:
    bad_queue = invoke("--url", url, "--namespace", namespace, "qlen", "no{braces}")
    assert bad_queue.exit_code == 2 and bad_queue.stderr.startswith("error: bad queue name")
    bad_body = invoke("--url", url, "addjob", QUEUE, "{oops", "--json-body")
    assert bad_body.exit_code == 2 and "not valid JSON" in bad_body.stderr
    bad_id = invoke("--url", url, "--namespace", namespace, "ackjob", "nonsense")
    assert bad_id.exit_code == 2 and bad_id.stderr.startswith("error: ")
