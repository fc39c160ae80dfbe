"""The nightly re-solve of one shard: every open need item, pending proposal and bit of capacity.

Flow: snapshot -> approved matches kept (or released when impossible) -> frames over what the
kept matches leave -> candidates (the continuous matcher's rules and scores, plus every pending
proposal's own pair) -> solver problem with a *stability bonus* on keeping pending proposals
-> solution within the move cap -> visits placed in time -> a diff with reasons.

Why a bonus rather than the solver's symmetric `change_penalty`: the solver counts change in
integer units, and units differ per item (a quarter hour, a tenth of a kg), so one scalar per
unit cannot mean "score points per whole item moved". Instead each pending proposal gets its
own arc whose utility carries `penalty / item size` per unit, so dropping it costs exactly
the configured score points (pro rata for a part); new demand is never penalised, so the
rebalance never leaves capacity idle that continuous matching would fill anyway. The pending
plan is still handed to the solver as `previous` (CP-SAT's starting hint). Nothing here
writes: `matcher.services.rebalancing` applies the plan in one transaction.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from matcher.domain.allocation import (
    Allocation,
    WeekBudget,
    build_problem,
    coverage,
    place_volunteer_visits,
)
from matcher.domain.candidates import Candidates, generate
from matcher.domain.commitments import has_begun
from matcher.domain.frames import (
    SOLVER_SCALE,
    Demand,
    Supply,
    Vocabulary,
    build_demand,
    build_supply,
    supply_units,
)
from matcher.domain.pairs import Pairs
from matcher.domain.reach import ReachDefaults
from matcher.domain.rules import RULES
from matcher.domain.scoring import ScoringContext, term_values, weight_vector
from matcher.domain.weeks import (
    DEFAULT_ZONE,
    hours_by_week,
    stated_limits,
    week_of,
    week_start,
)
from matcher.services.matching import MatchingConfig
from matcher.solver import Problem, Solution, Status, solve
from matcher.storage.store import HOLDING, NodeRow, OfferRow, ProposalRow, Store
from matcher.storage.tables import proposals
from schemas.matches import ProposalStatus
from schemas.rebalance import ChangeKind, PlanChange

CAPACITY_SLACK = 1e-6
# Utility per unit a kept pending proposal gets even at penalty 0: ties go to today's plan, so
# an unchanged district never churns between equally good plans (twice the solver's 0.001
# resolution, so rounding cannot erase it).
TIE_BONUS = 0.002
CAP_PROBES = 8  # solves spent finding the move threshold when the nightly cap binds
NEAR_EXPIRY_DAYS = 7.0  # goods expiring within this are "close to expiry" in the report
DAY_S = 86_400.0


@dataclass(frozen=True)
class RebalanceConfig:
    """Knobs of a rebalancing run."""

    matching: MatchingConfig
    change_penalty: float = 10.0  # score points a move must gain (per whole item)
    max_moves: int | None = 200  # pending proposals moved or revoked per run; None: no cap


@dataclass(frozen=True)
class Snapshot:
    """What a shard's plan is computed from, read in one transaction."""

    shard: str
    items: list[dict[str, Any]]
    offers: list[OfferRow]
    nodes: dict[str, NodeRow]
    holding: list[ProposalRow]
    offer_rows: dict[str, OfferRow]  # every offer a holding proposal uses, active or not
    excluded: set[tuple[str, str, str]]
    history: set[tuple[str, str]]
    visits: list[ProposalRow]  # volunteer visits promised anywhere (for placing new ones)
    # Hours each volunteer gives per week (any offer or shard, pending ones included).
    given: dict[tuple[str, int], float] = field(default_factory=dict)
    timezone: str = DEFAULT_ZONE
    limits: dict[str, float] = field(default_factory=dict)  # stated by offers serving them
    partner_reach: dict[str, dict[str, Any]] = field(default_factory=dict)  # partners' defaults


def read_snapshot(store: Store, shard: str, now: datetime | None = None,
                  timezone: str = DEFAULT_ZONE) -> Snapshot:
    """Read everything the shard's plan needs, in the caller's (read) transaction; with
    `now`, also the hours volunteers give from this week on."""
    holding = store.proposals_where(proposals.c.shard == shard,
                                    proposals.c.status.in_([s.value for s in HOLDING]))
    offer_rows: dict[str, OfferRow] = {}
    for offer_id in sorted({p.offer_id for p in holding}):
        row = store.offer(offer_id)
        if row is not None:
            offer_rows[offer_id] = row
    return Snapshot(
        shard=shard, items=store.open_items(shard), offers=store.active_offers(shard),
        nodes={node.node_id: node for node in store.all_nodes()}, holding=holding,
        offer_rows=offer_rows, excluded=store.excluded_pairs(shard),
        history=store.volunteer_history(), visits=store.holding_volunteer_visits(),
        given=({} if now is None else hours_by_week(
            store.given_hours(since=week_start(week_of(now, timezone), timezone)), timezone)),
        timezone=timezone,
        limits=({} if now is None else stated_limits(store.stated_limits_of(store.given_offers(
            since=week_start(week_of(now, timezone), timezone))))),
        partner_reach=store.partner_reaches(),
    )


