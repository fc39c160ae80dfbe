"""Candidate pairs (demand row, supply row) and the per-pair facts rules and scores share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from matcher.domain.frames import BoolArray, Demand, FloatArray, IntArray, Supply

EARTH_RADIUS_KM = 6371.0
SECONDS_PER_HOUR = 3600.0


def join_by_need(demand: Demand, supply: Supply) -> tuple[IntArray, IntArray]:
    """Every (demand, supply) pair of the same kind and need: the only pairs worth a look.

    Done as a sorted join on a (kind, need) key, so the work grows with the pairs produced,
    never with demand x supply.
    """
    if len(demand) == 0 or len(supply.key_row) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    n_needs = int(max(demand.need.max(initial=0), supply.key_need.max(initial=0))) + 1
    supply_key = supply.kind[supply.key_row] * n_needs + supply.key_need
    order = np.argsort(supply_key, kind="stable")
    sorted_key = supply_key[order]
    demand_key = demand.kind * n_needs + demand.need
    low = np.searchsorted(sorted_key, demand_key, side="left")
    high = np.searchsorted(sorted_key, demand_key, side="right")
    counts = high - low
    d = np.repeat(np.arange(len(demand), dtype=np.int64), counts)
    starts = np.repeat(low - np.cumsum(counts) + counts, counts)
    s = supply.key_row[order[starts + np.arange(len(d), dtype=np.int64)]]
    return d, s


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
        """The pairs where mask holds."""
        return Pairs(self.demand, self.supply, self.d[mask], self.s[mask], self.now,
                     self.excluded)

    @cached_property
    def distance_km(self) -> FloatArray:
        """Distance between the beneficiary and the offer's place."""
        return haversine_km(self.demand.lat[self.d], self.demand.lon[self.d],
                            self.supply.lat[self.s], self.supply.lon[self.s])

    @cached_property
    def usable_start(self) -> FloatArray:
        """Earliest moment of use: the item's window start, but never in the past."""
        return np.maximum(self.demand.start[self.d], self.now)

    @cached_property
    def best_window(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(overlap seconds, start, end) of the supply window that overlaps the item most.

        Goods have no windows: they are available throughout (overlap +inf).
        """
        supply = self.supply
        counts = supply.window_ptr[self.s + 1] - supply.window_ptr[self.s]
        overlap = np.where(counts == 0, np.inf, -np.inf)
        start = self.usable_start.copy()
        end = self.demand.end[self.d].copy()
        if counts.sum() == 0:
            return overlap, start, end
        pair = np.repeat(np.arange(len(self.d)), counts)
        first = np.repeat(supply.window_ptr[self.s] - np.cumsum(counts) + counts, counts)
        window = first + np.arange(len(pair))
        w_start = np.maximum(supply.window_start[window], self.usable_start[pair])
        w_end = np.minimum(supply.window_end[window], self.demand.end[self.d][pair])
        length = w_end - w_start
        # Highest overlap per pair: sort by (pair, -length) and keep each pair's first row.
        order = np.lexsort((-length, pair))
        keep = order[np.r_[True, pair[order][1:] != pair[order][:-1]]]
        overlap[pair[keep]] = length[keep]
        start[pair[keep]] = w_start[keep]
        end[pair[keep]] = w_end[keep]
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
