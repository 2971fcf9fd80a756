"""The scale suite's section of the Markdown report: medians, ratios to each peer, the targets.

The section sits between two markers at the end of the report, so the scale suite can replace
it in place and the main suite can carry it over when it rewrites the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .report import ChildResult, Row, _cell, _number, _ratio, median, values
from .scale import PROBE_GAP, ScaleSizes
from .scale_systems import SYSTEMS

BEGIN = "<!-- scale suite: produced by benchmarks/bench.py --suite scale; do not edit by hand -->"
END = "<!-- end of scale suite -->"

ATW = "atw"
LABELS = {name: system.label for name, system in SYSTEMS.items()}
REDIS_BASED = tuple(name for name, system in SYSTEMS.items() if system.redis_based)


def rows(sizes: ScaleSizes) -> list[Row]:
    table = [
        Row(
            f"drain_{n}p",
            f"drain {sizes.drain:,} no-ops, {n} worker process{'es' * (n > 1)}¹",
            "tasks/s",
            True,
        )
        for n in sizes.processes
    ]
    table += [
        Row(f"drain_{n}p_wall", f"drain, {n} worker process{'es' * (n > 1)}, wall²", "tasks/s", True)
        for n in sizes.processes
    ]
    return [
        *table,
        Row("wakeup_p50_ms", f"wake-up across processes p50 ({sizes.latency} probes)³", "ms", False),
        Row("wakeup_p99_ms", "wake-up across processes p99³", "ms", False),
    ]


def mode(name: str) -> str:
    """The child mode that runs system ``name``."""
    return f"scale-{name}"


def _results(results: Mapping[str, Sequence[ChildResult]], name: str) -> Sequence[ChildResult]:
    return results.get(mode(name), [])


def results_table(results: Mapping[str, Sequence[ChildResult]], sizes: ScaleSizes) -> list[str]:
    names = [name for name in LABELS if mode(name) in results]
    peers = [name for name in names if not name.startswith(ATW)]  # not our own SQLite run
    header = ["Workload", "unit", *(LABELS[name] for name in names)]
    header += [f"django-atw ÷ {LABELS[peer]}" for peer in peers] if ATW in names else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(sizes):
        cells = [row.workload, f"{row.unit} ({'higher' if row.higher_is_better else 'lower'} is better)"]
        cells += [_cell(_results(results, name), row) for name in names]
        if ATW in names:
            ours = median(_results(results, ATW), row.key)
            cells += [_ratio(ours, median(_results(results, peer), row.key)) for peer in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict(passed: bool) -> str:
    return "**pass**" if passed else "**FAIL**"


def targets_table(results: Mapping[str, Sequence[ChildResult]], sizes: ScaleSizes) -> list[str]:
    """The issue's targets, against django-atw's medians (2 processes: the largest drain measured)."""
    processes = max(sizes.processes)
    key = f"drain_{processes}p"
    ours = median(_results(results, ATW), key)
    lines = ["| Target | measured | verdict |", "|---|---|---|"]

    rate = "—" if ours is None else f"{_number(ours, 'tasks/s')} tasks/s"
    verdict = "—" if ours is None else _verdict(ours >= 20_000)
    target = f"{processes} django-atw worker processes on PostgreSQL drain ≥ 20,000 tasks/s"
    lines.append(f"| {target} | {rate} | {verdict} |")

    peers = {name: median(_results(results, name), key) for name in REDIS_BASED}
    measured = {name: value for name, value in peers.items() if value is not None}
    if ours is None or not measured:
        lines.append(f"| ≥ 3x the fastest Redis-based peer ({processes} processes) | — | — |")
    else:
        fastest = max(measured, key=lambda name: measured[name])
        ratio = ours / measured[fastest]
        lines.append(
            f"| ≥ 3x the fastest Redis-based peer ({processes} processes) | {ratio:.3g}x "
            f"{LABELS[fastest]} ({_number(measured[fastest], 'tasks/s')} tasks/s) | {_verdict(ratio >= 3)} |"
        )

    for name, database in ((ATW, "PostgreSQL"), (f"{ATW}-sqlite", "SQLite")):
        for key, limit in (("wakeup_p50_ms", 5.0), ("wakeup_p99_ms", 10.0)):
            found = median(_results(results, name), key)
            shown = "—" if found is None else f"{_number(found, 'ms')} ms"
            verdict = "—" if found is None else _verdict(found <= limit)
            quantile = key.split("_")[1]
            lines.append(
                f"| {database}: wake-up across processes {quantile} ≤ {limit:g} ms | {shown} | {verdict} |"
            )
    return lines


def raw_table(results: Mapping[str, Sequence[ChildResult]], sizes: ScaleSizes) -> list[str]:
    columns = [(name, i) for name in LABELS for i in range(len(_results(results, name)))]
    header = ["metric", *(f"{LABELS[name]} #{i + 1}" for name, i in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(sizes):
        if not any(values(_results(results, name), row.key) for name in LABELS):
            continue
        cells = [f"`{row.key}`"]
        for name, i in columns:
            value = _results(results, name)[i].get("metrics", {}).get(row.key)
            cells.append("—" if value is None else _number(float(value), row.unit))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def notes(sizes: ScaleSizes, configurations: Mapping[str, str]) -> str:
    gap = f"{PROBE_GAP[0] * 1000:g}-{PROBE_GAP[1] * 1000:g} ms"
    how = "\n".join(f"- {LABELS[name]}: {text}." for name, text in configurations.items())
    return f"""\
