"""The job and queue commands: one per Disque command.

Each is a plain :class:`click.Command`; :mod:`distq.ops.cli` adds them all
(see :data:`COMMANDS`) to the ``distq`` group.
"""

from __future__ import annotations

import json
from typing import Any

import click

from distq.ops.cli.common import State, epoch, fail, pass_state, with_body_note
from distq.queue.job import JobState
from distq.queue.ops import DEFAULT_RETRY_S, DEFAULT_TTL_S

__all__ = ["COMMANDS"]

_IDS = click.argument("ids", nargs=-1, required=True, metavar="ID...")
_SECONDS = click.FloatRange(min=0)
_COUNT = click.IntRange(min=1)


# Adding and fetching --------------------------------------------------------


@click.command()
@click.argument("queue")
@click.argument("body")
@click.option("--json-body", is_flag=True, help="Parse BODY as JSON and store that value.")
@click.option(
    "--delay",
    type=_SECONDS,
    default=0,
    show_default=True,
    help="Seconds before the job can be fetched.",
)
@click.option(
    "--retry",
    type=_SECONDS,
    default=DEFAULT_RETRY_S,
    show_default=True,
    help="Lease in seconds: an unacknowledged fetched job is queued again after "
    "it. 0 makes the job at-most-once.",
)
@click.option(
    "--ttl",
    type=_SECONDS,
    default=DEFAULT_TTL_S,
    show_default=True,
    help="Seconds the job lives at most, whatever its state.",
)
@click.option("--maxlen", type=_COUNT, help="Refuse the job if the queue holds this many jobs.")
@click.option(
    "--max-deliveries",
    type=_COUNT,
    help="Dead-letter the job after this many deliveries (default: no limit).",
)
@click.option("--replicate", type=_COUNT, help="Wait until this many replicas hold the job.")
@click.option(
    "--timeout",
    type=_SECONDS,
    default=5.0,
    show_default=True,
    help="Seconds to wait for --replicate replicas.",
)
@click.option(
    "--async", "async_", is_flag=True, help="Do not wait for replication (with --replicate)."
)
@pass_state
def addjob(state: State, queue: str, body: str, json_body: bool, **options: Any) -> None:
    """Add a job with BODY to QUEUE and print its id.

    BODY is stored as a string, unless --json-body is given: then it is
    parsed as JSON and stored as that value (JSON consumers get the object).

    \b
    Examples:
      distq addjob emails 'hello'
      distq addjob emails --json-body '{"to": "ada@example.org"}' --retry 60
    """
    value: Any = body
    if json_body:
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="BODY") from exc
    job_id = state.client().addjob(queue, value, **options)
    state.out.scalar({"id": job_id}, job_id)


@with_body_note
@click.command()
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
@click.option(
    "--count", type=_COUNT, default=1, show_default=True, help="Fetch up to this many jobs."
)
@click.option(
    "--timeout",
    type=_SECONDS,
    help="Wait at most this many seconds for a job (default: wait forever).",
)
@click.option("--nohang", is_flag=True, help="Never wait for a job.")
@pass_state
def getjob(
    state: State, queues: tuple[str, ...], count: int, timeout: float | None, nohang: bool
) -> None:
    """Fetch jobs from the QUEUEs (the first ones first) and print them.

    Prints id, queue, body, nacks and additional deliveries. The jobs are
    NOT acknowledged: each stays leased for its retry time, then is queued
    again; run `distq ackjob ID` when done, or `distq nack ID` to give it back.

    With no job to fetch, prints an empty list (--json), or "no jobs" on
    stderr; the exit status is 0 either way.
    """
    jobs = state.client().getjob(*queues, count=count, timeout=timeout, nohang=nohang)
    state.out.jobs(jobs)


# Acting on jobs -------------------------------------------------------------


def _count_command(name: str, summary: str) -> click.Command:
    """A command that applies client method ``name`` to job ids and prints the count."""

    @click.command(name, help=f'{summary}\n\nPrints the count ({{"count": N}} with --json).')
    @_IDS
    @pass_state
    def command(state: State, ids: tuple[str, ...]) -> None:
        count = int(getattr(state.client(), name)(*ids))
        state.out.scalar({"count": count}, str(count))

    return command


ackjob = _count_command(
    "ackjob", "Acknowledge jobs as done (they are deleted); count those that were known."
)
fastack = _count_command(
    "fastack", "Acknowledge jobs (best effort; on one server the same as ackjob)."
)
nack = _count_command(
    "nack",
    "Put leased jobs back at the head of their queues now, counting a nack; count them. "
    "A job past its --max-deliveries goes to the dead letters instead.",
)
enqueue = _count_command(
    "enqueue", "Queue jobs now, whatever their state (delayed, active, idle or dead)."
)
dequeue = _count_command("dequeue", "Take queued jobs out of their queue (they stay, idle).")
deljob = _count_command("deljob", "Delete jobs wherever they are; count those that existed.")


