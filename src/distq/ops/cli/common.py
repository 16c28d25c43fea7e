"""What every command shares: global state, the client, output, logging and errors.

Output goes through :class:`Output` only: rich tables (or plain lines) for
people, one JSON document with ``--json`` for scripts. Messages go to stderr.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

import distq
from distq.endpoints.app import App
from distq.errors import DistqError, InvalidArgument
from distq.queue.job import Job

if TYPE_CHECKING:  # rich is imported when a table is printed (it costs ~40 ms)
    from rich.console import Console
    from rich.text import Text

__all__ = [
    "BODY_NOTE",
    "CliError",
    "CliUsageError",
    "DistqGroup",
    "Output",
    "State",
    "configure_logging",
    "fail",
    "jsonable",
    "load_app_from",
    "pass_state",
    "with_body_note",
]

R = TypeVar("R")

#: How bodies are shown; quoted in the help of every command that shows bodies.
BODY_NOTE = (
    "Bodies stored as bytes are shown decoded as UTF-8, invalid bytes replaced by U+FFFD "
    "(in tables and in --json output alike); JSON bodies are shown as JSON values."
)


def with_body_note(command: click.Command) -> click.Command:
    """Append :data:`BODY_NOTE` to a command's help (a decorator, outermost)."""
    command.help = f"{inspect.cleandoc(command.help or '')}\n\n{BODY_NOTE}"
    return command


#: Marks the log handler this module installs, so a second call replaces it.
_HANDLER_NAME = "distq-cli"


class CliError(click.ClickException):
    """An error shown as ``error: <message>`` on stderr, without a traceback; exit 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class CliUsageError(CliError):
    """A :class:`CliError` caused by a bad argument; exit 2."""

    exit_code = 2


def fail(message: str, usage: bool = False) -> NoReturn:
    """Stop the command with ``error: <message>``: exit 2 if ``usage``, else 1."""
    raise (CliUsageError if usage else CliError)(message)


class DistqGroup(click.Group):
    """A group that turns every :class:`~distq.DistqError` into a clean ``error:`` line.

    Exit codes: 2 for a bad argument (``InvalidArgument``, and click's own
    usage errors), 1 for every other error.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DistqError as exc:
            message = str(exc) or type(exc).__name__
            kind = CliUsageError if isinstance(exc, InvalidArgument) else CliError
            raise kind(message) from exc


