"""The app ``test_cli_actors`` hosts: ``distq node cli_actors_app:app``
(PYTHONPATH=tests/ops).

The namespace comes from ``DISTQ_TEST_NAMESPACE``, the server from the
node's ``--url``. Two actors, one of each kind of behaviour:

* ``echo``: a function looping on ``receive()``, replying with the message;
* ``counter``: a class counting the messages it receives, answering each
  call with the count so far.
"""

from __future__ import annotations

import os
from typing import Any

from distq.endpoints.actor import receive, reply
from distq.endpoints.app import App

NAMESPACE = os.environ.get("DISTQ_TEST_NAMESPACE", "distq-tests")

app = App(namespace=NAMESPACE)


@app.actor("echo")
def echo() -> None:
    """Replies to every message with the message itself."""
    while True:
        reply(receive())


@app.actor("counter")
class Counter:
    """Counts messages; a call gets the count, this message included."""

    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> int:
        self.count += 1
        return self.count
