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
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from matcher.domain.kinds import SOLVER_SCALE, Kind  # noqa: F401  (SOLVER_SCALE: re-exported)
from matcher.domain.reach import SERVICE_TRAVEL_KM, ReachDefaults, offer_place, resolve_reach

GROUP_CODES = {
    "elderly_alone": 0, "elderly": 1, "disabled": 2, "low_income": 3,
    "left_behind_child": 4, "child_in_difficulty": 5, "ill_or_recovering": 6,
}
NO_TIME = math.inf
SERVICE_REACH_KM = SERVICE_TRAVEL_KM  # the old name, kept for callers

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


@lru_cache(maxsize=1 << 16)
def iso_epoch(text: str) -> float:
    """Seconds since the epoch of an ISO moment as payloads store it; the same windows are
    read batch after batch, so each string is parsed once."""
    return datetime.fromisoformat(text).timestamp()


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

    @cached_property
    def row_of_item(self) -> dict[tuple[str, str], int]:
        """Row of each (case, item)."""
        return {key: row for row, key in enumerate(zip(self.case_id, self.item_id, strict=True))}

    @cached_property
    def beneficiaries(self) -> Coded:
        """The beneficiary pseudonym of each row, coded."""
        return Coded.of(self.beneficiary)

    @cached_property
    def grids(self) -> Coded:
        """The grid id of each row, coded."""
        return Coded.of(self.grid_id)


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
    radius_km: FloatArray  # NaN: reach is the offer node's workstation; +inf: the district
    reach_mode: IntArray  # `reach.MODE_CODES`: travel, pickup, delivery, district, workstation
    workstation: IntArray
    studio: IntArray
    grid: IntArray
    volunteer: IntArray  # -1 for goods and services
    weekly_limit: FloatArray  # the volunteer's stated hours per week; NaN for goods and services
    skill_rank: list[dict[int, int]]  # need code -> position in the volunteer's skill list
    window_ptr: IntArray
    window_start: FloatArray
    window_end: FloatArray
    key_row: IntArray  # (key_row[i], key_need[i]): the supply row gives that need
    key_need: IntArray

    def __len__(self) -> int:
        return len(self.offer_id)

    @cached_property
    def offers(self) -> Coded:
        """The offer id of each row, coded (the slots of one offer share a code)."""
        return Coded.of(self.offer_id)

    @cached_property
    def key_rank(self) -> IntArray:
        """Per (key_row, key_need) entry: the need's place in the row's list (its skill rank)."""
        entries = np.arange(len(self.key_row), dtype=np.int64)
        first = np.searchsorted(self.key_row, self.key_row, side="left")
        return entries - first


@dataclass(frozen=True)
class Coded:
    """Strings coded as integers: `codes[i]` is the code of value i, `index` maps value -> code."""

    codes: IntArray
    index: dict[str, int]

    @staticmethod
    def of(values: Sequence[str]) -> Coded:
        """Codes in order of first appearance."""
        index: dict[str, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64,
                            count=len(values))
        return Coded(codes, index)


def _node_location(nodes: Mapping[str, Any], node_id: str) -> tuple[float, float]:
    """A node's point, NaN when unknown."""
    node = nodes.get(node_id)
    if node is None or node.lat is None or node.lon is None:
        return math.nan, math.nan
    return float(node.lat), float(node.lon)


