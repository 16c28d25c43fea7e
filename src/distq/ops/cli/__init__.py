"""The ``distq`` command line: Disque's commands, and the embedded server.

``main`` is the console script (``distq``, or ``python -m distq``); ``cli``
is the click group, usable with :class:`click.testing.CliRunner`.
"""

from __future__ import annotations

import click

from distq import __version__
from distq.ops.cli.actors import actors, node
from distq.ops.cli.common import DistqGroup, State, configure_logging
from distq.ops.cli.queue import COMMANDS
from distq.ops.cli.server import server
from distq.ops.cli.services import forget, get, prefetch, services
from distq.ops.cli.worker import serve, worker
from distq.ops.cli.workers import ctl, workers

__all__ = ["cli", "main"]


class _Ordered(DistqGroup):
    """Lists commands in the order they were added (Disque's), not sorted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group("distq", cls=_Ordered, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="DISTQ_URL",
    metavar="URL",
    help="redis://, rediss:// or unix:// URL of the server [env: DISTQ_URL; "
    "default: the embedded server, started on demand].",
)
@click.option(
    "--namespace",
    envvar="DISTQ_NAMESPACE",
    default="distq",
    show_default=True,
    help="Prefix of every key [env: DISTQ_NAMESPACE].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (for scripts) instead of tables.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="-v: debug logging on stderr; -vv: also every command and reply sent "
    "to the server (passwords redacted).",
)
@click.version_option(__version__, prog_name="distq")
@click.pass_context
def cli(ctx: click.Context, url: str | None, namespace: str, as_json: bool, verbose: int) -> None:
    """distq: jobs and queues on Redis/Valkey, with Disque's commands.

    Errors are printed as `error: <message>` on stderr; the exit status is
    2 for a bad argument, 1 for any other error.

    \b
    Examples:
      distq addjob emails 'hello'
      distq getjob emails --timeout 5
      distq --json qstat emails
      distq --url redis://:secret@db:6379/0 qscan
    """
    configure_logging(verbose)
    given = ctx.get_parameter_source("namespace") is not click.core.ParameterSource.DEFAULT
    ctx.obj = State(
        url=url or None, namespace=namespace, namespace_given=given, json=as_json, verbose=verbose
    )


for _command in COMMANDS:
    cli.add_command(_command)
cli.add_command(server)
cli.add_command(worker)
cli.add_command(serve)
cli.add_command(workers)
cli.add_command(ctl)
cli.add_command(get)
cli.add_command(prefetch)
cli.add_command(forget)
cli.add_command(services)
cli.add_command(node)
cli.add_command(actors)


def main() -> None:
    """Run the command line (the ``distq`` console script)."""
    cli.main(prog_name="distq")
