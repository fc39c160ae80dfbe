"""`matcher solve FILE`: solve a matching problem given as JSON and print the solution as JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from matcher.solver import METHODS, solve
from matcher.solver.jsonio import dump_solution, load_problem


def solve_command(
    file: Annotated[Path, typer.Argument(help="Problem JSON file, or - to read stdin.")],
    method: Annotated[str, typer.Option(help=f"Solver: {', '.join(METHODS)}.")] = "auto",
) -> None:
    """Solve a needs/offers/arcs problem from JSON and print the solution JSON."""
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        problem = load_problem(text)
        solution = solve(problem, method=method)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        # Bad input is the caller's to fix: say what is wrong, exit 2 like a usage error.
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(dump_solution(solution, problem))
