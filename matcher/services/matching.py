"""A matching batch: a shard's live demand against its remaining capacity, solved and recorded.

One pipeline, used by continuous matching, the nightly rebalance, the benchmarks and the
baselines:

    inputs = read_live_inputs(store, shard, now)   # only what can still be matched
    plan = plan_batch(inputs, config)              # pure: frames -> candidates -> solve -> place
    report = record_batch(store, plan)             # short write: proposals, reasons, outbox

`plan_batch` touches no database, so a batch solves outside any write transaction; the
recording checks that nothing the plan used has changed meanwhile and keeps only the
allocations that still hold.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from matcher.domain.allocation import (
    Allocation,
    WeekBudget,
    build_problem,
    coverage,
    place_volunteer_visits,
    volunteer_limits,
)
from matcher.domain.candidates import Candidates, generate
from matcher.domain.explain import (
    Explanation,
    FullOffers,
    check_full_offers,
    competing_urgency,
    explanations,
    held_earlier,
    unmatched_reason,
)
from matcher.domain.forecast import Reserve, expected_items, is_expected, still_to_come
from matcher.domain.frames import (
    Demand,
    Supply,
    Vocabulary,
    build_demand,
    build_supply,
    offer_needs,
)
from matcher.domain.kinds import Kind
from matcher.domain.pairs import SECONDS_PER_HOUR
from matcher.domain.reach import DELIVERY, MODE_CODES, SERVICE_TRAVEL_KM, ReachDefaults
from matcher.domain.scoring import ScoringContext, Weights, weight_vector
from matcher.domain.weeks import (
    DEFAULT_ZONE,
    hours_by_week,
    stated_limits,
    week_of,
    week_start,
    weeks_of,
)
from matcher.services.outbound import envelope_json, event_ids, outbox_row
from matcher.settings import Settings
from matcher.solver import Problem, Solution, Status, solve
from matcher.storage.holdings import Holdings, proposal_sums
from matcher.storage.store import LiveRows, NodeRow, OfferRow, Store, hours_given
from schemas.matches import ProposalStatus
from schemas.topics import Topics

CAPACITY_SLACK = 1e-6
# Proposals written per statement: bounds what a district batch holds in memory at once.
RECORD_SLICE = 10_000


@dataclass(frozen=True)
class MatchingConfig:
    """Knobs of a batch."""

    topics: Topics
    weights: Weights = field(default_factory=Weights)
    candidates_per_item: int = 30
    time_limit_s: float = 5.0
    workers: int = 2
    producer: str = "charity-matcher"
    timezone: str = DEFAULT_ZONE  # whose calendar counts a volunteer's weeks
    service_travel_km: float = SERVICE_TRAVEL_KM  # a service's reach when no one says
    reserve: Reserve = field(default_factory=Reserve)  # capacity kept for urgent cases expected

    @classmethod
    def from_settings(cls, settings: Settings, topics: Topics) -> MatchingConfig:
        """The batch knobs the service's settings give (the service, replay and the CLI)."""
        return cls(topics=topics, candidates_per_item=settings.candidates_per_item,
                   time_limit_s=settings.solver_time_limit_s, workers=settings.solver_workers,
                   timezone=settings.timezone, service_travel_km=settings.service_travel_km,
                   reserve=Reserve(share=settings.reserve_share,
                                   min_urgency=settings.reserve_min_urgency,
                                   lookahead_h=settings.reserve_lookahead_h))


@dataclass(frozen=True)
class BatchReport:
    """What a batch did, for logs, metrics and summaries."""

    shard: str
    items: int  # open items looked at: the shard's, or those a change could serve
    supply_units: int
    arcs: int
    proposals: int
    unmatched: int
    status: str
    objective: float
    bound: float
    build_s: float
    solve_s: float
    total_s: float  # reading the live inputs, planning and recording
    conflicts: int = 0  # allocations dropped because their offer or item changed meanwhile
    read_s: float = 0.0  # reading the live inputs (part of total_s)
    # Items left open that another batch may still serve: their best K candidates were all
    # taken but more eligible offers exist, or a visit the solver planned lost its slot at
    # placement, or the solver stopped before proving its plan the best.
    more_to_find: int = 0

    @staticmethod
    def idle(shard: str, read_s: float) -> BatchReport:
        """A batch that found nothing changed that it could serve, after reading."""
        return BatchReport(shard=shard, items=0, supply_units=0, arcs=0, proposals=0,
                           unmatched=0, status=Status.OPTIMAL.value, objective=0.0, bound=0.0,
                           build_s=0.0, solve_s=0.0, total_s=read_s, read_s=read_s)


