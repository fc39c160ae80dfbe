"""First-come-first-served greedy matching: the baseline the engine is measured against.

Eligibility is the engine's own: the same frames, hard rules and scores from `matcher.domain`
(`generate` with the same K). Only the allocation differs: no solver, each need item in order
of arrival takes the best-scored eligible offers that still have capacity, and volunteer visits
are placed in time as they are taken (so no volunteer is in two places at once).
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

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
from matcher.domain.schedule import earliest_free_start
from matcher.domain.scoring import ScoringContext, Weights
from matcher.storage.store import Store
from schemas.matches import ProposalStatus

KIND_NAMES = ("volunteer", "goods", "service")
VOLUNTEER, SERVICE = 0, 2


@dataclass(frozen=True)
class Allocation:
    """One arc taken by the greedy: `amount` in item units, a time for visits and sessions."""

    arc: int
    amount: float
    start: float | None
    end: float | None


def arrival_order(demand: Demand) -> list[int]:
    """Demand rows in order of arrival: case opening time, then the store's (case, item) order."""
    return np.lexsort((np.arange(len(demand)), demand.opened_at)).tolist()


def _floor_units(amount: float, scale: float) -> float:
    """`amount` rounded down to whole solver units (quarter hours, tenths, sessions)."""
    return math.floor(amount * scale + 1e-6) / scale


def greedy_allocate(cands: Candidates, demand: Demand, supply: Supply,
                    busy: dict[int, list[tuple[float, float]]] | None = None
                    ) -> list[Allocation]:
    """Each item in arrival order takes its best-scored eligible offers while capacity lasts.

    A splittable item takes as much as it can from each offer in turn until it is served; an
    item that may not be split takes the first offer that can serve all of it. Amounts are
    whole solver units, as the engine's are. A volunteer visit that no longer fits the
    volunteer's day is skipped, like the engine's placement does.
    """
    p = cands.pairs
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


def _volunteer_busy(store: Store, vocab: Vocabulary) -> dict[int, list[tuple[float, float]]]:
    """Visits already promised per volunteer (as the engine's batch sees them)."""
    volunteer_of = {o.offer_id: o.payload.get("volunteer_id") for o in store.active_offers()
                    if o.kind == "volunteer"}
    busy: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for proposal in store.holding_volunteer_visits():
        volunteer = volunteer_of.get(proposal.offer_id)
        if volunteer is None or proposal.window_start is None or proposal.window_end is None:
            continue
        busy[vocab.code(vocab.volunteers, volunteer)].append(
            (proposal.window_start.timestamp(), proposal.window_end.timestamp()))
    return busy


def greedy_batch(store: Store, shard: str, now: datetime, *, weights: Weights | None = None,
                 k: int = 30) -> int:
    """A batch of the baseline: the engine's state and candidates, allocated greedily.

    Allocations are stored as proposals (status proposed, so they hold capacity exactly as
    the engine's do); no events are queued. Returns how many proposals were made.
    """
    nodes = {node.node_id: node for node in store.all_nodes()}
    items = store.open_items(shard)
    offers = store.active_offers(shard)
    served = store.served_by_item(shard)
    vocab = Vocabulary()
    demand = build_demand(items, served, nodes, vocab)
    supply = build_supply([{"offer_id": o.offer_id, "payload": o.payload} for o in offers],
                          store.held_by_offer(shard), nodes, vocab)
    history = frozenset((ben, vocab.code(vocab.volunteers, vol))
                        for ben, vol in store.volunteer_history())
    # Terms of the item alone (urgency, waiting, grid coverage) never change the order of one
    # item's offers, so this context ranks offers (and keeps the top k) as the engine does.
    cands = generate(demand, supply, now=now.timestamp(), weights=weights or Weights(),
                     context=ScoringContext(history=history),
                     excluded=store.excluded_pairs(shard), k=k)
    taken = greedy_allocate(cands, demand, supply, _volunteer_busy(store, vocab))
    p = cands.pairs
    unit_names = {code: name for name, code in vocab.units.items()}
    rows = []
    for a in taken:
        d, s = int(p.d[a.arc]), int(p.s[a.arc])
        rows.append(dict(
            proposal_id=f"greedy-{uuid.uuid4().hex[:16]}", case_id=demand.case_id[d],
            item_id=demand.item_id[d], offer_id=supply.offer_id[s],
            slot=int(supply.slot[s]) if supply.slot[s] >= 0 else None,
            partner_id=supply.partner_id[s], kind=KIND_NAMES[int(supply.kind[s])],
            amount=round(a.amount, 4), unit=unit_names.get(int(demand.unit[d]), "units"),
            status=ProposalStatus.PROPOSED.value,
            window_start=datetime.fromtimestamp(a.start, UTC) if a.start is not None else None,
            window_end=datetime.fromtimestamp(a.end, UTC) if a.end is not None else None,
            score=round(float(cands.score[a.arc]), 3), explanation={"baseline": "greedy"},
            shard=shard, grid_id=demand.grid_id[d], created_at=now,
        ))
    store.add_proposals(rows)
    return len(rows)