@dataclass(frozen=True)
class Revocation:
    """A proposal to take back: a pending one (moved or revoked) or a released approved one."""

    proposal: ProposalRow
    reason_code: str
    reason: str
    forced: bool  # impossible now (not counted against the move cap)


@dataclass(frozen=True)
class Figures:
    """District figures of one plan (before or after), for the report."""

    served: dict[tuple[str, str], float]  # (case, item) -> amount served (kept + pending)
    committed: dict[tuple[str, int | None], float]  # (offer, slot) -> amount committed


@dataclass
class ShardPlan:
    """The plan of one shard: what to revoke, what to propose, and the diff in words."""

    shard: str
    now: datetime
    items: list[dict[str, Any]]
    offers: list[OfferRow]
    cands: Candidates
    demand: Demand
    supply: Supply
    vocab: Vocabulary
    solution: Solution
    revocations: list[Revocation]
    new: list[Allocation]  # arcs (pair indices) with amounts to propose
    final: list[Allocation]  # every allocation of the shard after the plan (for unmatched reasons)
    changes: list[PlanChange]
    kept_pending: int
    moves: int
    moves_capped: int
    objective_before: float
    objective_after: float
    adjusted_before: float
    adjusted_after: float
    bound: float
    before: Figures
    after: Figures
    note: str = ""
    new_keys: list[tuple[str, str, str, int | None]] = field(default_factory=list)


# --- approved matches: kept unless impossible ---------------------------------------------------


def _window_inside(start: datetime, end: datetime, windows: Iterable[tuple[str, str]]) -> bool:
    """Whether [start, end) lies inside one of the windows (ISO strings)."""
    return any(datetime.fromisoformat(s) <= start and end <= datetime.fromisoformat(e)
               for s, e in windows)


def started(proposal: ProposalRow, now: datetime) -> bool:
    """Whether a match has begun (see `has_begun`): nothing begun is revoked or re-planned."""
    return has_begun(kind=proposal.kind, status=proposal.status,
                     window_start=proposal.window_start, now=now)


def impossible_reason(proposal: ProposalRow, offer: OfferRow | None, now: datetime
                      ) -> tuple[str, str] | None:
    """Why an approved match that has not begun can no longer happen (offer gone, time gone),
    or None. Goods approved are committed: a lot expiring after the handover is no reason."""
    if started(proposal, now):
        return None
    if offer is None or offer.status != "active":
        return "offer_withdrawn", f"offer {proposal.offer_id} is no longer active"
    payload = offer.payload
    start, end = proposal.window_start, proposal.window_end
    if start is None or end is None:
        return None  # nothing scheduled: the partner reports how it went
    if proposal.kind == "volunteer":
        windows = [(w["start"], w["end"]) for w in payload.get("availability", [])]
        if not _window_inside(start, end, windows):
            return "volunteer_unavailable", (f"the volunteer of offer {proposal.offer_id} is no "
                                             f"longer available {start:%Y-%m-%d %H:%M} UTC")
    if proposal.kind == "service":
        slots = payload.get("slots", [])
        slot = slots[proposal.slot] if proposal.slot is not None and \
            0 <= proposal.slot < len(slots) else None
        if slot is None or not _window_inside(start, end, [(slot["window"]["start"],
                                                           slot["window"]["end"])]):
            return "slot_changed", f"the slot of offer {proposal.offer_id} was moved or removed"
    return None


def _unit_capacities(offers: Iterable[OfferRow]) -> dict[tuple[str, int | None], float]:
    """Capacity per (offer, slot), as the frames count it."""
    out: dict[tuple[str, int | None], float] = {}
    for offer in offers:
        for unit in supply_units({"offer_id": offer.offer_id, "payload": offer.payload}):
            out[offer.offer_id, None if unit["slot"] < 0 else unit["slot"]] = unit["capacity"]
    return out


