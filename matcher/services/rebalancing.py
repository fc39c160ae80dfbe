"""Rebalancing runs: one at a time across all engine instances, planned outside any write
transaction, applied in one, reported and announced.

A run: take the district lease -> read a snapshot -> plan every shard (no writes) -> in ONE
write transaction: check the lease and that nothing changed since the snapshot, revoke,
propose (the normal proposal flow: proposals table + outbox), store the run's report and queue
its `rebalance.completed` event -> write the report files -> give the lease back. A run
interrupted anywhere before the commit leaves nothing applied; a lease left behind by a
crashed run expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select, update

from matcher.domain.explain import explanations
from matcher.domain.scoring import weight_vector
from matcher.observability import REBALANCE_LAST_FAILURE, REBALANCE_LAST_SUCCESS
from matcher.services.engine import MatchingEngine
from matcher.services.matching import (
    MatchingConfig,
    record_proposals,
    record_unmatched,
    unplaced_arcs,
)
from matcher.services.outbound import queue
from matcher.services.rebalance_commitments import Revocation
from matcher.services.rebalance_diff import ShardPlan
from matcher.services.rebalance_inputs import RebalanceConfig, Snapshot, read_snapshot
from matcher.services.rebalance_plan import plan_shard
from matcher.services.rebalance_report import build_report, write_report_files
from matcher.settings import Settings
from matcher.storage.coordination import CoordinationStore
from matcher.storage.rebalance_tables import RebalanceStore
from matcher.storage.store import HOLDING, Store, next_revision, unit_of_work
from matcher.storage.tables import audit_log, outbox, proposals
from schemas.matches import MatchRevoked, ProposalStatus
from schemas.matches import Revocation as RevocationPayload
from schemas.rebalance import (
    ChangeKind,
    PlanChange,
    RebalanceCompleted,
    RebalanceSummary,
    RunStatus,
)

log = logging.getLogger("matcher.rebalance")
ENGINE = "charity-matcher"
ATTEMPTS = 3  # plans made outside the write lock; the last one is made under it
MAX_EVENT_CHANGES = 500  # diff lines carried by the event; the stored report holds them all

Progress = Callable[[str], None]


class StalePlan(Exception):
    """The state changed between the snapshot and the apply: plan again."""


class LeaseLost(Exception):
    """Another run took the lease (ours expired): apply nothing."""


@dataclass(frozen=True)
class RunOptions:
    """Who started a run and the knobs it runs with."""

    trigger: str  # nightly | cli | event
    requested_by: str
    config: RebalanceConfig
    lease_s: float = 900.0
    report_dir: Path | None = None
    timezone: str = "Asia/Shanghai"  # the district's clock, for times in the report files
    reason: str = ""
    event_id: str | None = None  # the request event, recorded with the run: applied once


def options_from(settings: Settings, engine: MatchingEngine, *, trigger: str,
                 requested_by: str, reason: str = "", event_id: str | None = None
                 ) -> RunOptions:
    """Run options from the settings, on the engine's matching configuration."""
    assert engine.matching is not None
    matching = MatchingConfig(topics=engine.topics, weights=engine.matching.weights,
                              candidates_per_item=engine.matching.candidates_per_item,
                              time_limit_s=settings.rebalance_time_limit_s,
                              workers=engine.matching.workers, producer=ENGINE,
                              timezone=engine.matching.timezone,
                              service_travel_km=engine.matching.service_travel_km)
    return RunOptions(trigger=trigger, requested_by=requested_by, reason=reason,
                      event_id=event_id,
                      config=RebalanceConfig(matching=matching,
                                             change_penalty=settings.rebalance_change_penalty,
                                             max_moves=settings.rebalance_max_moves),
                      lease_s=settings.rebalance_lease_s,
                      report_dir=settings.rebalance_report_dir, timezone=settings.timezone)


# --- the run ------------------------------------------------------------------------------------


