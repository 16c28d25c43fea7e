"""The app ``test_cli_services`` serves: ``distq worker cli_services_app:app``
(PYTHONPATH=tests/ops).

The namespace comes from ``DISTQ_TEST_NAMESPACE``, the server from the
worker's ``--url``. DisTcl-protocol keys (``q:S``, ``v:S:KEY``…) are not
namespaced, so the DisTcl services are named after the namespace
(:func:`distcl_name`): no two tests, and neither engine's run, share them.

``counted`` counts its computations in the plain key ``<namespace>:computed``.
"""

from __future__ import annotations

import os
from typing import Any

from distq.connection.ops import Command, single
from distq.endpoints.app import App

NAMESPACE = os.environ.get("DISTQ_TEST_NAMESPACE", "distq-tests")

app = App(namespace=NAMESPACE)


def distcl_name(base: str, namespace: str = NAMESPACE) -> str:
    """The name of a DisTcl-protocol service of this namespace."""
    return f"{base}-{namespace}"


def counter_key(namespace: str = NAMESPACE) -> str:
    """Where ``counted`` counts its computations."""
    return f"{namespace}:computed"


@app.service("echo", ttl=60)
def echo(*args: Any) -> list[Any]:
    """The arguments, as received (strings, or JSON values with --json-args)."""
    return list(args)


@app.service("square", ttl=60)
def square(x: Any) -> Any:
    """``x * x``: a TypeError for a string."""
    return x * x


@app.service("counted", ttl=60)
def counted(key: str) -> str:
    """Counts each computation (in ``<namespace>:computed``)."""
    app.client.run(single(Command(("INCR", counter_key()))))
    return f"computed {key}"


@app.service("boom")
def boom(message: str) -> None:
    """Always raises."""
    raise ValueError(message)


@app.service(distcl_name("tjoin"), protocol="distcl", ttl=60)
def tjoin(*args: str) -> str:
    """The arguments joined with ``|`` (DisTcl's are always strings)."""
    return "|".join(args)


@app.service(distcl_name("tboom"), protocol="distcl")
def tboom(message: str) -> None:
    """Always raises: DisTcl status 1, the message as the value."""
    raise ValueError(message)
