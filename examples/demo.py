"""A tour of distq: the queue, then tasks run by ``distq worker``.

Run it with ``make demo`` (or ``python examples/demo.py``). It uses the
embedded default server, started on first use (or ``DISTQ_URL`` if set).

1. The queue: bulk enqueue, two consumer processes, failure handling, on a
   fresh queue, so it can be run again and again. The same file is also the
   consumer: ``python examples/demo.py consume QUEUE`` fetches jobs in batches
   and acknowledges them until the queue stays empty.
2. Tasks: starts ``distq worker tasks_demo:app -c 2`` (the tasks are in
   ``examples/tasks_demo.py``), submits 10,000 calls with ``map``, shows a
   failing task's error and the live workers.
3. Services: the same worker serves ``slow-square``, a service that takes a
   second; 50 threads ask it for the same value at once, and it is computed
   once; then a few cached calls. Then the worker is stopped with SIGTERM.
4. Actors: the Factor seed's two examples. Starts ``distq node
   tasks_demo:app`` (the actors ``process1`` and ``logger`` are in
   ``examples/tasks_demo.py``), calls ``process1`` and prints its reply, sends
   ``logger`` a message and shows the node printing it, lists the actors as
   ``distq actors`` does, then stops the node with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import distq
from distq.runtime.control import list_workers

JOBS = 10_000
CONSUMERS = 2
BATCH = 200  # jobs fetched per getjob call
IDLE_EXIT_S = 1.0  # a consumer stops once the queue has been empty this long
CONSUMER_BOUND_S = 30.0  # ... and in any case after this long
WAIT_BOUND_S = 40.0  # the demo gives up on its consumers after this long

TASKS = 10_000  # task calls submitted with one map()
WORKER_PROCESSES = 2  # distq worker -c 2
WORKER_READY_S = 20.0  # the demo gives up on the worker starting after this long
TASKS_BOUND_S = 40.0  # ... and on the tasks being done after this long
WORKER_STOP_S = 15.0  # ... and on the worker stopping after SIGTERM after this long

SERVICE_CLIENTS = 50  # threads asking slow-square for the same value at once
SERVICE_TIMEOUT_S = 15.0  # bound on each of their gets
CACHED_CALLS = 5  # cached gets shown with their latency
EXAMPLES = Path(__file__).resolve().parent

console = Console()


# The consumer process ---------------------------------------------------------


def consume(queue: str) -> None:
    """Fetch and acknowledge jobs until ``queue`` stays empty; print a JSON summary."""
    with distq.connect() as client:  # DISTQ_URL or the embedded server, like the demo
        acked = 0
        first = last = None  # when the first batch was fetched, when the last was acked
        jobs: list[distq.Job] = []
        deadline = time.monotonic() + CONSUMER_BOUND_S
        while time.monotonic() < deadline:
            fetched_at = time.monotonic()
            # Acknowledge the last batch and fetch the next one in one round trip.
            with client.pipeline() as pipe:
                pipe.ackjob(*jobs)
                pipe.getjob(queue, count=BATCH, nohang=True)
            done, jobs = pipe.results
            acked += done
            if done:
                last = time.monotonic()
            if not jobs:
                # The queue is empty: wait for more, and stop if none come.
                jobs = client.getjob(queue, count=BATCH, timeout=IDLE_EXIT_S)
                fetched_at = time.monotonic()
                if not jobs:
                    break
            first = first or fetched_at
            # ... a real worker would process each job.body here ...
        acked += client.ackjob(*jobs)  # only if the time bound cut the loop short
    print(json.dumps({"acked": acked, "first": first, "last": last}))


# The demo ---------------------------------------------------------------------


def enqueue(client: distq.Client, queue: str) -> float:
    """Add JOBS jobs in bulk; return the seconds it took."""
    bodies = [{"n": n, "task": "resize", "image": f"img-{n:05}.png"} for n in range(JOBS)]
    start = time.perf_counter()
    ids = client.addjobs(queue, bodies)
    elapsed = time.perf_counter() - start
    console.print(f"Enqueued [bold]{len(ids):,}[/] jobs in {elapsed * 1000:.0f} ms with addjobs")
    console.print(f"  first id: [cyan]{ids[0]}[/]")
    return elapsed


def start_consumers(queue: str) -> list[subprocess.Popen[str]]:
    command = [sys.executable, __file__, "consume", queue]
    return [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(CONSUMERS)]


def watch(client: distq.Client, queue: str, consumers: list[subprocess.Popen[str]]) -> None:
    """Show a progress bar of acknowledged jobs until all are done (bounded)."""
    columns = (
        TextColumn("[bold]acked"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("jobs"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + WAIT_BOUND_S
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("acked", total=JOBS)
        while time.monotonic() < deadline:
            acked = client.qstat(queue)["acked"]
            progress.update(task, completed=acked)
            if acked >= JOBS or all(p.poll() is not None for p in consumers):
                break
            time.sleep(0.1)


def collect(consumers: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """Wait for the consumers to exit and read their summaries."""
    summaries = []
    for number, proc in enumerate(consumers, 1):
        out, _ = proc.communicate(timeout=IDLE_EXIT_S + 10)
        if proc.returncode != 0:
            raise RuntimeError(f"consumer {number} exited with status {proc.returncode}")
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    return summaries


def stop(consumers: list[subprocess.Popen[str]]) -> None:
    """Kill consumers still running (after an error) and reap them all."""
    for proc in consumers:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            console.print(f"[red]consumer pid {proc.pid} did not exit[/]")


def show_throughput(enqueue_s: float, summaries: list[dict[str, Any]]) -> None:
    # The consumers' clocks (time.monotonic) are the machine's, so they compare.
    firsts = [s["first"] for s in summaries if s["first"] is not None]
    lasts = [s["last"] for s in summaries if s["last"] is not None]
    consume_s = max(lasts) - min(firsts) if firsts and lasts else float("nan")
    table = Table(title="Throughput", title_justify="left")
    table.add_column("step")
    table.add_column("jobs", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("jobs/s", justify="right", style="bold green")
    table.add_row(
        "enqueue (addjobs, bulk)", f"{JOBS:,}", f"{enqueue_s:.3f}", f"{JOBS / enqueue_s:,.0f}"
    )
    table.add_row(
        f"fetch + ack ({CONSUMERS} processes)",
        f"{sum(s['acked'] for s in summaries):,}",
        f"{consume_s:.3f}",
        f"{JOBS / consume_s:,.0f}",
    )
    for number, summary in enumerate(summaries, 1):
        table.add_row(f"  consumer {number}", f"{summary['acked']:,}", "", "")
    console.print(table)


def show_qstat(client: distq.Client, queue: str) -> None:
    table = Table(title=f"qstat {queue}", title_justify="left")
    table.add_column("field")
    table.add_column("value", justify="right")
    for field, value in client.qstat(queue).items():
        table.add_row(field, str(value))
    console.print(table)


def show_failures(client: distq.Client, queue: str) -> None:
    console.rule("Failure handling")

    # 1. A consumer fetches a job and dies without acking: once its lease
    #    (retry) is over, the job is delivered again, and counted.
    client.addjob(queue, {"task": "flaky"}, retry=1)
    [job] = client.getjob(queue, timeout=5)
    console.print(f"fetched {job.id} (delivery {job.delivery}) and did not ack it")
    [again] = client.getjob(queue, timeout=5)  # blocks ~1 s, until the lease ends
    console.print(
        f"its 1 s lease ran out; fetched again (delivery {again.delivery}): "
        f"[bold]additional_deliveries={again.additional_deliveries}[/]"
    )
    assert again.id == job.id and again.additional_deliveries == 1
    client.ackjob(again)

    # 2. A job that keeps failing: each nack puts it back at once, until it
    #    has had max_deliveries deliveries; then it goes to the dead letters.
    client.addjob(queue, {"task": "poison"}, max_deliveries=2)
    for _ in range(2):
        [job] = client.getjob(queue, timeout=5)
        client.nack(job)
        console.print(f"nacked {job.id} (delivery {job.delivery})")
    [dead] = client.deadletters(queue)
    console.print(f"dead letter {dead.id}: nacks={dead.nacks}")
    console.print(f"  reason: [bold yellow]{dead.reason}[/]")
    assert dead.id == job.id
    client.deljob(dead)  # tidy up; `enqueue` would give it another chance


# Tasks -------------------------------------------------------------------------


def start_worker(log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ``distq worker tasks_demo:app -c 2`` in the examples folder.

    The worker inherits the environment, so it uses DISTQ_URL if it is set,
    else the embedded default server, like this process.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "distq", "worker", "tasks_demo:app"]
    command += ["-c", str(WORKER_PROCESSES)]
    return subprocess.Popen(command, cwd=EXAMPLES, env=env, stdout=log, stderr=log)


def wait_for_workers(
    app: distq.App, worker: subprocess.Popen[bytes], since: float
) -> list[dict[str, Any]]:
    """Wait until the worker's processes have announced themselves; return them."""
    deadline = time.monotonic() + WORKER_READY_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"distq worker exited with status {worker.returncode}")
        ours = [
            w
            for w in list_workers(app.client)
            if "tasks-demo" in w["queues"] and (w["started"] or 0) >= since
        ]
        if len(ours) >= WORKER_PROCESSES:
            return ours
        time.sleep(0.05)
    raise RuntimeError(f"distq worker did not start within {WORKER_READY_S:.0f} s")


