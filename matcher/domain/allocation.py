"""From candidates to allocations: the solver's problem, and the solver's amounts placed in time.

Pure: numpy arrays in, plain values out. Continuous matching and the nightly rebalance both
build their problem with `build_problem` and place visits with `place_volunteer_visits`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matcher.domain.candidates import Candidates
from matcher.domain.frames import Demand, IntArray, Supply
from matcher.domain.kinds import SOLVER_SCALE, Kind
from matcher.domain.schedule import earliest_free_start
from matcher.domain.weeks import DEFAULT_ZONE, weeks_of
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


# --- a volunteer's week: one limit across all their offers ----------------------------------


@dataclass(frozen=True)
class WeekBudget:
    """Hours each volunteer already gives per week (any offer, any shard: proposed, approved
    or fulfilled), keyed by (volunteer code, week); and the zone whose calendar counts weeks."""

    committed: Mapping[tuple[int, int], float] = field(default_factory=dict)
    zone: str = DEFAULT_ZONE
    # Limits stated by offers the supply rows may not show (e.g. one already fully booked),
    # per volunteer code: the lowest stated anywhere counts.
    limits: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WeeklyGroups:
    """The solver's offers and shared groups for volunteers' weekly limits.

    Problem offer j < len(supply) is supply row j (for a volunteer row: its earliest week in
    the batch); a volunteer row whose arcs fall in several weeks gets one more problem offer
    per further week. Every volunteer problem offer belongs to the group of its (volunteer,
    week), whose capacity is the volunteer's limit less the hours already given that week.
    """

    arc_offer: IntArray  # problem offer of each arc
    arc_week: IntArray  # week of each arc (where its best window starts), -1 without time
    offer_row: IntArray  # supply row of each problem offer
    offer_week: IntArray  # week of each problem offer, -1 for goods and services
    offer_group: IntArray  # group of each problem offer, -1 for goods and services
    group_volunteer: IntArray  # volunteer code of each group
    group_week: IntArray  # week of each group
    group_hours: np.ndarray  # hours each group may still give


def volunteer_limits(supply: Supply, stated: Mapping[int, float] | None = None
                     ) -> dict[int, float]:
    """Each volunteer's weekly limit: the lowest any of their offers states (the rows of the
    supply, and `stated` for offers without a row), since the lower never over-books."""
    rows = np.flatnonzero(supply.kind == Kind.VOLUNTEER)
    limits: dict[int, float] = dict(stated or {})
    for volunteer, limit in zip(supply.volunteer[rows].tolist(),
                                supply.weekly_limit[rows].tolist(), strict=True):
        limits[volunteer] = min(limit, limits.get(volunteer, limit))
    return limits


def weekly_groups(supply: Supply, cands: Candidates, budget: WeekBudget) -> WeeklyGroups:
    """Problem offers split by week and grouped per (volunteer, week); see `WeeklyGroups`."""
    p = cands.pairs
    m = len(supply)
    volunteer_arc = supply.kind[p.s] == Kind.VOLUNTEER
    _, w_start, _ = p.best_window
    arc_week = np.where(volunteer_arc, weeks_of(np.where(volunteer_arc, w_start, 0.0),
                                                budget.zone), -1)
    arc_offer = p.s.astype(np.int64).copy()
    offer_row = np.arange(m, dtype=np.int64)
    offer_week = np.full(m, -1, dtype=np.int64)
    vol = np.flatnonzero(volunteer_arc)
    if len(vol):
        pairs, inverse = np.unique(np.stack([p.s[vol], arc_week[vol]], axis=1), axis=0,
                                   return_inverse=True)
        inverse = inverse.reshape(-1)
        rows, weeks = pairs[:, 0], pairs[:, 1]
        # Sorted by (row, week): the first entry of a row is its earliest week.
        first = np.ones(len(rows), dtype=np.bool_)
        first[1:] = rows[1:] != rows[:-1]
        index = np.where(first, rows, 0)
        extra = np.flatnonzero(~first)
        index[extra] = m + np.arange(len(extra))
        arc_offer[vol] = index[inverse]
        offer_week[rows[first]] = weeks[first]
        offer_row = np.concatenate([offer_row, rows[extra]])
        offer_week = np.concatenate([offer_week, weeks[extra]])
    is_volunteer = supply.kind[offer_row] == Kind.VOLUNTEER
    volunteer = supply.volunteer[offer_row]
    offer_group = np.full(len(offer_row), -1, dtype=np.int64)
    group_volunteer = group_week = np.zeros(0, dtype=np.int64)
    group_hours = np.zeros(0, dtype=np.float64)
    # A volunteer row without arcs carries nothing: it needs no group.
    grouped = np.flatnonzero(is_volunteer & (offer_week >= 0))
    if len(grouped):
        keys, inverse = np.unique(np.stack([volunteer[grouped], offer_week[grouped]], axis=1),
                                  axis=0, return_inverse=True)
        offer_group[grouped] = inverse.reshape(-1)
        group_volunteer, group_week = keys[:, 0].astype(np.int64), keys[:, 1].astype(np.int64)
        limits = volunteer_limits(supply, budget.limits)
        group_hours = np.asarray([
            max(0.0, limits[v] - budget.committed.get((v, w), 0.0))
            for v, w in zip(group_volunteer.tolist(), group_week.tolist(), strict=True)])
    return WeeklyGroups(arc_offer=arc_offer, arc_week=arc_week, offer_row=offer_row,
                        offer_week=offer_week, offer_group=offer_group,
                        group_volunteer=group_volunteer, group_week=group_week,
                        group_hours=group_hours)


def _week_hours(supply: Supply, groups: WeeklyGroups, zone: str) -> np.ndarray:
    """Free window hours of each volunteer problem offer within its week (inf otherwise)."""
    hours = np.full(len(groups.offer_row), np.inf)
    volunteer = np.flatnonzero(groups.offer_week >= 0)
    if not len(volunteer) or not len(supply.window_start):
        return hours
    counts = np.diff(supply.window_ptr)
    window_row = np.repeat(np.arange(len(supply)), counts)
    window_week = weeks_of(supply.window_start, zone)
    window_hours = (supply.window_end - supply.window_start) / 3600.0
    by_key: dict[tuple[int, int], float] = defaultdict(float)
    for row, week, h in zip(window_row.tolist(), window_week.tolist(), window_hours.tolist(),
                            strict=True):
        by_key[row, week] += max(h, 0.0)
    rows, weeks = groups.offer_row[volunteer].tolist(), groups.offer_week[volunteer].tolist()
    hours[volunteer] = [by_key.get((r, w), 0.0) for r, w in zip(rows, weeks, strict=True)]
    return hours


def build_problem(demand: Demand, supply: Supply, cands: Candidates, *, time_limit_s: float,
                  workers: int, weeks: WeekBudget | None = None) -> Problem:
    """The solver's view: integer units per kind, utility per unit = score / whole item.

    A volunteer gives at most their weekly limit per week across all their offers, less the
    hours `weeks` says they already give; each volunteer offer gives at most its free hours
    of that week.
    """
    p = cands.pairs
    budget = weeks or WeekBudget()
    groups = weekly_groups(supply, cands, budget)
    scale = SOLVER_SCALE[demand.kind]
    demand_units = np.maximum(np.rint(demand.open_qty * scale), 1).astype(np.int64)
    rows = groups.offer_row
    supply_scale = SOLVER_SCALE[supply.kind[rows]]
    room = np.minimum(supply.remaining[rows], _week_hours(supply, groups, budget.zone))
    capacity = np.floor(room * supply_scale + 1e-6).astype(np.int64)
    arc_scale = scale[p.d]
    utility = cands.score / (demand.total_qty[p.d] * arc_scale)
    arc_cap = np.floor(p.amount_cap * arc_scale + 1e-6).astype(np.int64)
    # An item of one unit is served whole or not at all anyway: keep it a flow.
    splittable = demand.splittable | (demand_units == 1)
    week_tag = ["" if w < 0 or j < len(supply) else f"@{w}"
                for j, w in enumerate(groups.offer_week.tolist())]
    return Problem(
        need_ids=[f"{c}/{i}" for c, i in zip(demand.case_id, demand.item_id, strict=True)],
        demand=demand_units,
        splittable=splittable,
        required=np.zeros(len(demand), dtype=np.bool_),
        offer_ids=[f"{supply.offer_id[r]}#{int(supply.slot[r])}{tag}"
                   for r, tag in zip(rows.tolist(), week_tag, strict=True)],
        capacity=capacity,
        arc_need=p.d.astype(np.int32),
        arc_offer=groups.arc_offer.astype(np.int32),
        arc_utility=utility,
        arc_use=np.ones(len(p), dtype=np.int64),
        arc_capacity=arc_cap,
        time_limit_s=time_limit_s,
        workers=workers,
        offer_group=groups.offer_group,
        group_capacity=np.floor(groups.group_hours * SOLVER_SCALE[Kind.VOLUNTEER] + 1e-6
                                ).astype(np.int64),
    )


def place_volunteer_visits(cands: Candidates, solution: Solution, demand: Demand,
                           supply: Supply, busy: Mapping[int, list[tuple[float, float]]],
                           weeks: WeekBudget | None = None) -> list[Allocation]:
    """Turn solver amounts into concrete visits, earliest deadline first.

    The solver sees a volunteer's hours, not their diary: a visit that no longer fits the
    volunteer's day goes to the item's next-best volunteer who still has the time and the
    hours (beyond the plan and the visits already promised); only when none has is it dropped.
    A visit never takes a volunteer beyond their weekly limit in the week it starts in
    (`weeks`: hours already given). `busy` holds the promised visits per volunteer code
    (epoch seconds).
    """
    p = cands.pairs
    budget = weeks or WeekBudget()
    week_room = _week_room(supply, cands, solution, budget)
    used = np.flatnonzero(solution.amount > 0)
    units = (solution.amount[used] / SOLVER_SCALE[demand.kind[p.d[used]]]).tolist()
    _, w_start, w_end = p.best_window
    planned = np.bincount(p.s[used], weights=units, minlength=len(supply))
    in_plan = np.zeros(len(p), dtype=np.bool_)
    in_plan[used] = True
    # Earliest deadline first, so tight windows get their place before loose ones.
    order = np.argsort(w_end[used], kind="stable").tolist()
    arcs = used.tolist()
    arc_week = weeks_of(np.where(supply.kind[p.s] == Kind.VOLUNTEER, w_start, 0.0),
                        budget.zone)
    kinds = supply.kind[p.s[used]].tolist()
    chosen: list[Allocation] = []
    schedule: dict[int, list[tuple[float, float]]] = {k: list(v) for k, v in busy.items()}
    spare: dict[int, float] = {}
    by_item: tuple[np.ndarray, np.ndarray] | None = None  # arcs sorted by item, their items

    def visit(arc: int, hours: float, origin: tuple[int, int]) -> Allocation | None:
        """The visit on this arc at the earliest free moment of its volunteer, if any, and
        if the (volunteer, week) it falls in still has the hours; the plan counted them in
        `origin`, which gets them back when the visit lands elsewhere."""
        volunteer = int(supply.volunteer[p.s[arc]])
        visits = schedule.setdefault(volunteer, [])
        start = earliest_free_start(visits, float(w_start[arc]), float(w_end[arc]),
                                    hours * 3600.0)
        if start is None:
            return None
        key = (volunteer, int(weeks_of(np.asarray([start]), budget.zone)[0]))
        if key != origin:
            if week_room.get(key, 0.0) < hours - 1e-9:
                return None
            week_room[key] -= hours
            week_room[origin] = week_room.get(origin, 0.0) + hours
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
            origin = (int(supply.volunteer[p.s[arc]]), int(arc_week[arc]))
            placed = visit(arc, amount, origin)
            for other in [] if placed else next_best(arc):
                s = int(p.s[other])
                if amount <= min(hours_left(s), float(p.amount_cap[other])) + 1e-9:
                    placed = visit(other, amount, origin)
                    if placed:
                        spare[s] -= amount
                        break
            if placed:
                chosen.append(placed)
        elif kind == Kind.SERVICE:
            chosen.append(Allocation(arc, amount, float(w_start[arc]), float(w_end[arc])))
        else:
            # Goods are handed over from now (or the item's window) until the item's deadline
            # or the lot's expiry, whichever comes first.
            end = min(float(w_end[arc]), float(supply.expires[p.s[arc]]))
            chosen.append(Allocation(arc, amount, float(w_start[arc]), end))
    return chosen


def _week_room(supply: Supply, cands: Candidates, solution: Solution, budget: WeekBudget
               ) -> dict[tuple[int, int], float]:
    """Hours each (volunteer, week) can still give beyond the solver's plan."""
    groups = weekly_groups(supply, cands, budget)
    hours = groups.group_hours.copy()
    used = np.flatnonzero((solution.amount > 0) & (groups.offer_group[groups.arc_offer] >= 0))
    if len(used):
        np.subtract.at(hours, groups.offer_group[groups.arc_offer[used]],
                       solution.amount[used] / SOLVER_SCALE[Kind.VOLUNTEER])
    return {(v, w): h for v, w, h in zip(groups.group_volunteer.tolist(),
                                         groups.group_week.tolist(), hours.tolist(),
                                         strict=True)}
