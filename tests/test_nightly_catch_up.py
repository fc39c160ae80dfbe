"""A night missed while the service was down is caught up once at start, not skipped."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from matcher.services import rebalancing
from matcher.services.engine import MatchingEngine
from matcher.services.rebalancing import missed_nightly_run, previous_run_at
from matcher.settings import Settings
from matcher.storage.rebalance_tables import RebalanceStore
from matcher.storage.store import unit_of_work
from schemas.rebalance import RunStatus
from schemas.topics import Topics

CQ = ZoneInfo("Asia/Shanghai")


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2030, 6, day, hour, minute, tzinfo=CQ)


def missed(last: datetime | None, now: datetime) -> bool:
    return missed_nightly_run(last, now, "02:00", "Asia/Shanghai")


def test_the_previous_run_time_is_todays_when_it_has_passed_else_yesterdays() -> None:
    assert previous_run_at(local(3, 9), "02:00", "Asia/Shanghai") == local(3, 2)
    assert previous_run_at(local(3, 1), "02:00", "Asia/Shanghai") == local(2, 2)
    assert previous_run_at(local(3, 2), "02:00", "Asia/Shanghai") == local(3, 2)


def test_down_at_two_and_back_at_nine_runs_now() -> None:
    assert missed(last=local(2, 2, 1), now=local(3, 9))


def test_after_last_nights_run_nothing_is_caught_up() -> None:
    assert not missed(last=local(3, 2, 0), now=local(3, 9))


def test_before_two_yesterdays_run_is_enough() -> None:
    assert not missed(last=local(2, 2, 0), now=local(3, 1, 30))


def test_a_manual_run_after_two_counts_as_tonights() -> None:
    assert not missed(last=local(3, 7), now=local(3, 9))


def test_several_missed_nights_are_caught_up_by_one_run_now() -> None:
    assert missed(last=local(1, 2), now=local(5, 9))


def test_a_fresh_install_waits_for_its_first_night() -> None:
    assert not missed(last=None, now=local(3, 9))


def test_times_in_utc_are_compared_on_the_district_clock() -> None:
    # 01:30 UTC is 09:30 in Chongqing: tonight's 02:00 (18:00 UTC yesterday) has passed.
    now = datetime(2030, 6, 3, 1, 30, tzinfo=UTC)
    assert missed(last=datetime(2030, 6, 2, 17, 0, tzinfo=UTC), now=now)
    assert not missed(last=datetime(2030, 6, 2, 18, 5, tzinfo=UTC), now=now)


def test_the_last_completed_run_is_read_from_the_stored_runs(db: Engine) -> None:
    MatchingEngine(db=db, topics=Topics("t"))  # creates the schema
    with unit_of_work(db) as store:
        runs = RebalanceStore(store.conn)
        assert runs.last_completed_at() is None
        for run_id, status, started in (("a", "completed", local(2, 2)),
                                        ("b", "busy", local(3, 2))):
            runs.save_run(run_id=run_id, trigger="nightly", requested_by="scheduler",
                          status=status, started_at=started,
                          finished_at=started + timedelta(minutes=1), moves=0,
                          objective_before=0.0, objective_after=0.0, report={})
        assert runs.last_completed_at() == local(2, 2)


async def test_the_nightly_loop_runs_once_at_start_after_a_missed_night(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    engine = SimpleNamespace(clock=lambda: local(3, 9))
    monkeypatch.setattr(rebalancing, "_last_completed", lambda _: local(2, 2))
    monkeypatch.setattr(rebalancing, "options_from", lambda *a, **k: None)

    def fake_rebalance(*args: Any) -> Any:
        ran.append("run")
        return SimpleNamespace(run_id="r", status=RunStatus.COMPLETED, new=0, moved=0,
                               revoked=0)

    monkeypatch.setattr(rebalancing, "rebalance", fake_rebalance)
    loop = asyncio.create_task(rebalancing.rebalance_nightly(engine, Settings()))  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    assert ran == ["run"], "caught up once, then waits for tonight"
