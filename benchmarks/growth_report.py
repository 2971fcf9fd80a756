"""The growth suite's section of the Markdown report, between markers of its own.

``splice`` replaces the section in place (or appends it), so the growth suite never rewrites the
rest of the report; the main suite carries it over (``carry_over``) when it rewrites its part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .growth import HISTORY_KEY, GrowthSizes, backlog_key
from .report import ChildResult, median, values

BEGIN = "<!-- growth suite: produced by benchmarks/bench.py --suite growth; do not edit by hand -->"
END = "<!-- end of growth suite -->"

LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# The goal: the last tenth of the largest drain runs at least this fraction of the first's rate.
TARGET_RATIO = 0.8


def mode(database: str) -> str:
    """The child mode that runs the growth suite on ``database``."""
    return f"growth-{database}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _spread(results: Sequence[ChildResult], key: str) -> str:
    found = values(results, key)
    if len(found) < 2:
        return ""
    return f" <sub>{min(found):,.0f}-{max(found):,.0f}</sub>"


def _row(results: Sequence[ChildResult], prefix: str, label: str, postgres: bool) -> str:
    def get(name: str) -> float | None:
        return median(results, f"{prefix}_{name}")

    ratio = get("last_vs_first")
    cells = [
        label,
        _rate(get("rate")) + _spread(results, f"{prefix}_rate"),
        _rate(get("first")),
        _rate(get("last")),
        "—" if ratio is None else f"{ratio:.2f}",
        f"{_mb(get('total_mb_before'))} → {_mb(get('total_mb_after'))}",
        f"{_mb(get('heap_mb_before'))} → {_mb(get('heap_mb_after'))}",
    ]
    if postgres:
        dead, vacuums, hot = get("dead_after"), get("vacuums"), get("hot_updates")
        cells += [
            "—" if dead is None else f"{dead:,.0f}",
            "—" if vacuums is None else f"{vacuums:g}",
            "—" if hot is None else f"{hot:,.0f}",
        ]
    return "| " + " | ".join(cells) + " |"


def results_table(results: Sequence[ChildResult], sizes: GrowthSizes, postgres: bool) -> list[str]:
    header = [
        "tasks drained",
        "drain rate (tasks/s)",
        "first tenth",
        "last tenth",
        "last ÷ first",
        "table + indexes (MB), before → after",
        "rows alone (MB)",
    ]
    if postgres:
        header += ["dead rows after", "vacuums during", "HOT updates"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for count in sizes.backlogs:
        lines.append(_row(results, backlog_key(count), f"{count:,}", postgres))
    if sizes.history_drain:
        label = f"{sizes.history_drain:,} on top of {sizes.history:,} finished rows"
        lines.append(_row(results, HISTORY_KEY, label, postgres))
    return lines


def targets_table(results: Mapping[str, Sequence[ChildResult]], sizes: GrowthSizes) -> list[str]:
    largest = max(sizes.backlogs)
    key = f"{backlog_key(largest)}_last_vs_first"
    lines = ["| Target | " + " | ".join(LABELS[db] for db in LABELS if mode(db) in results) + " |"]
    lines.append("|---|" + "---|" * sum(1 for db in LABELS if mode(db) in results))
    cells = [f"last tenth of the {largest:,}-task drain ≥ {TARGET_RATIO:.0%} of the first tenth's rate"]
    for db in LABELS:
        if mode(db) not in results:
            continue
        ratio = median(results[mode(db)], key)
        verdict = "" if ratio is None else (" **pass**" if ratio >= TARGET_RATIO else " **FAIL**")
        cells.append("—" if ratio is None else f"{ratio:.2f}{verdict}")
    lines.append("| " + " | ".join(cells) + " |")
    return lines


NOTES = """\
Each drain starts from an emptied task table (`TRUNCATE` on PostgreSQL, `DELETE` on SQLite).
The tasks are stored with `enqueue_many` (20,000 per call) before the worker starts; one
in-process `AsyncTaskWorker(max_workers=100)` with the other defaults drains them, so whatever
the worker does on its own (heartbeats, housekeeping) runs during the drain.

- **drain rate**: tasks ÷ (last `completed_at` - first `started_at`), read from the rows.
- **first tenth**: the first tenth of the completions ÷ the time from the first claim to the
  completion that ends that tenth. **last tenth**: the last tenth ÷ the time from the
  completion that ends the ninth tenth to the last one. Below 1, the drain slowed down as it went.
  In the smallest drains a tenth is one or two claims of 100 tasks: their tenths are noise.
- **table + indexes**: `pg_total_relation_size` (SQLite: the `dbstat` pages of the table and
  its indexes) with the backlog stored, before the worker starts, and after the drain, before
  the table is emptied; **rows alone**: `pg_relation_size` (SQLite: the table's own pages).
- **dead rows after**, **vacuums during**, **HOT updates** (PostgreSQL): `n_dead_tup`, and the
  change of `vacuum_count + autovacuum_count` and of `n_tup_hot_upd` in `pg_stat_user_tables`,
  read once the stopped worker's connections have ended (each flushes its statistics then).
- The last row drains on top of finished rows put in first with one `INSERT ... SELECT` (from
  `generate_series` on PostgreSQL, a recursive CTE on SQLite), then `ANALYZE` on PostgreSQL.

The server's `autovacuum` setting is among the machine facts: with it off, nothing but the
workers vacuums the table.
"""


def render(
    machine: Mapping[str, str],
    command: str,
    results: Mapping[str, Sequence[ChildResult]],
    sizes: GrowthSizes,
    runs: int,
) -> str:
    """The growth suite's whole section, markers included."""
    lines = [
        BEGIN,
        "",
        "## Growth: draining as the task table grows",
        "",
        "Produced by `benchmarks/bench.py --suite growth`: backlogs of growing size drained by one",
        "worker, and a drain on top of a table of finished rows.",
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
    ]
    for db, label in LABELS.items():
        if mode(db) not in results:
            continue
        lines += [
            f"### {label} (median of {runs} run{'s' if runs != 1 else ''})",
            "",
            *results_table(results[mode(db)], sizes, db == "postgres"),
            "",
        ]
    lines += ["### Target", "", *targets_table(results, sizes), "", "### Method", "", NOTES]
    errors = [
        f"- {LABELS.get(name.removeprefix('growth-'), name)}, run {i + 1}, {workload}: `{message}`"
        for name, runs_of_mode in results.items()
        for i, result in enumerate(runs_of_mode)
        for workload, message in result.get("errors", {}).items()
    ]
    if errors:
        lines += ["### Errors", "", *errors, ""]
    return "\n".join([*lines, END, ""])


def _split(text: str) -> tuple[str, str, str | None]:
    """The text before and after the growth section, and the section (markers included)."""
    start = text.find(BEGIN)
    if start < 0:
        return text, "", None
    end = text.find(END, start)
    stop = len(text) if end < 0 else end + len(END)
    return text[:start], text[stop:], text[start:stop].strip() + "\n"


def splice(document: str, section: str) -> str:
    """``document`` with its growth section replaced in place by ``section``, or appended."""
    before, after, found = _split(document)
    if found is None:
        return document.rstrip() + "\n\n" + section
    rest = after.lstrip("\n")
    return before + section + ("\n" + rest if rest.strip() else "")


def carry_over(previous: str, document: str) -> str:
    """``document`` with the growth section ``previous`` had, if any, appended."""
    _, _, section = _split(previous)
    return document if section is None else document.rstrip() + "\n\n" + section
