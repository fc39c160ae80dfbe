"""`matcher partners add`: a partner system's own Kafka principal, topics and registry entry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from matcher.kafka_access import KafkaAccessError, write_secret
from matcher.kafka_principals import ProvisioningError
from matcher.partner_access import add_partner
from matcher.services.partner_door import issue_key
from matcher.settings import Settings, get_settings
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import unit_of_work
from schemas.common import Reach
from schemas.registry import PartnerKind

partners_app = typer.Typer(name="partners", no_args_is_help=True,
                           help="Give partner systems their own credentials on the broker.")
console = Console()


@partners_app.command("add")
def add(partner_id: str,
        node: str = typer.Option(..., "--node", help="Node of the hierarchy the partner is "
                                 "attached to (see GET /api/nodes)."),
        credentials_file: Path = typer.Option(..., "--credentials-file",
                                              help="Where to write the partner's client "
                                              "config (mode 0600); hand it over securely."),
        name: str = typer.Option("", help="Organisation name (default: the partner id)."),
        kind: PartnerKind = typer.Option(PartnerKind.CHARITY, help="Kind of organisation."),
        http_key_file: Path | None = typer.Option(
            None, "--http-key-file", help="Also issue an API key for the partner door over "
            "HTTP (/api/partner, the partner page) and write it here (mode 0600)."),
        reach: str | None = typer.Option(
            None, "--reach", help="How the partner's goods and services reach people when an "
            "offer does not say: 'delivery:15' (brought within 15 km), 'pickup:3' (people come "
            "from within 3 km) or 'district' (anyone in the district)."),
        ) -> None:
    """Register a partner and create its principal, topics and ACLs (run as the admin)."""
    settings = get_settings()
    default_reach: Reach | None = None
    try:
        default_reach = parse_reach(reach) if reach is not None else None
        given = add_partner(settings, partner_id=partner_id, node_id=node,
                            name=name or partner_id, kind=kind,
                            credentials_file=credentials_file, reach=default_reach)
        if http_key_file is not None:
            write_http_key(settings, partner_id, http_key_file)
    except (ValueError, KafkaAccessError, ProvisioningError, OSError) as refused:
        console.print(f"[red]{refused}[/red]", highlight=False)
        raise typer.Exit(1) from refused
    console.print(f"partner [bold]{given.partner_id}[/] registered at {node}; principal "
                  f"{given.principal}", highlight=False)
    console.print(f"  client config: {given.credentials_file}", highlight=False)
    console.print(f"  publishes offers to {given.offers_topic}, fulfilments to "
                  f"{given.fulfilments_topic}; reads refusals from {given.feedback_topic}",
                  highlight=False)
    if default_reach is not None:
        console.print(f"  offers reach people by {describe_reach(default_reach)} unless they "
                      "say otherwise", highlight=False)
    if http_key_file is not None:
        console.print(f"  HTTP API key: {http_key_file}", highlight=False)


def parse_reach(text: str) -> Reach:
    """A reach from the command line, refused in words when it is not one."""
    try:
        return Reach.parse(text)
    except ValueError as wrong:
        raise ValueError(f"--reach '{text}' is not a reach: use delivery:KM, pickup:KM or "
                         "district") from wrong


def describe_reach(reach: Reach) -> str:
    """A reach in words."""
    return "district-wide" if reach.km is None else f"{reach.mode.value} within {reach.km:g} km"


@partners_app.command("key")
def key(partner_id: str,
        http_key_file: Path = typer.Option(..., "--http-key-file",
                                           help="Where to write the new key (mode 0600).")
        ) -> None:
    """Issue a new API key for the partner door over HTTP; the partner's older keys stop."""
    try:
        write_http_key(get_settings(), partner_id, http_key_file)
    except OSError as refused:
        console.print(f"[red]{refused}[/red]", highlight=False)
        raise typer.Exit(1) from refused
    console.print(f"new HTTP API key of {partner_id} written to {http_key_file}",
                  highlight=False)


def write_http_key(settings: Settings, partner_id: str, path: Path) -> None:
    """Issue a key in the engine's database and write it to `path`, readable by its owner."""
    database = open_engine(settings.database_url)
    migrate(database)
    with unit_of_work(database) as store:
        secret = issue_key(store, partner_id, at=datetime.now(UTC))
    write_secret(path, secret + "\n")
