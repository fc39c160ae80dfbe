"""Column-wise views of open demand and remaining supply, so rules and scores run on arrays.

A *demand row* is one open need item. A *supply row* is one unit of capacity: a volunteer
offer, a goods offer, or one slot of a service offer. Both are built from plain dicts (rows
of the store) and a shared `Vocabulary`, so codes agree on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

KIND_CODES = {"volunteer": 0, "goods": 1, "service": 2}
GROUP_CODES = {
    "elderly_alone": 0, "elderly": 1, "disabled": 2, "low_income": 3,
    "left_behind_child": 4, "child_in_difficulty": 5, "ill_or_recovering": 6,
}
# Integer units the solver counts in: quarter hours, tenths of a goods unit, whole sessions.
SOLVER_SCALE = np.array([4.0, 10.0, 1.0])
NO_TIME = math.inf
# People travel to a service: within this distance of its place it is within their reach.
SERVICE_REACH_KM = 5.0

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass
class Vocabulary:
    """Shared codes for needs, units, languages, partners, volunteers and places."""

    needs: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    partners: dict[str, int] = field(default_factory=dict)
    volunteers: dict[str, int] = field(default_factory=dict)
    places: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def code(table: dict[str, int], value: str) -> int:
        """Code of a value in a table, adding it when new."""
        return table.setdefault(value, len(table))

    def language_mask(self, languages: Iterable[str]) -> int:
        """Bit mask of languages (at most 63 distinct languages are told apart)."""
        mask = 0
        for language in languages:
            mask |= 1 << (self.code(self.languages, language.lower()) % 63)
        return mask

    def place_codes(self, path: str) -> tuple[int, int, int]:
        """Codes of the workstation, studio and grid on a node path (-1 above that level)."""
        ids = [part for part in path.split("/") if part]
        return tuple(  # type: ignore[return-value]
            self.code(self.places, ids[depth]) if len(ids) > depth else -1 for depth in (1, 2, 3)
        )


def epoch(value: datetime | None) -> float:
    """Seconds since the epoch, +inf for 'never'."""
    return value.timestamp() if value is not None else NO_TIME


@dataclass(frozen=True)
class Demand:
    """Open need items, one row each."""

    case_id: list[str]
    item_id: list[str]
    grid_id: list[str]
    beneficiary: list[str]
    kind: IntArray
    need: IntArray
    unit: IntArray
    open_qty: FloatArray
    total_qty: FloatArray
    start: FloatArray
    end: FloatArray  # min(window end, deadline)
    urgency: IntArray
    vulnerability: IntArray
    group: IntArray
    language_mask: IntArray
    recurring: BoolArray
    splittable: BoolArray
    lat: FloatArray
    lon: FloatArray
    workstation: IntArray
    studio: IntArray
    grid: IntArray
    opened_at: FloatArray
    preferred: set[tuple[int, int]]  # (row, partner code)

    def __len__(self) -> int:
        return len(self.item_id)


@dataclass(frozen=True)
class Supply:
    """Units of remaining capacity, one row each; `windows` is flattened (CSR by `window_ptr`)."""

    offer_id: list[str]
    slot: IntArray  # service slot index, -1 otherwise
    partner: IntArray
    partner_id: list[str]
    kind: IntArray
    unit: IntArray
    remaining: FloatArray
    capacity: FloatArray
    expires: FloatArray
    language_mask: IntArray  # -1: speaks for everyone (goods, services)
    eligibility: IntArray  # bit mask of groups; 0: everyone
    lat: FloatArray
    lon: FloatArray
    radius_km: FloatArray  # NaN: reach is the offer node's subtree
    workstation: IntArray
    studio: IntArray
    grid: IntArray
    volunteer: IntArray  # -1 for goods and services
    skill_rank: list[dict[int, int]]  # need code -> position in the volunteer's skill list
    window_ptr: IntArray
    window_start: FloatArray
    window_end: FloatArray
    key_row: IntArray  # (key_row[i], key_need[i]): the supply row gives that need
    key_need: IntArray

    def __len__(self) -> int:
        return len(self.offer_id)


def _node_location(nodes: Mapping[str, Any], node_id: str) -> tuple[float, float]:
    """A node's point, NaN when unknown."""
    node = nodes.get(node_id)
    if node is None or node.lat is None or node.lon is None:
        return math.nan, math.nan
    return float(node.lat), float(node.lon)