# --- step 1: live inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class LiveInputs:
    """What a shard's batch is computed from, read in one consistent snapshot."""

    shard: str
    now: datetime
    nodes: dict[str, NodeRow]
    items: list[dict[str, Any]]
    offers: list[OfferRow]
    served: dict[tuple[str, str], float]
    held: dict[tuple[str, int | None], float]
    busy: dict[str, list[tuple[float, float]]]  # promised visits per volunteer id
    history: set[tuple[str, str]]  # (beneficiary, volunteer) pairs that met before
    excluded: set[tuple[str, str, str]]  # (case, item, offer) turned down
    # Hours each volunteer already gives per week (any offer or shard), from this week on.
    given: dict[tuple[str, int], float] = field(default_factory=dict)
    timezone: str = DEFAULT_ZONE
    # Weekly limits stated by the other offers that serve those hours (no longer live, or in
    # another shard), per volunteer: the lowest stated by any, or by `offers`, counts.
    limits: dict[str, float] = field(default_factory=dict)
    # Partners' default reach and the service travel distance (nodes carry their own).
    reach: ReachDefaults = field(default_factory=ReachDefaults)
    # Share of each grid's demand served, when the items are not all the shard's (a batch
    # narrowed to what changed scores as a whole batch would).
    coverage: dict[str, float] | None = None
    # Urgent items expected soon (`matcher.domain.forecast`): never proposed for, they only
    # keep capacity back from less urgent ones.
    expected: list[dict[str, Any]] = field(default_factory=list)


def read_live_inputs(store: Store, shard: str, now: datetime,
                     timezone: str = DEFAULT_ZONE,
                     service_travel_km: float = SERVICE_TRAVEL_KM,
                     cache: LiveRows | None = None,
                     reserve: Reserve | None = None,
                     holdings: Holdings | None = None) -> LiveInputs:
    """Only what can still be matched: items before their deadline, offers still live, and
    visits that still occupy a volunteer's future or count against this week's hours;
    nothing that grows with history. With the shard's `cache` and `holdings` (kept by the
    caller from batch to batch), only the items, offers and proposals written since its
    last batch are read."""
    this_week = week_start(week_of(now, timezone), timezone)
    if cache is not None:
        cache.read_whole_if_due(now)
    offers = store.active_offers(shard, now=now, cache=cache)
    items = store.live_items(shard, now=now, cache=cache)
    sums = proposal_sums(store, shard, now=now, since=this_week) if holdings is None else \
        holdings.read(store, now=now, since=this_week,
                      offer_ids=[o.offer_id for o in offers], items=items)
    # The limits live offers state are read from them when frames are built; only the other
    # offers giving this week's hours are read for theirs.
    elsewhere = {visit.offer_id for visit in sums.given} - {offer.offer_id for offer in offers}
    return LiveInputs(
        shard=shard, now=now, nodes={node.node_id: node for node in store.all_nodes()},
        items=items, offers=offers,
        served=sums.served, held=sums.held, busy=sums.busy, history=sums.history,
        excluded=sums.excluded,
        given=hours_by_week(hours_given(sums.given), timezone), timezone=timezone,
        limits=store.stated_limits_of(elsewhere, cache),
        reach=ReachDefaults(partners=store.partner_reaches(),
                            service_travel_km=service_travel_km),
        expected=[] if reserve is None or not reserve.active else still_to_come(
            expected_items(store.items_opened_between(
                shard, *reserve.seen_between(now), min_urgency=reserve.min_urgency,
                cache=cache), reserve),
            items, now),
    )


# --- steps 2-6: frames, candidates, problem, solution, placement (pure) ----------------------


@dataclass(frozen=True)
class Frames:
    """Demand and supply rows of a batch, with the codes both sides share."""

    vocab: Vocabulary
    demand: Demand
    supply: Supply
    context: ScoringContext
    busy: dict[int, list[tuple[float, float]]]  # promised visits per volunteer code
    weeks: WeekBudget = field(default_factory=WeekBudget)  # hours given per volunteer week