def split_committed(snapshot: Snapshot, now: datetime
                    ) -> tuple[list[ProposalRow], list[Revocation]]:
    """Matches to keep as they are (pinned): fulfilled ones, approved ones still possible, and
    anything already begun, pending or not; and approved ones to release."""
    kept: list[ProposalRow] = []
    released: list[Revocation] = []
    for p in snapshot.holding:
        if started(p, now):
            kept.append(p)
        elif p.status == ProposalStatus.APPROVED:
            why = impossible_reason(p, snapshot.offer_rows.get(p.offer_id), now)
            if why is None:
                kept.append(p)
            else:
                released.append(Revocation(p, why[0], why[1], forced=True))
    # An offer updated to less capacity than it has approved: the newest approvals not yet
    # begun give way (what has begun cannot be taken back).
    capacity = _unit_capacities(snapshot.offers)
    load: dict[tuple[str, int | None], float] = defaultdict(float)
    for p in kept:
        load[p.offer_id, p.slot] += p.amount
    keep: list[ProposalRow] = []
    for p in sorted(kept, key=lambda p: (p.status != ProposalStatus.APPROVED, p.created_at),
                    reverse=True):
        key = (p.offer_id, p.slot)
        if p.status == ProposalStatus.APPROVED and not started(p, now) and key in capacity \
                and load[key] > capacity[key] + CAPACITY_SLACK:
            load[key] -= p.amount
            released.append(Revocation(p, "capacity_reduced", f"offer {p.offer_id} now gives "
                                       f"{capacity[key]:g}, less than was approved", forced=True))
        else:
            keep.append(p)
    return keep, released


def _sum_by_item(rows: Iterable[ProposalRow]) -> dict[tuple[str, str], float]:
    """Amount per (case, item)."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for p in rows:
        out[p.case_id, p.item_id] += p.amount
    return dict(out)


def _sum_by_offer(rows: Iterable[ProposalRow]) -> dict[tuple[str, int | None], float]:
    """Amount per (offer, slot)."""
    out: dict[tuple[str, int | None], float] = defaultdict(float)
    for p in rows:
        out[p.offer_id, p.slot] += p.amount
    return dict(out)


# --- candidates: the continuous matcher's, plus every pending proposal's own pair ---------------


def _first_failed_rule(pairs: Pairs) -> np.ndarray:
    """Index of the first hard rule each pair fails, -1 where all hold."""
    failed = np.full(len(pairs), -1, dtype=np.int64)
    for index, rule in enumerate(RULES):
        if len(pairs) == 0:
            break
        holds = rule.check(pairs)
        failed[(failed < 0) & ~holds] = index
    return failed


def _with_pairs(cands: Candidates, extra_d: np.ndarray, extra_s: np.ndarray,
                context: ScoringContext, weights: np.ndarray) -> Candidates:
    """Candidates plus extra (eligible) pairs, scored the same way; duplicates dropped."""
    p = cands.pairs
    width = max(len(p.supply), 1)
    known = p.d * width + p.s
    extra_key = extra_d * width + extra_s
    fresh = ~np.isin(extra_key, known)
    _, first = np.unique(extra_key[fresh], return_index=True)
    add_d, add_s = extra_d[fresh][first], extra_s[fresh][first]
    pairs = Pairs(p.demand, p.supply, np.concatenate([p.d, add_d]),
                  np.concatenate([p.s, add_s]), p.now, p.excluded)
    terms = term_values(pairs, context)
    score = terms @ weights if len(pairs) else np.zeros(0)
    return Candidates(pairs=pairs, terms=terms, score=score, joined=cands.joined,
                      failed=cands.failed)


def _pair_index(cands: Candidates) -> dict[tuple[int, int], int]:
    """Arc (pair) index of each (demand row, supply row)."""
    p = cands.pairs
    return {(d, s): a for a, (d, s) in enumerate(zip(p.d.tolist(), p.s.tolist(), strict=True))}


# --- the problem: open arcs per pair, one kept arc per pending proposal -------------------------


@dataclass(frozen=True)
class Stability:
    """Pending proposals as arcs of the problem: where they are and what keeping them is worth."""

    pending: list[ProposalRow]  # the pending proposals still possible, in kept-arc order
    pair: np.ndarray  # pair (open arc) index of each
    units: np.ndarray  # its amount in solver units
    per_point: np.ndarray  # bonus per unit per score point of penalty: 1 / item size in units


def _stability(pending: list[ProposalRow], pair: list[int], units: list[int],
               demand: Demand, cands: Candidates) -> Stability:
    """The kept arcs' data, from the pending proposals that are still possible."""
    pair_array = np.asarray(pair, dtype=np.int64)
    rows = cands.pairs.d[pair_array] if len(pair) else np.zeros(0, dtype=np.int64)
    size = demand.total_qty[rows] * SOLVER_SCALE[demand.kind[rows]]
    return Stability(pending=pending, pair=pair_array, units=np.asarray(units, dtype=np.int64),
                     per_point=1.0 / np.maximum(size, 1.0))