def build_demand(items: Sequence[Mapping[str, Any]], served: Mapping[tuple[str, str], float],
                 nodes: Mapping[str, Any], vocab: Vocabulary) -> Demand:
    """Demand rows for items with something left to serve."""
    rows: dict[str, list[Any]] = {name: [] for name in Demand.__dataclass_fields__}
    preferred: set[tuple[int, int]] = set()
    for item in items:
        open_qty = item["quantity"] - served.get((item["case_id"], item["item_id"]), 0.0)
        if open_qty <= 1e-9:
            continue
        row = len(rows["item_id"])
        ben = item["beneficiary"]
        prefs = item["preferences"]
        location = ben.get("location") or None
        lat, lon = ((location["lat"], location["lon"]) if location
                    else _node_location(nodes, item["grid_id"]))
        ws, st, gr = vocab.place_codes(nodes[item["grid_id"]].path)
        for partner in prefs.get("preferred_partner_ids", []):
            preferred.add((row, vocab.code(vocab.partners, partner)))
        values = {
            "case_id": item["case_id"], "item_id": item["item_id"], "grid_id": item["grid_id"],
            "beneficiary": ben["pseudonym"], "kind": KIND_CODES[item["kind"]],
            "need": vocab.code(vocab.needs, item["need"].lower()),
            "unit": vocab.code(vocab.units, item["unit"].lower()), "open_qty": open_qty,
            "total_qty": item["quantity"], "start": epoch(item["window_start"]),
            "end": min(epoch(item["window_end"]), epoch(item["deadline"])),
            "urgency": item["urgency"], "vulnerability": ben["vulnerability"],
            "group": GROUP_CODES.get(ben["group"], 0),
            "language_mask": vocab.language_mask(prefs.get("languages", [])),
            "recurring": bool(prefs.get("recurring", False)),
            "splittable": bool(item["splittable"]), "lat": lat, "lon": lon,
            "workstation": ws, "studio": st, "grid": gr, "opened_at": epoch(item["opened_at"]),
        }
        for name, value in values.items():
            rows[name].append(value)
    return Demand(
        **{name: rows[name] for name in ("case_id", "item_id", "grid_id", "beneficiary")},
        **{name: np.asarray(rows[name], dtype=np.int64) for name in (
            "kind", "need", "unit", "urgency", "vulnerability", "group", "language_mask",
            "workstation", "studio", "grid")},
        **{name: np.asarray(rows[name], dtype=np.float64) for name in (
            "open_qty", "total_qty", "start", "end", "lat", "lon", "opened_at")},
        recurring=np.asarray(rows["recurring"], dtype=np.bool_),
        splittable=np.asarray(rows["splittable"], dtype=np.bool_),
        preferred=preferred,
    )


