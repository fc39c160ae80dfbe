"""`matcher coordinators add` asks for the password (hidden, twice) or reads it from a file;
it is never an argument, so it never lands in shell history or `ps`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from matcher.cli import app
from matcher.services.coordinators import authenticate
from matcher.settings import get_settings
from matcher.storage.store import unit_of_work
from tests import factories as f
from tests.coordination_world import build_world


@pytest.fixture
def world(sqlite_db: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The CLI pointed at a database that holds the test hierarchy."""
    build_world(sqlite_db)
    monkeypatch.setenv("MATCHER_DATABASE_URL", sqlite_db.url.render_as_string(False))
    get_settings.cache_clear()
    yield sqlite_db
    get_settings.cache_clear()


def can_sign_in(db: Engine, username: str, password: str) -> bool:
    with unit_of_work(db) as store:
        return authenticate(store, username, password) is not None


def test_add_prompts_twice_for_a_hidden_password(world: Engine) -> None:
    result = CliRunner().invoke(app, ["coordinators", "add", "wang-li", "--node-id", f.GRID],
                                input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output
    assert "a long enough secret" not in result.output
    assert can_sign_in(world, "wang-li", "a long enough secret")


def test_a_mistyped_confirmation_is_asked_again(world: Engine) -> None:
    result = CliRunner().invoke(app, ["coordinators", "add", "wang-li", "--node-id", f.GRID],
                                input="first secret one\nsecond secret\n"
                                      "final secret pw\nfinal secret pw\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert can_sign_in(world, "wang-li", "final secret pw")


def test_add_reads_the_password_from_a_file_or_stdin(world: Engine, tmp_path: Path) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text("from a file secret\n")
    runner = CliRunner()
    by_file = runner.invoke(app, ["coordinators", "add", "a-one", "--node-id", f.GRID,
                                  "--password-file", str(secret)])
    by_stdin = runner.invoke(app, ["coordinators", "add", "a-two", "--node-id", f.GRID,
                                   "--password-file", "-"], input="from stdin secret\n")
    assert by_file.exit_code == 0 and by_stdin.exit_code == 0, by_file.output + by_stdin.output
    assert can_sign_in(world, "a-one", "from a file secret")
    assert can_sign_in(world, "a-two", "from stdin secret")


def test_a_password_on_the_command_line_is_not_accepted(world: Engine) -> None:
    result = CliRunner().invoke(app, ["coordinators", "add", "wang-li", "--node-id", f.GRID,
                                      "--password", "on the command line"])
    assert result.exit_code != 0
    assert not can_sign_in(world, "wang-li", "on the command line")


def test_a_short_password_is_refused_without_echoing_it(world: Engine, tmp_path: Path) -> None:
    secret = tmp_path / "pw.txt"
    secret.write_text("short\n")
    result = CliRunner().invoke(app, ["coordinators", "add", "wang-li", "--node-id", f.GRID,
                                      "--password-file", str(secret)])
    assert result.exit_code == 1
    assert "password: String should have at least 8 characters" in result.output
    assert "short\n" not in result.output
