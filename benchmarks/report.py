"""Turn the children's results into the Markdown report: medians, ratios to the original, targets."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .workloads import ENQUEUE_CALLERS, Sizes

ORIGINAL = "original"
LABELS = {ORIGINAL: "original (in memory)", "sqlite": "SQLite", "postgres": "PostgreSQL"}

# One child's output: {"mode": ..., "metrics": {name: value}, "errors": {workload: message}}.
ChildResult = Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table."""

    key: str
    workload: str
    unit: str
    higher_is_better: bool
    # The original library's metric to compare with (usually the same key).
    reference: str | None = None
    # False where the original library has nothing to compare (its column shows "—").
    in_original: bool = True

    @property
    def reference_key(self) -> str:
        return self.reference or self.key


def rows(sizes: Sizes) -> list[Row]:
    """The table's rows, labelled with the sizes actually used."""
    return [
        Row("enqueue_one", f"W1a enqueue one by one ({sizes.enqueue_one:,} tasks)¹", "tasks/s", True),
        Row(
            "enqueue_bulk",
            f"W1a enqueue in bulk ({sizes.enqueue_bulk:,} tasks, one call)¹",
            "tasks/s",
            True,
            reference="enqueue_one",
        ),
        Row(
            "enqueue_threads_1",
            f"W1e enqueue, 1 thread ({sizes.enqueue_concurrent:,} tasks, one per call)⁸",
            "tasks/s",
            True,
            in_original=False,
        ),
        Row(
            f"enqueue_threads_{ENQUEUE_CALLERS}",
            f"W1e enqueue, {ENQUEUE_CALLERS} threads⁸",
            "tasks/s",
            True,
            in_original=False,
        ),
        Row(
            f"aenqueue_coroutines_{ENQUEUE_CALLERS}",
            f"W1e aenqueue, {ENQUEUE_CALLERS} coroutines⁸",
            "tasks/s",
            True,
            in_original=False,
        ),
        Row("drain_100", f"W1b drain {sizes.drain:,}, max_workers=100²", "tasks/s", True),
        Row("drain_10", f"W1b drain {sizes.drain:,}, max_workers=10²", "tasks/s", True),
        Row("drain_100_wall", "W1b drain, max_workers=100, wall³", "tasks/s", True),
        Row("drain_10_wall", "W1b drain, max_workers=10, wall³", "tasks/s", True),
        Row(
            "drain_waited",
            f"W1d drain {sizes.waited:,} awaited by wait_for_tasks, poll 10 ms⁷",
            "tasks/s",
            True,
        ),
        Row(
            "drain_unwatched",
            "W1d the same drain, unwatched⁷",
            "tasks/s",
            True,
            reference="drain_waited",
        ),
        Row("e2e", f"W1c add one by one + run ({sizes.end_to_end:,} tasks)⁴", "tasks/s", True),
        Row("latency_p50_ms", f"W2 enqueue→start p50 ({sizes.latency} tasks)⁵", "ms", False),
        Row("latency_p95_ms", "W2 enqueue→start p95⁵", "ms", False),
        Row("latency_p99_ms", "W2 enqueue→start p99⁵", "ms", False),
        Row(
            "sleepers_s",
            f"W3 {sizes.sleepers:,} x sleep({sizes.sleep_seconds:g} s), max_workers="
            f"{sizes.sleepers_workers} (ideal {sizes.sleepers_ideal:g} s)⁶",
            "s",
            False,
        ),
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A goal from the issue, checked against one metric's median.

    With ``versus``, the metric is divided by another median first: the original library's
    (``versus_original``) or the same configuration's, and ``check`` judges the ratio.
    """

    text: str
    key: str
    check: Callable[[float], bool]
    versus: str | None = None
    versus_original: bool = False


def targets(sizes: Sizes) -> list[Target]:
    """The goals of the current speed issue."""
    return [
        Target("W1b drain, max_workers=100: ≥ 1.0x the original", "drain_100", lambda r: r >= 1.0,
               "drain_100", versus_original=True),
        Target("W1b drain, max_workers=10: ≥ 0.9x the original", "drain_10", lambda r: r >= 0.9,
               "drain_10", versus_original=True),
        Target("W1c add one by one + run: ≥ 0.5x the original (SQLite), ≥ 0.25x (PostgreSQL)", "e2e",
               lambda r: r >= 0.25, "e2e", versus_original=True),
        Target("W1d awaited drain within 10% of the unwatched drain", "drain_waited",
               lambda r: r >= 0.9, "drain_unwatched"),
        Target("W2 enqueue→start p50 ≤ 1 ms, in process", "latency_p50_ms", lambda v: v <= 1.0),
        Target("W1e ≥ 8,000 enqueues/s from 8 threads", "enqueue_threads_8", lambda v: v >= 8_000),
        Target("W1e ≥ 8,000 enqueues/s from 8 coroutines (aenqueue)", "aenqueue_coroutines_8",
               lambda v: v >= 8_000),
    ]  # fmt: skip


def values(results: Sequence[ChildResult], key: str) -> list[float]:
    """The metric from every run that produced it."""
    return [float(r["metrics"][key]) for r in results if key in r.get("metrics", {})]


def median(results: Sequence[ChildResult], key: str) -> float | None:
    found = values(results, key)
    return statistics.median(found) if found else None


def _number(value: float, unit: str) -> str:
    if unit == "tasks/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:.4f}"


def _cell(results: Sequence[ChildResult], row: Row, key: str | None = None) -> str:
    found = values(results, key or row.key)
    if not found:
        return "error" if any(r.get("errors") for r in results) else "—"
    text = _number(statistics.median(found), row.unit)
    if len(found) > 1:
        text += f" <sub>{_number(min(found), row.unit)}-{_number(max(found), row.unit)}</sub>"
    return text


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference == 0:
        return "—"
    ratio = value / reference
    return f"{ratio:.3g}x"


def results_table(results: Mapping[str, Sequence[ChildResult]], sizes: Sizes) -> list[str]:
    backends = [mode for mode in results if mode != ORIGINAL]
    original = results.get(ORIGINAL, [])
    header = ["Workload", "unit", LABELS[ORIGINAL]]
    for mode in backends:
        header += [LABELS.get(mode, mode), f"{LABELS.get(mode, mode)} ÷ original"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows(sizes):
        reference = median(original, row.reference_key) if row.in_original else None
        cells = [row.workload, f"{row.unit} ({'higher' if row.higher_is_better else 'lower'} is better)"]
        cells.append(_cell(original, row, row.reference_key) if row.in_original else "—")
        for mode in backends:
            cells += [_cell(results[mode], row), _ratio(median(results[mode], row.key), reference)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets_table(results: Mapping[str, Sequence[ChildResult]], sizes: Sizes) -> list[str]:
    modes = [mode for mode in results if mode != ORIGINAL] + [ORIGINAL]
    header = ["Target (from the issue)", *(LABELS.get(mode, mode) for mode in modes)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    unit = {row.key: row.unit for row in rows(sizes)}
    for target in targets(sizes):
        cells = [target.text]
        for mode in modes:
            value = median(results[mode], target.key)
            if target.versus is not None and value is not None:
                if target.versus_original and mode == ORIGINAL:
                    cells.append("—")
                    continue
                base = median(results[ORIGINAL if target.versus_original else mode], target.versus)
                value = value / base if base else None
            if value is None:
                cells.append("—")
                continue
            verdict = "**pass**" if _passes(target, mode, value) else "**FAIL**"
            shown = f"{value:.2f}x" if target.versus is not None else _number(value, unit[target.key])
            cells.append(f"{shown} {verdict}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _passes(target: Target, mode: str, value: float) -> bool:
    # W1c's goal is twice as high on SQLite as on PostgreSQL (one local file, no round trip).
    if target.key == "e2e" and mode == "sqlite":
        return value >= 0.5
    return target.check(value)


NOTES = """\
How each figure is measured (each configuration runs in its own process, on a fresh database):

1. **W1a enqueue.** django-atw: the sync `enqueue(noop)` in a plain loop (no event loop and no
   worker running; one INSERT and one commit per task), and one `enqueue_many(noop, calls)` call
   (one multi-row INSERT). The original library cannot add a task without a running worker and
   has no bulk add: its figure is `await worker.add_task(noop)` in a loop on a started worker
   (`max_workers=10`); `add_task` never suspends, so no task runs during the loop (checked).
   Both django-atw rows are compared with that loop.
2. **W1b drain.** django-atw: the tasks are stored with `enqueue_many` before `worker.start()`;
   the rate is tasks ÷ (last `completed_at` - first `started_at`) read from the rows after the
   run (`started_at` is the claim time, `completed_at` the moment the task returned). The
   original library: `add_task` in a loop on a started worker (no task runs before the loop
   ends, see 1), and the rate uses the first task's start and the last task's end noted by the
   task function itself.
3. **Drain, wall.** django-atw: from `worker.start()` until no row is pending or running (every
   outcome committed). The original library: from the first `add_task` to the last task's end.
4. **W1c.** A running worker (`max_workers=10`); `await worker.add_task(noop)` one by one, then
   `wait_for_tasks(ids)`, timed from the first add until all are done.
5. **W2.** An idle worker in the same process (`max_workers=10`); for each task,
   `time.perf_counter()` just before `add_task` and again on the task's first line. The next
   task is added only after the previous one is done; the start is awaited in memory before
   `wait_for_tasks`, so that call's database read is not part of the figure. A few warm-up
   tasks run first and are not counted.
6. **W3.** `max_workers=100`; django-atw adds all tasks with one `add_tasks` call, the original
   library with an `add_task` loop; timed from the add until `wait_for_tasks` returns.
7. **W1d.** `max_workers=100` and `worker_poll_interval=0.01` (what the original library's own
   tests use). django-atw: the tasks are stored with `enqueue_many`, then the worker starts and
   `wait_for_tasks(ids)` awaits them all; timed from `start()` until it returns. The unwatched
   line is the same drain timed until every outcome is committed, with nobody awaiting; the
   original's figure (the waited line's reference) is its `add_task` loop plus `wait_for_tasks`.
