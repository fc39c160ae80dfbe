"""The `matcher` command: run the engine, the demo, the local broker and the solver."""

from __future__ import annotations

import asyncio
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.console import Console

from matcher.cli_coordinators import coordinators_app
from matcher.cli_example import example_command
from matcher.cli_kafka import kafka_app
from matcher.cli_partners import partners_app
from matcher.cli_rebalance import rebalance_command
from matcher.cli_replay import replay_command, simulate_command
from matcher.cli_solve import solve_command
from matcher.observability import configure_logging
from matcher.settings import PROJECT_ROOT, get_settings

app = typer.Typer(help="Charity matching engine: offers and needs in, proposals out.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(kafka_app)
app.add_typer(coordinators_app)
app.add_typer(partners_app)
app.command("solve", help="Solve a matching problem given as JSON (see README).")(solve_command)
app.command("rebalance", help="Rebalance the whole district now, with progress.")(
    rebalance_command)
app.command("replay", help="Replay a recorded stream on a simulated clock (a shadow run).")(
    replay_command)
app.command("simulate", help="Write a simulated district's days as a stream to replay.")(
    simulate_command)
app.command("example", help="Print a whole, current message (offer, case or decision) with its "
            "topic and Kafka key.")(example_command)
console = Console(stderr=True)
DISTRIBUTION = "charity-matcher"


def installed_version() -> str:
    """The installed package's version ('unknown' when run from an uninstalled checkout)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _print_version(asked: bool) -> None:
    """Print the version and stop, before any command runs."""
    if asked:
        typer.echo(f"matcher {installed_version()}")
        raise typer.Exit()


@app.callback()
def main(version_: bool = typer.Option(False, "--version", callback=_print_version,
                                       is_eager=True, help="Print the version and exit.")
         ) -> None:
    """Charity matching engine: offers and needs in, proposals out."""

ASYNCAPI_FILE = PROJECT_ROOT / "docs" / "asyncapi.json"


@app.command()
def run() -> None:
    """Run the engine service: consume, match, publish; health and metrics over HTTP."""
    from events.app import build_app
    from matcher.runner import BrokerUnreachable, serve_retrying

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    try:
        # Waits for the broker with backoff (a broker starting after us is normal).
        asyncio.run(serve_retrying(lambda: build_app(settings), settings))
    except BrokerUnreachable as gave_up:
        console.print(f"[red]{gave_up}[/red]")
        raise typer.Exit(3) from gave_up


@app.command()
def demo(
    day: str = typer.Option("", help="Day to simulate (YYYY-MM-DD); default tomorrow."),
    seed: int = typer.Option(7, help="Random seed of the simulated district and day."),
    cases: int = typer.Option(600, help="Cases opened during the day."),
) -> None:
    """Start the local broker if needed, run the engine on a fresh SQLite file, feed it a
    simulated day from 200+ partners and print what was proposed."""
    from matcher.demo import run_demo

    settings = get_settings()
    configure_logging("WARNING", json_lines=False)
    when = date.fromisoformat(day) if day else None
    asyncio.run(run_demo(settings, console, day=when, seed=seed, cases=cases))


@app.command()
def asyncapi(out: Path = typer.Option(ASYNCAPI_FILE, help="Where to write the document.")
             ) -> None:
    """Write the AsyncAPI document generated from the code."""
    from events.app import asyncapi_json
    from matcher.settings import Settings

    out.parent.mkdir(parents=True, exist_ok=True)
    # Defaults only, never this machine's environment: the document is the same everywhere.
    out.write_text(asyncapi_json(Settings.model_construct(database_url="sqlite://")))
    console.print(f"AsyncAPI document written to {out}")


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from matcher.storage.database import migrate as upgrade
    from matcher.storage.database import open_engine

    settings = get_settings()
    upgrade(open_engine(settings.database_url))
    console.print("database is up to date")


if __name__ == "__main__":
    app()