def build_frames(inputs: LiveInputs) -> Frames:
    """Column-wise demand and supply; promised visits leave the volunteers' windows first,
    so the solver only plans time the volunteer still has."""
    vocab = Vocabulary()
    demand = build_demand(inputs.items, inputs.served, inputs.nodes, vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload} for o in inputs.offers],
                          inputs.held, inputs.nodes, vocab, busy=inputs.busy,
                          reach=inputs.reach)
    history = frozenset((ben, vocab.code(vocab.volunteers, vol)) for ben, vol in inputs.history)
    context = ScoringContext(history=history, grid_coverage=inputs.coverage
                             if inputs.coverage is not None
                             else coverage(inputs.items, inputs.served))
    busy = {vocab.code(vocab.volunteers, volunteer): visits
            for volunteer, visits in inputs.busy.items()}
    weeks = WeekBudget(committed={(vocab.volunteers[volunteer], week): hours
                                  for (volunteer, week), hours in inputs.given.items()
                                  if volunteer in vocab.volunteers},
                       zone=inputs.timezone,
                       limits={vocab.volunteers[volunteer]: limit for volunteer, limit
                               in _lowest(stated_limits(o.payload for o in inputs.offers),
                                           inputs.limits).items()
                               if volunteer in vocab.volunteers})
    return Frames(vocab=vocab, demand=demand, supply=supply, context=context, busy=busy,
                  weeks=weeks)


def _lowest(*tables: Mapping[str, float]) -> dict[str, float]:
    """Per key, the lowest value any table gives."""
    out: dict[str, float] = {}
    for table in tables:
        for key, value in table.items():
            out[key] = min(value, out.get(key, value))
    return out


def find_candidates(frames: Frames, inputs: LiveInputs, config: MatchingConfig) -> Candidates:
    """Eligible, scored pairs, the best K per item."""
    return generate(frames.demand, frames.supply, now=inputs.now.timestamp(),
                    weights=config.weights, context=frames.context, excluded=inputs.excluded,
                    k=config.candidates_per_item)


def problem_of(frames: Frames, cands: Candidates, config: MatchingConfig) -> Problem:
    """The solver problem over the candidates."""
    return build_problem(frames.demand, frames.supply, cands, time_limit_s=config.time_limit_s,
                         workers=config.workers, weeks=frames.weeks)


def place(frames: Frames, cands: Candidates, solution: Solution) -> list[Allocation]:
    """The solution's amounts as allocations, visits placed in the volunteers' days."""
    if not solution.has_solution:
        return []
    return place_volunteer_visits(cands, solution, frames.demand, frames.supply, frames.busy,
                                  frames.weeks)


def unplaced_arcs(cands: Candidates, solution: Solution, chosen: Sequence[Allocation]
                  ) -> frozenset[int]:
    """Arcs the solver planned that lost their visit to another volunteer at placement."""
    if len(solution.amount) != len(cands) or not chosen:
        return frozenset()
    p = cands.pairs
    used = np.zeros(len(p), dtype=np.bool_)
    used[[c.arc for c in chosen]] = True
    moved_rows = np.unique(p.d[[c.arc for c in chosen if solution.amount[c.arc] == 0]])
    return frozenset(np.flatnonzero((solution.amount > 0) & ~used
                                    & np.isin(p.d, moved_rows)).tolist())


@dataclass(frozen=True)
class BatchPlan:
    """A solved batch, ready to record: allocations with explanations, and the reasons of
    every item left open."""

    inputs: LiveInputs
    frames: Frames
    cands: Candidates
    solution: Solution
    allocations: list[Allocation]
    explanations: list[Explanation]
    config: MatchingConfig
    started: float
    full: FullOffers | None = None  # the rules on full offers, for items left without any
    # Items whose eligible capacity is kept for urgent cases expected soon.
    kept: frozenset[tuple[str, str]] = frozenset()


