"""One data directory: the default SQLite file and the rebalance reports live under
MATCHER_DATA_DIR, default `.data` in the working directory, never inside the package."""

from __future__ import annotations

from pathlib import Path

import pytest

import matcher
from matcher.settings import Settings


def test_only_the_data_dir_set_puts_the_database_and_reports_under_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MATCHER_DATABASE_URL", raising=False)
    monkeypatch.delenv("MATCHER_REBALANCE_REPORT_DIR", raising=False)
    monkeypatch.setenv("MATCHER_DATA_DIR", str(tmp_path / "matcher"))
    settings = Settings()
    assert settings.data_dir == tmp_path / "matcher"
    assert settings.database_url == f"sqlite:///{tmp_path / 'matcher' / 'matcher.db'}"
    assert settings.rebalance_report_dir == tmp_path / "matcher" / "rebalance"


def test_the_default_data_dir_is_in_the_working_directory_not_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MATCHER_DATA_DIR", "MATCHER_DATABASE_URL", "MATCHER_REBALANCE_REPORT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    package = Path(matcher.__file__).resolve().parent
    assert settings.data_dir == tmp_path.resolve() / ".data"
    assert not settings.rebalance_report_dir.is_relative_to(package)
    assert str(package) not in settings.database_url
    assert settings.database_url.startswith(f"sqlite:///{tmp_path.resolve()}")


def test_an_explicit_database_and_report_dir_win_over_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", database_url="postgresql+psycopg://h/db",
                        rebalance_report_dir=tmp_path / "reports")
    assert settings.database_url == "postgresql+psycopg://h/db"
    assert settings.rebalance_report_dir == tmp_path / "reports"
