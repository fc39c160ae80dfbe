"""A matching batch: open demand of a shard against its remaining capacity, solved and recorded.

Flow: state -> frames -> candidates (rules, scores) -> solver problem -> solution -> volunteer
visits placed in time -> proposals with explanations, and reasons for what stays unmatched.
Everything is written in the caller's transaction, outgoing events through the outbox.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from matcher.domain.candidates import Candidates, generate
from matcher.domain.frames import (
    SOLVER_SCALE,
    Demand,
    Supply,
    Vocabulary,
    build_demand,
    build_supply,
)
from matcher.domain.rules import RULES, rules_for
from matcher.domain.schedule import earliest_free_start
from matcher.domain.scoring import TERMS, ScoringContext, Weights, weight_vector
from matcher.solver import Problem, Solution, Status, solve
from matcher.storage.store import Store
from schemas.common import TimeWindow
from schemas.matches import (
    Explanation,
    MatchProposed,
    NeedUnmatched,
    Proposal,
    ProposalStatus,
    RunnerUp,
    ScoreTerm,
    Unmatched,
)
from schemas.offers import OfferKind
from schemas.topics import Topics

KIND_NAMES = ("volunteer", "goods", "service")
RUNNER_UPS = 3


@dataclass(frozen=True)
class MatchingConfig:
    """Knobs of a batch."""

    topics: Topics
    weights: Weights = field(default_factory=Weights)
    candidates_per_item: int = 30
    time_limit_s: float = 5.0
    workers: int = 2
    producer: str = "charity-matcher"


@dataclass(frozen=True)
class BatchReport:
    """What a batch did, for logs, metrics and summaries."""

    shard: str
    items: int
    supply_units: int
    arcs: int
    proposals: int
    unmatched: int
    status: str
    objective: float
    bound: float
    build_s: float
    solve_s: float
    total_s: float


@dataclass
class Chosen:
    """One arc the solver used, after placing it in time."""

    arc: int
    amount: float
    start: float | None
    end: float | None


def _coverage(items: list[dict[str, Any]], served: Mapping[tuple[str, str], float]
              ) -> dict[str, float]:
    """Share of each grid's requested quantity served so far (unit-free: share per item)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for item in items:
        share = min(1.0, served.get((item["case_id"], item["item_id"]), 0.0) / item["quantity"])
        totals[item["grid_id"]][0] += share
        totals[item["grid_id"]][1] += 1.0
    return {grid: done / count for grid, (done, count) in totals.items()}


def build_problem(demand: Demand, supply: Supply, cands: Candidates, config: MatchingConfig
                  ) -> Problem:
    """The solver's view: integer units per kind, utility per unit = score / whole item."""
    p = cands.pairs
    scale = SOLVER_SCALE[demand.kind]
    demand_units = np.maximum(np.rint(demand.open_qty * scale), 1).astype(np.int64)
    supply_scale = SOLVER_SCALE[supply.kind]
    capacity = np.floor(supply.remaining * supply_scale + 1e-6).astype(np.int64)
    arc_scale = scale[p.d]
    utility = cands.score / (demand.total_qty[p.d] * arc_scale)
    arc_cap = np.floor(p.amount_cap * arc_scale + 1e-6).astype(np.int64)
    # An item of one unit is served whole or not at all anyway: keep it a flow.
    splittable = demand.splittable | (demand_units == 1)
    return Problem(
        need_ids=[f"{c}/{i}" for c, i in zip(demand.case_id, demand.item_id, strict=True)],
        demand=demand_units,
        splittable=splittable,
        required=np.zeros(len(demand), dtype=np.bool_),
        offer_ids=[f"{o}#{s}" for o, s in zip(supply.offer_id, supply.slot.tolist(), strict=True)],
        capacity=capacity,
        arc_need=p.d.astype(np.int32),
        arc_offer=p.s.astype(np.int32),
        arc_utility=utility,
        arc_use=np.ones(len(p), dtype=np.int64),
        arc_capacity=arc_cap,
        time_limit_s=config.time_limit_s,
        workers=config.workers,
    )


