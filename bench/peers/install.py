"""Install the benchmark's peers into the running environment (``.venv-bench``).

    .venv-bench/bin/python bench/peers/install.py

Run by ``make bench-peers``. First distq itself and every pinned line of
``requirements.txt`` in one pip call; if that fails, distq and each library
one by one, so that one library that cannot be installed costs only its own
figures. Lines marked ``# --no-deps`` are installed without dependencies.
What failed is written to ``<venv>/bench-install-status.json`` (library ->
error), which ``run.py`` puts in the report. Exits non-zero only when distq
itself cannot be installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent
ROOT = PEERS.parent.parent
STATUS = Path(sys.prefix) / "bench-install-status.json"
#: distribution -> the library whose figures need it (others: everyone's)
OWNER = {
    "celery": "celery", "kombu": "celery", "rq": "rq", "dramatiq": "dramatiq",
    "huey": "huey", "saq": "saq", "taskiq": "taskiq", "taskiq-redis": "taskiq", "arq": "arq",
}
TIMEOUT_S = 900


def requirements() -> tuple[list[str], list[str]]:
    """(lines installed with dependencies, lines installed without)."""
    normal, no_deps = [], []
    for line in (PEERS / "requirements.txt").read_text().splitlines():
        spec, _, comment = line.partition("#")
        spec = spec.strip()
        if spec:
            (no_deps if "--no-deps" in comment else normal).append(spec)
    return normal, no_deps


def pip(*args: str) -> str | None:
    """Run pip; None on success, else the tail of its output."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    print("+", " ".join(command[2:]), flush=True)
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"pip install {' '.join(args)}: no answer within {TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stdout + done.stderr).splitlines()
             if line.strip() and not line.startswith("WARNING: Location")]
    return f"pip install {' '.join(args)} failed: " + " ".join(" ".join(lines[-8:]).split())


def owner(spec: str) -> str:
    name = spec.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()
    return OWNER.get(name, "all")


def main() -> int:
    normal, no_deps = requirements()
    failed: dict[str, str] = {}
    error = pip("-e", ".", *normal)
    if error:
        print(error, file=sys.stderr)
        distq_error = pip("-e", ".")
        if distq_error:
            print(distq_error, file=sys.stderr)
            STATUS.write_text(json.dumps({"distq": distq_error}, indent=1))
            return 1
        for spec in normal:
            problem = pip(spec)
            if problem:
                failed.setdefault(owner(spec), problem)
    for spec in no_deps:
        problem = pip("--no-deps", spec)
        if problem:
            failed.setdefault(owner(spec), problem)
    STATUS.write_text(json.dumps(failed, indent=1))
    for lib, problem in failed.items():
        print(f"NOT INSTALLED ({lib}): {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