8. **W1e concurrent enqueue.** No worker running: 1 thread, then 8 threads, each calling the sync
   `enqueue(noop)` in a loop, then 8 coroutines on one event loop each awaiting `aenqueue(noop)`
   in a loop; one task per call, the total split evenly, timed from a common start (after a few
   warm-up calls per caller) until the last call returned. The original library has no
   equivalent (its tasks live in one worker's memory): "—".

Every workload on django-atw starts from an empty task table, with
`AsyncTaskWorker(max_workers=...)` and otherwise default options (poll interval 1 s, claim
batch 100). Figures are medians over the runs, with the lowest and highest run in small type;
"÷ original" divides the django-atw median by the original library's median, so below 1x is
slower for rates and above 1x is slower for times.

The machine's cores are shared by the benchmark, the PostgreSQL server and whatever else runs
(see the load average above): figures from another machine, or a busier moment, differ.
"""


def raw_table(results: Mapping[str, Sequence[ChildResult]], sizes: Sizes) -> list[str]:
    """Every metric of every run, including those the main table leaves out."""
    columns = [(mode, i) for mode, runs in results.items() for i in range(len(runs))]
    keys = [row.key for row in rows(sizes)]
    for mode, i in columns:
        keys += [key for key in results[mode][i].get("metrics", {}) if key not in keys]
    header = ["metric", *(f"{LABELS.get(mode, mode)} #{i + 1}" for mode, i in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        if all(key not in results[mode][i].get("metrics", {}) for mode, i in columns):
            continue
        cells = [f"`{key}`"]
        for mode, i in columns:
            value = results[mode][i].get("metrics", {}).get(key)
            cells.append("—" if value is None else f"{value:,.3f}" if value < 100 else f"{value:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(
    machine: Mapping[str, str],
    command: str,
    results: Mapping[str, Sequence[ChildResult]],
    sizes: Sizes,
    runs: int,
) -> str:
    """The whole Markdown document."""
    lines = [
        "# Benchmarks",
        "",
        "Produced by `benchmarks/bench.py`; do not edit by hand. django-atw (tasks stored in the",
        "database) against the library it re-implements, async-task-worker (tasks in memory).",
        "",
        "## Machine",
        "",
        *(f"- {name}: {value}" for name, value in machine.items()),
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        f"## Results (median of {runs} run{'s' if runs != 1 else ''})",
        "",
        *results_table(results, sizes),
        "",
        "## Targets",
        "",
        *targets_table(results, sizes),
        "",
        "## Method",
        "",
        NOTES,
        "<details><summary>Every run</summary>",
        "",
        "`drain_*_in_task`: django-atw's drain rate from the first task's first line to the last",
        "task's last line, noted in memory (the original library's `drain_*` is measured this way).",
        "`enqueue_*_cpu_us`, `aenqueue_*_cpu_us`: the enqueuing process's CPU (all its threads, user",
        "and system, from `time.process_time()`) per task over the timed calls of W1a and W1e.",
        "",
        *raw_table(results, sizes),
        "",
        "</details>",
        "",
    ]
    errors = [
        f"- {LABELS.get(mode, mode)}, run {i + 1}, {workload}: `{message}`"
        for mode, runs_of_mode in results.items()
        for i, result in enumerate(runs_of_mode)
        for workload, message in result.get("errors", {}).items()
    ]
    if errors:
        lines += ["## Errors", "", *errors, ""]
    return "\n".join(lines)
