"""``distq workers`` and ``distq ctl stop|verbose|quiet|ping``: live workers and their control.

Both are added to the ``distq`` group by :mod:`distq.ops.cli`. The control
messages are DisTcl's (``stop``, ``v*``, ``q*``) plus ``ping``; see
:mod:`distq.runtime.control`.
"""

from __future__ import annotations

from typing import Any

import click

from distq.ops.cli.common import State, pass_state
from distq.runtime.control import list_workers, ping, send_control

__all__ = ["ctl", "workers"]

_WORKER_ID = click.argument("worker_id", metavar="WORKER_ID")


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@click.command()
@pass_state
def workers(state: State) -> None:
    """List the live workers: id, host, pid, queues, jobs done, current job, last beat.

    A worker is live while it beats; one that stopped beating disappears
    after three heartbeat intervals. With --json: a list of objects with
    id, host, pid, queues, started, done, current, beat (epoch seconds),
    verbose and age (seconds since the last beat).

    \b
    Examples:
      distq workers
      distq --json workers
    """
    found = list_workers(state.client())
    if state.json:
        state.out.json(found)
        return
    if not found:
        state.out.note("no live workers")
        return
    rows: list[list[Any]] = [
        [
            worker["id"],
            worker["host"],
            worker["pid"],
            ",".join(worker["queues"]),
            worker["done"],
            worker["current"],
            _age(worker["age"]),
        ]
        for worker in found
    ]
    columns = ["id", "host", "pid", "queues", "done", "current job", "last beat"]
    state.out.table(columns, rows, title="workers", keep=("id", "current job"))


@click.group()
def ctl() -> None:
    """Send a control message to a worker (read at its next heartbeat).

    WORKER_ID is an id shown by `distq workers`. A message to a worker that
    is not running waits in its control queue for a day.

    \b
    Examples:
      distq ctl stop box.1234.a1b2c3
      distq ctl ping box.1234.a1b2c3
    """


def _send(state: State, worker_id: str, message: str) -> None:
    live = send_control(state.client(), worker_id, message)
    if not live:
        state.out.note(f"note: no live worker has id {worker_id!r}; the message waits for it")
    state.out.scalar(
        {"worker": worker_id, "message": message, "live": live},
        f"sent {message!r} to {worker_id}",
    )


@ctl.command()
@_WORKER_ID
@pass_state
def stop(state: State, worker_id: str) -> None:
    """Ask the worker to finish its current job and exit."""
    _send(state, worker_id, "stop")


@ctl.command()
@_WORKER_ID
@pass_state
def verbose(state: State, worker_id: str) -> None:
    """Turn the worker's verbose logging on."""
    _send(state, worker_id, "verbose")


@ctl.command()
@_WORKER_ID
@pass_state
def quiet(state: State, worker_id: str) -> None:
    """Turn the worker's verbose logging off."""
    _send(state, worker_id, "quiet")


@ctl.command(name="ping")
@_WORKER_ID
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the pong.",
)
@pass_state
def ping_command(state: State, worker_id: str, timeout: float) -> None:
    """Ping the worker and print the round trip in milliseconds.

    The round trip includes the wait for the worker's next heartbeat. Exits
    with status 1 if no pong comes within --timeout.
    """
    seconds = ping(state.client(), worker_id, timeout)
    ms = round(seconds * 1000, 3)
    state.out.scalar({"worker": worker_id, "ms": ms}, f"pong from {worker_id} in {ms:.1f} ms")
