"""Fixtures of the tests that run ``services_app`` (tests/endpoints/test_services.py and
tests/interop/test_distcl_tcl.py): imported by both, so they are written once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import services_app

from distq.endpoints.app import App
from processes import AppProcesses


@pytest.fixture
def app(url: str, namespace: str) -> Iterator[App]:
    """``services_app.app``, pointed at this test's server and namespace."""
    the_app: App = services_app.point_app(url, namespace)
    try:
        yield the_app
    finally:
        the_app.close()


@pytest.fixture
def procs(url: str, namespace: str, tmp_path: Path, app: App) -> Iterator[AppProcesses]:
    """Starts ``distq worker|serve services_app:app`` processes; stops them by PID."""
    with services_app.launcher(url, namespace, tmp_path) as started:
        yield started


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client: plays the Tcl side with raw commands."""
    client = redis.Redis.from_url(url, socket_timeout=15, decode_responses=True)
    try:
        yield client
    finally:
        client.close()
