"""``distq get|prefetch|forget NAME ARGS…`` and ``distq services``: call and inspect services.

There is no app here, only a bare :class:`~distq.App` made from the global
``--url`` and ``--namespace``, which knows no service: calls use the
protocol given with ``--protocol`` and the default lease (30 s). Arguments
are strings unless ``--json-args`` (native protocol only: DisTcl's are
strings by definition). The listing is :mod:`distq.ops.inspect_services`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from distq.endpoints.app import App
from distq.endpoints.service import Protocol
from distq.errors import InvalidArgument
from distq.ops.cli.common import State, pass_state
from distq.ops.inspect_services import MAX_ROUNDS, SCAN_COUNT, list_services

__all__ = ["forget", "get", "prefetch", "services"]

F = TypeVar("F", bound=Callable[..., Any])

_PROTOCOL = click.option(
    "--protocol",
    type=click.Choice(["native", "distcl"]),
    default="native",
    show_default=True,
    help="The service's wire protocol: distq's own, or DisTcl's keys (Tcl peers).",
)
_JSON_ARGS = click.option(
    "--json-args",
    is_flag=True,
    help="Parse each ARG as JSON (7 is a number, '\"7\"' a string, '[1,2]' a list); "
    "native protocol only. Default: every ARG is a string.",
)


def _call_options(command: F) -> F:
    command = _JSON_ARGS(command)
    command = _PROTOCOL(command)
    command = click.argument("args", nargs=-1, metavar="[ARGS]...")(command)
    return click.argument("name", metavar="NAME")(command)


def make_app(state: State, protocol: str = "native") -> App:
    """A bare App on the global ``--url`` and ``--namespace``, closed with the command."""
    app = App(state.url, namespace=state.namespace, protocol=cast(Protocol, protocol))
    click.get_current_context().call_on_close(app.close)
    return app


def _arguments(args: tuple[str, ...], json_args: bool, protocol: str) -> list[Any]:
    if not json_args:
        return list(args)
    if protocol == "distcl":
        raise InvalidArgument("--json-args is for native services: DisTcl's arguments are strings")
    parsed = []
    for index, text in enumerate(args, 1):
        try:
            parsed.append(json.loads(text))
        except ValueError as exc:
            raise InvalidArgument(f"ARG {index} is not JSON ({exc}): {text!r}") from None
    return parsed


def _show(value: Any) -> str:
    """A value as one line: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return json.dumps(value, ensure_ascii=False)


@click.command("get")
@_call_options
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for a server to compute the value.",
)
@pass_state
def get(
    state: State,
    name: str,
    args: tuple[str, ...],
    protocol: str,
    json_args: bool,
    timeout: float,
) -> None:
    """Print the value of service NAME for ARGS (computed once, if not cached).

    A string value is printed as it is, any other as JSON; with --json, one
    object with service, args and value. A computation that raised prints
    `error: <type>: <message>` and exits 1, as does a --timeout with no answer.
    Put `--` before ARGS that start with a dash.

    \b
    Examples:
      distq get thumbnail photos/cat.jpg 128
      distq get --json-args square 7
      distq get --protocol distcl lookup 'New York' 2024
    """
    values = _arguments(args, json_args, protocol)
    value = make_app(state, protocol).get(name, *values, timeout=timeout)
    state.out.scalar({"service": name, "args": values, "value": value}, _show(value))


@click.command("prefetch")
@_call_options
@pass_state
def prefetch(
    state: State, name: str, args: tuple[str, ...], protocol: str, json_args: bool
) -> None:
    """Ask for the value of NAME for ARGS to be computed and cached, without waiting.

    Prints `requested` when a computation was queued, `already cached or in
    flight` otherwise (native; DisTcl only knows cached).

    \b
    Examples:
      distq prefetch thumbnail photos/cat.jpg 128
    """
    values = _arguments(args, json_args, protocol)
    queued = make_app(state, protocol).prefetch(name, *values)
    text = "requested" if queued else "already cached or in flight"
    state.out.scalar({"service": name, "args": values, "requested": queued}, text)


@click.command("forget")
@_call_options
@pass_state
def forget(state: State, name: str, args: tuple[str, ...], protocol: str, json_args: bool) -> None:
    """Remove the cached value of NAME for ARGS (the next get computes it again).

    Prints `forgotten`, or `not cached` (exit status 0 either way).

    \b
    Examples:
      distq forget thumbnail photos/cat.jpg 128
    """
    values = _arguments(args, json_args, protocol)
    removed = make_app(state, protocol).forget(name, *values)
    text = "forgotten" if removed else "not cached"
    state.out.scalar({"service": name, "args": values, "forgotten": removed}, text)


@click.command("services")
@click.option(
    "--protocol",
    type=click.Choice(["native", "distcl"]),
    default=None,
    help="List only the services of this protocol (default: both).",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=SCAN_COUNT,
    show_default=True,
    help="Keys examined per SCAN round trip (a hint).",
)
@pass_state
def services(state: State, protocol: str | None, count: int) -> None:
    """List the known services: servers, cached values, in flight, queued.

    A service is known if a live worker serves it (`distq workers`) or the
    server holds any of its keys. For each service and protocol: the ids of
    the live servers; the cached values; the computations in flight (native:
    requests queued or running; DisTcl: run lists); the requests waiting for
    a server. Keys are counted with SCAN over the whole keyspace, so this
    takes a while on a server with millions of keys. DisTcl keys are not
    namespaced; presence and native keys are (--namespace). With --json: a
    list of objects with name, protocol, servers, cached, inflight, queued.

    \b
    Examples:
      distq services
      distq --json services --protocol distcl
    """
    report = list_services(make_app(state), cast(Protocol | None, protocol), count=count)
    if not report.complete:
        state.out.note(
            f"note: stopped after {MAX_ROUNDS:,} SCAN round trips: counts are partial "
            "(raise --count)"
        )
    if state.json:
        state.out.json([stat.as_dict() for stat in report.services])
        return
    if not report.services:
        state.out.note("no services")
        return
    rows = [
        [
            stat.name,
            stat.protocol,
            "\n".join(stat.servers) or None,
            stat.cached,
            stat.inflight,
            stat.queued,
        ]
        for stat in report.services
    ]
    columns = ["name", "protocol", "servers", "cached", "in flight", "queued"]
    state.out.table(columns, rows, title="services", keep=("name", "servers"))
