"""JSON in and out: a problem as needs/offers/arcs with string ids, a solution as assignments.

Problem: {"needs": [{"id", "demand"=1, "splittable"=true, "required"=false}],
"offers": [{"id", "capacity"}], "arcs": [{"need", "offer", "utility", "use"=1, "pinned"?,
"previous"?, "capacity"? (most this arc may carry)}], "change_penalty"=0,
"conflicts"=[[[need, offer], ...], ...], "groups"=[{"id", "capacity", "offers": [offer ids]}]
(offers that together give at most the group's capacity, e.g. one volunteer's week across
their offers; an offer is in at most one group), "time_limit_s"=10, "workers"=2}.
Solution: {"status", "objective", "bound", "method", "assignments": [{"need", "offer",
"amount"}]}; an unknown objective or bound is null.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from matcher.solver.problem import Problem, Solution

__all__ = [
    "dump_solution",
    "load_problem",
    "problem_from_dict",
    "problem_to_dict",
    "solution_to_dict",
]


def load_problem(text: str) -> Problem:
    """Parse a problem from JSON text; ValueError says what is wrong and where."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc
    return problem_from_dict(data)


def problem_from_dict(data: Any) -> Problem:
    """Build a validated Problem from decoded JSON, applying the documented defaults."""
    if not isinstance(data, Mapping):
        raise ValueError("the problem must be a JSON object with needs, offers and arcs")
    needs = _list(data, "needs", "problem")
    offers = _list(data, "offers", "problem")
    arcs = _list(data, "arcs", "problem")
    need_ids = [_id(n, f"needs[{i}]") for i, n in enumerate(needs)]
    offer_ids = [_id(o, f"offers[{j}]") for j, o in enumerate(offers)]
    need_index = _index(need_ids, "need")
    offer_index = _index(offer_ids, "offer")

    arc_need, arc_offer = [], []
    arc_index: dict[tuple[str, str], int] = {}
    for a, arc in enumerate(arcs):
        where = f"arcs[{a}]"
        need = _field(arc, "need", str, where)
        offer = _field(arc, "offer", str, where)
        if need not in need_index:
            raise ValueError(f"{where}: unknown need id {need!r}")
        if offer not in offer_index:
            raise ValueError(f"{where}: unknown offer id {offer!r}")
        if (need, offer) in arc_index:
            raise ValueError(f"{where}: duplicate arc {need!r} -> {offer!r}")
        arc_index[need, offer] = a
        arc_need.append(need_index[need])
        arc_offer.append(offer_index[offer])

    has_pins = any("pinned" in arc for arc in arcs)
    has_previous = any("previous" in arc for arc in arcs)
    has_caps = any("capacity" in arc for arc in arcs)
    conflicts = [
        _conflict(group, arc_index, f"conflicts[{g}]")
        for g, group in enumerate(_list(data, "conflicts", "problem", required=False))
    ]
    offer_group, group_capacity = _groups(_list(data, "groups", "problem", required=False),
                                          offer_index)
    problem = Problem(
        need_ids=need_ids,
        demand=np.array(
            [_int(n, "demand", 1, f"needs[{i}]") for i, n in enumerate(needs)], dtype=np.int64
        ),
        splittable=np.array(
            [_field(n, "splittable", bool, f"needs[{i}]", True) for i, n in enumerate(needs)],
            dtype=bool,
        ),
        required=np.array(
            [_field(n, "required", bool, f"needs[{i}]", False) for i, n in enumerate(needs)],
            dtype=bool,
        ),
        offer_ids=offer_ids,
        capacity=np.array(
            [_int(o, "capacity", None, f"offers[{j}]") for j, o in enumerate(offers)],
            dtype=np.int64,
        ),
        arc_need=np.array(arc_need, dtype=np.int32),
        arc_offer=np.array(arc_offer, dtype=np.int32),
        arc_utility=np.array(
            [_number(arc, "utility", f"arcs[{a}]") for a, arc in enumerate(arcs)],
            dtype=np.float64,
        ),
        arc_use=np.array(
            [_int(arc, "use", 1, f"arcs[{a}]") for a, arc in enumerate(arcs)], dtype=np.int64
        ),
        pinned=_optional_column(arcs, "pinned") if has_pins else None,
        previous=_optional_column(arcs, "previous") if has_previous else None,
        change_penalty=_number(data, "change_penalty", "problem", 0.0),
        conflicts=conflicts,
        time_limit_s=_number(data, "time_limit_s", "problem", 10.0),
        workers=_int(data, "workers", 2, "problem"),
        arc_capacity=_arc_caps(arcs) if has_caps else None,
        offer_group=offer_group,
        group_capacity=group_capacity,
    )
    problem.validate()
    return problem


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """The JSON form of a problem (inverse of problem_from_dict)."""
    need_ids, offer_ids = list(problem.need_ids), list(problem.offer_ids)
    arcs: list[dict[str, Any]] = []
    for a, (i, j) in enumerate(
        zip(problem.arc_need.tolist(), problem.arc_offer.tolist(), strict=True)
    ):
        arc: dict[str, Any] = {
            "need": need_ids[i],
            "offer": offer_ids[j],
            "utility": float(problem.arc_utility[a]),
            "use": int(problem.arc_use[a]),
        }
        if problem.pinned is not None:
            arc["pinned"] = int(problem.pinned[a])
        if problem.previous is not None:
            arc["previous"] = int(problem.previous[a])
        if problem.arc_capacity is not None:
            arc["capacity"] = int(problem.arc_capacity[a])
        arcs.append(arc)
    pair = [
        [need_ids[i], offer_ids[j]]
        for i, j in zip(problem.arc_need.tolist(), problem.arc_offer.tolist(), strict=True)
    ]
    out: dict[str, Any] = {
        "needs": [
            {"id": nid, "demand": int(d), "splittable": bool(s), "required": bool(r)}
            for nid, d, s, r in zip(
                need_ids,
                problem.demand.tolist(),
                problem.splittable.tolist(),
                problem.required.tolist(),
                strict=True,
            )
        ],
        "offers": [
            {"id": oid, "capacity": int(c)}
            for oid, c in zip(offer_ids, problem.capacity.tolist(), strict=True)
        ],
        "arcs": arcs,
        "change_penalty": float(problem.change_penalty),
        "conflicts": [[pair[a] for a in group.tolist()] for group in problem.conflicts],
        "time_limit_s": float(problem.time_limit_s),
        "workers": int(problem.workers),
    }
    if problem.offer_group is not None and problem.group_capacity is not None:
        members: list[list[str]] = [[] for _ in problem.group_capacity.tolist()]
        for offer_id, group in zip(offer_ids, problem.offer_group.tolist(), strict=True):
            if group >= 0:
                members[group].append(offer_id)
        out["groups"] = [{"id": f"g{g}", "capacity": int(capacity), "offers": offers}
                         for g, (capacity, offers) in enumerate(
                             zip(problem.group_capacity.tolist(), members, strict=True))]
    return out