def _place_volunteer_visits(cands: Candidates, solution: Solution, demand: Demand,
                            supply: Supply, busy: Mapping[int, list[tuple[float, float]]]
                            ) -> list[Chosen]:
    """Turn solver amounts into concrete visits, earliest deadline first.

    The solver sees a volunteer's hours, not their diary: a visit that no longer fits the
    volunteer's day goes to the item's next-best volunteer who still has the time and the
    hours (beyond the plan and the visits already promised); only when none has is it dropped.
    """
    p = cands.pairs
    used = np.flatnonzero(solution.amount > 0)
    units = (solution.amount[used] / SOLVER_SCALE[demand.kind[p.d[used]]]).tolist()
    _, w_start, w_end = p.best_window
    planned = np.bincount(p.s[used], weights=units, minlength=len(supply))
    in_plan = np.zeros(len(p), dtype=np.bool_)
    in_plan[used] = True
    # Earliest deadline first, so tight windows get their place before loose ones.
    order = np.argsort(w_end[used], kind="stable").tolist()
    arcs = used.tolist()
    kinds = supply.kind[p.s[used]].tolist()
    chosen: list[Chosen] = []
    schedule: dict[int, list[tuple[float, float]]] = {k: list(v) for k, v in busy.items()}
    spare: dict[int, float] = {}
    by_item: tuple[np.ndarray, np.ndarray] | None = None  # arcs sorted by item, their items

    def visit(arc: int, hours: float) -> Chosen | None:
        """The visit on this arc at the earliest free moment of its volunteer, if any."""
        visits = schedule.setdefault(int(supply.volunteer[p.s[arc]]), [])
        start = earliest_free_start(visits, float(w_start[arc]), float(w_end[arc]),
                                    hours * 3600.0)
        if start is None:
            return None
        visits.append((start, start + hours * 3600.0))
        return Chosen(arc, hours, start, start + hours * 3600.0)

    def hours_left(s: int) -> float:
        """Hours of volunteer row s beyond the plan, the visits promised and any moved in."""
        if s not in spare:
            ptr = supply.window_ptr
            windows = zip(supply.window_start[ptr[s]:ptr[s + 1]].tolist(),
                          supply.window_end[ptr[s]:ptr[s + 1]].tolist(), strict=True)
            promised = sum(max(0.0, min(visit_end, window_end) - max(visit_start, window_start))
                           for window_start, window_end in windows
                           for visit_start, visit_end in busy.get(int(supply.volunteer[s]), [])
                           ) / 3600.0
            spare[s] = (min(float(supply.remaining[s]), float(supply.capacity[s]) - promised)
                        - float(planned[s]))
        return spare[s]

    def next_best(arc: int) -> list[int]:
        """The other arcs of the arc's item outside the plan, best score first."""
        nonlocal by_item
        if by_item is None:
            by_row = np.argsort(p.d, kind="stable")
            by_item = by_row, p.d[by_row]
        row = p.d[arc]
        first, last = np.searchsorted(by_item[1], [row, row + 1])
        others = by_item[0][first:last]
        others = others[~in_plan[others]]
        return others[np.argsort(-cands.score[others], kind="stable")].tolist()

    for i in order:
        arc, amount, kind = arcs[i], units[i], kinds[i]
        if kind == 0:
            placed = visit(arc, amount)
            for other in [] if placed else next_best(arc):
                s = int(p.s[other])
                if amount <= min(hours_left(s), float(p.amount_cap[other])) + 1e-9:
                    placed = visit(other, amount)
                    if placed:
                        spare[s] -= amount
                        break
            if placed:
                chosen.append(placed)
        elif kind == 2:
            chosen.append(Chosen(arc, amount, float(w_start[arc]), float(w_end[arc])))
        else:
            chosen.append(Chosen(arc, amount, None, None))
    return chosen


