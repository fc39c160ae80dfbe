"""Solver-neutral problem and solution types: needs, offers and the arcs between them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from matcher.solver.prepare import group_room, sum_by

__all__ = ["Problem", "Solution", "Status", "group_load", "objective_value", "violations"]


class Status(StrEnum):
    """Outcome of a solve, named as OR-Tools names it."""

    OPTIMAL = "OPTIMAL"
    FEASIBLE = "FEASIBLE"
    INFEASIBLE = "INFEASIBLE"
    UNKNOWN = "UNKNOWN"


# Expected dtype kind per array field: "i" integer, "b" boolean, "f" real.
_NEED_FIELDS = {"demand": "i", "splittable": "b", "required": "b"}
_OFFER_FIELDS = {"capacity": "i"}
_ARC_FIELDS = {"arc_need": "i", "arc_offer": "i", "arc_utility": "f", "arc_use": "i"}
_OPTIONAL_ARC_FIELDS = {"pinned": "i", "previous": "i", "arc_capacity": "i"}
_GROUP_FIELDS = {"offer_group": "i", "group_capacity": "i"}
_EMPTY_DTYPE = {"i": np.int64, "b": np.bool_, "f": np.float64}


@dataclass(frozen=True, eq=False)
class Problem:
    """A batch to match: needs with demand, offers with capacity, candidate arcs between them.

    Needs and offers are columns of parallel numpy arrays; arc `a` links need
    `arc_need[a]` to offer `arc_offer[a]`. Lists are accepted and turned into arrays.
    `previous` and `change_penalty` only matter together: without a previous plan
    nothing is penalised. `arc_capacity` (optional, last so positions stay stable) caps
    the amount on single arcs; a whole need can only use an arc whose cap covers it.
    `offer_group` and `group_capacity` (optional, together) put offers into shared-capacity
    groups: the offers of one group together give at most the group's capacity (one
    volunteer's week across all their offers). Each offer is in at most one group (-1: none),
    so the groups nest over the offers and the problem stays a flow.
    `eq=False` because numpy fields have no single truth value.
    """

    need_ids: Sequence[str]
    demand: np.ndarray
    splittable: np.ndarray
    required: np.ndarray
    offer_ids: Sequence[str]
    capacity: np.ndarray
    arc_need: np.ndarray
    arc_offer: np.ndarray
    arc_utility: np.ndarray
    arc_use: np.ndarray
    pinned: np.ndarray | None = None
    previous: np.ndarray | None = None
    change_penalty: float = 0.0
    conflicts: Sequence[np.ndarray] = ()
    time_limit_s: float = 10.0
    workers: int = 2
    arc_capacity: np.ndarray | None = None  # int64 per arc: most it may carry (None: no limit)
    offer_group: np.ndarray | None = None  # int per offer: its shared-capacity group, or -1
    group_capacity: np.ndarray | None = None  # int64 per group: most its offers give together

    def __post_init__(self) -> None:
        """Turn list inputs into arrays so tests and JSON readers can pass plain lists."""
        fields = {**_NEED_FIELDS, **_OFFER_FIELDS, **_ARC_FIELDS, **_OPTIONAL_ARC_FIELDS,
                  **_GROUP_FIELDS}
        for name, kind in fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value)
            if array.size == 0:
                # np.asarray([]) is float64; an empty column should still have the right kind.
                array = array.astype(_EMPTY_DTYPE[kind])
            if array is not value:
                object.__setattr__(self, name, array)
        object.__setattr__(
            self, "conflicts", tuple(np.asarray(group, dtype=np.int64) for group in self.conflicts)
        )

    @property
    def num_needs(self) -> int:
        """Number of needs."""
        return len(self.need_ids)

    @property
    def num_offers(self) -> int:
        """Number of offers."""
        return len(self.offer_ids)

    @property
    def num_arcs(self) -> int:
        """Number of candidate arcs."""
        return int(np.shape(self.arc_need)[0]) if np.ndim(self.arc_need) else 0

    def validate(self) -> None:
        """Raise ValueError naming the first wrong shape, index or number."""
        n, m = self.num_needs, self.num_offers
        if len(set(self.need_ids)) != n:
            raise ValueError("need_ids must be unique")
        if len(set(self.offer_ids)) != m:
            raise ValueError("offer_ids must be unique")
        k = self.num_arcs
        _check_columns(self, _NEED_FIELDS, n, "one per need")
        _check_columns(self, _OFFER_FIELDS, m, "one per offer")
        _check_columns(self, _ARC_FIELDS, k, "one per arc")
        _check_columns(
            self,
            {f: kind for f, kind in _OPTIONAL_ARC_FIELDS.items() if getattr(self, f) is not None},
            k,
            "one per arc",
        )
        _check_non_negative(self, ["demand", "capacity", "pinned", "previous", "arc_capacity",
                                   "group_capacity"])
        if (self.offer_group is None) != (self.group_capacity is None):
            raise ValueError("offer_group and group_capacity go together")
        if self.offer_group is not None and self.group_capacity is not None:
            _check_columns(self, {"offer_group": "i"}, m, "one per offer")
            groups = int(np.shape(self.group_capacity)[0])
            _check_columns(self, {"group_capacity": "i"}, groups, "one per group")
            if self.offer_group.size and (int(self.offer_group.min()) < -1
                                          or int(self.offer_group.max()) >= groups):
                raise ValueError(f"offer_group must hold group indices (0..{groups - 1}) or -1")
        _check_index(self.arc_need, n, "arc_need", "need")
        _check_index(self.arc_offer, m, "arc_offer", "offer")
        if k and int(self.arc_use.min()) < 1:
            a = int(np.argmin(self.arc_use))
            raise ValueError(f"arc_use[{a}] = {int(self.arc_use[a])}; every arc uses at least 1")
        if k and not np.all(np.isfinite(self.arc_utility)):
            a = int(np.flatnonzero(~np.isfinite(self.arc_utility))[0])
            raise ValueError(f"arc_utility[{a}] = {self.arc_utility[a]} is not a finite number")
        if not (math.isfinite(self.change_penalty) and self.change_penalty >= 0):
            raise ValueError(f"change_penalty = {self.change_penalty} must be finite and >= 0")
        for g, group in enumerate(self.conflicts):
            if group.ndim != 1:
                raise ValueError(f"conflicts[{g}] must be a flat list of arc indices")
            _check_index(group, k, f"conflicts[{g}]", "arc")
        if not (math.isfinite(self.time_limit_s) and self.time_limit_s > 0):
            raise ValueError(f"time_limit_s = {self.time_limit_s} must be a positive number")
        if int(self.workers) < 1:
            raise ValueError(f"workers = {self.workers} must be at least 1")


def _check_columns(problem: Problem, fields: dict[str, str], length: int, what: str) -> None:
    """Check each named column is a 1-D array of the right length and kind."""
    for name, kind in fields.items():
        array = getattr(problem, name)
        if not isinstance(array, np.ndarray) or array.ndim != 1:
            raise ValueError(f"{name} must be a 1-D numpy array ({what})")
        if array.shape[0] != length:
            raise ValueError(f"{name} has {array.shape[0]} entries, expected {length} ({what})")
        ok = {"i": "iu", "b": "b", "f": "iuf"}[kind]
        if array.size and array.dtype.kind not in ok:
            wanted = {"i": "integers", "b": "booleans", "f": "numbers"}[kind]
            raise ValueError(f"{name} must hold {wanted}, got dtype {array.dtype}")


def _check_non_negative(problem: Problem, names: list[str]) -> None:
    """Check that amounts and capacities are not negative."""
    for name in names:
        array = getattr(problem, name)
        if array is not None and array.size and int(array.min()) < 0:
            i = int(np.argmin(array))
            raise ValueError(f"{name}[{i}] = {int(array[i])} is negative")


def _check_index(array: np.ndarray, size: int, name: str, what: str) -> None:
    """Check that every entry indexes into a table of `size` rows."""
    if array.size == 0:
        return
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer indices, got dtype {array.dtype}")
    bad = np.flatnonzero((array < 0) | (array >= size))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {int(array[i])} is not a {what} index (0..{size - 1})")


@dataclass(frozen=True, eq=False)
class Solution:
    """What a solve found: an integer amount per arc, its objective and a proven upper bound.

    `objective` is -inf when no solution is known (INFEASIBLE, or UNKNOWN after a time-out);
    `bound` is -inf when the problem is proven infeasible and +inf when nothing is proven.
    `note` says in words why a problem is infeasible or unsolved, when that is known.
    """

    status: Status
    objective: float
    bound: float
    amount: np.ndarray
    method: str
    build_s: float
    solve_s: float
    note: str = ""

    @property
    def has_solution(self) -> bool:
        """True for OPTIMAL and FEASIBLE: `amount` is a plan that can be used."""
        return self.status in (Status.OPTIMAL, Status.FEASIBLE)

    @property
    def gap(self) -> float:
        """Relative optimality gap (bound - objective) / max(1, |bound|); inf when unknown."""
        if not (math.isfinite(self.objective) and math.isfinite(self.bound)):
            return math.inf
        return max(0.0, self.bound - self.objective) / max(1.0, abs(self.bound))

    def assignments(self, problem: Problem) -> list[tuple[str, str, int]]:
        """The plan as (need_id, offer_id, amount) triples, for arcs with a positive amount."""
        used = np.flatnonzero(self.amount > 0)
        needs = np.asarray(problem.arc_need)[used].tolist()
        offers = np.asarray(problem.arc_offer)[used].tolist()
        amounts = self.amount[used].tolist()
        return [
            (problem.need_ids[i], problem.offer_ids[j], a)
            for i, j, a in zip(needs, offers, amounts, strict=True)
        ]


def objective_value(problem: Problem, amount: np.ndarray) -> float:
    """Utility of a plan minus the change penalty, in the problem's own units."""
    value = float(np.dot(np.asarray(problem.arc_utility, dtype=np.float64), amount))
    if problem.previous is not None and problem.change_penalty:
        moved = np.abs(amount.astype(np.int64) - problem.previous.astype(np.int64)).sum()
        value -= problem.change_penalty * float(moved)
    return value