def solution_to_dict(solution: Solution, problem: Problem) -> dict[str, Any]:
    """The JSON form of a solution; non-finite objective or bound become null."""
    return {
        "status": str(solution.status),
        "objective": _finite(solution.objective),
        "bound": _finite(solution.bound),
        "method": solution.method,
        "assignments": [
            {"need": need, "offer": offer, "amount": amount}
            for need, offer, amount in solution.assignments(problem)
        ],
    }


def dump_solution(solution: Solution, problem: Problem) -> str:
    """Solution as indented JSON text."""
    return json.dumps(solution_to_dict(solution, problem), indent=2)


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unknown objective or bound is null."""
    return value if math.isfinite(value) else None


def _list(data: Mapping[str, Any], key: str, where: str, required: bool = True) -> list[Any]:
    """A list field, or [] when optional and absent."""
    if key not in data:
        if required:
            raise ValueError(f"{where}: missing {key!r}")
        return []
    value = data[key]
    if not isinstance(value, list):
        raise ValueError(f"{where}: {key!r} must be a list")
    return value


def _field(
    item: Any, key: str, kind: type | tuple[type, ...], where: str, default: Any = None
) -> Any:
    """A typed field of a JSON object, with a default when absent (None = mandatory)."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where} must be an object")
    if key not in item:
        if default is None:
            raise ValueError(f"{where}: missing {key!r}")
        return default
    value = item[key]
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "number"
        raise ValueError(f"{where}.{key} must be a {name}, got {value!r}")
    return value