def check_taken_offers(frames: Frames, inputs: LiveInputs, cands: Candidates,
                       allocations: Sequence[Allocation], config: MatchingConfig) -> FullOffers:
    """The rules on offers whose capacity is all held, and on volunteers' offers as if no
    visit were promised yet, for items the batch leaves open without a single candidate:
    were any eligible, their capacity (or the volunteer's time) was taken."""
    demand, p = frames.demand, cands.pairs
    served = np.bincount(p.d[[a.arc for a in allocations]], minlength=len(demand))
    no_candidate = np.bincount(p.d, minlength=len(demand)) == 0
    rows = no_candidate & (served == 0) & (demand.end > inputs.now.timestamp())
    if not rows.any():
        return FullOffers.none(demand)
    # Only offers something is held on can be full or booked, and only those giving what
    # these items need matter: the others are not framed again.
    holding = {offer_id for offer_id, _ in inputs.held}
    names = {code: name for name, code in frames.vocab.needs.items()}
    wanted = {names[code] for code in np.unique(demand.need[rows]).tolist()}
    giving: list[dict[str, Any]] = [{"offer_id": o.offer_id, "payload": o.payload}
                                    for o in inputs.offers
                                    if not wanted.isdisjoint(offer_needs(o.payload))]
    offers = [o for o in giving if o["offer_id"] in holding]
    # A volunteer with hours left whose free time is all promised to other visits fails the
    # time rule in the batch; with the promised visits left in, the rules say whether the
    # item could have had them.
    booked = [o for o in giving if o["payload"].get("volunteer_id") in inputs.busy]
    checks = [build_supply(offers, inputs.held, inputs.nodes, frames.vocab,
                           reach=inputs.reach, full=True),
              build_supply(booked, inputs.held, inputs.nodes, frames.vocab,
                           reach=inputs.reach)]
    found = [check_full_offers(demand, supply, now=inputs.now.timestamp(),
                               weights=config.weights, context=frames.context,
                               excluded=inputs.excluded, rows=rows) for supply in checks]
    return FullOffers(eligible=found[0].eligible + found[1].eligible,
                      joined=found[0].joined, failed=found[0].failed)


def plan_batch(inputs: LiveInputs, config: MatchingConfig,
               solver: Any = solve) -> BatchPlan:
    """Frames -> candidates -> problem -> solution -> placement -> explanations, after
    setting aside what urgent cases expected soon would win; no I/O."""
    started = time.perf_counter()
    kept, kept_from = set_aside_for_expected(inputs, config, solver)
    frames = build_frames(kept)
    cands = find_candidates(frames, kept, config)
    solution = solver(problem_of(frames, cands, config))
    allocations = place(frames, cands, solution)
    explained = explanations(cands, allocations, frames.supply, weight_vector(config.weights),
                             solution.status.value, unplaced_arcs(cands, solution, allocations))
    full = check_taken_offers(frames, kept, cands, allocations, config)
    return BatchPlan(inputs=inputs, frames=frames, cands=cands, solution=solution,
                     allocations=allocations, explanations=explained, config=config,
                     started=started, full=full, kept=kept_from)


def set_aside_for_expected(inputs: LiveInputs, config: MatchingConfig, solver: Any = solve
                           ) -> tuple[LiveInputs, frozenset[tuple[str, str]]]:
    """The inputs with the capacity that urgent items expected soon would win held back, as
    if promised, and the real items that had an eligible share of it: the real and expected
    items are planned together, each expected item's value weighted by
    `config.reserve.share`, and what the expected ones get is set aside."""
    if not inputs.expected or not config.reserve.active:
        return inputs, frozenset()
    trial = dataclasses.replace(inputs, items=[*inputs.items, *inputs.expected])
    frames = build_frames(trial)
    cands = find_candidates(frames, trial, config)
    p = cands.pairs
    expected = np.fromiter((is_expected(case) for case in frames.demand.case_id),
                           dtype=np.bool_, count=len(frames.demand))
    if not expected[p.d].any():
        return inputs, frozenset()
    cands = dataclasses.replace(cands, score=np.where(expected[p.d],
                                                      cands.score * config.reserve.share,
                                                      cands.score))
    solution = solver(problem_of(frames, cands, config))
    held = dict(inputs.held)
    busy = {volunteer: list(visits) for volunteer, visits in inputs.busy.items()}
    visits: list[tuple[str, float, float]] = []
    volunteers = {code: name for name, code in frames.vocab.volunteers.items()}
    supply = frames.supply
    taken = np.zeros(len(supply), dtype=np.bool_)
    for a in place(frames, cands, solution):
        if not expected[p.d[a.arc]]:
            continue
        s = int(p.s[a.arc])
        taken[s] = True
        slot = int(supply.slot[s])
        unit = (supply.offer_id[s], slot if slot >= 0 else None)
        held[unit] = held.get(unit, 0.0) + a.amount
        volunteer = int(supply.volunteer[s])
        if volunteer >= 0 and a.start is not None and a.end is not None:
            busy.setdefault(volunteers[volunteer], []).append((a.start, a.end))
            visits.append((volunteers[volunteer], a.start, (a.end - a.start) / SECONDS_PER_HOUR))
    given = dict(inputs.given)
    for key, hours in hours_by_week(visits, inputs.timezone).items():
        given[key] = given.get(key, 0.0) + hours
    demand = frames.demand
    kept_from = frozenset((demand.case_id[d], demand.item_id[d])
                          for d in np.unique(p.d[taken[p.s] & ~expected[p.d]]).tolist())
    return (dataclasses.replace(inputs, held=held, busy=busy, given=given, expected=[]),
            kept_from)