def stable_problem(base: Problem, stability: Stability, penalty: float) -> Problem:
    """The base problem plus one kept arc per pending proposal, worth `penalty` more per item."""
    k = base.num_arcs
    pair = stability.pair
    # What pending proposals hold on a pair is theirs; the open arc carries only the rest.
    held = np.zeros(k, dtype=np.int64)
    np.add.at(held, pair, stability.units)
    assert base.arc_capacity is not None  # build_problem always caps arcs
    open_cap = np.maximum(base.arc_capacity - held, 0)
    previous = np.concatenate([np.zeros(k, dtype=np.int64), stability.units])
    return dataclasses.replace(
        base,
        arc_need=np.concatenate([base.arc_need, base.arc_need[pair]]),
        arc_offer=np.concatenate([base.arc_offer, base.arc_offer[pair]]),
        arc_utility=np.concatenate([base.arc_utility, base.arc_utility[pair]
                                    + penalty * stability.per_point + TIE_BONUS]),
        arc_use=np.ones(k + len(pair), dtype=np.int64),
        arc_capacity=np.concatenate([open_cap, stability.units]),
        previous=previous, change_penalty=0.0,
    )


def _moves(solution: Solution, base_arcs: int, stability: Stability) -> int:
    """Pending proposals the solution does not keep whole."""
    if not solution.has_solution:
        return 0
    kept = solution.amount[base_arcs:]
    return int(np.count_nonzero(kept < stability.units))


def _keep_all(problem: Problem, base_arcs: int, stability: Stability, note: str) -> Solution:
    """The current plan as a solution: every pending proposal kept, nothing new."""
    amount = np.zeros(problem.num_arcs, dtype=np.int64)
    amount[base_arcs:] = stability.units
    value = float(np.dot(problem.arc_utility, amount))
    return Solution(status=Status.FEASIBLE, objective=value, bound=math.inf, amount=amount,
                    method="keep_current", build_s=0.0, solve_s=0.0, note=note)


def solve_within_cap(base: Problem, stability: Stability, penalty: float,
                     budget: int | None) -> tuple[Solution, Problem, int]:
    """Solve; when more moves than the budget pay, raise the bar a move must clear until only
    the most valuable ones do (the lowest-gain moves stay as they were). Returns the solution,
    its problem, and how many moves were held back."""
    problem = stable_problem(base, stability, penalty)
    solution = solve(problem)
    wanted = _moves(solution, base.num_arcs, stability)
    if budget is None or wanted <= budget:
        return solution, problem, 0
    # Beyond this bonus no move pays: a unit taken from a kept arc frees one unit of demand and
    # one of capacity, so it enables at most two units elsewhere, each worth <= max utility.
    top_utility = float(np.max(np.abs(base.arc_utility), initial=0.0))
    top = (2.0 * top_utility + 1e-6) / float(np.min(stability.per_point)) * 1.01 + 1.0
    low, high = penalty, top
    best_problem = stable_problem(base, stability, high)
    best = solve(best_problem)
    over = solution
    for _ in range(CAP_PROBES):
        middle = math.sqrt(max(low, high * 1e-6) * high)
        probe_problem = stable_problem(base, stability, middle)
        probe = solve(probe_problem)
        if probe.has_solution and _moves(probe, base.num_arcs, stability) <= budget:
            high, best, best_problem = middle, probe, probe_problem
        else:
            low, over = middle, probe
    if best.has_solution and over.has_solution and _moves(best, base.num_arcs, stability) < budget:
        best, best_problem = _fill_budget(base, stability, penalty, best, over, budget)
    held_back = wanted - _moves(best, base.num_arcs, stability)
    return best, best_problem, held_back


def _moved(solution: Solution, base_arcs: int, stability: Stability) -> list[int]:
    """Positions (in stability order) of the pending proposals a solution does not keep whole."""
    return np.flatnonzero(solution.amount[base_arcs:] < stability.units).tolist()


def _fill_budget(base: Problem, stability: Stability, penalty: float, within: Solution,
                 over: Solution, budget: int) -> tuple[Solution, Problem]:
    """Moves of equal worth cannot be told apart by the bar: allow those under the bar plus the
    first ones above it up to the budget, pin every other pending proposal, and solve again."""
    allowed = _moved(within, base.num_arcs, stability)
    extra = [j for j in _moved(over, base.num_arcs, stability) if j not in set(allowed)]
    allowed += extra[: budget - len(allowed)]
    problem = stable_problem(base, stability, penalty)
    pinned = np.zeros(problem.num_arcs, dtype=np.int64)
    pinned[base.num_arcs:] = stability.units
    pinned[[base.num_arcs + j for j in allowed]] = 0
    problem = dataclasses.replace(problem, pinned=pinned)
    solution = solve(problem)
    if not solution.has_solution or _moves(solution, base.num_arcs, stability) > budget:
        return within, stable_problem(base, stability, penalty)
    return solution, problem