def build_demand(items: Sequence[Mapping[str, Any]], served: Mapping[tuple[str, str], float],
                 nodes: Mapping[str, Any], vocab: Vocabulary) -> Demand:
    """Demand rows for items with something left to serve."""
    text: dict[str, list[str]] = {name: [] for name in (
        "case_id", "item_id", "grid_id", "beneficiary")}
    ints: dict[str, list[int]] = {name: [] for name in (
        "kind", "need", "unit", "urgency", "vulnerability", "group", "language_mask",
        "workstation", "studio", "grid")}
    reals: dict[str, list[float]] = {name: [] for name in (
        "open_qty", "total_qty", "start", "end", "lat", "lon", "opened_at")}
    flags: dict[str, list[bool]] = {"recurring": [], "splittable": []}
    preferred: set[tuple[int, int]] = set()
    # Items of one grid share its place; items asking the same languages share a mask.
    places: dict[str, tuple[tuple[int, int, int], tuple[float, float]]] = {}
    masks: dict[tuple[str, ...], int] = {}
    for item in items:
        done = served.get((item["case_id"], item["item_id"]), 0.0)
        open_qty = item["quantity"] - done
        if open_qty <= 1e-9 or (done > 1e-9 and not item["splittable"]):
            continue  # served in full, or a whole item one offer already serves
        row = len(text["item_id"])
        ben = item["beneficiary"]
        prefs = item["preferences"]
        grid_id = item["grid_id"]
        if grid_id not in places:
            places[grid_id] = (vocab.place_codes(nodes[grid_id].path),
                               _node_location(nodes, grid_id))
        (ws, st, gr), grid_point = places[grid_id]
        location = ben.get("location") or None
        lat, lon = (location["lat"], location["lon"]) if location else grid_point
        for partner in prefs.get("preferred_partner_ids", []):
            preferred.add((row, vocab.code(vocab.partners, partner)))
        languages = tuple(prefs.get("languages", []))
        if languages not in masks:
            masks[languages] = vocab.language_mask(languages)
        for name, word in zip(("case_id", "item_id", "grid_id", "beneficiary"),
                              (item["case_id"], item["item_id"], grid_id, ben["pseudonym"]),
                              strict=True):
            text[name].append(word)
        for name, number in zip(ints, (
                Kind.of(item["kind"]), vocab.code(vocab.needs, item["need"].lower()),
                vocab.code(vocab.units, item["unit"].lower()), item["urgency"],
                ben["vulnerability"], GROUP_CODES.get(ben["group"], 0), masks[languages],
                ws, st, gr), strict=True):
            ints[name].append(number)
        for name, real in zip(reals, (
                open_qty, item["quantity"], epoch(item["window_start"]),
                min(epoch(item["window_end"]), epoch(item["deadline"])), lat, lon,
                epoch(item["opened_at"])), strict=True):
            reals[name].append(real)
        flags["recurring"].append(bool(prefs.get("recurring", False)))
        flags["splittable"].append(bool(item["splittable"]))
    columns: dict[str, Any] = {
        **text,
        **{name: np.asarray(values, dtype=np.int64) for name, values in ints.items()},
        **{name: np.asarray(values, dtype=np.float64) for name, values in reals.items()},
        **{name: np.asarray(values, dtype=np.bool_) for name, values in flags.items()},
    }
    return Demand(**columns, preferred=preferred)


def offer_needs(payload: Mapping[str, Any]) -> list[str]:
    """The needs an offer gives: a volunteer's skills, the goods' category, the service."""
    kind = payload["kind"]
    if kind == "volunteer":
        return [skill.lower() for skill in payload["skills"]]
    return [(payload["category"] if kind == "goods" else payload["service_type"]).lower()]


