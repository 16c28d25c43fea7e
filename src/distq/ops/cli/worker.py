"""``distq worker`` and ``distq serve``: run a supervisor and its worker processes."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import click

from distq.endpoints.app import App
from distq.errors import InvalidArgument
from distq.ops.cli.common import State, load_app_from, pass_state
from distq.runtime.supervisor import Supervisor
from distq.runtime.worker import WorkerConfig

__all__ = ["serve", "worker"]

#: Options both commands take.
_HEARTBEAT = click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between heartbeats (presence, leases, control messages).",
)
_GRACE = click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a graceful stop waits for running jobs.",
)


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
@_HEARTBEAT
@_GRACE
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
    """Run the tasks and services of MODULE:APP (e.g. `myproject.tasks:app`).

    A supervisor pre-forks the worker processes; each fetches jobs (task
    calls, native service requests) in batches and runs them. If the app has
    DisTcl-protocol services, one more process serves them. SIGINT/SIGTERM:
    stop fetching, finish the running jobs, hand the unstarted ones back, exit
    0; a second signal exits at once. Each process is listed by `distq
    workers` and obeys `distq ctl`.
    """
    app = load_app_from(state, app_ref)
    base = WorkerConfig(
        app=app_ref,
        queues=tuple(q for item in queues for q in item.split(",") if q) or tuple(app.queues()),
        batch=batch,
        async_concurrency=async_concurrency,
        max_tasks=max_tasks_per_child,
        heartbeat_s=heartbeat,
    )
    plan = [(base, concurrency)] if base.queues else []
    if any(s.options.protocol == "distcl" for s in app.services.values()):
        plan.append((replace(base, role="distcl"), 1))
    _supervise(app, plan, grace)


@click.command("serve")
@click.argument("app_ref", metavar="MODULE:APP")
@click.option(
    "-s",
    "--service",
    "services",
    multiple=True,
    metavar="NAME",
    help="Serve only this service (repeatable; default: every service of the app).",
)
@click.option(
    "--id",
    "server_id",
    metavar="ID",
    help="Server id: names the control queue z:ID of a DisTcl-protocol server "
    "(so DisTcl's `stop` reaches it).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes per protocol.",
)
@_HEARTBEAT
@_GRACE
@pass_state
def serve(
    state: State,
    app_ref: str,
    services: tuple[str, ...],
    server_id: str | None,
    concurrency: int,
    heartbeat: float,
    grace: float,
) -> None:
    """Serve only the services of MODULE:APP (no tasks).

    Native-protocol services are served from their request queues;
    DisTcl-protocol ones by DisTcl's loop (`BLPOP z:ID q:S p:S`), on the same
    keys as Tcl's `distcl::serve`.
    """
    app = load_app_from(state, app_ref)
    unknown = set(services) - set(app.services)
    if unknown:
        raise InvalidArgument(f"no such service in {app_ref}: {', '.join(sorted(unknown))}")
    chosen = [app.services[n] for n in services] if services else list(app.services.values())
    if not chosen:
        raise InvalidArgument(f"{app_ref} defines no service")
    base = WorkerConfig(app=app_ref, heartbeat_s=heartbeat)
    plan = []
    native = tuple(s.queue for s in chosen if s.options.protocol == "native")
    if native:
        plan.append((replace(base, queues=native), concurrency))
    distcl = tuple(s.name for s in chosen if s.options.protocol == "distcl")
    if distcl:
        config = replace(base, role="distcl", services=distcl, server_id=server_id)
        plan.append((config, 1 if server_id else concurrency))
    _supervise(app, plan, grace)


def _supervise(app: App, plan: list[tuple[WorkerConfig, int]], grace: float) -> None:
    if not plan:
        raise InvalidArgument("nothing to run: no task, no service and no queue given")
    sys.exit(Supervisor(plan, app=app, grace_s=grace).run())