# --- step 7: recording ------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    """A UTC moment as the wire writes it (pydantic's form: ...Z)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def still_valid(store: Store, plan: BatchPlan) -> np.ndarray:
    """Which allocations still hold now: their offer and case unchanged, no one else took the
    capacity or served the item since the snapshot, the item never served beyond its
    quantity, and no volunteer beyond their weekly limit or in two places at once."""
    allocations = plan.allocations
    p, demand, supply = plan.cands.pairs, plan.frames.demand, plan.frames.supply
    ok = np.ones(len(allocations), dtype=np.bool_)
    if not allocations:
        return ok
    offer_ids = sorted({supply.offer_id[int(p.s[a.arc])] for a in allocations})
    case_ids = sorted({demand.case_id[int(p.d[a.arc])] for a in allocations})
    seen_offers = {o.offer_id: o.version for o in plan.inputs.offers}
    seen_cases = {i["case_id"]: i["case_version"] for i in plan.inputs.items}
    quantity = {(i["case_id"], i["item_id"]): float(i["quantity"]) for i in plan.inputs.items}
    offers_now = store.offer_versions(offer_ids)
    cases_now = store.open_case_versions(case_ids)
    held_now = store.held_for_offers(offer_ids)
    served_now = store.served_for_cases(case_ids)
    weekly = _WeeklyCheck.of(store, plan)
    planned: dict[tuple[str, str], float] = {}  # what the allocations kept so far serve
    for index, a in enumerate(allocations):
        d, s = int(p.d[a.arc]), int(p.s[a.arc])
        offer_id, case_id = supply.offer_id[s], demand.case_id[d]
        slot = int(supply.slot[s])
        unit = (offer_id, slot if slot >= 0 else None)
        item = (case_id, demand.item_id[d])
        ok[index] = (
            offers_now.get(offer_id) == seen_offers.get(offer_id)
            and cases_now.get(case_id) == seen_cases.get(case_id)
            and held_now.get(unit, 0.0) <= plan.inputs.held.get(unit, 0.0) + CAPACITY_SLACK
            and served_now.get(item, 0.0) <= plan.inputs.served.get(item, 0.0) + CAPACITY_SLACK
            and served_now.get(item, 0.0) + planned.get(item, 0.0) + a.amount
            <= quantity.get(item, 0.0) + CAPACITY_SLACK
            and weekly.admits(a, s)
        )
        if ok[index]:
            planned[item] = planned.get(item, 0.0) + a.amount
    return ok


@dataclass
class _WeeklyCheck:
    """Hours given per (volunteer, week) and visits promised, as they stand at recording."""

    plan: BatchPlan
    names: dict[int, str]
    limits: dict[int, float]
    given: dict[tuple[str, int], float]
    visits: dict[str, list[tuple[float, float]]]

    @staticmethod
    def of(store: Store, plan: BatchPlan) -> _WeeklyCheck:
        """Read the plan's volunteers' hours and visits now."""
        p, supply = plan.cands.pairs, plan.frames.supply
        names = {code: name for name, code in plan.frames.vocab.volunteers.items()}
        codes = sorted({int(supply.volunteer[int(p.s[a.arc])]) for a in plan.allocations
                        if supply.kind[int(p.s[a.arc])] == Kind.VOLUNTEER})
        ids = [names[c] for c in codes]
        zone = plan.inputs.timezone
        since = week_start(week_of(plan.inputs.now, zone), zone)
        given = hours_by_week(hours_given(store.given_visits(since=since, volunteer_ids=ids)),
                              zone) if ids else {}
        visits = store.promised_visits(now=plan.inputs.now, volunteer_ids=ids) if ids else {}
        return _WeeklyCheck(plan, names, volunteer_limits(supply, plan.frames.weeks.limits),
                            given, visits)

    def admits(self, a: Allocation, s: int) -> bool:
        """Whether a visit keeps its volunteer within the week's limit and out of every other
        visit; an admitted one counts for the next."""
        supply = self.plan.frames.supply
        if supply.kind[s] != Kind.VOLUNTEER or a.start is None or a.end is None:
            return True
        code = int(supply.volunteer[s])
        name = self.names[code]
        week = int(weeks_of(np.asarray([a.start]), self.plan.inputs.timezone)[0])
        hours = self.given.get((name, week), 0.0)
        if hours + a.amount > self.limits[code] + CAPACITY_SLACK:
            return False
        visits = self.visits.setdefault(name, [])
        if any(start < a.end and a.start < end for start, end in visits):
            return False
        self.given[name, week] = hours + a.amount
        visits.append((a.start, a.end))
        return True


