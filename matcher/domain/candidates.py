"""Candidate generation: join by need, filter by the hard rules, score, keep the best K."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.domain.frames import BoolArray, Demand, FloatArray, IntArray, Supply
from matcher.domain.pairs import NearbyIndex, Pairs, count_by_need
from matcher.domain.rules import RULES
from matcher.domain.scoring import (
    ScoringContext,
    Weights,
    term_values,
    weight_vector,
    weighted_score,
)

# The join screens pairs for the first three rules and only counts what they would turn away:
# an item past its deadline, goods counted in another unit, an offer out of reach.
SCREENED = ("deadline_not_passed", "unit_matches", "within_reach")
DEADLINE, UNIT, REACH = range(3)
# Pairs looked at in one go, to bound memory on district-wide batches.
CHUNK_PAIRS = 2_000_000


@dataclass(frozen=True)
class Candidates:
    """Eligible scored pairs, at most K per demand row, plus why the others fell away."""

    pairs: Pairs
    terms: FloatArray  # pairs x terms
    score: FloatArray  # per pair
    joined: IntArray  # per demand row: offers of the right kind and need, before the rules
    failed: IntArray  # demand rows x rules: pairs that failed at that rule first
    # Per demand row: eligible pairs beyond the best k were left out, so capacity this batch
    # could not see may still serve the row once its k are taken. None: not known.
    cut: BoolArray | None = None

    def __len__(self) -> int:
        return len(self.pairs)


def top_k_per_row(rows: IntArray, score: FloatArray, k: int,
                  tie: IntArray | None = None) -> IntArray:
    """Indices of the k highest scores within each row group (in no particular order).

    Equal scores are ranked by `tie` (lowest first), else by position. Rows with at most k
    entries keep them all without being sorted.
    """
    crowded = np.bincount(rows)[rows] > k
    if not crowded.any():
        return np.arange(len(rows))
    index = np.flatnonzero(crowded)
    keys = ((-score[index], rows[index]) if tie is None
            else (tie[index], -score[index], rows[index]))
    order = index[np.lexsort(keys)]
    sorted_rows = rows[order]
    group_start = np.r_[0, np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1]
    starts = np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    rank = np.arange(len(order)) - starts
    return np.concatenate([np.flatnonzero(~crowded), order[rank < k]])


def spread_ties(rows: IntArray, offers: IntArray) -> IntArray:
    """A tie-break that differs per item: among equally good offers, items keep different
    ones, so a district of identical lots does not send every item to the same K offers."""
    mixed = (rows.astype(np.uint64) * np.uint64(0x9E3779B1)
             + offers.astype(np.uint64) * np.uint64(0x85EBCA77))
    return ((mixed ^ (mixed >> np.uint64(15))) & np.uint64(0x7FFFFFFF)).astype(np.int64)


def _chunks(rows: IntArray, work: IntArray, limit: int) -> list[IntArray]:
    """Consecutive runs of rows whose work adds up to about `limit` each."""
    if len(rows) == 0:
        return []
    cut = np.searchsorted(np.cumsum(work), np.arange(limit, int(work.sum()), limit), "right")
    return [part for part in np.split(rows, np.unique(cut)) if len(part)]


def generate(demand: Demand, supply: Supply, *, now: float, weights: Weights,
             context: ScoringContext, excluded: set[tuple[str, str, str]] | None = None,
             k: int = 30, chunk_pairs: int = CHUNK_PAIRS,
             only: BoolArray | None = None) -> Candidates:
    """Eligible pairs, scored, the best k per need item.

    Pairs are made only for items still open to matching, with offers in their unit that
    may be within reach (see `pairs.NearbyIndex`); the pairs never made are counted under
    the rule that turns them away, so `failed` is what checking every pair would give.
    Chunks of items are made, checked and cut to their best pairs one at a time, so memory
    follows a chunk, not the district. `only`: pair only these demand rows (the counts of the
    others are not to be read).
    """
    assert tuple(rule.name for rule in RULES[:3]) == SCREENED, "the join screens these rules"
    excluded = excluded or set()
    joined = count_by_need(demand, supply)
    failed = np.zeros((len(demand), len(RULES)), dtype=np.int64)
    live = demand.end > now
    failed[~live, DEADLINE] = joined[~live]
    same_unit = count_by_need(demand, supply, same_unit=True)
    failed[live, UNIT] = joined[live] - same_unit[live]
    rows = np.flatnonzero(live & (same_unit > 0) & (True if only is None else only))
    weight = weight_vector(weights)
    index = NearbyIndex(demand, supply)
    chunks = _chunks(rows, index.counts(rows), chunk_pairs)

    def best_of(chunk: IntArray) -> Chunk | None:
        """The chunk's best k pairs per item, its rule counts written into `failed`."""
        return best_of_chunk(chunk, index, same_unit, failed, now=now, excluded=excluded,
                             context=context, weight=weight, k=k)

    parts = [part for part in map(best_of, chunks) if part is not None]
    empty = np.zeros(0, dtype=np.int64)
    cut = np.zeros(len(demand), dtype=np.bool_)
    for part in parts:
        cut[part.cut] = True
    return Candidates(
        pairs=Pairs(demand, supply, np.concatenate([empty, *(p.d for p in parts)]),
                    np.concatenate([empty, *(p.s for p in parts)]), now, excluded),
        terms=np.concatenate([np.zeros((0, len(weight))), *(p.terms for p in parts)]),
        score=np.concatenate([np.zeros(0), *(p.score for p in parts)]), joined=joined,
        failed=failed, cut=cut)


@dataclass(frozen=True)
class Chunk:
    """The best pairs of a chunk of items, with their terms and scores."""

    d: IntArray
    s: IntArray
    terms: FloatArray
    score: FloatArray
    cut: IntArray  # demand rows that had more than k eligible pairs


def best_of_chunk(chunk: IntArray, index: NearbyIndex, same_unit: IntArray, failed: IntArray,
                  *, now: float, excluded: set[tuple[str, str, str]], context: ScoringContext,
                  weight: FloatArray, k: int) -> Chunk | None:
    """Pairs of the chunk's items (increasing rows) through the rules, scored, the best k per
    item; what each rule turned away is added to the chunk's own rows of `failed`."""
    d, s = index.pairs(chunk)
    # The chunk's rows are increasing: count per row on the span they cover.
    low, span = int(chunk[0]), int(chunk[-1] - chunk[0]) + 1
    failed[chunk, REACH] = same_unit[chunk] - np.bincount(d - low, minlength=span)[chunk - low]
    pairs = Pairs(index.demand, index.supply, d, s, now, excluded)
    for number, rule in enumerate(RULES):
        if len(pairs) == 0:
            return None
        if number in (DEADLINE, UNIT):  # the join made only live items' pairs in one unit
            continue
        holds = rule.check(pairs)
        if holds.all():  # nothing turned away (often: the join screened it already)
            continue
        failed[low:low + span, number] += np.bincount(pairs.d[~holds] - low, minlength=span)
        pairs = pairs.subset(holds)
    if len(pairs) == 0:
        return None
    terms = term_values(pairs, context)
    score = weighted_score(terms, weight)
    keep = top_k_per_row(pairs.d, score, k, tie=spread_ties(pairs.d, pairs.s))
    # Back in (item, offer) order, as a join over every pair would give them.
    keep = keep[np.lexsort((pairs.s[keep], pairs.d[keep]))]
    cut = np.flatnonzero(np.bincount(pairs.d - low, minlength=span) > k) + low
    return Chunk(pairs.d[keep], pairs.s[keep], terms[keep], score[keep], cut)
