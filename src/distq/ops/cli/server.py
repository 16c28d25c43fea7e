"""``distq server start|stop|status``: the embedded default server."""

from __future__ import annotations

from typing import Any

import click

from distq.connection import embedded
from distq.ops.cli.common import State, pass_state

__all__ = ["server"]

#: Fields of the status shown in tables, in this order (all are in --json).
_SHOWN = ("running", "pid", "url_redacted", "engine", "version", "binary", "dir", "aof", "log")


@click.group()
def server() -> None:
    """Manage the embedded default server (used when no URL is given).

    It is a private Redis/Valkey server of the current user, on a unix
    socket with a random password, its jobs kept in an append-only file.
    Its files are under DISTQ_HOME when that is set. These commands ignore
    --url and DISTQ_URL; the password is never printed.
    """


def _warn_if_url(state: State) -> None:
    if state.url:
        state.out.note("note: server commands manage the embedded server; --url is ignored")


def _show(state: State, status: dict[str, Any]) -> None:
    if state.json:
        state.out.json(status)
        return
    shown = {key: status.get(key) for key in _SHOWN}
    shown.update((k, v) for k, v in status.items() if k not in shown and v is not None)
    state.out.mapping(shown, title="embedded server")


@server.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server to answer.",
)
@pass_state
def start(state: State, timeout: float) -> None:
    """Start the embedded server if it is not running, and show its status."""
    _warn_if_url(state)
    embedded.ensure_running(timeout, recheck=True)
    _show(state, embedded.status())


@server.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the server to exit before killing it.",
)
@pass_state
def stop(state: State, timeout: float) -> None:
    """Stop the embedded server (its data is flushed to disk first).

    Jobs are kept: the next command that needs the server starts it again.
    """
    _warn_if_url(state)
    was_running = embedded.stop(timeout_s=timeout)
    message = "stopped" if was_running else "not running"
    state.out.scalar({"stopped": was_running}, message)


@server.command()
@pass_state
def status(state: State) -> None:
    """Show whether the embedded server runs, its pid, version and files.

    Starts nothing. Exit status 0 when it is running, 3 when it is not.
    """
    _warn_if_url(state)
    info = embedded.status()
    _show(state, info)
    if not info.get("running"):
        click.get_current_context().exit(3)