def _explain(arc: int, cands: Candidates, weights: np.ndarray, status: str,
             alternatives: list[int], supply: Supply,
             unplaced: frozenset[int] = frozenset()) -> Explanation:
    """Rules passed, score term by term, and the best runner-ups with why they lost.

    `unplaced`: arcs the solver chose whose visit found no free time in the volunteer's day.
    """
    p = cands.pairs
    names = list(TERMS)
    values = cands.terms[arc]
    contributions = values * weights
    terms = [ScoreTerm(name=name, weight=w, value=round(v, 4), contribution=round(c, 3))
             for name, w, v, c in zip(names, weights.tolist(), values.tolist(),
                                      contributions.tolist(), strict=True)]
    score = float(cands.score[arc])
    runner_ups = []
    for other in alternatives[:RUNNER_UPS]:
        other_score = float(cands.score[other])
        if other in unplaced:
            why = (f"higher score ({other_score:.1f}) but the volunteer has no free time left "
                   "in the item's window")
        elif other_score < score:
            other_contrib = cands.terms[other] * weights
            deficit = int(np.argmax(contributions - other_contrib))
            why = (f"lower score ({other_score:.1f} vs {score:.1f}), mostly on {names[deficit]} "
                   f"({other_contrib[deficit]:.1f} vs {contributions[deficit]:.1f})")
        else:
            why = (f"higher score ({other_score:.1f}) but its capacity serves other "
                   "needs in the best overall plan")
        runner_ups.append(RunnerUp(offer_id=supply.offer_id[int(p.s[other])],
                                   score=round(other_score, 3), why_lost=why))
    return Explanation(rules_passed=rules_for(int(p.demand.kind[p.d[arc]])), score_terms=terms,
                       runner_ups=runner_ups, solver_status=status)


def _unmatched_reason(row: int, demand: Demand, cands: Candidates, had_arcs: bool,
                      served: float, need_name: str) -> tuple[str, str]:
    """Why an item is still (partly) open after the batch."""
    kind = KIND_NAMES[int(demand.kind[row])]
    if cands.joined[row] == 0:
        return "no_offer", f"no active {kind} offer gives '{need_name}'"
    if not had_arcs:
        rule = int(np.argmax(cands.failed[row]))
        return RULES[rule].reason_code, f"{RULES[rule].reason} ('{need_name}')"
    if served > 0:
        return "partly_served", (f"partly served ({served:g} of {demand.open_qty[row]:g}); "
                                 "eligible capacity is used up")
    return "capacity_taken", ("eligible offers' capacity went to more urgent or better-placed "
                              "cases")


def promised_visits(store: Store, offers: list[Any]) -> dict[str, list[tuple[float, float]]]:
    """Visits already promised per volunteer id (epoch seconds), to plan new ones around."""
    volunteer_of = {o.offer_id: o.payload.get("volunteer_id") for o in offers
                    if o.kind == "volunteer"}
    busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for proposal in store.holding_volunteer_visits():
        volunteer = volunteer_of.get(proposal.offer_id)
        if volunteer is None or proposal.window_start is None or proposal.window_end is None:
            continue
        busy[volunteer].append((proposal.window_start.timestamp(),
                                proposal.window_end.timestamp()))
    return busy


