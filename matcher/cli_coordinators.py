"""`matcher coordinators add|load|seed-demo`: the people who decide on proposals."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import Engine

from matcher.domain.errors import DomainError
from matcher.services.coordinators import add_coordinator, load_coordinators, seed_demo_coordinators
from matcher.services.engine import utc_now
from matcher.settings import get_settings
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import unit_of_work

coordinators_app = typer.Typer(name="coordinators", no_args_is_help=True,
                               help="Add coordinators who approve and reject proposals.")
console = Console()


def _database() -> Engine:
    """The configured database, migrated."""
    engine = open_engine(get_settings().database_url)
    migrate(engine)
    return engine


def _password(password_file: Path | None) -> str:
    """The new password: first line of a file ('-' is stdin), else asked twice, hidden."""
    if password_file is None:
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    text = sys.stdin.read() if str(password_file) == "-" else \
        password_file.read_text(encoding="utf-8")
    return text.splitlines()[0] if text.strip() else ""


@coordinators_app.command("add")
def add(username: str, node_id: str = typer.Option(..., help="Node they coordinate."),
        display_name: str = typer.Option("", help="Name shown in the console."),
        password_file: Path | None = typer.Option(
            None, help="Read the password from the first line of this file ('-': stdin) "
            "instead of asking; never give a password on the command line.")) -> None:
    """Add (or replace) one coordinator at a node of the hierarchy; asks for the password."""
    try:
        password = _password(password_file)
        with unit_of_work(_database()) as store:
            add_coordinator(store, username=username, display_name=display_name or username,
                            node_id=node_id, password=password, clock=utc_now)
    except DomainError as refused:
        console.print(f"[red]{refused.reason}[/red]")
        raise typer.Exit(1) from refused
    except (ValidationError, OSError) as refused:
        console.print(f"[red]{_why(refused)}[/red]")
        raise typer.Exit(1) from refused
    console.print(f"coordinator {username} added at {node_id}")


def _why(error: Exception) -> str:
    """A short reason for a refused account (never echoing the password)."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in error.errors(include_input=False, include_url=False))
    return str(error)


@coordinators_app.command("load")
def load(path: Path) -> None:
    """Add every coordinator of a JSON (or YAML) file: [{username, display_name, node_id,
    password, active}]."""
    with unit_of_work(_database()) as store:
        names = load_coordinators(store, path, clock=utc_now)
    console.print(f"{len(names)} coordinators loaded: {', '.join(names)}")


@coordinators_app.command("seed-demo")
def seed_demo() -> None:
    """One demo coordinator per level down to the busiest grid (known passwords)."""
    for username, password, node_id in seed_demo_coordinators(_database()):
        console.print(f"{username} / {password}  at {node_id}")
