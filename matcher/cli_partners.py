"""`matcher partners add`: a partner system's own Kafka principal, topics and registry entry."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from matcher.kafka_access import KafkaAccessError
from matcher.kafka_principals import ProvisioningError
from matcher.partner_access import add_partner
from matcher.settings import get_settings
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
        ) -> None:
    """Register a partner and create its principal, topics and ACLs (run as the admin)."""
    try:
        given = add_partner(get_settings(), partner_id=partner_id, node_id=node,
                            name=name or partner_id, kind=kind,
                            credentials_file=credentials_file)
    except (ValueError, KafkaAccessError, ProvisioningError, OSError) as refused:
        console.print(f"[red]{refused}[/red]", highlight=False)
        raise typer.Exit(1) from refused
    console.print(f"partner [bold]{given.partner_id}[/] registered at {node}; principal "
                  f"{given.principal}", highlight=False)
    console.print(f"  client config: {given.credentials_file}", highlight=False)
    console.print(f"  publishes offers to {given.offers_topic}, fulfilments to "
                  f"{given.fulfilments_topic}; reads refusals from {given.feedback_topic}",
                  highlight=False)