def rebalance(engine: MatchingEngine, options: RunOptions,
              progress: Progress = lambda message: None) -> RebalanceSummary:
    """Re-optimise every shard once; refused (status busy) while another run holds the lease."""
    started = engine.clock()
    run_id = f"rebalance-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    if options.event_id is not None and _seen(engine, options.event_id):
        progress(f"request {options.event_id} was run before; nothing done")
        return _record_busy(engine, run_id, options, started, "request already run", announce=False)
    if not _take_lease(engine, run_id, options.lease_s):
        progress("another rebalancing run holds the lease; nothing done")
        return _record_busy(engine, run_id, options, started,
                            "another rebalancing run holds the lease")
    try:
        summary = _attempts(engine, run_id, options, started, progress)
    except Exception:
        REBALANCE_LAST_FAILURE.set_to_current_time()
        raise
    else:
        REBALANCE_LAST_SUCCESS.set_to_current_time()
        return summary
    finally:
        with unit_of_work(engine.db) as store:
            RebalanceStore(store.conn).release_lease(run_id)


def _attempts(engine: MatchingEngine, run_id: str, options: RunOptions, started: datetime,
              progress: Progress) -> RebalanceSummary:
    """Plan and apply until a plan holds; the last try runs under the write lock."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _attempt(engine, run_id, options, started, progress,
                            locked=attempt == ATTEMPTS)
        except StalePlan as stale:
            progress(f"state changed while planning ({stale}); planning again")
    raise AssertionError("the last attempt runs under the write lock")  # pragma: no cover


def _attempt(engine: MatchingEngine, run_id: str, options: RunOptions, started: datetime,
             progress: Progress, *, locked: bool) -> RebalanceSummary:
    """Snapshot, plan and apply once; StalePlan when the state moved under the plan."""
    if locked:
        # Last try: hold the engine's write lock throughout, so this process cannot move the
        # state under the plan (other instances are still fenced by the checks below).
        with engine.writing() as store:
            mark = _fingerprint(store)
            plans = _plan_all(store, options, engine.clock(), progress)
            return _apply(store, engine, run_id, options, started, plans, mark, progress)
    with unit_of_work(engine.db) as store:
        mark = _fingerprint(store)
        now = engine.clock()
        snapshots = [read_snapshot(store, shard, now, options.config.matching.timezone)
                     for shard in _shards(store)]
    plans = _plan_snapshots(snapshots, options, now, progress)
    with engine.writing() as store:
        return _apply(store, engine, run_id, options, started, plans, mark, progress)


def _plan_all(store: Store, options: RunOptions, now: datetime, progress: Progress
              ) -> list[ShardPlan]:
    """Snapshot and plan every shard through one store."""
    snapshots = [read_snapshot(store, shard, now, options.config.matching.timezone)
                 for shard in _shards(store)]
    return _plan_snapshots(snapshots, options, now, progress)


def _plan_snapshots(snapshots: list[Snapshot], options: RunOptions, now: datetime,
                    progress: Progress) -> list[ShardPlan]:
    """Plan each shard; the move budget is shared, first shard first."""
    budget = options.config.max_moves
    plans: list[ShardPlan] = []
    for snapshot in snapshots:
        began = time.perf_counter()
        progress(f"shard {snapshot.shard}: {len(snapshot.items)} open items, "
                 f"{len(snapshot.offers)} active offers, {len(snapshot.holding)} matches held")
        plan = plan_shard(snapshot, options.config, now, budget)
        if budget is not None:
            budget = max(0, budget - plan.moves)
        plans.append(plan)
        progress(f"shard {snapshot.shard}: planned in {time.perf_counter() - began:.1f} s "
                 f"({plan.solution.method}, {plan.solution.status}): {len(plan.new)} to propose, "
                 f"{plan.moves} moves, {len(plan.revocations) - plan.moves} forced revocations")
    return plans


def _shards(store: Store) -> list[str]:
    """Shards with open demand or pending and approved matches."""
    with_items = {item["shard"] for item in store.open_items()}
    with_matches = set(store.conn.execute(
        select(proposals.c.shard).where(proposals.c.status.in_([s.value for s in HOLDING]))
        .distinct()).scalars())
    return sorted(with_items | with_matches)


def _fingerprint(store: Store) -> tuple[int, int]:
    """Last audit and outbox sequence numbers: any applied event or engine output moves them."""
    last_audit = store.conn.execute(select(func.max(audit_log.c.seq))).scalar_one()
    last_out = store.conn.execute(select(func.max(outbox.c.seq))).scalar_one()
    return int(last_audit or 0), int(last_out or 0)


def _take_lease(engine: MatchingEngine, run_id: str, lease_s: float) -> bool:
    """Take the district lease in its own short transaction."""
    now = engine.clock()
    with unit_of_work(engine.db) as store:
        leases = RebalanceStore(store.conn)
        leases.ensure_lease_row()
        return leases.take_lease(run_id, now=now, until=now + timedelta(seconds=lease_s))


# --- applying, in the caller's one transaction ----------------------------------------------


def _apply(store: Store, engine: MatchingEngine, run_id: str, options: RunOptions,
           started: datetime, plans: list[ShardPlan], mark: tuple[int, int],
           progress: Progress) -> RebalanceSummary:
    """Apply every shard's plan, store the report and queue the event; all or nothing."""
    now = engine.clock()
    if not RebalanceStore(store.conn).hold_lease(
            run_id, now=now, until=now + timedelta(seconds=options.lease_s)):
        raise LeaseLost(f"run {run_id} lost the rebalancing lease before applying")
    for plan in plans:  # sorted by shard: every instance takes the locks in one order
        store.lock_shard(plan.shard)  # no other instance's batch runs on it until we commit
    if _fingerprint(store) != mark:
        raise StalePlan("events were applied or matches made since the snapshot")
    changes: list[PlanChange] = []
    for plan in plans:
        changes.extend(_apply_shard(store, plan, options.config.matching, now))
    summary = _summary(run_id, options, started, engine.clock(), plans, changes)
    report = build_report(summary, plans)
    RebalanceStore(store.conn).save_run(
        run_id=run_id, trigger=options.trigger, requested_by=options.requested_by,
        status=summary.status.value, started_at=started, finished_at=summary.finished_at,
        moves=summary.moved + summary.revoked, objective_before=summary.objective_before,
        objective_after=summary.objective_after, report=report)
    _announce(store, summary, options.config.matching)
    if options.event_id is not None:
        store.record_applied(event_id=options.event_id, event_type="rebalance.requested",
                             topic=options.config.matching.topics.rebalance,
                             producer=options.requested_by, occurred_at=started,
                             applied_at=summary.finished_at,
                             summary=f"rebalancing run {run_id} requested by "
                             f"{options.requested_by}")
    progress(f"applied: {summary.new} new, {summary.moved} moved, {summary.revoked} revoked, "
             f"{summary.released} released, {summary.kept} kept; objective "
             f"{summary.objective_before:.1f} -> {summary.objective_after:.1f}")
    if options.report_dir is not None:
        # Files are a convenience copy: written in the transaction's last step, so a failure
        # here still rolls the run back rather than leaving an unreported plan.
        paths = write_report_files(report, options.report_dir, options.timezone)
        progress("report written: " + ", ".join(str(p) for p in paths))
    return summary


