"""`matcher rebalance`: re-optimise the whole district now, with progress on the console.

Runs against the configured database like the service does (and takes the same lease, so it
never overlaps a nightly run). Proposals and the run's event go to the outbox; the running
service's relay publishes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from matcher.settings import get_settings


def rebalance_command(
    penalty: Annotated[float | None, typer.Option(
        help="Score points a move must gain (default: MATCHER_REBALANCE_CHANGE_PENALTY).")]
    = None,
    max_moves: Annotated[int | None, typer.Option(
        help="Most pending proposals moved per run (default: MATCHER_REBALANCE_MAX_MOVES).")]
    = None,
    no_cap: Annotated[bool, typer.Option("--no-cap", help="Do not cap the moves.")] = False,
    report_dir: Annotated[Path | None, typer.Option(
        help="Where to write the report files (default: MATCHER_REBALANCE_REPORT_DIR).")]
    = None,
    requested_by: Annotated[str, typer.Option(help="Who asks (recorded in the report).")]
    = "cli",
) -> None:
    """Rebalance the district now: re-solve every shard and apply the diff in one transaction."""
    from dataclasses import replace

    from matcher.services.engine import MatchingEngine
    from matcher.services.matching import MatchingConfig
    from matcher.services.rebalancing import options_from, rebalance
    from matcher.storage.database import migrate, open_engine
    from schemas.common import Level
    from schemas.rebalance import RunStatus
    from schemas.topics import Topics

    console = Console(stderr=True)
    settings = get_settings()
    topics = Topics(settings.topic_prefix)
    db = open_engine(settings.database_url)
    migrate(db)
    engine = MatchingEngine(
        db=db, topics=topics, shard_level=Level(settings.shard_level),
        matching=MatchingConfig.from_settings(settings, topics))
    options = options_from(settings, engine, trigger="cli", requested_by=requested_by)
    config = options.config
    if penalty is not None:
        config = replace(config, change_penalty=penalty)
    if no_cap:
        config = replace(config, max_moves=None)
    elif max_moves is not None:
        config = replace(config, max_moves=max_moves)
    options = replace(options, config=config, report_dir=report_dir or options.report_dir)
    with console.status("rebalancing...") as status:
        def show(message: str) -> None:
            """Print a progress line and keep the spinner on the latest step."""
            console.log(message)
            status.update(message)

        summary = rebalance(engine, options, show)
    if summary.status is RunStatus.BUSY:
        console.print("[yellow]another run holds the lease; try again later[/yellow]")
        raise typer.Exit(code=1)
    console.print(f"[green]done[/green] {summary.run_id}: {summary.new} new, {summary.moved} "
                  f"moved, {summary.revoked} revoked, {summary.released} released, "
                  f"{summary.kept} kept; objective {summary.objective_before:.1f} -> "
                  f"{summary.objective_after:.1f}")