@dataclass
class State:
    """The global options, and the client made from them on first use."""

    url: str | None = None
    namespace: str = "distq"
    #: Whether --namespace (or DISTQ_NAMESPACE) was given, rather than defaulted.
    namespace_given: bool = False
    json: bool = False
    verbose: int = 0
    _client: distq.Client | None = field(default=None, repr=False)
    _out: Output | None = field(default=None, repr=False)

    def client(self) -> distq.Client:
        """The connected client (``--url``, else ``DISTQ_URL``, else the embedded server)."""
        if self._client is None:
            self._client = distq.connect(self.url, namespace=self.namespace)
            click.get_current_context().call_on_close(self.close)
        return self._client

    def close(self) -> None:
        """Close the client, if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def out(self) -> Output:
        """Where results go."""
        if self._out is None:
            self._out = Output(self.json)
        return self._out


_pass_state = click.make_pass_decorator(State, ensure=True)


def pass_state(command: Callable[..., R]) -> Callable[..., R]:
    """Pass the :class:`State` as the first argument of a command function."""
    return _pass_state(command)


def load_app_from(state: State, app_ref: str) -> App:
    """Import MODULE:APP (from the current directory first, as ``python -m``
    does), with the global ``--url`` and ``--namespace`` applied when given;
    a long-running command logs at INFO unless -v asked for more."""
    from distq.runtime.worker import load_app

    if not state.verbose:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    sys.path.insert(0, os.getcwd())
    app = load_app(app_ref)
    if state.url:
        app.url = state.url
    if state.namespace_given:
        app.namespace = state.namespace
    return app


def configure_logging(verbose: int) -> None:
    """``-v``: distq's DEBUG logging on stderr; ``-vv``: also ``distq.wire``.

    Without ``-v`` logging is left alone: warnings reach stderr through
    Python's last-resort handler.
    """
    if verbose < 1:
        return
    logger = logging.getLogger("distq")
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    wire = logging.getLogger("distq.wire")
    wire.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)


# Values ---------------------------------------------------------------------


def show_bytes(data: bytes) -> str:
    """Bytes as text: UTF-8, invalid bytes replaced by U+FFFD."""
    return data.decode("utf-8", errors="replace")


def jsonable(value: Any) -> Any:
    """``value`` with bytes turned into text (see :data:`BODY_NOTE`), for ``json.dumps``."""
    if isinstance(value, bytes):
        return show_bytes(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def job_dict(job: Job) -> dict[str, Any]:
    """A job as a JSON-ready dict."""
    return {
        "id": job.id,
        "queue": job.queue,
        "body": jsonable(job.body),
        "nacks": job.nacks,
        "additional_deliveries": job.additional_deliveries,
        "delivery": job.delivery,
        "reason": job.reason,
    }


def cell(value: Any) -> Text:
    """A table cell for ``value``: plain text, never rich markup."""
    from rich.text import Text

    if value is None:
        return Text("-", style="dim")
    if isinstance(value, bytes):
        return Text(show_bytes(value))
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, bool | int):
        return Text(str(value))
    if isinstance(value, float):
        return Text(f"{value:g}")
    return Text(json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":")))


def epoch(value: float | None) -> str | None:
    """Epoch seconds as a local ISO time (to the millisecond)."""
    if value is None:
        return None
    return datetime.fromtimestamp(value).astimezone().isoformat(timespec="milliseconds")


# Output ---------------------------------------------------------------------


class Output:
    """Prints results: rich tables by default, one JSON document with ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """The rich console on stdout (made when first needed)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=sys.stdout, highlight=False, emoji=False)
        return self._console

    def json(self, data: Any) -> None:
        """Print ``data`` as one JSON document."""
        click.echo(json.dumps(jsonable(data), indent=2))

    def scalar(self, data: Any, text: str) -> None:
        """``data`` as JSON, or ``text`` as one line."""
        if self.as_json:
            self.json(data)
        else:
            click.echo(text)

    def lines(self, items: Sequence[str]) -> None:
        """A list as JSON, or one item per line (for ``xargs``)."""
        if self.as_json:
            self.json(list(items))
        else:
            for item in items:
                click.echo(item)

    def mapping(self, data: Mapping[str, Any], title: str | None = None) -> None:
        """A dict as JSON, or as a two-column table."""
        if self.as_json:
            self.json(data)
            return
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key, value in data.items():
            table.add_row(key, cell(value))
        self.console.print(table)

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        title: str | None = None,
        keep: Sequence[str] = ("id",),
    ) -> None:
        """Rows as a rich table (only for people: JSON callers use :meth:`json`).

        Columns named in ``keep`` (ids) are never wrapped unless nothing else fits.
        """
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for name in columns:
            table.add_column(name, overflow="fold", no_wrap=name in keep)
        for row in rows:
            table.add_row(*(cell(v) for v in row))
        self.console.print(table)

    def jobs(self, jobs: Sequence[Job], title: str | None = None, reason: bool = False) -> None:
        """Jobs as a JSON list, or a table (or ``no jobs`` on stderr)."""
        if self.as_json:
            self.json([job_dict(job) for job in jobs])
            return
        if not jobs:
            self.note("no jobs")
            return
        columns = ["id", "queue", "body", "nacks", "additional deliveries"]
        if reason:
            columns.append("reason")
        rows = []
        for job in jobs:
            row = [job.id, job.queue, job.body, job.nacks, job.additional_deliveries]
            if reason:
                row.append(job.reason)
            rows.append(row)
        self.table(columns, rows, title)

    def note(self, message: str) -> None:
        """A message for people, on stderr (never in JSON output)."""
        click.echo(message, err=True)