def _apply_shard(store: Store, plan: ShardPlan, config: MatchingConfig, now: datetime
                 ) -> list[PlanChange]:
    """Revoke, propose through the normal flow, refresh unmatched reasons; the diff with ids."""
    for revocation in plan.revocations:
        _revoke(store, revocation, config, now)
    before = _pending_ids(store, plan.shard)
    explained = explanations(plan.cands, plan.new, plan.supply, weight_vector(config.weights),
                             plan.solution.status.value,
                             unplaced_arcs(plan.cands, plan.solution, plan.new))
    record_proposals(store, shard=plan.shard, allocations=plan.new, explained=explained,
                     cands=plan.cands, demand=plan.demand, supply=plan.supply, vocab=plan.vocab,
                     config=config, now=now)
    created = [p for p in store.proposals_where(
        proposals.c.shard == plan.shard,
        proposals.c.status == ProposalStatus.PROPOSED.value) if p.proposal_id not in before]
    record_unmatched(store, plan.items, plan.final, plan.cands, plan.demand, plan.vocab,
                     config, now)
    ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in created:
        ids[p.case_id, p.item_id].append(p.proposal_id)
    return [c.model_copy(update={"new_proposal_ids": sorted(ids[c.case_id, c.item_id])})
            if c.change in (ChangeKind.NEW, ChangeKind.MOVED) else c for c in plan.changes]