def _place_of(supply: Supply, s: int, kind: Kind) -> dict[str, float] | None:
    """Where goods are handed over or a service is given (none for home visits, and for
    deliveries: those are brought to the beneficiary)."""
    lat, lon = float(supply.lat[s]), float(supply.lon[s])
    delivered = int(supply.reach_mode[s]) == MODE_CODES[DELIVERY]
    if kind is Kind.VOLUNTEER or delivered or not (np.isfinite(lat) and np.isfinite(lon)):
        return None
    return {"lat": round(lat, 6), "lon": round(lon, 6)}


def record_proposals(store: Store, *, shard: str, allocations: Sequence[Allocation],
                     explained: Sequence[Explanation], cands: Candidates, demand: Demand,
                     supply: Supply, vocab: Vocabulary, config: MatchingConfig,
                     now: datetime) -> int:
    """Store each allocation as a proposal and queue its event, in bulk and in slices, so a
    district batch never holds all its rows and events at once."""
    for first in range(0, len(allocations), RECORD_SLICE):
        rows, events = proposal_rows(
            shard=shard, allocations=allocations[first:first + RECORD_SLICE],
            explained=explained[first:first + RECORD_SLICE], cands=cands, demand=demand,
            supply=supply, vocab=vocab, config=config, now=now)
        store.add_proposals(rows)
        store.add_outbox_many(events)
    return len(allocations)


