"""``distq worker MODULE:APP``: run a supervisor and its worker processes."""

from __future__ import annotations

import logging
import os
import sys

import click

from distq.ops.cli.common import State, pass_state
from distq.runtime.supervisor import Supervisor
from distq.runtime.worker import WorkerConfig

__all__ = ["worker"]


@click.command("worker")
@click.argument("app_ref", metavar="MODULE:APP")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="the number of cores",
    help="Worker processes to run.",
)
@click.option(
    "-Q",
    "--queues",
    "queues",
    multiple=True,
    metavar="QUEUE[,QUEUE…]",
    help="Queues to serve, first ones first (repeatable; default: every queue "
    "the app's tasks use).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Jobs each process leases per fetch.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=0),
    default=0,
    help="Replace a worker process after this many jobs (0: never).",
)
@click.option(
    "--async-concurrency",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="`async def` tasks run at once per process.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between heartbeats (presence, leases, control messages).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a graceful stop waits for running jobs.",
)
@pass_state
def worker(
    state: State,
    app_ref: str,
    concurrency: int,
    queues: tuple[str, ...],
    batch: int,
    max_tasks_per_child: int,
    async_concurrency: int,
    heartbeat: float,
    grace: float,
) -> None:
    """Run the tasks of MODULE:APP (e.g. `myproject.tasks:app`) from their queues.

    A supervisor pre-forks the worker processes; each fetches jobs in batches
    and runs them. SIGINT/SIGTERM: stop fetching, finish the running jobs,
    hand the unstarted ones back, exit 0; a second signal exits at once.
    Each process is listed by `distq workers` and obeys `distq ctl`.
    """
    if not state.verbose:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    sys.path.insert(0, os.getcwd())  # MODULE is looked up from here first, as `python -m` does
    config = WorkerConfig(
        app=app_ref,
        queues=tuple(q for item in queues for q in item.split(",") if q),
        batch=batch,
        async_concurrency=async_concurrency,
        max_tasks=max_tasks_per_child,
        heartbeat_s=heartbeat,
    )
    supervisor = Supervisor(config, concurrency, grace_s=grace)
    if state.url:
        supervisor.app.url = state.url
    sys.exit(supervisor.run())