def supply_units(offer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Split an offer payload into supply units: one per offer, or one per service slot."""
    payload = offer["payload"]
    kind = payload["kind"]
    if kind == "volunteer":
        windows = [(w["start"], w["end"]) for w in payload["availability"]]
        hours = sum(iso_epoch(e) - iso_epoch(s) for s, e in windows) / 3600.0
        capacity = min(float(payload["weekly_hour_limit"]), hours)
        return [{"slot": -1, "capacity": capacity, "windows": windows,
                 "needs": offer_needs(payload), "unit": "hours"}]
    if kind == "goods":
        return [{"slot": -1, "capacity": float(payload["quantity"]), "windows": [],
                 "needs": offer_needs(payload), "unit": payload["unit"].lower()}]
    needs = offer_needs(payload)
    return [
        {"slot": index, "capacity": float(slot["places"]),
         "windows": [(slot["window"]["start"], slot["window"]["end"])],
         "needs": needs, "unit": "sessions"}
        for index, slot in enumerate(payload["slots"])
    ]


def free_windows(windows: Sequence[tuple[float, float]],
                 busy: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of the windows outside every busy interval (all as epoch seconds)."""
    free: list[tuple[float, float]] = []
    taken = sorted(busy)
    for start, end in windows:
        t = start
        for busy_start, busy_end in taken:
            if busy_end <= t or busy_start >= end:
                continue
            if busy_start > t:
                free.append((t, busy_start))
            t = max(t, busy_end)
        if t < end:
            free.append((t, end))
    return free


def build_supply(offers: Sequence[Mapping[str, Any]],
                 held: Mapping[tuple[str, int | None], float],
                 nodes: Mapping[str, Any], vocab: Vocabulary,
                 busy: Mapping[str, Sequence[tuple[float, float]]] | None = None, *,
                 reach: ReachDefaults | None = None, full: bool = False) -> Supply:
    """Supply rows for active offers with capacity left.

    `busy` (volunteer id -> promised visits, epoch seconds) takes those visits out of the
    volunteers' windows, so candidates and amounts only count time the volunteer still has.
    `reach`: partners' default reach and the service travel distance (see `reach.py`); nodes
    give their own defaults. `full`: the units with no capacity left instead, so an item can
    be told that eligible offers existed but were taken.
    """
    reach = reach or ReachDefaults()
    rows: dict[str, list[Any]] = {name: [] for name in Supply.__dataclass_fields__}
    starts: list[float] = []
    ends: list[float] = []
    pointer = [0]
    # Offers at one node share its place; volunteers speaking the same languages, a mask.
    places: dict[str, tuple[tuple[int, int, int], tuple[float, float]]] = {}
    masks: dict[tuple[str, ...], int] = {}
    for offer in offers:
        # Capacity first: most live goods offers are spent, and the rest of an offer's
        # framing (reach, place, groups) is paid only for units that make rows.
        units = []
        for unit in supply_units(offer):
            slot_key = None if unit["slot"] < 0 else unit["slot"]
            remaining = unit["capacity"] - held.get((offer["offer_id"], slot_key), 0.0)
            if (remaining <= 1e-9) == full:
                units.append((unit, max(remaining, 0.0)))
        if not units:
            continue
        payload = offer["payload"]
        node_id = payload["node_id"]
        if node_id not in places:
            places[node_id] = (vocab.place_codes(nodes[node_id].path),
                               _node_location(nodes, node_id))
        (ws, st, gr), node_point = places[node_id]
        kind = payload["kind"]
        is_volunteer = kind == "volunteer"
        location = offer_place(payload)
        lat, lon = (location["lat"], location["lon"]) if location else node_point
        reaches = resolve_reach(payload, has_own_place=location is not None, nodes=nodes,
                                defaults=reach)
        expires = iso_epoch(payload["expires_at"]) if payload.get("expires_at") else NO_TIME
        eligibility = sum(1 << GROUP_CODES[g] for g in payload.get("eligibility", [])
                          if g in GROUP_CODES)
        for unit, remaining in units:
            row = len(rows["offer_id"])
            needs = [vocab.code(vocab.needs, need) for need in unit["needs"]]
            partner = vocab.code(vocab.partners, payload["partner_id"])
            unit_code = vocab.code(vocab.units, unit["unit"])
            language_mask = -1
            if is_volunteer:
                languages = tuple(payload["languages"])
                if languages not in masks:
                    masks[languages] = vocab.language_mask(languages)
                language_mask = masks[languages]
            values = (
                ("offer_id", offer["offer_id"]), ("slot", unit["slot"]), ("partner", partner),
                ("partner_id", payload["partner_id"]), ("kind", Kind.of(kind)),
                ("unit", unit_code), ("remaining", remaining), ("capacity", unit["capacity"]),
                ("expires", expires), ("language_mask", language_mask),
                ("eligibility", eligibility), ("lat", lat), ("lon", lon),
                ("radius_km", reaches.radius_km), ("reach_mode", reaches.code),
                ("workstation", ws), ("studio", st), ("grid", gr),
                ("volunteer", vocab.code(vocab.volunteers, payload["volunteer_id"])
                 if is_volunteer else -1),
                ("weekly_limit", float(payload["weekly_hour_limit"]) if is_volunteer
                 else math.nan),
                ("skill_rank", {need: rank for rank, need in enumerate(needs)}),
            )
            for name, value in values:
                rows[name].append(value)
            rows["key_row"].extend([row] * len(needs))
            rows["key_need"].extend(needs)
            windows = [(iso_epoch(start), iso_epoch(end)) for start, end in unit["windows"]]
            if busy and is_volunteer and payload["volunteer_id"] in busy and windows:
                # A fully booked volunteer keeps one empty window: no window means "any time".
                windows = (free_windows(windows, busy[payload["volunteer_id"]])
                           or [(windows[0][0], windows[0][0])])
            for start, end in windows:
                starts.append(start)
                ends.append(end)
            pointer.append(len(starts))
    columns: dict[str, Any] = {
        **{name: np.asarray(rows[name], dtype=np.int64) for name in (
            "slot", "partner", "kind", "unit", "language_mask", "eligibility", "workstation",
            "studio", "grid", "volunteer", "key_row", "key_need", "reach_mode")},
        **{name: np.asarray(rows[name], dtype=np.float64) for name in (
            "remaining", "capacity", "expires", "lat", "lon", "radius_km", "weekly_limit")},
    }
    return Supply(
        offer_id=rows["offer_id"], partner_id=rows["partner_id"], skill_rank=rows["skill_rank"],
        **columns,
        window_ptr=np.asarray(pointer, dtype=np.int64),
        window_start=np.asarray(starts, dtype=np.float64),
        window_end=np.asarray(ends, dtype=np.float64),
    )
