"""Candidate pairs (demand row, supply row) and the per-pair facts rules and scores share.

Two joins make pairs. `join_by_need` makes every pair of the same kind and need (small
batches, tests). `NearbyIndex` makes only the pairs of the same kind, need and unit that may
be within reach, through a grid of map cells, so a district-wide batch costs what its
reachable pairs cost, not demand x supply; it also counts, per item, the pairs it never made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from matcher.domain.frames import BoolArray, Demand, FloatArray, IntArray, Supply

EARTH_RADIUS_KM = 6371.0
SECONDS_PER_HOUR = 3600.0
KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0
# Side of a map cell of the reach index: small enough that a cell adds little beyond a
# volunteer's radius, large enough that a 15 km radius covers a few hundred cells.
CELL_KM = 1.5
# Reach is screened on a flat map with this slack; the exact rule (`within_reach`, haversine)
# decides afterwards. Over a district the flat distance errs by far less than 0.1 %.
SCREEN_SLACK = 1.001
SCREEN_SLACK_KM = 0.01


def _need_keys(demand: Demand, supply: Supply, with_unit: bool
               ) -> tuple[IntArray, IntArray, IntArray]:
    """(demand key, supply key per key entry, supply row per key entry) on kind, need [, unit]."""
    n_needs = int(max(demand.need.max(initial=0), supply.key_need.max(initial=0))) + 1
    demand_key = demand.kind * n_needs + demand.need
    supply_key = supply.kind[supply.key_row] * n_needs + supply.key_need
    if with_unit:
        n_units = int(max(demand.unit.max(initial=0), supply.unit.max(initial=0))) + 1
        demand_key = demand_key * n_units + demand.unit
        supply_key = supply_key * n_units + supply.unit[supply.key_row]
    return demand_key, supply_key, supply.key_row


def count_by_need(demand: Demand, supply: Supply, *, same_unit: bool = False) -> IntArray:
    """Per demand row, how many pairs `join_by_need` makes (of those, in the item's unit)."""
    if len(demand) == 0 or len(supply.key_row) == 0:
        return np.zeros(len(demand), dtype=np.int64)
    demand_key, supply_key, _ = _need_keys(demand, supply, same_unit)
    sorted_key = np.sort(supply_key)
    return (np.searchsorted(sorted_key, demand_key, side="right")
            - np.searchsorted(sorted_key, demand_key, side="left")).astype(np.int64)


def _expand_ranges(low: IntArray, high: IntArray) -> tuple[IntArray, IntArray]:
    """For ranges [low, high): (range number, position) of every position, in order."""
    counts = high - low
    which = np.repeat(np.arange(len(low), dtype=np.int64), counts)
    position = np.arange(len(which), dtype=np.int64) + np.repeat(low - (np.cumsum(counts)
                                                                        - counts), counts)
    return which, position


def join_by_need(demand: Demand, supply: Supply) -> tuple[IntArray, IntArray]:
    """Every (demand, supply) pair of the same kind and need: the only pairs worth a look.

    Done as a sorted join on a (kind, need) key, so the work grows with the pairs produced,
    never with demand x supply.
    """
    if len(demand) == 0 or len(supply.key_row) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    demand_key, supply_key, key_row = _need_keys(demand, supply, False)
    order = np.argsort(supply_key, kind="stable")
    sorted_key = supply_key[order]
    low = np.searchsorted(sorted_key, demand_key, side="left")
    high = np.searchsorted(sorted_key, demand_key, side="right")
    d, position = _expand_ranges(low, high)
    return d, key_row[order[position]]


def haversine_km(lat1: FloatArray, lon1: FloatArray, lat2: FloatArray,
                 lon2: FloatArray) -> FloatArray:
    """Great-circle distance; NaN where a point is unknown."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass
class Pairs:
    """Candidate pairs with lazily computed shared facts (distance, time overlap)."""

    demand: Demand
    supply: Supply
    d: IntArray
    s: IntArray
    now: float
    excluded: set[tuple[str, str, str]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.d)

    def subset(self, mask: BoolArray) -> Pairs:
        """The pairs where mask holds (facts already computed are kept, not recomputed)."""
        return self.take(mask)

    def take(self, mask: BoolArray | IntArray) -> Pairs:
        """The pairs a mask or an index array selects, with the facts computed so far."""
        kept = Pairs(self.demand, self.supply, self.d[mask], self.s[mask], self.now,
                     self.excluded)
        for name in _PAIR_FACTS:
            if name in self.__dict__:
                value = self.__dict__[name]
                kept.__dict__[name] = (tuple(part[mask] for part in value)
                                       if isinstance(value, tuple) else value[mask])
        return kept

    @cached_property
    def distance_km(self) -> FloatArray:
        """Distance between the beneficiary and the offer's place (haversine, as `haversine_km`).

        Radians and cosines of latitudes are taken once per row, not once per pair.
        """
        demand, supply, d, s = self.demand, self.supply, self.d, self.s
        lat_d, lat_s = np.radians(demand.lat), np.radians(supply.lat)
        dp = lat_s[s] - lat_d[d]
        dl = np.radians(supply.lon[s] - demand.lon[d])
        a = np.sin(dp / 2) ** 2 + np.cos(lat_d)[d] * np.cos(lat_s)[s] * np.sin(dl / 2) ** 2
        return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))

    @cached_property
    def usable_start(self) -> FloatArray:
        """Earliest moment of use: the item's window start, but never in the past."""
        return np.maximum(self.demand.start, self.now)[self.d]

    @cached_property
    def best_overlap(self) -> FloatArray:
        """Overlap seconds of the supply window that overlaps the item most: `best_window`'s
        first part, without its moments (the rule needs only this, on many more pairs)."""
        if "best_window" in self.__dict__:
            return self.best_window[0]
        supply = self.supply
        first = supply.window_ptr[self.s]
        counts = supply.window_ptr[self.s + 1] - first
        overlap = np.where(counts == 0, np.inf, -np.inf)
        begin, finish = self.usable_start, self.demand.end[self.d]
        for j in range(int(counts.max(initial=0))):
            pair = np.flatnonzero(counts > j)
            every = len(pair) == len(counts)  # the first window of offers that all have one
            window = first + j if every else first[pair] + j
            length = (np.minimum(supply.window_end[window], finish if every else finish[pair])
                      - np.maximum(supply.window_start[window],
                                   begin if every else begin[pair]))
            # As in `best_window`, a window that is not longer (or not a number) changes nothing.
            if every:
                overlap = np.fmax(overlap, length)
            else:
                overlap[pair] = np.fmax(overlap[pair], length)
        return overlap

    @cached_property
    def best_window(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(overlap seconds, start, end) of the supply window that overlaps the item most.

        Goods have no windows: they are available throughout (overlap +inf).
        """
        supply = self.supply
        first = supply.window_ptr[self.s]
        counts = supply.window_ptr[self.s + 1] - first
        overlap = np.where(counts == 0, np.inf, -np.inf)
        start = self.usable_start.copy()
        end = self.demand.end[self.d].copy()
        # Window by window (offers have a handful): a later window wins only when it overlaps
        # strictly more, so among equals the first one is kept.
        for j in range(int(counts.max(initial=0))):
            pair = np.flatnonzero(counts > j)
            window = first[pair] + j
            w_start = np.maximum(supply.window_start[window], self.usable_start[pair])
            w_end = np.minimum(supply.window_end[window], self.demand.end[self.d[pair]])
            length = w_end - w_start
            better = length > overlap[pair]
            pair = pair[better]
            overlap[pair] = length[better]
            start[pair] = w_start[better]
            end[pair] = w_end[better]
        return overlap, start, end

    @cached_property
    def slot_fits(self) -> BoolArray:
        """For service slots: the whole slot lies inside the usable part of the item's window."""
        ptr = self.supply.window_ptr
        has_window = ptr[self.s + 1] > ptr[self.s]
        first = np.where(has_window, ptr[self.s], 0)
        if len(self.supply.window_start) == 0:
            return np.zeros(len(self.d), dtype=np.bool_)
        slot_start = self.supply.window_start[first]
        slot_end = self.supply.window_end[first]
        inside = (slot_start >= self.usable_start) & (slot_end <= self.demand.end[self.d])
        return has_window & inside

    @cached_property
    def amount_cap(self) -> FloatArray:
        """Most of the item this supply can serve on its own (item units)."""
        overlap_hours = self.best_window[0] / SECONDS_PER_HOUR
        remaining = self.supply.remaining[self.s]
        volunteer = self.supply.kind[self.s] == 0
        cap = np.where(volunteer, np.minimum(remaining, overlap_hours), remaining)
        return np.minimum(cap, self.demand.open_qty[self.d])



@dataclass(frozen=True)
class FlatMap:
    """A flat map of the district in km, for screening distances cheaply.

    East-west degrees are scaled at the highest latitude of the district, so a flat distance
    never exceeds the great-circle distance (beyond rounding): screening with it loses nothing.
    """

    lat0: float
    lon0: float
    km_per_degree_lon: float

    @staticmethod
    def around(lat: FloatArray, lon: FloatArray) -> FlatMap:
        """The map of these (finite) points."""
        if len(lat) == 0:
            return FlatMap(0.0, 0.0, KM_PER_DEGREE)
        widest = min(89.0, float(np.abs(lat).max()))
        return FlatMap(float(lat.min()), float(lon.min()),
                       KM_PER_DEGREE * math.cos(math.radians(widest)))

    def xy(self, lat: FloatArray, lon: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Map coordinates (km east, km north of the corner)."""
        return (lon - self.lon0) * self.km_per_degree_lon, (lat - self.lat0) * KM_PER_DEGREE


class NearbyIndex:
    """Supply by (kind, need, unit, zone): pairs that may be within reach, without the others.

    A zone is a map cell or a workstation. An offer that reaches by radius is filed under
    every cell its circle touches (and under its workstation, for beneficiaries without a
    known place); one that reaches its workstation's street is filed under that workstation
    (or everywhere, when it is based at the centre); one that reaches the whole district is
    filed everywhere. An item looks up its own cell and its workstation. The pairs it
    returns are a superset of those `within_reach` accepts among pairs of the same kind, need
    and unit; the exact rules still run on them.
    """

    def __init__(self, demand: Demand, supply: Supply, cell_km: float = CELL_KM) -> None:
        self.demand, self.supply, self.cell_km = demand, supply, cell_km
        self.located = np.isfinite(demand.lat) & np.isfinite(demand.lon)
        self.district_wide = np.isposinf(supply.radius_km)
        self.by_radius = (np.isfinite(supply.radius_km) & np.isfinite(supply.lat)
                          & np.isfinite(supply.lon))
        self.reach_km = np.where(self.by_radius, supply.radius_km, 0.0) * SCREEN_SLACK \
            + SCREEN_SLACK_KM
        self.map = FlatMap.around(
            np.concatenate([demand.lat[self.located], supply.lat[self.by_radius]]),
            np.concatenate([demand.lon[self.located], supply.lon[self.by_radius]]))
        self.dx, self.dy = self.map.xy(demand.lat, demand.lon)
        self.sx, self.sy = self.map.xy(supply.lat, supply.lon)
        corner = np.concatenate([self.dx[self.located], self.sx[self.by_radius]])
        top = np.concatenate([self.dy[self.located], self.sy[self.by_radius]])
        self.nx = int(corner.max(initial=0.0) // cell_km) + 1
        self.ny = int(top.max(initial=0.0) // cell_km) + 1
        n_ws = int(max(demand.workstation.max(initial=-1), supply.workstation.max(initial=-1)))
        self.n_ws = n_ws + 1
        cells = self.nx * self.ny
        # Zone numbers: cells, then workstations (+ anywhere), then the same for offers that
        # reach by radius as seen by beneficiaries without a known place.
        self.any_ws = cells + self.n_ws
        self.unplaced = cells + self.n_ws + 1
        self.unplaced_any = cells + 2 * self.n_ws + 1
        self.n_zones = cells + 2 * self.n_ws + 2
        self.demand_key, supply_key, key_row = _need_keys(demand, supply, True)
        zone_row, zone = self._supply_zones()
        # Every (need entry, zone of its row) becomes an entry; entries sorted by key.
        per_row = np.bincount(zone_row, minlength=len(supply))
        zone_ptr = np.concatenate([[0], np.cumsum(per_row)])
        entry, position = _expand_ranges(zone_ptr[key_row], zone_ptr[key_row + 1])
        keys = supply_key[entry] * self.n_zones + zone[position]
        order = np.argsort(keys, kind="stable")
        self.entry_key = keys[order]
        self.entry_row = key_row[entry][order]
        self.entry_cell = (zone[position] < cells)[order]
        empty = np.zeros(0, dtype=np.int64)
        self._known: tuple[IntArray, tuple[IntArray, IntArray, IntArray]] = (
            empty, (empty, empty, empty))

    def _supply_zones(self) -> tuple[IntArray, IntArray]:
        """(supply row, zone) for every zone a supply row is filed under."""
        supply, size = self.supply, self.cell_km
        rows = np.arange(len(supply), dtype=np.int64)
        ws = supply.workstation
        by_ws = ~self.by_radius
        # District-wide offers, like those based at the centre, are filed under "anywhere".
        ws_zone = np.where((ws >= 0) & ~self.district_wide, self.nx * self.ny + ws,
                           self.any_ws)
        unplaced_zone = np.where(ws >= 0, self.unplaced + ws, self.unplaced_any)
        circle = np.flatnonzero(self.by_radius)
        cx, cy, reach = self.sx[circle], self.sy[circle], self.reach_km[circle]
        x0 = np.clip(np.floor((cx - reach) / size), 0, self.nx - 1).astype(np.int64)
        x1 = np.clip(np.floor((cx + reach) / size), 0, self.nx - 1).astype(np.int64)
        y0 = np.clip(np.floor((cy - reach) / size), 0, self.ny - 1).astype(np.int64)
        y1 = np.clip(np.floor((cy + reach) / size), 0, self.ny - 1).astype(np.int64)
        width = x1 - x0 + 1
        which, k = _expand_ranges(np.zeros(len(circle), np.int64), width * (y1 - y0 + 1))
        ix = x0[which] + k % width[which]
        iy = y0[which] + k // width[which]
        # Keep the cells the circle touches: nearest point of the cell within reach.
        near_x = np.clip(cx[which], ix * size, (ix + 1) * size) - cx[which]
        near_y = np.clip(cy[which], iy * size, (iy + 1) * size) - cy[which]
        touches = near_x ** 2 + near_y ** 2 <= reach[which] ** 2
        zone_row = np.concatenate([rows[by_ws], circle[which[touches]], circle])
        zone = np.concatenate([ws_zone[by_ws], (iy * self.nx + ix)[touches],
                               unplaced_zone[circle]])
        order = np.argsort(zone_row, kind="stable")
        return zone_row[order], zone[order]

    def _lookups(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """(demand row, zone) of every zone the rows look up."""
        demand = self.demand
        located = self.located[rows]
        ws = demand.workstation[rows]
        has_ws = ws >= 0
        cell = (np.floor(np.where(located, self.dy[rows], 0.0) / self.cell_km) * self.nx
                + np.floor(np.where(located, self.dx[rows], 0.0) / self.cell_km)).astype(np.int64)
        parts = [
            (rows[located], cell[located]),
            (rows[has_ws], self.nx * self.ny + ws[has_ws]),
            (rows, np.full(len(rows), self.any_ws)),
            (rows[~located & has_ws], self.unplaced + ws[~located & has_ws]),
            (rows[~located], np.full(int((~located).sum()), self.unplaced_any)),
        ]
        return (np.concatenate([part[0] for part in parts]),
                np.concatenate([part[1] for part in parts]).astype(np.int64))

    def _ranges(self, rows: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """(demand row, low, high) of the sorted entries each lookup of the rows covers.

        Ranges found by `counts` are kept, so a run of those rows is not looked up twice.
        """
        known, (known_row, known_low, known_high) = self._known
        first = int(np.searchsorted(known, rows[0])) if len(rows) else 0
        if len(rows) and np.array_equal(known[first:first + len(rows)], rows):
            span = slice(*np.searchsorted(known_row, [rows[0], rows[-1] + 1]))
            return known_row[span], known_low[span], known_high[span]
        row, zone = self._lookups(rows)
        key = self.demand_key[row] * self.n_zones + zone
        return (row, np.searchsorted(self.entry_key, key, side="left"),
                np.searchsorted(self.entry_key, key, side="right"))

    def counts(self, rows: IntArray) -> IntArray:
        """Per row (increasing), how many entries its lookups cover: the work its pairs cost."""
        row, low, high = self._ranges(rows)
        order = np.argsort(row, kind="stable")
        self._known = rows, (row[order], low[order], high[order])
        total = np.bincount(row, weights=high - low, minlength=len(self.demand))
        return total[rows].astype(np.int64)

    def pairs(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """(d, s) of the rows' pairs that may be within reach, in no particular order."""
        row, low, high = self._ranges(rows)
        lookup, position = _expand_ranges(low, high)
        d = row[lookup]
        s = self.entry_row[position]
        # In a cell, keep the offers whose circle reaches the item on the flat map.
        cell = self.entry_cell[position]
        far = np.zeros(len(d), dtype=np.bool_)
        dc, sc = d[cell], s[cell]
        far[cell] = ((self.dx[dc] - self.sx[sc]) ** 2 + (self.dy[dc] - self.sy[sc]) ** 2
                     > self.reach_km[sc] ** 2)
        return d[~far], s[~far]


# Cached facts of a Pairs that a subset keeps (each an array, or a tuple of arrays, per pair).
_PAIR_FACTS = ("distance_km", "usable_start", "best_overlap", "best_window", "slot_fits",
               "amount_cap")
