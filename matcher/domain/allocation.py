"""From candidates to allocations: the solver's problem, and the solver's amounts placed in time.

Pure: numpy arrays in, plain values out. Continuous matching and the nightly rebalance both
build their problem with `build_problem` and place visits with `place_volunteer_visits`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from matcher.domain.candidates import Candidates
from matcher.domain.frames import Demand, Supply
from matcher.domain.kinds import SOLVER_SCALE, Kind
from matcher.domain.schedule import earliest_free_start
from matcher.solver import Problem, Solution


@dataclass(frozen=True)
class Allocation:
    """An amount of one candidate arc to propose, with when it happens (if it has a time)."""

    arc: int
    amount: float
    start: float | None
    end: float | None


def coverage(items: Sequence[Mapping[str, Any]], served: Mapping[tuple[str, str], float]
             ) -> dict[str, float]:
    """Share of each grid's requested quantity served so far (unit-free: share per item)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for item in items:
        share = min(1.0, served.get((item["case_id"], item["item_id"]), 0.0) / item["quantity"])
        totals[item["grid_id"]][0] += share
        totals[item["grid_id"]][1] += 1.0
    return {grid: done / count for grid, (done, count) in totals.items()}


def build_problem(demand: Demand, supply: Supply, cands: Candidates, *, time_limit_s: float,
                  workers: int) -> Problem:
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
        time_limit_s=time_limit_s,
        workers=workers,
    )


def place_volunteer_visits(cands: Candidates, solution: Solution, demand: Demand,
                           supply: Supply, busy: Mapping[int, list[tuple[float, float]]]
                           ) -> list[Allocation]:
    """Turn solver amounts into concrete visits, earliest deadline first.

    The solver sees a volunteer's hours, not their diary: a visit that no longer fits the
    volunteer's day goes to the item's next-best volunteer who still has the time and the
    hours (beyond the plan and the visits already promised); only when none has is it dropped.
    `busy` holds the promised visits per volunteer code (epoch seconds).
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
    chosen: list[Allocation] = []
    schedule: dict[int, list[tuple[float, float]]] = {k: list(v) for k, v in busy.items()}
    spare: dict[int, float] = {}
    by_item: tuple[np.ndarray, np.ndarray] | None = None  # arcs sorted by item, their items

    def visit(arc: int, hours: float) -> Allocation | None:
        """The visit on this arc at the earliest free moment of its volunteer, if any."""
        visits = schedule.setdefault(int(supply.volunteer[p.s[arc]]), [])
        start = earliest_free_start(visits, float(w_start[arc]), float(w_end[arc]),
                                    hours * 3600.0)
        if start is None:
            return None
        visits.append((start, start + hours * 3600.0))
        return Allocation(arc, hours, start, start + hours * 3600.0)

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
        if kind == Kind.VOLUNTEER:
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
        elif kind == Kind.SERVICE:
            chosen.append(Allocation(arc, amount, float(w_start[arc]), float(w_end[arc])))
        else:
            chosen.append(Allocation(arc, amount, None, None))
    return chosen
