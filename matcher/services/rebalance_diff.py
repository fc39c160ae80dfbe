"""From a solved rebalance to what changes: revocations with reasons, new proposals placed in
time, the diff in words, and the district's figures before and after."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from matcher.domain.allocation import Allocation, WeekBudget, place_volunteer_visits
from matcher.domain.candidates import Candidates
from matcher.domain.frames import SOLVER_SCALE, Demand, Supply, Vocabulary
from matcher.domain.weeks import week_of
from matcher.services.rebalance_commitments import Revocation, sum_by_item, sum_by_offer
from matcher.services.rebalance_inputs import RebalanceConfig, Snapshot
from matcher.solver import Problem, Solution
from matcher.solver.stability import KeptArcs
from matcher.storage.store import OfferRow, ProposalRow
from schemas.matches import ProposalStatus
from schemas.rebalance import ChangeKind, PlanChange


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


def diff_plan(snapshot: Snapshot, config: RebalanceConfig, now: datetime,
              kept: list[ProposalRow], forced: list[Revocation], pending: list[ProposalRow],
              kept_arcs: KeptArcs, cands: Candidates, demand: Demand, supply: Supply,
              vocab: Vocabulary, base: Problem, problem: Problem, solution: Solution,
              held_back: int, note: str, weeks: WeekBudget | None = None) -> ShardPlan:
    """Turn the solution into revocations, new proposals (placed in time) and diff lines."""
    k = base.num_arcs
    open_units, kept_units = _amounts(solution, k)
    changed = kept_units < kept_arcs.units
    # A pending proposal kept only in part is re-made with what is left: its pair's new amount.
    new_units = open_units.copy()
    np.add.at(new_units, kept_arcs.pair[changed], kept_units[changed])
    unchanged = [p for p, c in zip(pending, changed.tolist(), strict=True) if not c]
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
    before_value = float(np.dot(utility[kept_arcs.pair], kept_arcs.units))
    bonus = problem.arc_utility[k:] - utility[kept_arcs.pair] if len(kept_arcs.pair) else \
        np.zeros(0)
    bonus_before = float(np.dot(bonus, kept_arcs.units))
    unchanged_mask = ~changed
    placed_units = np.zeros(k, dtype=np.float64)
    for c in new_chosen:
        placed_units[c.arc] += c.amount * scale_of_pair[c.arc]
    after_value = float(np.dot(utility[kept_arcs.pair[unchanged_mask]],
                               kept_arcs.units[unchanged_mask])) + float(np.dot(utility,
                                                                                placed_units))
    bonus_after = float(np.dot(bonus[unchanged_mask], kept_arcs.units[unchanged_mask]))
    adjusted_before, adjusted_after = before_value + bonus_before, after_value + bonus_after
    if adjusted_after < adjusted_before - 1e-6:
        # Visits that did not fit in time made the plan worse than today's: keep today's.
        note = (note + "; " if note else "") + "new plan scored below the current one after " \
            "placing visits in time; pending proposals kept as they are"
        changed = np.zeros(len(pending), dtype=np.bool_)
        unchanged = list(pending)
        new_chosen, after_value, adjusted_after = [], before_value, adjusted_before
        busy_rows = snapshot.visits
        held_back = 0
    revocations, changes = _lines(pending, kept_arcs, changed, new_chosen, forced, cands,
                                  demand, supply, config.change_penalty)
    final = [Allocation(int(a), float(u / scale_of_pair[a]), None, None)
             for a, u in zip(kept_arcs.pair[~changed].tolist(),
                             kept_arcs.units[~changed].tolist(), strict=True)] + new_chosen
    moves = int(np.count_nonzero(changed))
    revoked_rows = {r.proposal.proposal_id for r in revocations}
    before = Figures(
        served=_add(sum_by_item(kept), sum_by_item(pending)),
        committed=_add(sum_by_offer(kept), sum_by_offer(pending)))
    after_pending = [p for p in pending if p.proposal_id not in revoked_rows]
    after = Figures(
        served=_add(sum_by_item(kept + after_pending), _chosen_by_item(new_chosen, cands, demand)),
        committed=_add(sum_by_offer(kept + after_pending),
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


def _amounts(solution: Solution, base_arcs: int) -> tuple[np.ndarray, np.ndarray]:
    """(units on each open arc, units kept of each pending proposal)."""
    return solution.amount[:base_arcs].copy(), solution.amount[base_arcs:].copy()


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


def _lines(pending: list[ProposalRow], kept_arcs: KeptArcs, changed: np.ndarray,
           new_chosen: list[Allocation], forced: list[Revocation], cands: Candidates,
           demand: Demand, supply: Supply, penalty: float
           ) -> tuple[list[Revocation], list[PlanChange]]:
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
    for q, arc in zip([q for q, c in zip(pending, changed.tolist(), strict=True) if c],
                      kept_arcs.pair[changed].tolist(), strict=True):
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
