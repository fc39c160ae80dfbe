"""A batch reads only the proposals written since the shard's last batch, and only the
limits of offers whose version it has not seen: what it reads through the shard's holdings
and row cache is exactly what a whole read gives, after every kind of write
(batches, approvals, rejections, fulfilments, expiries, releases, the nightly run) and
across the turn of a week."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import matcher.services.engine as engine_module
from matcher.replay import ReplayOptions, replay_file, write_stream
from matcher.services.engine import MatchingEngine
from matcher.services.matching import LiveInputs, read_live_inputs
from matcher.settings import Settings
from matcher.simulator import build_district, registry_events, simulate_day
from matcher.simulator.publish import route
from matcher.storage.holdings import Holdings
from matcher.storage.store import snapshot, unit_of_work
from matcher.storage.tables import proposals
from schemas.matches import ProposalStatus
from schemas.topics import Topics
from tests import factories as f

SUNDAY, MONDAY = date(2030, 6, 9), date(2030, 6, 10)


def two_days() -> list[tuple[datetime, str, str | None, Any]]:
    """A small district's registry, a Sunday and the Monday after, as records."""
    district = build_district(seed=5, workstations=2, studios_per_ws=2, grids_per_studio=2,
                              partners=24)
    events = [*registry_events(district, datetime(2030, 6, 8, tzinfo=UTC)),
              *(event for day in (SUNDAY, MONDAY) for event in simulate_day(
                  district, day, seed=day.day, cases=50, volunteer_offers=30,
                  goods_offers=12, service_offers=6))]
    topics = Topics()
    return [(event.occurred_at, route(event, topics).topic.rsplit(".", 1)[-1],
             route(event, topics).key, event.model_dump(mode="json")) for event in events]


def comparable(inputs: LiveInputs) -> tuple[Any, ...]:
    """What the proposals give a batch, in an order-free form."""
    return (inputs.held, inputs.served, inputs.excluded,
            {volunteer: sorted(visits) for volunteer, visits in inputs.busy.items()},
            inputs.history, {key: round(hours, 9) for key, hours in inputs.given.items()},
            inputs.limits)


def test_reads_through_the_holdings_equal_whole_reads_at_every_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[datetime, bool]] = []
    whole_reads: list[datetime] = []

    def compared(store: Any, shard: str, now: datetime, *args: Any, **kwargs: Any
                 ) -> LiveInputs:
        cached = read_live_inputs(store, shard, now, *args, **kwargs)
        kwargs.pop("holdings"), kwargs.pop("cache")  # the whole read decodes every row
        whole = read_live_inputs(store, shard, now, *args, **kwargs)
        reads.append((now, comparable(cached) == comparable(whole)))
        return cached

    read_all = Holdings._read_all

    def counted(self: Holdings, store: Any, *, now: datetime, since: datetime) -> None:
        whole_reads.append(now)
        read_all(self, store, now=now, since=since)

    monkeypatch.setattr(engine_module, "read_live_inputs", compared)
    monkeypatch.setattr(Holdings, "_read_all", counted)
    stream = tmp_path / "days.jsonl"
    write_stream(stream, iter(two_days()))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}",
                        solver_time_limit_s=2, rebalance_time_limit_s=5)
    summary = replay_file(stream, tmp_path / "out", settings,
                          ReplayOptions(approve_share=0.6, approve_delay_min=20, fulfil=True,
                                        seed=2))
    assert summary.decisions > 20 and summary.fulfilments > 5 and summary.rebalances >= 1
    assert len(reads) == summary.batches > 100
    assert [now for now, same in reads if not same] == []
    # Most batches read only what changed; the week's turn forced a whole read.
    assert len(whole_reads) < len(reads) / 10
    assert any(now.date() >= MONDAY for now in whole_reads)


def test_a_slot_moved_by_an_offer_update_is_read_again(sqlite_db: Any) -> None:
    """Moving matches to their slot's new place in the list rewrites them: the next batch
    reads them there, not where its last read left them."""
    now = f.DAY
    engine = MatchingEngine(db=sqlite_db, topics=Topics("t"), clock=lambda: now)
    service = f.service_offer("physio", "p1", places=1, start=10, end=11)
    service["payload"]["slots"] += [{"window": {"start": f.at(h), "end": f.at(h + 1)},
                                     "places": 1} for h in (12, 14)]
    for event in [*f.hierarchy(), f.partner("p1"), service, *(f.case(f"c{h}", items=[f.item(
            kind="service", need="physiotherapy", unit="sessions", quantity=1, start=h,
            end=h + 1)]) for h in (10, 12, 14))]:
        engine.ingest(f.parse(event), topic="test")
    holdings = Holdings()

    def held_through_holdings() -> dict[tuple[str, int | None], float]:
        with snapshot(sqlite_db) as store:
            cached = read_live_inputs(store, f.CENTRE, now, holdings=holdings)
            assert comparable(cached) == comparable(read_live_inputs(store, f.CENTRE, now))
            return cached.held

    assert held_through_holdings() == {}
    engine.match_shard(f.CENTRE)
    assert held_through_holdings() == {("physio", 0): 1.0, ("physio", 1): 1.0,
                                       ("physio", 2): 1.0}
    with unit_of_work(sqlite_db) as store:
        for p in store.proposals_where(proposals.c.status == "proposed"):
            store.set_proposal_status(p.proposal_id, ProposalStatus.APPROVED, at=now, by="c")
    payload = dict(service["payload"], version=2, slots=service["payload"]["slots"][1:])
    engine.ingest(f.parse(f.envelope("offer.updated", "p1", payload)), topic="test")
    # The first slot's match is released; the others follow their slots to places 0 and 1.
    assert held_through_holdings() == {("physio", 0): 1.0, ("physio", 1): 1.0}