def run_batch(store: Store, shard: str, config: MatchingConfig, now: datetime) -> BatchReport:
    """Match a shard's open demand against its remaining capacity and record the outcome."""
    started = time.perf_counter()
    nodes = {node.node_id: node for node in store.all_nodes()}
    items = store.open_items(shard)
    offers = store.active_offers(shard)
    served = store.served_by_item(shard)
    vocab = Vocabulary()
    demand = build_demand(items, served, nodes, vocab)
    # Promised visits leave the volunteers' windows before matching, so the solver only
    # plans time the volunteer still has (and placement seldom has to move a visit).
    busy = promised_visits(store, offers)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload} for o in offers],
                          store.held_by_offer(shard), nodes, vocab, busy=busy)
    history = frozenset((ben, vocab.code(vocab.volunteers, vol))
                        for ben, vol in store.volunteer_history())
    context = ScoringContext(history=history, grid_coverage=_coverage(items, served))
    cands = generate(demand, supply, now=now.timestamp(), weights=config.weights,
                     context=context, excluded=store.excluded_pairs(shard),
                     k=config.candidates_per_item)
    problem = build_problem(demand, supply, cands, config)
    solution = solve(problem)
    if solution.status in (Status.INFEASIBLE, Status.UNKNOWN):
        chosen: list[Chosen] = []
    else:
        busy_by_code = {vocab.code(vocab.volunteers, volunteer): visits
                        for volunteer, visits in busy.items()}
        chosen = _place_volunteer_visits(cands, solution, demand, supply, busy_by_code)
    proposals = _record_proposals(store, shard, chosen, cands, demand, supply, vocab,
                                  solution, config, now)
    unmatched = _record_unmatched(store, items, chosen, cands, demand, vocab, config, now)
    return BatchReport(
        shard=shard, items=len(demand), supply_units=len(supply), arcs=len(cands),
        proposals=proposals, unmatched=unmatched, status=solution.status.value,
        objective=solution.objective, bound=solution.bound, build_s=solution.build_s,
        solve_s=solution.solve_s, total_s=time.perf_counter() - started,
    )


def _record_proposals(store: Store, shard: str, chosen: list[Chosen], cands: Candidates,
                      demand: Demand, supply: Supply, vocab: Vocabulary, solution: Solution,
                      config: MatchingConfig, now: datetime) -> int:
    """Store each chosen arc as a proposal and queue its event (one executemany each)."""
    if not chosen:
        return 0
    p = cands.pairs
    weights = weight_vector(config.weights)
    # Runner-ups: per item with a chosen arc, its first RUNNER_UPS unused arcs, best first.
    used = np.zeros(len(p), dtype=np.bool_)
    used[[c.arc for c in chosen]] = True
    served_rows = np.unique(p.d[used])
    free = np.flatnonzero(~used & np.isin(p.d, served_rows))
    free = free[np.lexsort((-cands.score[free], p.d[free]))]  # item, score down, arc
    first = np.searchsorted(p.d[free], served_rows, side="left")
    last = np.minimum(np.searchsorted(p.d[free], served_rows, side="right"), first + RUNNER_UPS)
    free_arcs = free.tolist()
    alternatives = {row: free_arcs[a:b] for row, a, b in zip(
        served_rows.tolist(), first.tolist(), last.tolist(), strict=True)}
    # A chosen arc outside the solver's plan was moved there at placement: the plan's arcs
    # of its item found no free time in their volunteer's day. (Only when the plan is one
    # amount per candidate arc, as run_batch's is.)
    unplaced: frozenset[int] = frozenset()
    if len(solution.amount) == len(p):
        moved_rows = np.unique(p.d[[c.arc for c in chosen if solution.amount[c.arc] == 0]])
        unplaced = frozenset(np.flatnonzero((solution.amount > 0) & ~used
                                            & np.isin(p.d, moved_rows)).tolist())
    unit_names = {code: name for name, code in vocab.units.items()}
    status = solution.status.value
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for c in chosen:
        d, s = int(p.d[c.arc]), int(p.s[c.arc])
        explanation = _explain(c.arc, cands, weights, status, alternatives.get(d, []), supply,
                               unplaced)
        window = (TimeWindow(start=datetime.fromtimestamp(c.start, UTC),
                             end=datetime.fromtimestamp(c.end, UTC))
                  if c.start is not None and c.end is not None and c.end > c.start else None)
        proposal = Proposal(
            proposal_id=f"prop-{uuid.uuid4().hex[:16]}", case_id=demand.case_id[d],
            item_id=demand.item_id[d], grid_id=demand.grid_id[d],
            offer_id=supply.offer_id[s], partner_id=supply.partner_id[s],
            kind=OfferKind(KIND_NAMES[int(supply.kind[s])]), amount=round(c.amount, 4),
            unit=_unit_name(demand, d, unit_names), window=window,
            score=round(float(cands.score[c.arc]), 3), explanation=explanation,
        )
        rows.append(dict(
            proposal_id=proposal.proposal_id, case_id=proposal.case_id,
            item_id=proposal.item_id, offer_id=proposal.offer_id,
            slot=int(supply.slot[s]) if supply.slot[s] >= 0 else None,
            partner_id=proposal.partner_id, kind=proposal.kind.value, amount=proposal.amount,
            unit=proposal.unit, window_start=window.start if window else None,
            window_end=window.end if window else None, status=ProposalStatus.PROPOSED.value,
            score=proposal.score, explanation=explanation.model_dump(mode="json"), shard=shard,
            grid_id=proposal.grid_id, created_at=now,
        ))
        event = MatchProposed(event_id=uuid.uuid4(), occurred_at=now, producer=config.producer,
                              payload=proposal)
        events.append(dict(topic=config.topics.proposals, key=proposal.case_id,
                           value=event.model_dump_json(), event_id=str(event.event_id),
                           event_type=event.event_type, at=now))
    store.add_proposals(rows)
    store.add_outbox_many(events)
    return len(chosen)


