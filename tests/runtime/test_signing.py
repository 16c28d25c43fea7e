"""Signed task calls (``App(secret=…, sign_all=True)``): workers refuse unsigned
or wrongly signed calls and dead-letter them with the reason."""

from __future__ import annotations

from typing import Any

import pytest

import distq
from distq.runtime.worker import Worker, WorkerConfig


def _app(url: str, namespace: str, secret: str) -> distq.App:
    app = distq.App(url, namespace=namespace, secret=secret, sign_all=True, queue="signed")

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


def _run_once(app: distq.App) -> None:
    worker = Worker(app, WorkerConfig(app="tests:app", queues=("signed",)))
    worker.step(timeout=1.0)
    worker._flush()


def test_signed_calls_run(url: str, namespace: str) -> None:
    app = _app(url, namespace, "s3cret")
    handle = app.tasks["add"].delay(2, 3)
    stored = app.client.qpeek("signed", 1)[0].body
    assert isinstance(stored, bytes) and stored.startswith(b"H1:")
    _run_once(app)
    assert handle.get(timeout=2) == 5


@pytest.mark.parametrize("forge", ["unsigned", "wrong secret"])
def test_unsigned_or_forged_calls_are_dead_lettered(url: str, namespace: str, forge: str) -> None:
    app = _app(url, namespace, "s3cret")
    if forge == "unsigned":
        job_id = app.client.addjob("signed", {"t": "add", "a": [1, 1], "k": {}})
    else:
        job_id = _app(url, namespace, "not-the-secret").tasks["add"].delay(1, 1).id
    _run_once(app)
    [dead] = app.client.deadletters("signed")
    assert dead.id == job_id
    assert dead.reason is not None and "MAC" in dead.reason
    shown: Any = app.client.show(job_id)
    assert shown["state"] == "dead"


def test_sign_all_needs_a_secret(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTQ_SECRET", raising=False)
    with pytest.raises(distq.InvalidArgument):
        distq.App(url, sign_all=True)