def _id(item: Any, where: str) -> str:
    """The id of a need or offer."""
    return str(_field(item, "id", str, where))


def _int(item: Any, key: str, default: int | None, where: str) -> int:
    """A non-boolean integer field (JSON 2.0 is accepted as 2)."""
    value = _field(item, key, (int, float), where, default)
    if isinstance(value, bool) or not math.isfinite(value) or float(value) != int(value):
        raise ValueError(f"{where}.{key} must be a whole number, got {value!r}")
    return int(value)


def _number(item: Any, key: str, where: str, default: float | None = None) -> float:
    """A real-number field."""
    value = _field(item, key, (int, float), where, default)
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{where}.{key} must be a number, got {value!r}")
    return float(value)


def _optional_column(arcs: list[Any], key: str) -> np.ndarray:
    """An optional per-arc integer, 0 where an arc leaves it out."""
    return np.array([_int(arc, key, 0, f"arcs[{a}]") for a, arc in enumerate(arcs)], dtype=np.int64)


def _arc_caps(arcs: list[Any]) -> np.ndarray:
    """Per-arc caps; an arc without one is limited only by its need's demand."""
    big = np.iinfo(np.int64).max
    return np.array(
        [_int(arc, "capacity", big, f"arcs[{a}]") for a, arc in enumerate(arcs)], dtype=np.int64
    )


def _index(ids: list[str], what: str) -> dict[str, int]:
    """Position of each id; duplicates are an error."""
    index: dict[str, int] = {}
    for position, item_id in enumerate(ids):
        if item_id in index:
            raise ValueError(f"duplicate {what} id {item_id!r}")
        index[item_id] = position
    return index


def _conflict(group: Any, arc_index: dict[tuple[str, str], int], where: str) -> np.ndarray:
    """Arc indices of one conflict group given as [need, offer] pairs."""
    if not isinstance(group, list):
        raise ValueError(f"{where} must be a list of [need, offer] pairs")
    out = []
    for p, pair in enumerate(group):
        if not (isinstance(pair, list) and len(pair) == 2 and _all_str(pair)):
            raise ValueError(f"{where}[{p}] must be a [need, offer] pair of ids, got {pair!r}")
        key = (pair[0], pair[1])
        if key not in arc_index:
            raise ValueError(f"{where}[{p}]: no arc {pair[0]!r} -> {pair[1]!r}")
        out.append(arc_index[key])
    return np.array(out, dtype=np.int64)


def _groups(groups: list[Any], offer_index: dict[str, int]
            ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Shared-capacity groups as the problem holds them: a group per offer (-1: none) and a
    capacity per group; (None, None) without groups."""
    if not groups:
        return None, None
    offer_group = np.full(len(offer_index), -1, dtype=np.int64)
    capacity = []
    _index([_id(group, f"groups[{g}]") for g, group in enumerate(groups)], "group")
    for g, group in enumerate(groups):
        where = f"groups[{g}]"
        capacity.append(_int(group, "capacity", None, where))
        members = _field(group, "offers", list, where)
        for m, offer in enumerate(members):
            if not isinstance(offer, str) or offer not in offer_index:
                raise ValueError(f"{where}.offers[{m}]: unknown offer id {offer!r}")
            if offer_group[offer_index[offer]] >= 0:
                raise ValueError(f"{where}.offers[{m}]: offer {offer!r} is already in a group "
                                 "(an offer is in at most one)")
            offer_group[offer_index[offer]] = g
    return offer_group, np.array(capacity, dtype=np.int64)


def _all_str(items: list[Any]) -> bool:
    """True when every item is a string."""
    return all(isinstance(item, str) for item in items)