@click.command()
@click.argument("job_id", metavar="ID")
@pass_state
def working(state: State, job_id: str) -> None:
    """Extend the lease of active job ID; print the seconds granted.

    Fails (exit status 1) if there is no such job or it is not leased.
    """
    seconds = state.client().working(job_id)
    state.out.scalar({"id": job_id, "seconds": seconds}, f"{seconds:g}")


# Inspecting -----------------------------------------------------------------


@with_body_note
@click.command()
@click.argument("job_id", metavar="ID")
@pass_state
def show(state: State, job_id: str) -> None:
    """Show everything known about job ID.

    Exit status 1, with a message on stderr, if there is no such job.
    Times are seconds; ctime is epoch seconds in --json output.
    """
    info = state.client().show(job_id)
    if info is None:
        fail(f"no job {job_id} (unknown, acknowledged, deleted or expired)")
    if not state.json:
        info = {**info, "ctime": epoch(info["ctime"])}
    state.out.mapping(info, title=f"job {job_id}")


@click.command()
@click.argument("queue")
@pass_state
def qlen(state: State, queue: str) -> None:
    """Print how many jobs wait in QUEUE."""
    length = state.client().qlen(queue)
    state.out.scalar({"queue": queue, "len": length}, str(length))


@click.command()
@click.argument("queue")
@pass_state
def qstat(state: State, queue: str) -> None:
    """Show the state of QUEUE.

    \b
    len, leased, delayed, dead   jobs in each state now
    age                          seconds the oldest waiting job has waited
    jobs_in, jobs_out, acked,    counters since the queue was first used
    dead_total                   (jobs_out counts deliveries)
    """
    state.out.mapping(state.client().qstat(queue), title=f"queue {queue}")


@with_body_note
@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("queue")
@click.argument("count", type=int)
@pass_state
def qpeek(state: State, queue: str, count: int) -> None:
    """Show up to COUNT waiting jobs of QUEUE without fetching them.

    A positive COUNT starts from the oldest job, a negative one from the
    newest (`distq qpeek emails -3`: the three newest, newest first).
    """
    state.out.jobs(state.client().qpeek(queue, count), title=f"queue {queue}")


@with_body_note
@click.command()
@click.argument("queue")
@click.option(
    "--count", type=_COUNT, default=100, show_default=True, help="Show at most this many jobs."
)
@pass_state
def deadletters(state: State, queue: str, count: int) -> None:
    """Show the dead-lettered jobs of QUEUE, oldest first, with the reason.

    `distq enqueue ID` gives one another chance; `distq deljob ID` drops it.
    """
    jobs = state.client().deadletters(queue, count)
    state.out.jobs(jobs, title=f"dead letters of {queue}", reason=True)


@click.command()
@click.option("--queue", help="Only jobs of this queue.")
@click.option(
    "--state",
    "job_state",
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state.",
)
@click.option(
    "--count",
    type=_COUNT,
    default=100,
    show_default=True,
    help="Keys examined per SCAN round trip (a hint; every job is listed).",
)
@pass_state
def jscan(state: State, queue: str | None, job_state: str | None, count: int) -> None:
    """List the ids of all jobs, one per line (a JSON list with --json).

    \b
    Example: delete every dead job of a queue
      distq jscan --queue emails --state dead | xargs distq deljob
    """
    _, ids = state.client().jscan(0, count=count, queue=queue, state=job_state, busyloop=True)
    state.out.lines(ids)


@click.command()
@click.option("--minlen", type=click.IntRange(min=0), help="Only queues with at least N waiting.")
@click.option("--maxlen", type=click.IntRange(min=0), help="Only queues with at most N waiting.")
@click.option(
    "--count",
    type=_COUNT,
    default=100,
    show_default=True,
    help="Keys examined per SCAN round trip (a hint; every queue is listed).",
)
@pass_state
def qscan(state: State, minlen: int | None, maxlen: int | None, count: int) -> None:
    """List the names of all known queues, one per line (a JSON list with --json).

    A queue is known once a job was added to it.
    """
    _, names = state.client().qscan(0, count=count, busyloop=True, minlen=minlen, maxlen=maxlen)
    state.out.lines(names)


@click.command()
@pass_state
def hello(state: State) -> None:
    """Show who answers: protocol version, node id, server kind and version."""
    state.out.mapping(state.client().hello())


@click.command()
@click.argument("section", required=False)
@pass_state
def info(state: State, section: str | None) -> None:
    """Show the server's INFO (all of it, or SECTION such as server or memory)."""
    state.out.mapping(state.client().info(section), title=f"INFO {section or ''}".strip())


#: Every command of this module, in Disque's order.
COMMANDS: list[click.Command] = [
    addjob,
    getjob,
    ackjob,
    fastack,
    nack,
    working,
    enqueue,
    dequeue,
    deljob,
    show,
    qlen,
    qstat,
    qpeek,
    deadletters,
    jscan,
    qscan,
    hello,
    info,
]