def run_tasks(app: distq.App, worker: subprocess.Popen[bytes]) -> None:
    """Submit TASKS calls of ``add`` with one map(), watch them done, check the results."""
    from tasks_demo import add

    queue = add.options.queue
    acked_before = app.client.qstat(queue)["acked"]
    start = time.perf_counter()
    handles = add.map([(n, n) for n in range(TASKS)])
    submitted = time.perf_counter()
    console.print(
        f"Submitted [bold]{len(handles):,}[/] calls of add with map() "
        f"in {(submitted - start) * 1000:.0f} ms"
    )
    console.print(f"  first handle: [cyan]{handles[0].id}[/]")

    columns = (
        TextColumn("[bold]done"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + TASKS_BOUND_S
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("done", total=TASKS)
        done = 0
        while done < TASKS:
            # Each call's result is stored and its job acknowledged in one step.
            done = app.client.qstat(queue)["acked"] - acked_before
            progress.update(bar, completed=min(done, TASKS))
            if worker.poll() is not None:
                raise RuntimeError(f"distq worker exited with status {worker.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done:,} of {TASKS:,} tasks done in {TASKS_BOUND_S} s")
            time.sleep(0.02)
    finished = time.perf_counter()

    results = [handle.get(timeout=10) for handle in handles]  # in order
    collected = time.perf_counter()
    assert results == [2 * n for n in range(TASKS)], "wrong results"
    console.print(f"all {TASKS:,} results correct: add(n, n) == 2n")

    table = Table(title="Tasks", title_justify="left")
    table.add_column("step")
    table.add_column("tasks", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("tasks/s", justify="right", style="bold green")
    rows = [
        ("submit (map, one round trip)", submitted - start),
        (f"run ({WORKER_PROCESSES} worker processes)", finished - submitted),
        ("collect results (get, in order)", collected - finished),
        ("submit to last result stored", finished - start),
    ]
    for step, seconds in rows:
        table.add_row(step, f"{TASKS:,}", f"{seconds:.3f}", f"{TASKS / seconds:,.0f}")
    console.print(table)


def show_task_failure(app: distq.App) -> None:
    """A task that raises: its error comes back as a RemoteError (nothing is imported)."""
    from tasks_demo import fail

    handle = fail.delay("the demo asked for it")
    try:
        handle.get(timeout=10)
    except distq.RemoteError as error:
        console.print(f"fail.delay(...).get() raised [bold red]RemoteError[/] ({handle.status()})")
        console.print(f"  type:    [bold]{error.type_name}[/]")
        console.print(f"  message: {error.message}")
        lines = error.traceback.strip().splitlines()
        console.print(f"  last traceback line: [yellow]{lines[-1] if lines else ''}[/]")
    else:
        raise AssertionError("the fail task did not fail")
    [dead] = [job for job in app.client.deadletters("tasks-demo") if job.id == handle.id]
    console.print(f"  dead letter reason: [yellow]{dead.reason}[/]")
    app.client.deljob(dead)  # tidy up; `distq enqueue ID` would run it again


def show_workers(workers: list[dict[str, Any]], app: distq.App) -> None:
    """The live worker processes of this demo, as `distq workers` shows them."""
    ids = {w["id"] for w in workers}
    table = Table(title="distq workers", title_justify="left")
    for column in ("id", "pid", "queues", "done", "current job", "last beat"):
        table.add_column(column, justify="right" if column in ("pid", "done") else "left")
    for w in list_workers(app.client):
        if w["id"] in ids:
            table.add_row(
                w["id"],
                str(w["pid"]),
                ",".join(w["queues"]),
                f"{w['done']:,}",
                w["current"] or "-",
                f"{w['age']:.1f} s ago",
            )
    console.print(table)


# Services ----------------------------------------------------------------------


def services_tour(app: distq.App) -> None:
    """Many clients, one computation: SERVICE_CLIENTS threads get the same value at once."""
    from tasks_demo import computations

    console.rule("Services")
    x = 1000 + int.from_bytes(os.urandom(2), "big") % 9000
    app.forget("slow-square", x)  # in case an earlier run cached it
    before = computations(x)
    values: list[int] = []
    errors: list[BaseException] = []
    start_line = threading.Barrier(SERVICE_CLIENTS + 1)

    def client() -> None:
        start_line.wait()
        try:
            values.append(app.get("slow-square", x, timeout=SERVICE_TIMEOUT_S))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(SERVICE_CLIENTS)]
    for thread in threads:
        thread.start()
    start_line.wait()  # all threads call at once
    start = time.perf_counter()
    for thread in threads:
        thread.join(timeout=SERVICE_TIMEOUT_S + 5)
    wall = time.perf_counter() - start
    if errors or len(values) != SERVICE_CLIENTS:
        raise RuntimeError(f"{len(values)} of {SERVICE_CLIENTS} gets answered: {errors[:1]}")
    assert set(values) == {x * x}, "wrong values"
    count = computations(x) - before
    console.print(
        f"{SERVICE_CLIENTS} threads called app.get('slow-square', {x}) at once (a 1 s computation)"
    )
    console.print(f"  all {SERVICE_CLIENTS} got {x * x} in [bold]{wall:.2f} s[/] wall time")
    console.print(f"  computed [bold green]{count} time(s)[/]")
    assert count == 1, f"computed {count} times"

    for _ in range(CACHED_CALLS):
        t0 = time.perf_counter()
        value = app.get("slow-square", x)
        ms = (time.perf_counter() - t0) * 1000
        console.print(f"  cached app.get('slow-square', {x}) = {value} in [bold]{ms:.2f} ms[/]")
    assert computations(x) - before == 1


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the worker finishes its running tasks and exits (bounded wait)."""
    start = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=WORKER_STOP_S)
    console.print(
        f"sent SIGTERM to distq worker (pid {worker.pid}): exited with status {code} "
        f"after {time.monotonic() - start:.2f} s"
    )


def tasks_tour() -> None:
    from tasks_demo import app

    console.rule("Tasks")
    with tempfile.TemporaryFile() as log:
        since = time.time()
        worker = start_worker(log)
        try:
            console.print(
                f"started [bold]distq worker tasks_demo:app -c {WORKER_PROCESSES}[/] "
                f"(pid {worker.pid})"
            )
            workers = wait_for_workers(app, worker, since)
            console.print(f"  {len(workers)} worker processes ready in {time.time() - since:.2f} s")
            run_tasks(app, worker)
            show_task_failure(app)
            show_workers(workers, app)
            services_tour(app)
            stop_worker(worker)
        except BaseException:
            log.seek(0)
            console.print("[red]distq worker output:[/]")
            console.print(log.read().decode(errors="replace")[-4000:], markup=False)
            raise
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
            app.close()


def main() -> None:
    queue = f"demo-{uuid.uuid4().hex[:8]}"
    consumers: list[subprocess.Popen[str]] = []
    with distq.connect() as client:
        console.print(
            f"distq demo on [cyan]{client.settings.redacted()}[/], queue [cyan]{queue}[/]"
        )
        try:
            enqueue_s = enqueue(client, queue)
            consumers = start_consumers(queue)
            watch(client, queue, consumers)
            summaries = collect(consumers)
        finally:
            stop(consumers)
        show_throughput(enqueue_s, summaries)
        show_qstat(client, queue)
        show_failures(client, queue)
    tasks_tour()
    actors_tour()


# Actors --------------------------------------------------------------------------

NODE_READY_S = 20.0  # the demo gives up on the node registering its actors after this long
NODE_STOP_S = 15.0  # ... and on the node stopping after SIGTERM after this long
LOGGED_S = 10.0  # ... and on the logger printing its message after this long


def start_node(node_id: str, out: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ``distq node tasks_demo:app --id NODE_ID`` in the examples folder
    (DISTQ_URL or the embedded server, like this process)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "distq", "node", "tasks_demo:app", "--id", node_id]
    return subprocess.Popen(command, cwd=EXAMPLES, env=env, stdout=out, stderr=err)


def wait_for_node(app: distq.App, node: subprocess.Popen[bytes], node_id: str) -> None:
    """Wait until both names point to the node's actors."""
    deadline = time.monotonic() + NODE_READY_S
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"distq node exited with status {node.returncode}")
        refs = [app.whereis(name) for name in ("process1", "logger")]
        if all(ref is not None and ref.node == node_id for ref in refs):
            return
        time.sleep(0.05)
    raise RuntimeError(f"distq node did not register its actors within {NODE_READY_S:.0f} s")


def wait_for_line(out: IO[bytes], text: str) -> str:
    """The first line of the node's standard output containing ``text`` (bounded wait)."""
    deadline = time.monotonic() + LOGGED_S
    while time.monotonic() < deadline:
        out.seek(0)
        for line in out.read().decode(errors="replace").splitlines():
            if text in line:
                return line
        time.sleep(0.02)
    raise RuntimeError(f"the node did not print {text!r} within {LOGGED_S:.0f} s")


def show_actors(app: distq.App, node_id: str) -> None:
    """The named actors and the node, as `distq actors` shows them."""
    from distq.ops.inspect_actors import list_actors

    report = list_actors(app.client)
    table = Table(title="distq actors", title_justify="left")
    for column in ("name", "actor id", "node", "alive"):
        table.add_column(column)
    for column in ("mailbox", "dead letters"):
        table.add_column(column, justify="right")
    for a in report.names:
        if a.node == node_id:
            table.add_row(a.name, a.actor, a.node, str(a.alive), str(a.mailbox), str(a.dead))
    console.print(table)


def stop_node(node: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the actors stop, their names are released, the node exits (bounded wait)."""
    start = time.monotonic()
    os.kill(node.pid, signal.SIGTERM)
    code = node.wait(timeout=NODE_STOP_S)
    console.print(
        f"sent SIGTERM to distq node (pid {node.pid}): exited with status {code} "
        f"after {time.monotonic() - start:.2f} s"
    )


def actors_tour() -> None:
    """The seed's examples: a synchronous call to process1, an asynchronous send to logger."""
    from tasks_demo import app

    console.rule("Actors")
    node_id = f"demo-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        node = start_node(node_id, out, err)
        try:
            since = time.monotonic()
            wait_for_node(app, node, node_id)
            console.print(
                f"started [bold]distq node tasks_demo:app[/] (pid {node.pid}, id {node_id}): "
                f"process1 and logger registered in {time.monotonic() - since:.2f} s"
            )
            t0 = time.perf_counter()
            answer = app.call("process1", "test-message", timeout=10)
            ms = (time.perf_counter() - t0) * 1000
            console.print(f'app.call("process1", "test-message") -> [bold green]{answer!r}[/]')
            console.print(f"  (looked the name up, sent, and got the reply in {ms:.1f} ms)")
            assert answer == "Message Received!"
            app.send("logger", "Log Message!")
            console.print('app.send("logger", "Log Message!") returned at once')
            line = wait_for_line(out, "Log Message!")
            console.print(f"  the node's standard output: [bold yellow]{line}[/]")
            show_actors(app, node_id)
            stop_node(node)
            assert app.whereis("process1") is None, "the name outlived its node"
            console.print("  the names process1 and logger are released")
        except BaseException:
            err.seek(0)
            console.print("[red]distq node output:[/]")
            console.print(err.read().decode(errors="replace")[-4000:], markup=False)
            raise
        finally:
            if node.poll() is None:
                os.kill(node.pid, signal.SIGKILL)
                node.wait(timeout=10)
            app.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["consume"] and len(sys.argv) == 3:
        consume(sys.argv[2])
    else:
        main()
