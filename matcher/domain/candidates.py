"""Candidate generation: join by need, filter by the hard rules, score, keep the best K."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.domain.frames import Demand, FloatArray, IntArray, Supply
from matcher.domain.pairs import Pairs, join_by_need
from matcher.domain.rules import RULES
from matcher.domain.scoring import ScoringContext, Weights, term_values, weight_vector


@dataclass(frozen=True)
class Candidates:
    """Eligible scored pairs, at most K per demand row, plus why the others fell away."""

    pairs: Pairs
    terms: FloatArray  # pairs x terms
    score: FloatArray  # per pair
    joined: IntArray  # per demand row: offers of the right kind and need, before the rules
    failed: IntArray  # demand rows x rules: pairs that failed at that rule first

    def __len__(self) -> int:
        return len(self.pairs)


def top_k_per_row(rows: IntArray, score: FloatArray, k: int) -> IntArray:
    """Indices of the k highest scores within each row group, grouped by row."""
    order = np.lexsort((-score, rows))
    sorted_rows = rows[order]
    group_start = np.r_[0, np.flatnonzero(sorted_rows[1:] != sorted_rows[:-1]) + 1]
    starts = np.repeat(group_start, np.diff(np.r_[group_start, len(rows)]))
    rank = np.arange(len(rows)) - starts
    return order[rank < k]


def generate(demand: Demand, supply: Supply, *, now: float, weights: Weights,
             context: ScoringContext, excluded: set[tuple[str, str, str]] | None = None,
             k: int = 30) -> Candidates:
    """Eligible pairs, scored, the best k per need item."""
    d, s = join_by_need(demand, supply)
    pairs = Pairs(demand, supply, d, s, now, excluded or set())
    joined = np.bincount(d, minlength=len(demand)).astype(np.int64)
    failed = np.zeros((len(demand), len(RULES)), dtype=np.int64)
    for index, rule in enumerate(RULES):
        if len(pairs) == 0:
            break
        holds = rule.check(pairs)
        failed[:, index] = np.bincount(pairs.d[~holds], minlength=len(demand))
        pairs = pairs.subset(holds)
    terms = term_values(pairs, context)
    score = terms @ weight_vector(weights) if len(pairs) else np.zeros(0)
    if len(pairs):
        keep = np.sort(top_k_per_row(pairs.d, score, k))
        mask = np.zeros(len(pairs), dtype=np.bool_)
        mask[keep] = True
        pairs, terms, score = pairs.subset(mask), terms[mask], score[mask]
    return Candidates(pairs=pairs, terms=terms, score=score, joined=joined, failed=failed)