def _unit_name(demand: Demand, d: int, units: Mapping[int, str]) -> str:
    """Unit of an allocation, as the item counts it."""
    return units.get(int(demand.unit[d]), "") or "units"


def _record_unmatched(store: Store, items: list[dict[str, Any]], chosen: list[Chosen],
                      cands: Candidates, demand: Demand, vocab: Vocabulary,
                      config: MatchingConfig, now: datetime) -> int:
    """Give every item left open a reason; send an event only when the reason changed."""
    p = cands.pairs
    arcs = np.asarray([c.arc for c in chosen], dtype=np.int64)
    assigned = np.bincount(p.d[arcs], weights=[c.amount for c in chosen],
                           minlength=len(demand))
    has_arcs = np.bincount(p.d, minlength=len(demand)) > 0
    open_after = demand.open_qty - assigned
    need_names = {code: name for name, code in vocab.needs.items()}
    previous = {(i["case_id"], i["item_id"]): (i["unmatched_code"], i["unmatched_reason"])
                for i in items}
    changes: list[tuple[str, str, str | None, str | None]] = []
    events: list[dict[str, Any]] = []
    left_open = 0
    for row, (still_open, case_id, item_id) in enumerate(zip(
            (open_after > 1e-6).tolist(), demand.case_id, demand.item_id, strict=True)):
        key = (case_id, item_id)
        if not still_open:
            if previous.get(key, (None, None))[0] is not None:
                changes.append((case_id, item_id, None, None))
            continue
        left_open += 1
        code, reason = _unmatched_reason(row, demand, cands, bool(has_arcs[row]),
                                         float(assigned[row]),
                                         need_names[int(demand.need[row])])
        if previous.get(key) == (code, reason):
            continue
        changes.append((case_id, item_id, code, reason))
        event = NeedUnmatched(
            event_id=uuid.uuid4(), occurred_at=now, producer=config.producer,
            payload=Unmatched(case_id=case_id, item_id=item_id, grid_id=demand.grid_id[row],
                              open_quantity=round(float(open_after[row]), 4), reason_code=code,
                              reason=reason),
        )
        events.append(dict(topic=config.topics.unmatched, key=case_id,
                           value=event.model_dump_json(), event_id=str(event.event_id),
                           event_type=event.event_type, at=now))
    store.set_unmatched_many(changes)
    store.add_outbox_many(events)
    return left_open
