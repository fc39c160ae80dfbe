"""First-come-first-served greedy matching: the baseline the engine is measured against.

Eligibility is the engine's own: the same frames, hard rules and scores from `matcher.domain`
(`generate` with the same K). Only the allocation differs: no solver, each need item in order
of arrival takes the best-scored eligible offers that still have capacity, and volunteer visits
are placed in time as they are taken (so no volunteer is in two places at once).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import UTC, datetime

import numpy as np

from matcher.domain.allocation import Allocation, WeekBudget, volunteer_limits
from matcher.domain.candidates import Candidates
from matcher.domain.frames import Demand, Supply
from matcher.domain.kinds import SOLVER_SCALE, Kind
from matcher.domain.schedule import earliest_free_start
from matcher.domain.scoring import ScoringContext, Weights
from matcher.domain.weeks import weeks_of
from matcher.services.matching import (
    MatchingConfig,
    build_frames,
    find_candidates,
    read_live_inputs,
)
from matcher.storage.store import Store
from schemas.matches import ProposalStatus
from schemas.topics import Topics

VOLUNTEER, SERVICE = Kind.VOLUNTEER, Kind.SERVICE


def arrival_order(demand: Demand) -> list[int]:
    """Demand rows in order of arrival: case opening time, then the store's (case, item) order."""
    return np.lexsort((np.arange(len(demand)), demand.opened_at)).tolist()


def _floor_units(amount: float, scale: float) -> float:
    """`amount` rounded down to whole solver units (quarter hours, tenths, sessions)."""
    return math.floor(amount * scale + 1e-6) / scale


def greedy_allocate(cands: Candidates, demand: Demand, supply: Supply,
                    busy: dict[int, list[tuple[float, float]]] | None = None,
                    weeks: WeekBudget | None = None) -> list[Allocation]:
    """Each item in arrival order takes its best-scored eligible offers while capacity lasts.

    A splittable item takes as much as it can from each offer in turn until it is served; an
    item that may not be split takes the first offer that can serve all of it. Amounts are
    whole solver units, as the engine's are. A volunteer visit that no longer fits the
    volunteer's day is skipped, like the engine's placement does, and so is one beyond the
    volunteer's weekly limit (the same rule: across all their offers, less `weeks`' hours).
    """
    p = cands.pairs
    budget = weeks or WeekBudget()
    limits = volunteer_limits(supply, budget.limits)
    week_room: dict[tuple[int, int], float] = {}
    left = supply.remaining.copy()
    schedule = {volunteer: list(visits) for volunteer, visits in (busy or {}).items()}
    _, w_start, w_end = p.best_window
    cap = p.amount_cap
    # Each item's arcs, best score first (ties: the earlier arc).
    order = np.lexsort((-cands.score, p.d))
    rows_sorted = p.d[order]
    first = np.searchsorted(rows_sorted, np.arange(len(demand)), side="left")
    last = np.searchsorted(rows_sorted, np.arange(len(demand)), side="right")
    taken: list[Allocation] = []
    for row in arrival_order(demand):
        scale = float(SOLVER_SCALE[demand.kind[row]])
        # As the engine's problem counts it: the open quantity in whole units, at least one.
        wanted = max(round(float(demand.open_qty[row]) * scale), 1) / scale
        whole = not demand.splittable[row] and wanted * scale > 1
        for arc in order[first[row]:last[row]].tolist():
            if wanted <= 1e-9:
                break
            s = int(p.s[arc])
            amount = min(wanted, _floor_units(float(cap[arc]), scale),
                         _floor_units(float(left[s]), scale))
            if amount <= 1e-9 or (whole and amount < wanted - 1e-9):
                continue
            start: float | None = None
            end: float | None = None
            if supply.kind[s] == VOLUNTEER:
                visits = schedule.setdefault(int(supply.volunteer[s]), [])
                start = earliest_free_start(visits, float(w_start[arc]), float(w_end[arc]),
                                            amount * 3600.0)
                if start is None:
                    continue
                volunteer = int(supply.volunteer[s])
                key = (volunteer, int(weeks_of([start], budget.zone)[0]))
                room = week_room.get(key, limits[volunteer] - budget.committed.get(key, 0.0))
                if room < amount - 1e-9:
                    amount = 0.0 if whole else _floor_units(max(room, 0.0), scale)
                    if amount <= 1e-9:
                        continue
                week_room[key] = room - amount
                end = start + amount * 3600.0
                visits.append((start, end))
            elif supply.kind[s] == SERVICE:
                start, end = float(w_start[arc]), float(w_end[arc])
            left[s] -= amount
            wanted -= amount
            taken.append(Allocation(arc, amount, start, end))
            if whole:
                break
    return taken


def greedy_batch(store: Store, shard: str, now: datetime, *, weights: Weights | None = None,
                 k: int = 30) -> int:
    """A batch of the baseline: the engine's live inputs and candidates, allocated greedily.

    Allocations are stored as proposals (status proposed, so they hold capacity exactly as
    the engine's do); no events are queued. Returns how many proposals were made.
    """
    config = MatchingConfig(topics=Topics("baseline"), weights=weights or Weights(),
                            candidates_per_item=k)
    inputs = read_live_inputs(store, shard, now)
    frames = build_frames(inputs)
    # Terms of the item alone (urgency, waiting, grid coverage) never change the order of one
    # item's offers, so this context ranks offers (and keeps the top k) as the engine does.
    frames = dataclasses.replace(frames, context=ScoringContext(history=frames.context.history))
    cands = find_candidates(frames, inputs, config)
    demand, supply, vocab = frames.demand, frames.supply, frames.vocab
    taken = greedy_allocate(cands, demand, supply, frames.busy, frames.weeks)
    volunteers = {code: name for name, code in vocab.volunteers.items()}
    p = cands.pairs
    unit_names = {code: name for name, code in vocab.units.items()}
    rows = []
    for a in taken:
        d, s = int(p.d[a.arc]), int(p.s[a.arc])
        rows.append(dict(
            proposal_id=f"greedy-{uuid.uuid4().hex[:16]}", case_id=demand.case_id[d],
            item_id=demand.item_id[d], offer_id=supply.offer_id[s],
            slot=int(supply.slot[s]) if supply.slot[s] >= 0 else None,
            partner_id=supply.partner_id[s], kind=Kind(int(supply.kind[s])).wire,
            amount=round(a.amount, 4), unit=unit_names.get(int(demand.unit[d]), "units"),
            status=ProposalStatus.PROPOSED.value,
            window_start=datetime.fromtimestamp(a.start, UTC) if a.start is not None else None,
            window_end=datetime.fromtimestamp(a.end, UTC) if a.end is not None else None,
            score=round(float(cands.score[a.arc]), 3), explanation={"baseline": "greedy"},
            shard=shard, grid_id=demand.grid_id[d], created_at=now,
            beneficiary=demand.beneficiary[d],
            volunteer_id=(volunteers.get(int(supply.volunteer[s]))
                          if supply.kind[s] == VOLUNTEER else None),
        ))
    store.add_proposals(rows)
    return len(rows)
