"""`matcher --version` prints the installed package's version and runs nothing else."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from matcher.cli import app


def test_version_prints_the_installed_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"matcher {version('charity-matcher')}"


def test_commands_still_run_after_the_version_option_was_added() -> None:
    result = CliRunner().invoke(app, ["asyncapi", "--help"])
    assert result.exit_code == 0
    assert "AsyncAPI" in result.output