Every system runs its workers as separate processes started the way its users start them, on
this machine, with the benchmark's own PostgreSQL databases and Redis database:

{how}

1. **Drain.** {sizes.drain:,} no-op tasks are stored before any worker starts (django-atw:
   `enqueue_many`; procrastinate: `batch_defer`; Huey and Celery: one call per task), then the
   worker processes start. The rate is tasks ÷ (last task's end - first task's start).
   django-atw: the rows' first `started_at` (claim time) and last `completed_at`.
   procrastinate: its `procrastinate_events` table (first `started`, last `succeeded`).
   Huey and Celery store no result, so their no-op does what is needed to know it finished: one
   pipelined round trip to Redis that counts it and keeps the earliest start (`SETNX`); the
   last one notes its end. Each run checks that exactly {sizes.drain:,} tasks finished.
2. **Drain, wall.** From starting the worker processes (so including their start-up: imports,
   connections) until every outcome is stored, checked every 10 ms by the benchmark process.
3. **Wake-up.** One idle worker process; the benchmark process adds one probe task at a time,
   noting `time.time()` just before the add call (so the add itself counts: an INSERT and
   commit, or a Redis push), and the probe notes `time.time()` on its first line and pushes it
   to a Redis list the benchmark process waits on. After each probe starts, the next is added
   {gap} later (uniformly random). {sizes.warmup} warm-up probes are not counted. A worker that
   finds new tasks only by polling shows up to its poll interval here.

"÷ peer" divides django-atw's median by the peer's: above 1x django-atw is faster for rates and
slower for latencies. The machine's cores are shared by the benchmark process, the worker
processes, PostgreSQL and Redis.
"""


def render(
    machine: Mapping[str, str],
    command: str,
    results: Mapping[str, Sequence[ChildResult]],
    sizes: ScaleSizes,
    runs: int,
    configurations: Mapping[str, str],
) -> str:
    """The scale suite's whole section, markers included."""
    lines = [
        BEGIN,
        "",
        "## Scale-out: worker processes against peer task queues",
        "",
        "Produced by `benchmarks/bench.py --suite scale`: django-atw's `atw_worker` processes on",
        "PostgreSQL (and on SQLite, one machine, woken by the doorbell) against Huey and Celery",
        "(Redis broker) and procrastinate (PostgreSQL).",
        "",
        "### Machine",
        "",
        *(f"- {name}: {value}" for name, value in machine.items()),
        "",
        "### Command",
        "",
        "```",
        command,
        "```",
        "",
        f"### Results (median of {runs} run{'s' if runs != 1 else ''})",
        "",
        *results_table(results, sizes),
        "",
        "### Targets",
        "",
        *targets_table(results, sizes),
        "",
        "### Method",
        "",
        notes(sizes, configurations),
        "<details><summary>Every run</summary>",
        "",
        *raw_table(results, sizes),
        "",
        "</details>",
        "",
    ]
    errors = [
        f"- {LABELS.get(name.removeprefix('scale-'), name)}, run {i + 1}, {workload}: `{message}`"
        for name, runs_of_mode in results.items()
        for i, result in enumerate(runs_of_mode)
        for workload, message in result.get("errors", {}).items()
    ]
    if errors:
        lines += ["### Errors", "", *errors, ""]
    return "\n".join([*lines, END, ""])


def _split(text: str) -> tuple[str, str | None]:
    """The text without the scale section, and the section (markers included) if there is one."""
    start = text.find(BEGIN)
    if start < 0:
        return text, None
    end = text.find(END, start)
    stop = len(text) if end < 0 else end + len(END)
    section = text[start:stop].strip() + "\n"
    return text[:start] + text[stop:], section


def _joined(text: str, section: str) -> str:
    return text.rstrip() + "\n\n" + section


def splice(document: str, section: str) -> str:
    """``document`` with its scale section replaced by ``section``, or ``section`` appended."""
    rest, _ = _split(document)
    return _joined(rest, section)


def carry_over(previous: str, document: str) -> str:
    """``document`` (the main suite's new report) with the scale section ``previous`` had, if any."""
    _, section = _split(previous)
    return document if section is None else _joined(document, section)