def proposal_rows(*, shard: str, allocations: Sequence[Allocation],
                  explained: Sequence[Explanation], cands: Candidates, demand: Demand,
                  supply: Supply, vocab: Vocabulary, config: MatchingConfig, now: datetime
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The proposal rows of these allocations and their `match.proposed` outbox rows."""
    if not allocations:
        return [], []
    p = cands.pairs
    arcs = np.asarray([a.arc for a in allocations], dtype=np.int64)
    rows_d, rows_s = p.d[arcs].tolist(), p.s[arcs].tolist()
    scores = cands.score[arcs].tolist()
    unit_names = {code: name for name, code in vocab.units.items()}
    volunteer_ids = {code: name for name, code in vocab.volunteers.items()}
    kinds = {int(kind): kind for kind in Kind}
    wires = {kind: kind.wire for kind in Kind}
    moments: dict[float, tuple[datetime, str]] = {}

    def moment(at: float) -> tuple[datetime, str]:
        """A visit's moment, and its wire form (a batch's visits share a few hundred)."""
        if at not in moments:
            value = datetime.fromtimestamp(at, UTC)
            moments[at] = value, _iso(value)
        return moments[at]

    supply_kind, slots = supply.kind.tolist(), supply.slot.tolist()
    volunteers, demand_unit = supply.volunteer.tolist(), demand.unit.tolist()
    occurred = _iso(now)
    proposal_ids = [f"prop-{h}" for h in random_hex(len(allocations), 8)]
    ids = event_ids(len(allocations))
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for a, explanation, d, s, score, proposal_id, event_id in zip(
            allocations, explained, rows_d, rows_s, scores, proposal_ids, ids, strict=True):
        kind = kinds[supply_kind[s]]
        start: datetime | None = None
        end: datetime | None = None
        window = None
        if a.start is not None and a.end is not None and a.end > a.start:
            (start, start_text), (end, end_text) = moment(a.start), moment(a.end)
            window = {"start": start_text, "end": end_text}
        proposal = {
            "proposal_id": proposal_id, "case_id": demand.case_id[d],
            "item_id": demand.item_id[d], "grid_id": demand.grid_id[d],
            "offer_id": supply.offer_id[s], "partner_id": supply.partner_id[s],
            "kind": wires[kind], "amount": round(a.amount, 4),
            "unit": unit_names.get(demand_unit[d], "") or "units", "window": window,
            "place": _place_of(supply, s, kind),
            "score": round(score, 3), "explanation": explanation,
        }
        row = {
            **proposal,
            "slot": slots[s] if slots[s] >= 0 else None,
            "window_start": start, "window_end": end, "status": ProposalStatus.PROPOSED.value,
            "shard": shard, "created_at": now, "beneficiary": demand.beneficiary[d],
            "volunteer_id": (volunteer_ids.get(volunteers[s])
                             if kind is Kind.VOLUNTEER else None),
        }
        del row["window"], row["place"]  # the row keeps the window as its two moments
        rows.append(row)
        events.append(outbox_row(
            config.topics, event_type="match.proposed", event_id=event_id, payload=proposal,
            at=now, value=envelope_json(event_id=event_id, event_type="match.proposed",
                                        occurred_at=occurred, producer=config.producer,
                                        payload=proposal)))
    return rows, events


def random_hex(count: int, size: int) -> list[str]:
    """`count` random strings of `size` bytes in hex, drawn at once."""
    text = os.urandom(count * size).hex()
    return [text[i:i + 2 * size] for i in range(0, len(text), 2 * size)]


def record_unmatched(store: Store, items: Sequence[Mapping[str, Any]],
                     allocations: Sequence[Allocation], cands: Candidates, demand: Demand,
                     vocab: Vocabulary, config: MatchingConfig, now: datetime,
                     full: FullOffers | None = None,
                     kept: frozenset[tuple[str, str]] = frozenset()) -> int:
    """Give every item left open a reason; send an event only when the reason changed.

    `full`: the rules on offers with no capacity left (see `check_taken_offers`); `kept`:
    items whose eligible capacity was kept for urgent cases expected soon.
    """
    p = cands.pairs
    competing = competing_urgency(cands, allocations).tolist()
    earlier = held_earlier(cands).tolist()
    assigned = assigned_per_row(cands, allocations)
    has_arcs = np.bincount(p.d, minlength=len(demand)) > 0
    open_after = demand.open_qty - assigned
    need_names = {code: name for name, code in vocab.needs.items()}
    previous = {(i["case_id"], i["item_id"]): (i["unmatched_code"], i["unmatched_reason"])
                for i in items}
    changes: list[tuple[str, str, str | None, str | None, str | None]] = []
    payloads: list[dict[str, Any]] = []
    occurred = _iso(now)
    left_open = 0
    for row, (still_open, case_id, item_id) in enumerate(zip(
            (open_after > 1e-6).tolist(), demand.case_id, demand.item_id, strict=True)):
        key = (case_id, item_id)
        if not still_open:
            if previous.get(key, (None, None))[0] is not None:
                changes.append((case_id, item_id, None, None, None))
            continue
        left_open += 1
        code, reason, by = unmatched_reason(
            row, demand, cands, bool(has_arcs[row]), float(assigned[row]),
            need_names[int(demand.need[row])], full=full, competing=competing[row],
            earlier=earlier[row], kept=key in kept)
        if previous.get(key) == (code, reason):
            continue
        changes.append((case_id, item_id, code, reason, by.value if by else None))
        payloads.append({"case_id": case_id, "item_id": item_id,
                         "grid_id": demand.grid_id[row],
                         "open_quantity": round(float(open_after[row]), 4),
                         "reason_code": code, "reason": reason,
                         **({"taken_by": by.value} if by else {})})
    store.set_unmatched_many(changes)
    store.add_outbox_many([outbox_row(
        config.topics, event_type="need.unmatched", event_id=event_id, payload=payload,
        at=now, value=envelope_json(event_id=event_id, event_type="need.unmatched",
                                    occurred_at=occurred, producer=config.producer,
                                    payload=payload))
        for event_id, payload in zip(event_ids(len(payloads)), payloads, strict=True)])
    return left_open


def record_batch(store: Store, plan: BatchPlan, *, check: bool = True) -> BatchReport:
    """Record the plan in the caller's (short) write transaction.

    With `check`, allocations whose offer or item changed since the snapshot are dropped
    (reported as conflicts, so the caller matches the shard again); the rest still hold.
    """
    keep = still_valid(store, plan) if check else np.ones(len(plan.allocations), dtype=np.bool_)
    allocations = [a for a, ok in zip(plan.allocations, keep.tolist(), strict=True) if ok]
    explained = [e for e, ok in zip(plan.explanations, keep.tolist(), strict=True) if ok]
    conflicts = len(plan.allocations) - len(allocations)
    now = plan.inputs.now
    proposals = record_proposals(store, shard=plan.inputs.shard, allocations=allocations,
                                 explained=explained, cands=plan.cands,
                                 demand=plan.frames.demand, supply=plan.frames.supply,
                                 vocab=plan.frames.vocab, config=plan.config, now=now)
    unmatched = record_unmatched(store, plan.inputs.items, allocations, plan.cands,
                                 plan.frames.demand, plan.frames.vocab, plan.config, now,
                                 full=plan.full, kept=plan.kept)
    solution = plan.solution
    more = more_to_find(plan, allocations) if proposals and unmatched else 0
    return BatchReport(
        shard=plan.inputs.shard, items=len(plan.frames.demand),
        supply_units=len(plan.frames.supply), arcs=len(plan.cands), proposals=proposals,
        unmatched=unmatched, status=solution.status.value, objective=solution.objective,
        bound=solution.bound, build_s=solution.build_s, solve_s=solution.solve_s,
        total_s=time.perf_counter() - plan.started, conflicts=conflicts, more_to_find=more,
    )


def more_to_find(plan: BatchPlan, allocations: Sequence[Allocation]) -> int:
    """How many items the batch leaves open that the same inputs, less what it proposed,
    could still serve (see `left_to_find`)."""
    return int(left_to_find(plan, allocations).sum())


def left_to_find(plan: BatchPlan, allocations: Sequence[Allocation]) -> np.ndarray:
    """Per demand row, whether the batch leaves it open while the same inputs, less what it
    proposed, could still serve it. With every eligible offer among an item's candidates and
    a plan proven optimal, another batch would find nothing new; the rest is worth one more
    look (all of them when the candidates do not say which were cut)."""
    demand, cands = plan.frames.demand, plan.cands
    still_open = demand.open_qty - assigned_per_row(cands, allocations) > 1e-6
    if plan.solution.status is not Status.OPTIMAL or cands.cut is None:
        return still_open
    worth = cands.cut.copy()
    worth[cands.pairs.d[list(unplaced_arcs(cands, plan.solution, allocations))]] = True
    filled = window_filled_arcs(cands, allocations)
    worth[cands.pairs.d[filled]] = True
    # Items that wanted a volunteer whose window a visit filled may fit in another window of
    # theirs now: the next batch sees the volunteer's diary with that visit in it.
    volunteer = cands.pairs.supply.volunteer
    worth[cands.pairs.d[np.isin(volunteer[cands.pairs.s], volunteer[cands.pairs.s[filled]])]] = True
    return still_open & worth


def items_left_to_find(plan: BatchPlan) -> list[tuple[str, str]]:
    """(case, item) of the rows `left_to_find` by the plan's own allocations."""
    demand = plan.frames.demand
    return [(demand.case_id[row], demand.item_id[row])
            for row in np.flatnonzero(left_to_find(plan, plan.allocations)).tolist()]


