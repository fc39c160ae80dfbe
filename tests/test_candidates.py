"""Candidate generation through the reach index gives what checking every pair gives."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from matcher.domain.candidates import Candidates, generate, spread_ties, top_k_per_row
from matcher.domain.frames import Demand, Supply, Vocabulary, build_demand, build_supply
from matcher.domain.pairs import Pairs, join_by_need
from matcher.domain.rules import RULES
from matcher.domain.scoring import (
    ScoringContext,
    Weights,
    skill_fit,
    term_values,
    weight_vector,
    weighted_score,
)
from matcher.simulator import build_district

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from speed import state_rows, synthetic_state

from tests import factories as f
from tests.test_rules import pairs_of


@dataclass(frozen=True)
class Place:
    path: str
    lat: float | None
    lon: float | None


def every_pair(demand: Demand, supply: Supply, now: float, context: ScoringContext,
               excluded: set[tuple[str, str, str]], k: int) -> Candidates:
    """The plain way: join on need, every rule on every pair, score, best k per item."""
    d, s = join_by_need(demand, supply)
    pairs = Pairs(demand, supply, d, s, now, excluded)
    failed = np.zeros((len(demand), len(RULES)), dtype=np.int64)
    for index, rule in enumerate(RULES):
        holds = rule.check(pairs)
        failed[:, index] = np.bincount(pairs.d[~holds], minlength=len(demand))
        pairs = pairs.subset(holds)
    terms = term_values(pairs, context)
    score = weighted_score(terms, weight_vector(Weights()))
    keep = np.sort(top_k_per_row(pairs.d, score, k, tie=spread_ties(pairs.d, pairs.s)))
    return Candidates(pairs=pairs.take(keep), terms=terms[keep], score=score[keep],
                      joined=np.bincount(d, minlength=len(demand)), failed=failed)


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    """Two simulated days of a small district, with some places unknown."""
    state = synthetic_state(items=1500, offers=700, days=2, seed=11,
                            district=build_district(seed=11, workstations=4))
    rows = state_rows(state)
    rng = random.Random(5)
    places = {r["node_id"]: Place(r["path"], r["lat"], r["lon"]) for r in rows["nodes"]}
    for node_id, place in list(places.items()):
        if node_id.count("-g") and rng.random() < 0.1:  # some grids without a known point
            places[node_id] = Place(place.path, None, None)
    case_of = {c["case_id"]: c for c in rows["cases"]}
    items = []
    for item in rows["need_items"]:
        case = case_of[item["case_id"]]
        beneficiary = dict(case["beneficiary"])
        if rng.random() < 0.15:
            beneficiary["location"] = None
        items.append({**item, "grid_id": case["grid_id"], "beneficiary": beneficiary,
                      "opened_at": case["opened_at"]})
    offers = [{"offer_id": o["offer_id"], "payload": o["payload"]} for o in rows["offers"]]
    served = {(i["case_id"], i["item_id"]): i["quantity"] / 2 for i in items[::9]}
    held = {(o["offer_id"], 0 if o["payload"]["kind"] == "service" else None): 1.0
            for o in offers[::7]}
    return {"items": items, "offers": offers, "places": places, "served": served,
            "held": held, "now": state.now}


@pytest.mark.parametrize("days_later", [0.0, 1.0, 2.5])
def test_the_reach_index_changes_nothing(world: dict[str, Any], days_later: float) -> None:
    vocab = Vocabulary()
    demand = build_demand(world["items"], world["served"], world["places"], vocab)
    supply = build_supply(world["offers"], world["held"], world["places"], vocab)
    now = (world["now"] + timedelta(days=days_later)).timestamp()
    plain = every_pair(demand, supply, now, ScoringContext(), set(), 30)
    assert len(plain) > 100
    # Turn some real candidates down, and let some beneficiaries know their volunteer.
    pick = range(0, len(plain), 5)
    excluded = {(demand.case_id[plain.pairs.d[a]], demand.item_id[plain.pairs.d[a]],
                 supply.offer_id[plain.pairs.s[a]]) for a in pick}
    history = frozenset((demand.beneficiary[plain.pairs.d[a]], int(supply.volunteer[s]))
                        for a in range(1, len(plain), 4)
                        if (s := plain.pairs.s[a]) is not None and supply.volunteer[s] >= 0)
    coverage = {grid: (hash(grid) % 10) / 10 for grid in set(demand.grid_id)}
    context = ScoringContext(history=history, grid_coverage=coverage)

    expected = every_pair(demand, supply, now, context, excluded, 30)
    found = generate(demand, supply, now=now, weights=Weights(), context=context,
                     excluded=excluded, k=30, chunk_pairs=5_000)

    assert np.array_equal(found.pairs.d, expected.pairs.d)
    assert np.array_equal(found.pairs.s, expected.pairs.s)
    assert np.array_equal(found.terms, expected.terms)
    assert np.array_equal(found.score, expected.score)
    assert np.array_equal(found.joined, expected.joined)
    assert np.array_equal(found.failed, expected.failed)


def test_skill_fit_ranks_a_skill_listed_twice_where_it_was_listed_last() -> None:
    twice = f.volunteer_offer("o1", "p1", skills=["companionship", "cooking", "companionship"])
    pairs = pairs_of(f.case("c1"), twice)
    need = int(pairs.demand.need[0])
    assert pairs.supply.skill_rank[0][need] == 2  # the frame's own lookup
    assert skill_fit(pairs, ScoringContext()).tolist() == [1 / 3] * len(pairs)
