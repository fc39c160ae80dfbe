"""The nightly re-solve of one shard: every open need item, pending proposal and bit of capacity.

Flow: snapshot (`rebalance_inputs`) -> approved matches kept, or released when impossible
(`rebalance_commitments`) -> frames over what the kept matches leave -> candidates (the
continuous matcher's rules and scores, plus every pending proposal's own pair) -> the solver
problem with a stability bonus on keeping pending proposals, solved within the move cap
(`matcher.solver.stability`) -> visits placed in time and a diff with reasons
(`rebalance_diff`). The pending plan is also handed to the solver as `previous` (CP-SAT's
starting hint). Nothing here writes: `matcher.services.rebalancing` applies the plan in one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np

from matcher.domain.allocation import WeekBudget, build_problem, coverage
from matcher.domain.candidates import Candidates, generate
from matcher.domain.frames import (
    SOLVER_SCALE,
    Demand,
    Supply,
    Vocabulary,
    build_demand,
    build_supply,
)
from matcher.domain.pairs import Pairs
from matcher.domain.reach import ReachDefaults
from matcher.domain.rules import RULES
from matcher.domain.scoring import ScoringContext, term_values, weight_vector
from matcher.domain.weeks import stated_limits, week_of
from matcher.services.rebalance_commitments import (
    Revocation,
    split_committed,
    sum_by_item,
    sum_by_offer,
)
from matcher.services.rebalance_diff import ShardPlan, diff_plan
from matcher.services.rebalance_inputs import RebalanceConfig, Snapshot
from matcher.solver.stability import KeptArcs, keep_all, solve_within_cap, stable_problem
from matcher.storage.store import ProposalRow
from schemas.matches import ProposalStatus


def plan_shard(snapshot: Snapshot, config: RebalanceConfig, now: datetime,
               budget: int | None) -> ShardPlan:
    """Re-solve a shard and say, proposal by proposal, what should change and why."""
    kept, released = split_committed(snapshot.holding, snapshot.offer_rows,
                                     snapshot.offers, now)
    frozen = {p.proposal_id for p in kept}
    pending = [p for p in snapshot.holding
               if p.status == ProposalStatus.PROPOSED and p.proposal_id not in frozen]
    served = sum_by_item(kept)
    vocab = Vocabulary()
    demand = build_demand(snapshot.items, served, snapshot.nodes, vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload}
                           for o in snapshot.offers], sum_by_offer(kept), snapshot.nodes, vocab,
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
    kept_pending = [x[0] for x in possible]
    kept_arcs = _kept_arcs(
        [index[x[1], x[2]] for x in possible],
        [round(float(x[0].amount * SOLVER_SCALE[demand.kind[x[1]]])) for x in possible],
        demand, cands)
    budget_left = None if budget is None else max(budget, 0)
    if len(base.need_ids) == 0:
        problem = stable_problem(base, kept_arcs, config.change_penalty)
        solution, held_back = keep_all(problem, base.num_arcs, kept_arcs, "nothing open"), 0
    else:
        solution, problem, held_back = solve_within_cap(base, kept_arcs, config.change_penalty,
                                                        budget_left)
    note = ""
    if not solution.has_solution:
        note = f"solver gave no plan ({solution.status}: {solution.note}); pending kept as is"
        solution = keep_all(problem, base.num_arcs, kept_arcs, note)
    return diff_plan(snapshot, config, now, kept, released + missing + broken, kept_pending,
                     kept_arcs, cands, demand, supply, vocab, base, problem, solution, held_back,
                     note, weeks)


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


def _kept_arcs(pair: list[int], units: list[int], demand: Demand, cands: Candidates
               ) -> KeptArcs:
    """The kept arcs of the pending proposals still possible: their pairs and amounts."""
    pair_array = np.asarray(pair, dtype=np.int64)
    rows = cands.pairs.d[pair_array] if len(pair) else np.zeros(0, dtype=np.int64)
    size = demand.total_qty[rows] * SOLVER_SCALE[demand.kind[rows]]
    return KeptArcs(pair=pair_array, units=np.asarray(units, dtype=np.int64),
                     per_point=1.0 / np.maximum(size, 1.0))


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
                      failed=cands.failed, cut=cands.cut)


def _pair_index(cands: Candidates) -> dict[tuple[int, int], int]:
    """Arc (pair) index of each (demand row, supply row)."""
    p = cands.pairs
    return {(d, s): a for a, (d, s) in enumerate(zip(p.d.tolist(), p.s.tolist(), strict=True))}