# --- the plan ----------------------------------------------------------------------------------


def _locate_pending(pending: list[ProposalRow], demand: Demand, supply: Supply
                    ) -> tuple[list[tuple[ProposalRow, int, int]], list[Revocation]]:
    """Demand and supply rows of each pending proposal; those without one are revoked."""
    rows = {(c, i): r for r, (c, i) in enumerate(zip(demand.case_id, demand.item_id,
                                                       strict=True))}
    units = {(o, int(s)): r for r, (o, s) in enumerate(zip(supply.offer_id, supply.slot.tolist(),
                                                            strict=True))}
    located: list[tuple[ProposalRow, int, int]] = []
    gone: list[Revocation] = []
    for p in pending:
        d = rows.get((p.case_id, p.item_id))
        s = units.get((p.offer_id, -1 if p.slot is None else p.slot))
        if d is None:
            gone.append(Revocation(p, "item_already_served", "the item is served by approved "
                                   "matches or no longer open", forced=True))
        elif s is None:
            gone.append(Revocation(p, "offer_unavailable", f"offer {p.offer_id} is no longer "
                                   "active or has no capacity left", forced=True))
        else:
            located.append((p, d, s))
    return located, gone


def _check_rules(located: list[tuple[ProposalRow, int, int]], demand: Demand, supply: Supply,
                 now: float, excluded: set[tuple[str, str, str]]
                 ) -> tuple[list[tuple[ProposalRow, int, int]], list[Revocation]]:
    """Pending proposals whose pair still passes every hard rule; the rest are revoked."""
    if not located:
        return [], []
    d = np.asarray([x[1] for x in located], dtype=np.int64)
    s = np.asarray([x[2] for x in located], dtype=np.int64)
    failed = _first_failed_rule(Pairs(demand, supply, d, s, now, excluded))
    ok: list[tuple[ProposalRow, int, int]] = []
    gone: list[Revocation] = []
    for entry, rule in zip(located, failed.tolist(), strict=True):
        if rule < 0:
            ok.append(entry)
        else:
            gone.append(Revocation(entry[0], RULES[rule].reason_code,
                                   f"no longer possible: {RULES[rule].reason}", forced=True))
    return ok, gone


def plan_shard(snapshot: Snapshot, config: RebalanceConfig, now: datetime,
               budget: int | None) -> ShardPlan:
    """Re-solve a shard and say, proposal by proposal, what should change and why."""
    kept, released = split_committed(snapshot, now)
    frozen = {p.proposal_id for p in kept}
    pending = [p for p in snapshot.holding
               if p.status == ProposalStatus.PROPOSED and p.proposal_id not in frozen]
    served = _sum_by_item(kept)
    vocab = Vocabulary()
    demand = build_demand(snapshot.items, served, snapshot.nodes, vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload}
                           for o in snapshot.offers], _sum_by_offer(kept), snapshot.nodes, vocab,
                          reach=ReachDefaults(partners=snapshot.partner_reach,
                                              service_travel_km=config.matching.service_travel_km))
    history = frozenset((ben, vocab.code(vocab.volunteers, vol)) for ben, vol in snapshot.history)
    # Coverage counts committed matches only, so it does not shift with the plan being made.
    context = ScoringContext(history=history, grid_coverage=coverage(snapshot.items, served))
    weights = config.matching.weights
    cands = generate(demand, supply, now=now.timestamp(), weights=weights, context=context,
                     excluded=snapshot.excluded, k=config.matching.candidates_per_item)
    located, missing = _locate_pending(pending, demand, supply)
    possible, broken = _check_rules(located, demand, supply, now.timestamp(), snapshot.excluded)
    cands = _with_pairs(cands, np.asarray([x[1] for x in possible], dtype=np.int64),
                        np.asarray([x[2] for x in possible], dtype=np.int64), context,
                        weight_vector(weights))
    index = _pair_index(cands)
    weeks = _week_budget(snapshot, pending, vocab)
    base = build_problem(demand, supply, cands, time_limit_s=config.matching.time_limit_s,
                         workers=config.matching.workers, weeks=weeks)
    stability = _stability(
        [x[0] for x in possible], [index[x[1], x[2]] for x in possible],
        [round(float(x[0].amount * SOLVER_SCALE[demand.kind[x[1]]])) for x in possible],
        demand, cands)
    budget_left = None if budget is None else max(budget, 0)
    if len(base.need_ids) == 0:
        problem = stable_problem(base, stability, config.change_penalty)
        solution, held_back = _keep_all(problem, base.num_arcs, stability, "nothing open"), 0
    else:
        solution, problem, held_back = solve_within_cap(base, stability, config.change_penalty,
                                                        budget_left)
    note = ""
    if not solution.has_solution:
        note = f"solver gave no plan ({solution.status}: {solution.note}); pending kept as is"
        solution = _keep_all(problem, base.num_arcs, stability, note)
    return _diff(snapshot, config, now, kept, released + missing + broken, stability, cands,
                 demand, supply, vocab, base, problem, solution, held_back, note, weeks)