def _pending_ids(store: Store, shard: str) -> set[str]:
    """Ids of the shard's pending proposals."""
    return set(store.conn.execute(
        select(proposals.c.proposal_id).where(
            and_(proposals.c.shard == shard,
                 proposals.c.status == ProposalStatus.PROPOSED.value))).scalars())


def _revoke(store: Store, revocation: Revocation, config: MatchingConfig, now: datetime) -> None:
    """Take a proposal back once (conditional on its status) and tell everyone."""
    q = revocation.proposal
    reason = f"rebalancing: {revocation.reason}"
    if q.status == ProposalStatus.PROPOSED:
        claimed = CoordinationStore(store.conn).claim_pending(
            q.proposal_id, ProposalStatus.REVOKED, at=now, by=ENGINE, reason=reason[:500])
    else:
        claimed = store.conn.execute(
            update(proposals).where(and_(proposals.c.proposal_id == q.proposal_id,
                                         proposals.c.status == q.status))
            .values(status=ProposalStatus.REVOKED.value, decided_at=now,
                    decision_reason=reason[:500],
                    revision=next_revision(store.conn))).rowcount == 1
    if not claimed:
        raise StalePlan(f"proposal {q.proposal_id} changed since the snapshot")
    event = MatchRevoked(
        event_id=uuid.uuid4(), occurred_at=now, producer=config.producer,
        payload=RevocationPayload(
            proposal_id=q.proposal_id, case_id=q.case_id, item_id=q.item_id,
            offer_id=q.offer_id, previous_status=ProposalStatus(q.status),
            reason_code=revocation.reason_code, reason=reason),
    )
    queue(store, config.topics, event)


def _summary(run_id: str, options: RunOptions, started: datetime, finished: datetime,
             plans: list[ShardPlan], changes: list[PlanChange]) -> RebalanceSummary:
    """Counts, objectives and the (possibly cut) diff of a completed run."""
    count = {kind: sum(1 for c in changes if c.change == kind) for kind in ChangeKind}
    notes = [f"{p.shard}: {p.note}" for p in plans if p.note]
    return RebalanceSummary(
        run_id=run_id, trigger=options.trigger, requested_by=options.requested_by,
        status=RunStatus.COMPLETED, started_at=started, finished_at=finished,
        shards=[p.shard for p in plans], new=count[ChangeKind.NEW],
        moved=count[ChangeKind.MOVED], revoked=count[ChangeKind.REVOKED],
        released=count[ChangeKind.RELEASED], kept=sum(p.kept_pending for p in plans),
        moves_capped=sum(p.moves_capped for p in plans),
        objective_before=round(sum(p.objective_before for p in plans), 3),
        objective_after=round(sum(p.objective_after for p in plans), 3),
        bound=round(sum(p.bound for p in plans), 3), note="; ".join(notes)[:2000],
        changes=changes[:MAX_EVENT_CHANGES], changes_truncated=len(changes) > MAX_EVENT_CHANGES,
    )


def _announce(store: Store, summary: RebalanceSummary, config: MatchingConfig) -> None:
    """Queue the run's rebalance.completed event on the reports topic."""
    event = RebalanceCompleted(event_id=uuid.uuid4(), occurred_at=summary.finished_at,
                               producer=config.producer, payload=summary)
    queue(store, config.topics, event)