def window_filled_arcs(cands: Candidates, allocations: Sequence[Allocation]) -> list[int]:
    """Arcs whose visit took the whole longest window the volunteer and the item share while
    the volunteer had more hours: a batch gives one visit per arc, the next may add another
    in a later window."""
    p = cands.pairs
    window_hours = p.best_window[0] / SECONDS_PER_HOUR
    remaining = p.supply.remaining[p.s]
    volunteer = p.supply.kind[p.s] == Kind.VOLUNTEER
    return [a.arc for a in allocations
            if volunteer[a.arc] and a.amount >= window_hours[a.arc] - 1e-6
            and window_hours[a.arc] < remaining[a.arc] - 1e-6]


def assigned_per_row(cands: Candidates, allocations: Sequence[Allocation]) -> np.ndarray:
    """What the allocations serve per demand row."""
    arcs = np.asarray([a.arc for a in allocations], dtype=np.int64)
    return np.bincount(cands.pairs.d[arcs], weights=[a.amount for a in allocations],
                       minlength=len(cands.pairs.demand))


def run_batch(store: Store, shard: str, config: MatchingConfig, now: datetime) -> BatchReport:
    """The whole batch through one store (tests and tools; the engine splits read, plan and
    record across transactions)."""
    started = time.perf_counter()
    inputs = read_live_inputs(store, shard, now, config.timezone, config.service_travel_km,
                              reserve=config.reserve)
    return with_read_time(record_batch(store, plan_batch(inputs, config), check=False),
                          time.perf_counter() - started)


def with_read_time(report: BatchReport, read_s: float) -> BatchReport:
    """The report with the reading of its inputs counted in (the plan starts after it)."""
    return dataclasses.replace(report, read_s=read_s, total_s=report.total_s + read_s)