def _week_budget(snapshot: Snapshot, replanned: Iterable[ProposalRow], vocab: Vocabulary
                 ) -> WeekBudget:
    """Hours volunteers give per week outside the plan: everything held, less the pending
    proposals the plan re-decides."""
    given = dict(snapshot.given)
    for p in replanned:
        if p.kind == "volunteer" and p.volunteer_id and p.window_start is not None:
            key = (p.volunteer_id, week_of(p.window_start, snapshot.timezone))
            given[key] = max(0.0, given.get(key, 0.0) - p.amount)
    return WeekBudget(committed={(vocab.code(vocab.volunteers, v), w): h
                                 for (v, w), h in given.items()},
                      zone=snapshot.timezone,
                      limits={vocab.code(vocab.volunteers, v): limit for v, limit
                              in stated_limits([*(o.payload for o in snapshot.offers),
                                                *({"kind": "volunteer", "volunteer_id": v,
                                                   "weekly_hour_limit": limit}
                                                  for v, limit in snapshot.limits.items())]
                                               ).items()})


def _with_hours(budget: WeekBudget, rows: Iterable[ProposalRow], vocab: Vocabulary
                ) -> WeekBudget:
    """The budget with these visits' hours given as well."""
    committed = dict(budget.committed)
    for p in rows:
        if p.kind == "volunteer" and p.volunteer_id and p.window_start is not None:
            key = (vocab.code(vocab.volunteers, p.volunteer_id),
                   week_of(p.window_start, budget.zone))
            committed[key] = committed.get(key, 0.0) + p.amount
    return WeekBudget(committed=committed, zone=budget.zone)


def _amounts(solution: Solution, base_arcs: int, stability: Stability
             ) -> tuple[np.ndarray, np.ndarray]:
    """(units on each open arc, units kept of each pending proposal)."""
    return solution.amount[:base_arcs].copy(), solution.amount[base_arcs:].copy()


