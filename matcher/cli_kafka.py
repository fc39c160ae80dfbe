"""`matcher kafka up|down|status`: the project's own local Kafka broker, no Docker needed."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from matcher.kafka_access import kafka_access
from matcher.kafka_principals import ADMIN, ProvisioningError, apply_grants, district_grants
from matcher.localkafka import LocalKafka, LocalKafkaError
from matcher.settings import get_settings
from schemas.topics import Topics

kafka_app = typer.Typer(name="kafka", help="Run a local single-node Kafka broker (KRaft).",
                        no_args_is_help=True)
console = Console()


def _broker() -> LocalKafka:
    """The local broker of the process settings, with progress visible on the console."""
    _show_progress_logs()
    return LocalKafka(get_settings())


def _show_progress_logs() -> None:
    """Print localkafka's progress when nobody configured logging (e.g. run standalone)."""
    if logging.getLogger().hasHandlers():
        return
    logger = logging.getLogger("matcher.localkafka")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=console, show_path=False))
        logger.setLevel(logging.INFO)


def _fail(error: LocalKafkaError) -> typer.Exit:
    """Print `error` and return the exit to raise."""
    console.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
    return typer.Exit(code=1)


@kafka_app.command()
def up(wait: float = typer.Option(60.0, help="Seconds to wait for the broker to answer.")) -> None:
    """Start the broker (downloading its jars on first use) and wait until it answers."""
    broker = _broker()
    try:
        bootstrap = broker.up(wait_s=wait)
    except LocalKafkaError as error:
        raise _fail(error) from error
    console.print(f"[green]Kafka {broker.version} running[/] at [bold]{bootstrap}[/]")


@kafka_app.command()
def down(timeout: float = typer.Option(20.0, help="Seconds before SIGTERM becomes SIGKILL.")
         ) -> None:
    """Stop the broker; nothing to do when it is not running."""
    broker = _broker()
    try:
        stopped = broker.down(timeout_s=timeout)
    except LocalKafkaError as error:
        raise _fail(error) from error
    console.print("[green]Kafka stopped[/]" if stopped else "Kafka was not running")


@kafka_app.command()
def grant() -> None:
    """Create the district's ACLs (engine, coordinator-app, cases) on the configured broker.

    Run as the admin principal (MATCHER_KAFKA_CLIENT_CONFIG or MATCHER_KAFKA_SASL_*); the local
    broker does this itself on every `up`. Existing ACLs are kept.
    """
    settings = get_settings()
    admin = kafka_access(settings, role=ADMIN)
    if not admin.uses_sasl:
        console.print("[red]no SASL credentials for the admin principal: set "
                      "MATCHER_KAFKA_CLIENT_CONFIG or MATCHER_KAFKA_SASL_USERNAME/_PASSWORD[/]")
        raise typer.Exit(code=1)
    try:
        count = apply_grants(admin, district_grants(Topics(settings.topic_prefix),
                                                    settings.consumer_group))
    except ProvisioningError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(code=1) from error
    console.print(f"[green]{count} ACLs in place[/] for topics {settings.topic_prefix}.* on "
                  f"{admin.bootstrap}", highlight=False)


@kafka_app.command()
def status() -> None:
    """Show whether the broker runs and answers; exit 1 when it does not."""
    state = _broker().status()
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in state.items():
        table.add_row(key, _show(value))
    console.print(table)
    if not (state["running"] and state["answers"]):
        raise typer.Exit(code=1)


def _show(value: object) -> str:
    """A status value for the table, booleans coloured."""
    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[red]no[/]"
    return "-" if value is None else str(value)
