"""Solve the OR-Library GAP instances with the solver core and tabulate against known optima.

Run from the repository root:

    .venv/bin/python benchmarks/gap_bench.py --markdown benchmarks/out/gap.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from matcher.solver import Status, relaxation_bound, solve
from matcher.solver.gap import GAP_FILES, PROVEN_OPTIMAL, default_gap_folder, load_gap

# gapc's largest instance and all of gapd rarely close within minutes: cap them hard.
HARD_FILES = ("gapc", "gapd")


@dataclass(frozen=True)
class Row:
    """One instance's result, in the file's own sense (profit or cost)."""

    instance: str
    size: str
    known: int | None
    proven: bool
    found: float
    bound: float
    lp_bound: float
    status: Status
    seconds: float

    @property
    def gap_percent(self) -> float:
        """|found - bound| / |found| in percent; inf without a plan."""
        if not (math.isfinite(self.found) and math.isfinite(self.bound)):
            return math.inf
        return 100.0 * abs(self.found - self.bound) / max(1.0, abs(self.found))


def run(
    files: list[str], folder: Path, time_limit_s: float, hard_time_limit_s: float, workers: int
) -> list[Row]:
    """Solve every instance of the given files, printing progress to stderr."""
    instances = [gap for file in files for gap in load_gap(file, folder)]
    rows = []
    for number, gap in enumerate(instances, start=1):
        limit = hard_time_limit_s if gap.file in HARD_FILES else time_limit_s
        problem = gap.to_problem(time_limit_s=limit, workers=workers)
        started = time.perf_counter()
        solution = solve(problem)
        seconds = time.perf_counter() - started
        found, bound = gap.score(solution)
        lp = relaxation_bound(problem)
        rows.append(
            Row(
                instance=gap.name,
                size=gap.size,
                known=gap.known_optimum,
                proven=PROVEN_OPTIMAL.get(gap.file, False),
                found=found,
                bound=bound,
                lp_bound=lp if gap.maximise else -lp,
                status=solution.status,
                seconds=seconds,
            )
        )
        print(
            f"[{number}/{len(instances)}] {gap.name:9} {gap.size:7} known {gap.known_optimum} "
            f"found {_num(found)} bound {_num(bound)} {solution.status} in {seconds:.2f}s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def table(rows: list[Row]) -> str:
    """Results as a Markdown table."""
    lines = [
        "| instance | size (m x n) | known optimum | found | bound | gap % | LP bound "
        "| status | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        known = "" if row.known is None else f"{row.known}{'' if row.proven else '*'}"
        lines.append(
            f"| {row.instance} | {row.size} | {known} | {_num(row.found)} | {_num(row.bound)} "
            f"| {_num(row.gap_percent, 2)} | {_num(row.lp_bound, 1)} | {row.status} "
            f"| {row.seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def summary(rows: list[Row]) -> str:
    """One line: how many instances were proven optimal at the known value, and total time."""
    at_known = sum(1 for r in rows if r.status == Status.OPTIMAL and r.found == r.known)
    improved = sum(1 for r in rows if not r.proven and r.known is not None and _beats(r))
    total = sum(r.seconds for r in rows)
    text = (
        f"{at_known} of {len(rows)} instances proven optimal at the known value; "
        f"total solve time {total:.0f} s."
    )
    if improved:
        text += f" {improved} beat the best known value."
    return text


def _beats(row: Row) -> bool:
    """True when a plan is better than the published best known value (minimise files)."""
    return row.known is not None and math.isfinite(row.found) and row.found < row.known


def _num(value: float, digits: int = 0) -> str:
    """A number for the table: blank when unknown, no decimals for whole values."""
    if not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def main() -> None:
    """Parse arguments, run, print the table and optionally write it as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", default=list(GAP_FILES), choices=GAP_FILES)
    parser.add_argument("--folder", type=Path, default=default_gap_folder())
    parser.add_argument(
        "--time-limit",
        type=float,
        default=30.0,
        help="seconds per instance for gap1, gap12, gapa, gapb",
    )
    parser.add_argument(
        "--hard-time-limit", type=float, default=10.0, help="seconds per instance for gapc and gapd"
    )
    parser.add_argument("--workers", type=int, default=2, help="CP-SAT workers")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()

    rows = run(args.files, args.folder, args.time_limit, args.hard_time_limit, args.workers)
    text = table(rows)
    print(text)
    print(summary(rows))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n" + summary(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