def _diff(snapshot: Snapshot, config: RebalanceConfig, now: datetime, kept: list[ProposalRow],
          forced: list[Revocation], stability: Stability, cands: Candidates, demand: Demand,
          supply: Supply, vocab: Vocabulary, base: Problem, problem: Problem,
          solution: Solution, held_back: int, note: str,
          weeks: WeekBudget | None = None) -> ShardPlan:
    """Turn the solution into revocations, new proposals (placed in time) and diff lines."""
    k = base.num_arcs
    open_units, kept_units = _amounts(solution, k, stability)
    changed = kept_units < stability.units
    # A pending proposal kept only in part is re-made with what is left: its pair's new amount.
    new_units = open_units.copy()
    np.add.at(new_units, stability.pair[changed], kept_units[changed])
    unchanged = [p for p, c in zip(stability.pending, changed.tolist(), strict=True) if not c]
    staying = {p.proposal_id for p in unchanged} | {p.proposal_id for p in kept}
    busy_rows = [v for v in snapshot.visits
                 if v.status == ProposalStatus.APPROVED or v.proposal_id in staying
                 or v.shard != snapshot.shard]
    # The pending proposals kept as they are still count against their volunteers' weeks.
    placing = None if weeks is None else _with_hours(weeks, unchanged, vocab)
    new_chosen = _place(cands, solution, new_units, demand, supply, vocab, snapshot, busy_rows,
                        placing)
    scale_of_pair = SOLVER_SCALE[demand.kind[cands.pairs.d]]
    utility = base.arc_utility
    before_value = float(np.dot(utility[stability.pair], stability.units))
    bonus = problem.arc_utility[k:] - utility[stability.pair] if len(stability.pair) else \
        np.zeros(0)
    bonus_before = float(np.dot(bonus, stability.units))
    unchanged_mask = ~changed
    placed_units = np.zeros(k, dtype=np.float64)
    for c in new_chosen:
        placed_units[c.arc] += c.amount * scale_of_pair[c.arc]
    after_value = float(np.dot(utility[stability.pair[unchanged_mask]],
                               stability.units[unchanged_mask])) + float(np.dot(utility,
                                                                                placed_units))
    bonus_after = float(np.dot(bonus[unchanged_mask], stability.units[unchanged_mask]))
    adjusted_before, adjusted_after = before_value + bonus_before, after_value + bonus_after
    if adjusted_after < adjusted_before - 1e-6:
        # Visits that did not fit in time made the plan worse than today's: keep today's.
        note = (note + "; " if note else "") + "new plan scored below the current one after " \
            "placing visits in time; pending proposals kept as they are"
        changed = np.zeros(len(stability.pending), dtype=np.bool_)
        unchanged = list(stability.pending)
        new_chosen, after_value, adjusted_after = [], before_value, adjusted_before
        busy_rows = snapshot.visits
        held_back = 0
    revocations, changes = _lines(stability, changed, new_chosen, forced, cands, demand, supply,
                                  config.change_penalty)
    final = [Allocation(int(a), float(u / scale_of_pair[a]), None, None)
             for a, u in zip(stability.pair[~changed].tolist(),
                             stability.units[~changed].tolist(), strict=True)] + new_chosen
    moves = int(np.count_nonzero(changed))
    revoked_rows = {r.proposal.proposal_id for r in revocations}
    before = Figures(
        served=_add(_sum_by_item(kept), _sum_by_item(stability.pending)),
        committed=_add(_sum_by_offer(kept), _sum_by_offer(stability.pending)))
    after_pending = [p for p in stability.pending if p.proposal_id not in revoked_rows]
    after = Figures(
        served=_add(_sum_by_item(kept + after_pending), _chosen_by_item(new_chosen, cands, demand)),
        committed=_add(_sum_by_offer(kept + after_pending),
                       _chosen_by_offer(new_chosen, cands, supply)))
    return ShardPlan(
        shard=snapshot.shard, now=now, items=snapshot.items, offers=snapshot.offers,
        cands=cands, demand=demand, supply=supply, vocab=vocab, solution=solution,
        revocations=revocations, new=new_chosen, final=final, changes=changes,
        kept_pending=len(unchanged), moves=moves, moves_capped=held_back,
        objective_before=before_value, objective_after=after_value,
        adjusted_before=adjusted_before, adjusted_after=adjusted_after,
        # An unproven (infinite) bound is reported as the plan's own value: JSON has no inf.
        bound=max(float(solution.bound), adjusted_after) if math.isfinite(solution.bound)
        else adjusted_after, before=before, after=after, note=note,
        new_keys=[_key(c, cands, supply) for c in new_chosen],
    )


def _place(cands: Candidates, solution: Solution, new_units: np.ndarray, demand: Demand,
           supply: Supply, vocab: Vocabulary, snapshot: Snapshot,
           busy_rows: list[ProposalRow], weeks: WeekBudget | None = None) -> list[Allocation]:
    """New allocations as concrete visits around the visits that stay promised (of every
    shard: one person is never in two places), within each volunteer's week."""
    if not np.any(new_units > 0):
        return []
    volunteer_of = {o.offer_id: o.payload.get("volunteer_id") for o in snapshot.offers
                    if o.kind == "volunteer"}
    busy: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for visit in busy_rows:
        volunteer = visit.volunteer_id or volunteer_of.get(visit.offer_id)
        if volunteer is None or visit.window_start is None or visit.window_end is None:
            continue
        busy[vocab.code(vocab.volunteers, volunteer)].append(
            (visit.window_start.timestamp(), visit.window_end.timestamp()))
    placed = dataclasses.replace(solution, amount=new_units)
    return place_volunteer_visits(cands, placed, demand, supply, busy, weeks)


def _key(c: Allocation, cands: Candidates, supply: Supply) -> tuple[str, str, str, int | None]:
    """(case, item, offer, slot) of a chosen arc: how its stored proposal is found again."""
    p = cands.pairs
    d, s = int(p.d[c.arc]), int(p.s[c.arc])
    slot = int(supply.slot[s])
    return p.demand.case_id[d], p.demand.item_id[d], supply.offer_id[s], \
        (slot if slot >= 0 else None)