def violations(problem: Problem, amount: np.ndarray) -> list[str]:
    """Every rule a plan breaks, in words; empty when the plan is feasible (a checker for tests)."""
    out: list[str] = []
    amount = np.asarray(amount, dtype=np.int64)
    need = problem.arc_need.astype(np.intp)
    offer = problem.arc_offer.astype(np.intp)
    n, m = problem.num_needs, problem.num_offers
    if amount.shape != (problem.num_arcs,):
        return [f"amount has shape {amount.shape}, expected ({problem.num_arcs},)"]
    if amount.size and amount.min() < 0:
        out.append("negative amount")
    served = sum_by(need, amount, n)
    load = sum_by(offer, amount * problem.arc_use.astype(np.int64), m)
    demand, capacity = problem.demand.tolist(), problem.capacity.tolist()
    need_ids, offer_ids = problem.need_ids, problem.offer_ids
    for i in np.flatnonzero(served > problem.demand).tolist():
        out.append(f"need {need_ids[i]} served {served[i]} > demand {demand[i]}")
    for i in np.flatnonzero(problem.required & (served != problem.demand)).tolist():
        out.append(f"required need {need_ids[i]} served {served[i]} != demand {demand[i]}")
    for j in np.flatnonzero(load > problem.capacity).tolist():
        out.append(f"offer {offer_ids[j]} loaded {load[j]} > capacity {capacity[j]}")
    non_split = ~problem.splittable[need] & (amount > 0)
    arcs_used = sum_by(need, non_split.astype(np.int64), n)
    for a in np.flatnonzero(non_split & (amount != problem.demand[need])).tolist():
        out.append(f"arc {a}: non-splittable need served {amount[a]} != demand")
    for i in np.flatnonzero(arcs_used > 1).tolist():
        out.append(f"non-splittable need {need_ids[i]} served by {arcs_used[i]} arcs")
    for g, used, cap in group_overloads(problem, amount):
        out.append(f"offer group {g} loaded {used} > capacity {cap}")
    if problem.arc_capacity is not None:
        for a in np.flatnonzero(amount > problem.arc_capacity).tolist():
            out.append(f"arc {a}: amount {amount[a]} above its cap {problem.arc_capacity[a]}")
    if problem.pinned is not None:
        for a in np.flatnonzero(amount < problem.pinned).tolist():
            out.append(f"arc {a}: amount {amount[a]} below pinned {problem.pinned[a]}")
    for g, group in enumerate(problem.conflicts):
        if np.count_nonzero(amount[np.unique(group)]) > 1:
            out.append(f"conflict group {g} has more than one arc in use")
    return out


def group_load(problem: Problem, amount: np.ndarray) -> np.ndarray:
    """Capacity used per shared-capacity group by a plan (empty without groups)."""
    if problem.group_capacity is None:
        return np.zeros(0, dtype=np.int64)
    return problem.group_capacity.astype(np.int64) - group_room(problem, amount)


def group_overloads(problem: Problem, amount: np.ndarray) -> list[tuple[int, int, int]]:
    """(group, load, capacity) of every group a plan loads beyond its capacity."""
    if problem.group_capacity is None:
        return []
    load = group_load(problem, amount)
    return [(g, int(load[g]), int(problem.group_capacity[g]))
            for g in np.flatnonzero(load > problem.group_capacity).tolist()]