def _supply_units(offer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Split an offer payload into supply units: one per offer, or one per service slot."""
    payload = offer["payload"]
    kind = payload["kind"]
    if kind == "volunteer":
        windows = [(w["start"], w["end"]) for w in payload["availability"]]
        hours = sum((datetime.fromisoformat(e) - datetime.fromisoformat(s)).total_seconds()
                    for s, e in windows) / 3600.0
        capacity = min(float(payload["weekly_hour_limit"]), hours)
        return [{"slot": -1, "capacity": capacity, "windows": windows,
                 "needs": [s.lower() for s in payload["skills"]], "unit": "hours"}]
    if kind == "goods":
        return [{"slot": -1, "capacity": float(payload["quantity"]), "windows": [],
                 "needs": [payload["category"].lower()], "unit": payload["unit"].lower()}]
    return [
        {"slot": index, "capacity": float(slot["places"]),
         "windows": [(slot["window"]["start"], slot["window"]["end"])],
         "needs": [payload["service_type"].lower()], "unit": "sessions"}
        for index, slot in enumerate(payload["slots"])
    ]


def _reach_km(payload: Mapping[str, Any], location: Mapping[str, Any] | None) -> float:
    """How far from its place an offer reaches; NaN: it reaches its workstation instead."""
    if location is None:
        return math.nan
    if payload["kind"] == "volunteer":
        return float(payload["travel_radius_km"])
    if payload["kind"] == "service":
        return SERVICE_REACH_KM
    return math.nan


def build_supply(offers: Sequence[Mapping[str, Any]],
                 held: Mapping[tuple[str, int | None], float],
                 nodes: Mapping[str, Any], vocab: Vocabulary) -> Supply:
    """Supply rows for active offers with capacity left."""
    rows: dict[str, list[Any]] = {name: [] for name in Supply.__dataclass_fields__}
    starts: list[float] = []
    ends: list[float] = []
    pointer = [0]
    for offer in offers:
        payload = offer["payload"]
        node = nodes[payload["node_id"]]
        ws, st, gr = vocab.place_codes(node.path)
        for unit in _supply_units(offer):
            slot_key = None if unit["slot"] < 0 else unit["slot"]
            remaining = unit["capacity"] - held.get((offer["offer_id"], slot_key), 0.0)
            if remaining <= 1e-9:
                continue
            row = len(rows["offer_id"])
            location = payload.get("home") or payload.get("pickup") or payload.get("place")
            lat, lon = ((location["lat"], location["lon"]) if location
                        else _node_location(nodes, payload["node_id"]))
            is_volunteer = payload["kind"] == "volunteer"
            needs = [vocab.code(vocab.needs, need) for need in unit["needs"]]
            values = {
                "offer_id": offer["offer_id"], "slot": unit["slot"],
                "partner": vocab.code(vocab.partners, payload["partner_id"]),
                "partner_id": payload["partner_id"], "kind": KIND_CODES[payload["kind"]],
                "unit": vocab.code(vocab.units, unit["unit"]), "remaining": remaining,
                "capacity": unit["capacity"],
                "expires": epoch(datetime.fromisoformat(payload["expires_at"]))
                if payload.get("expires_at") else NO_TIME,
                "language_mask": vocab.language_mask(payload["languages"]) if is_volunteer
                else -1,
                "eligibility": sum(1 << GROUP_CODES[g] for g in payload.get("eligibility", [])
                                   if g in GROUP_CODES),
                "lat": lat, "lon": lon,
                "radius_km": _reach_km(payload, location),
                "workstation": ws, "studio": st, "grid": gr,
                "volunteer": vocab.code(vocab.volunteers, payload["volunteer_id"])
                if is_volunteer else -1,
                "skill_rank": {need: rank for rank, need in enumerate(needs)},
            }
            for name, value in values.items():
                rows[name].append(value)
            for need in needs:
                rows["key_row"].append(row)
                rows["key_need"].append(need)
            for start, end in unit["windows"]:
                starts.append(datetime.fromisoformat(start).timestamp())
                ends.append(datetime.fromisoformat(end).timestamp())
            pointer.append(len(starts))
    return Supply(
        offer_id=rows["offer_id"], partner_id=rows["partner_id"], skill_rank=rows["skill_rank"],
        **{name: np.asarray(rows[name], dtype=np.int64) for name in (
            "slot", "partner", "kind", "unit", "language_mask", "eligibility", "workstation",
            "studio", "grid", "volunteer", "key_row", "key_need")},
        **{name: np.asarray(rows[name], dtype=np.float64) for name in (
            "remaining", "capacity", "expires", "lat", "lon", "radius_km")},
        window_ptr=np.asarray(pointer, dtype=np.int64),
        window_start=np.asarray(starts, dtype=np.float64),
        window_end=np.asarray(ends, dtype=np.float64),
    )