def _chosen_by_item(chosen: list[Allocation], cands: Candidates, demand: Demand
                    ) -> dict[tuple[str, str], float]:
    """Amount per (case, item) of chosen arcs."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for c in chosen:
        d = int(cands.pairs.d[c.arc])
        out[demand.case_id[d], demand.item_id[d]] += c.amount
    return dict(out)


def _chosen_by_offer(chosen: list[Allocation], cands: Candidates, supply: Supply
                     ) -> dict[tuple[str, int | None], float]:
    """Amount per (offer, slot) of chosen arcs."""
    out: dict[tuple[str, int | None], float] = defaultdict(float)
    for c in chosen:
        s = int(cands.pairs.s[c.arc])
        slot = int(supply.slot[s])
        out[supply.offer_id[s], slot if slot >= 0 else None] += c.amount
    return dict(out)


def _add(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict[Any, float]:
    """Sum of two amount tables."""
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0.0) + value
    return out


def _lines(stability: Stability, changed: np.ndarray, new_chosen: list[Allocation],
           forced: list[Revocation], cands: Candidates, demand: Demand, supply: Supply,
           penalty: float) -> tuple[list[Revocation], list[PlanChange]]:
    """Revocations with reasons, and the diff: moved, revoked, released and new lines."""
    p = cands.pairs
    new_by_item: dict[tuple[str, str], list[Allocation]] = defaultdict(list)
    new_by_offer: dict[str, list[Allocation]] = defaultdict(list)
    for c in new_chosen:
        d, s = int(p.d[c.arc]), int(p.s[c.arc])
        new_by_item[demand.case_id[d], demand.item_id[d]].append(c)
        new_by_offer[supply.offer_id[s]].append(c)
    revocations: list[Revocation] = []
    changes: list[PlanChange] = []
    moved_items: set[tuple[str, str]] = set()
    for r in forced:
        q = r.proposal
        kind = ChangeKind.RELEASED if q.status == ProposalStatus.APPROVED else ChangeKind.REVOKED
        revocations.append(r)
        changes.append(PlanChange(change=kind, case_id=q.case_id, item_id=q.item_id,
                                  grid_id=q.grid_id, old_proposal_id=q.proposal_id,
                                  old_offer_id=q.offer_id, reason_code=r.reason_code,
                                  reason=r.reason, score_before=q.score, score_after=0.0))
    for q, arc in zip([q for q, c in zip(stability.pending, changed.tolist(), strict=True) if c],
                      stability.pair[changed].tolist(), strict=True):
        old_score = float(cands.score[arc])
        replacements = new_by_item.get((q.case_id, q.item_id), [])
        if replacements:
            moved_items.add((q.case_id, q.item_id))
            best = max(replacements, key=lambda c: float(cands.score[c.arc]))
            new_score = float(cands.score[best.arc])
            offers = sorted({supply.offer_id[int(p.s[c.arc])] for c in replacements})
            reason = (f"moved to {', '.join(offers)}: score {new_score:.1f} against "
                      f"{old_score:.1f} ({new_score - old_score:+.1f})")
            if new_score - old_score <= penalty:
                reason += "; freed capacity serves a better overall plan"
            revocations.append(Revocation(q, "rebalanced_moved", reason, forced=False))
            changes.append(PlanChange(change=ChangeKind.MOVED, case_id=q.case_id,
                                      item_id=q.item_id, grid_id=q.grid_id,
                                      old_proposal_id=q.proposal_id, old_offer_id=q.offer_id,
                                      new_offer_ids=offers, reason_code="better_match",
                                      reason=reason, score_before=q.score,
                                      score_after=round(new_score, 3)))
            continue
        takers = new_by_offer.get(q.offer_id, [])
        if takers:
            best = max(takers, key=lambda c: float(cands.score[c.arc]))
            d = int(p.d[best.arc])
            reason = (f"offer {q.offer_id} now serves case {demand.case_id[d]}/"
                      f"{demand.item_id[d]} (score {float(cands.score[best.arc]):.1f} against "
                      f"{old_score:.1f})")
        else:
            reason = "its capacity serves higher-scoring needs in the new plan"
        revocations.append(Revocation(q, "rebalanced_revoked", reason, forced=False))
        changes.append(PlanChange(change=ChangeKind.REVOKED, case_id=q.case_id,
                                  item_id=q.item_id, grid_id=q.grid_id,
                                  old_proposal_id=q.proposal_id, old_offer_id=q.offer_id,
                                  reason_code="capacity_reallocated", reason=reason,
                                  score_before=q.score, score_after=0.0))
    for (case_id, item_id), chosen in new_by_item.items():
        if (case_id, item_id) in moved_items:
            continue
        d = int(p.d[chosen[0].arc])
        offers = sorted({supply.offer_id[int(p.s[c.arc])] for c in chosen})
        score = max(float(cands.score[c.arc]) for c in chosen)
        changes.append(PlanChange(change=ChangeKind.NEW, case_id=case_id, item_id=item_id,
                                  grid_id=demand.grid_id[d], new_offer_ids=offers,
                                  reason_code="open_demand",
                                  reason=f"open demand served by {', '.join(offers)} "
                                  f"(score {score:.1f})", score_before=0.0,
                                  score_after=round(score, 3)))
    return revocations, changes
