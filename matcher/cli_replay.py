"""`matcher replay` and `matcher simulate`: try a configuration on a recorded stream."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matcher.observability import configure_logging
from matcher.replay import ReplayError, ReplayOptions, replay_file, write_stream
from matcher.settings import get_settings
from schemas.envelope import Envelope

console = Console(stderr=True)


def replay_command(
    events: Annotated[Path, typer.Argument(help="The recorded stream (JSON lines).",
                                           exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder for outputs.jsonl and reports.")],
    approve_share: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of proposals the synthetic coordinator approves.")] = 0.8,
    approve_delay_min: Annotated[float, typer.Option(
        min=0.0, help="Minutes after a proposal the coordinator decides.")] = 30.0,
    fulfil: Annotated[bool, typer.Option(
        "--fulfil", help="Partners report approved matches fulfilled at the window's end.")
        ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the coordinator's choices.")] = 7,
) -> None:
    """Replay a recorded stream on a simulated clock, as the service would run it, into a
    throw-away database; print what happened and write every published event."""
    configure_logging("WARNING", json_lines=False)
    options = ReplayOptions(approve_share=approve_share, approve_delay_min=approve_delay_min,
                            fulfil=fulfil, seed=seed)
    try:
        with Progress(TextColumn("Replaying"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("replay", total=None)
            summary = replay_file(events, out, get_settings(), options,
                                  lambda done, total: progress.update(task, completed=done,
                                                                      total=total))
    except ReplayError as refused:
        console.print(f"[red]{refused}[/red]", highlight=False)
        raise typer.Exit(1) from refused
    table = Table(title=f"Replay of {events.name}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (("lines", summary.lines), ("recorded events applied", summary.applied),
                         ("duplicates", summary.duplicates),
                         ("synthetic decisions", summary.decisions),
                         ("synthetic fulfilment reports", summary.fulfilments),
                         ("refused (dead letters)", sum(summary.refused.values())),
                         ("matching batches", summary.batches), ("sweeps", summary.sweeps),
                         ("nightly rebalances", summary.rebalances)):
        table.add_row(label, f"{value:,}")
    for event_type, count in sorted(summary.published.items()):
        table.add_row(f"published {event_type}", f"{count:,}")
    for code, count in summary.refused.most_common():
        table.add_row(f"refused: {code}", f"{count:,}")
    console.print(table)
    span = f"{summary.first:%Y-%m-%d %H:%M} to {summary.last:%Y-%m-%d %H:%M}" \
        if summary.first and summary.last else "nothing"
    console.print(f"Simulated {span} in {summary.seconds:.1f} s; outputs: "
                  f"{out / 'outputs.jsonl'}", highlight=False)


def simulate_command(
    out: Annotated[Path, typer.Argument(help="Where to write the stream (JSON lines).",
                                        dir_okay=False)],
    days: Annotated[int, typer.Option(min=1, max=366, help="Days to simulate.")] = 1,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD); default tomorrow.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the district and the days.")] = 7,
    cases: Annotated[int, typer.Option(min=1, help="Cases opened on a weekday.")] = 600,
    reach_mix: Annotated[bool, typer.Option(
        help="Partners state default reaches (some deliver within 15 km, some take people "
        "from 10 km, a few serve the district); off: the old rule for everyone.")] = True,
) -> None:
    """Write a simulated district's registry and days as a stream `matcher replay` reads."""
    from matcher.simulator import build_district, registry_events, simulate_month
    from matcher.simulator.publish import route
    from schemas.topics import Topics

    first = date.fromisoformat(start) if start else (datetime.now(UTC) + timedelta(days=1)).date()
    district = build_district(seed=seed, reach_mix=reach_mix)
    topics = Topics()
    registered_at = datetime.combine(first - timedelta(days=1), datetime.min.time(), UTC)

    def records() -> Iterator[tuple[datetime, str, str | None, Any]]:
        events: list[Envelope] = [*registry_events(district, registered_at)]
        for day in simulate_month(district, first, days=days, seed=seed, cases=cases):
            events.extend(day)
        for event in events:
            where = route(event, topics)
            yield (event.occurred_at, where.topic.rsplit(".", 1)[-1], where.key,
                   event.model_dump(mode="json"))

    out.parent.mkdir(parents=True, exist_ok=True)
    count = write_stream(out, records())
    console.print(f"{count:,} records of {days} day(s) from {first} written to {out}",
                  highlight=False)