def _seen(engine: MatchingEngine, event_id: str) -> bool:
    """Whether a request event was run before (a redelivered request runs once)."""
    with unit_of_work(engine.db) as store:
        return store.seen(event_id)


def _record_busy(engine: MatchingEngine, run_id: str, options: RunOptions, started: datetime,
                 note: str, *, announce: bool = True) -> RebalanceSummary:
    """A refused run is still reported, so whoever asked hears why nothing happened."""
    summary = RebalanceSummary(
        run_id=run_id, trigger=options.trigger, requested_by=options.requested_by,
        status=RunStatus.BUSY, started_at=started, finished_at=engine.clock(), shards=[],
        new=0, moved=0, revoked=0, released=0, kept=0, moves_capped=0, objective_before=0.0,
        objective_after=0.0, bound=0.0, note=note)
    if announce:
        with engine.writing() as store:
            _announce(store, summary, options.config.matching)
    return summary


# --- the nightly schedule ------------------------------------------------------------------------


def next_run_at(now: datetime, at: str, timezone: str) -> datetime:
    """The next moment (after now) the local clock shows `at` (HH:MM) in `timezone`."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    hour, minute = (int(part) for part in at.split(":"))
    day: date = local.date()
    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    if candidate <= local:
        candidate += timedelta(days=1)  # wall-clock arithmetic: still `at` local time
    return candidate


def previous_run_at(now: datetime, at: str, timezone: str) -> datetime:
    """The latest moment (at or before now) the local clock showed `at` in `timezone`."""
    # next_run_at is strictly after now; a day before it, on the wall clock, is at or before.
    return next_run_at(now, at, timezone) - timedelta(days=1)


def missed_nightly_run(last_completed: datetime | None, now: datetime, at: str,
                       timezone: str) -> bool:
    """Whether the last scheduled night passed without a completed run after it.

    Before any run at all nothing was missed: a fresh install does not rebalance on its
    first start, it waits for its first night.
    """
    if last_completed is None:
        return False
    return last_completed < previous_run_at(now, at, timezone)


def _last_completed(engine: MatchingEngine) -> datetime | None:
    """Start of the most recent completed run, from the stored reports."""
    with unit_of_work(engine.db) as store:
        return RebalanceStore(store.conn).last_completed_at()


async def _run_nightly(engine: MatchingEngine, settings: Settings,
                       on_done: Callable[[], None]) -> None:
    """One scheduled run in a thread; a failure is logged and waits for the next night."""
    options = options_from(settings, engine, trigger="nightly", requested_by="scheduler")
    try:
        summary = await asyncio.to_thread(rebalance, engine, options)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("nightly rebalancing failed; next try tomorrow")
    else:
        log.info("nightly rebalancing done", extra={
            "run_id": summary.run_id, "status": summary.status.value, "new": summary.new,
            "moved": summary.moved, "revoked": summary.revoked})
        on_done()


async def rebalance_nightly(engine: MatchingEngine, settings: Settings,
                            on_done: Callable[[], None] = lambda: None) -> None:
    """Every night at `rebalance_at` local time, rebalance; `on_done` wakes the outbox relay.

    A night missed while the service was down is caught up once at start.
    """
    last = await asyncio.to_thread(_last_completed, engine)
    if missed_nightly_run(last, engine.clock(), settings.rebalance_at,
                          settings.rebalance_timezone):
        log.info("catching up a missed nightly rebalancing", extra={"last_run": str(last)})
        await _run_nightly(engine, settings, on_done)
    while True:
        now = engine.clock()
        due = next_run_at(now, settings.rebalance_at, settings.rebalance_timezone)
        await asyncio.sleep(max(0.0, (due - now).total_seconds()))
        await _run_nightly(engine, settings, on_done)
        await asyncio.sleep(1.0)  # never twice in the same minute
