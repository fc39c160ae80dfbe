"""Why a match was proposed, and why an item stayed open, built from the batch's arrays.

Explanations are JSON text built from arrays (the `schemas.matches.Explanation` shape): a
district batch explains tens of thousands of proposals, and a model or even a dict per term per
row would cost more than the solve. The edge validates what it publishes through the schema's
tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from matcher.domain.allocation import Allocation
from matcher.domain.candidates import Candidates, generate
from matcher.domain.frames import BoolArray, Demand, FloatArray, IntArray, Supply
from matcher.domain.kinds import Kind
from matcher.domain.rules import RULES, rules_for
from matcher.domain.scoring import TERMS, ScoringContext, Weights
from schemas.matches import LostOn, TakenBy

RUNNER_UPS = 3


def runner_up_arcs(cands: Candidates, chosen: Sequence[Allocation], supply: Supply,
                   limit: int = RUNNER_UPS) -> dict[int, list[int]]:
    """Per served demand row: its best unused arcs, one per offer and never a chosen offer."""
    p = cands.pairs
    if not chosen or len(p) == 0:
        return {}
    offers = supply.offers
    width = len(offers.index)
    offer_of_arc = offers.codes[p.s]
    key = p.d.astype(np.int64) * width + offer_of_arc
    chosen_arcs = np.asarray([c.arc for c in chosen], dtype=np.int64)
    served_rows = np.unique(p.d[chosen_arcs])
    free = np.flatnonzero(np.isin(p.d, served_rows) & ~np.isin(key, key[chosen_arcs]))
    free = free[np.lexsort((-cands.score[free], p.d[free]))]  # item, then best score first
    # Slots of one service offer are one offer to the reader: keep each offer's best arc.
    _, first_of_key = np.unique(key[free], return_index=True)
    free = free[np.sort(first_of_key)]
    rows = p.d[free]
    first = np.searchsorted(rows, served_rows, side="left")
    last = np.minimum(np.searchsorted(rows, served_rows, side="right"), first + limit)
    arcs = free.tolist()
    return {row: arcs[a:b] for row, a, b in zip(
        served_rows.tolist(), first.tolist(), last.tolist(), strict=True)}


# Words of a runner-up that lost; the numbers are filled in per runner-up.
NO_TIME_LEFT = ("higher score ({other:.1f}) but the volunteer has no free time left in the "
                "item's window")
LOWER_SCORE = "lower score ({other:.1f} vs {mine:.1f}), mostly on {term} ({theirs_term:.1f} vs " \
    "{mine_term:.1f})"
CAPACITY_ELSEWHERE = ("higher score ({other:.1f}) but its capacity serves other needs in the "
                      "best overall plan")
FARTHER = "; {km:.1f} km farther"
MORE_URGENT = ": a more urgent case (urgency {urgency})"
AS_URGENT = ": cases no more urgent but better placed overall (urgency {urgency})"

TERMS_NAMES = list(TERMS)

# An explanation as JSON text, ready to be written to the proposal and its event as is.
Explanation = orjson.Fragment


def urgency_on_supply(cands: Candidates, chosen: Sequence[Allocation], supply: Supply
                      ) -> IntArray:
    """Per supply row: the highest urgency of the cases the batch's allocations give it to
    (-1: none)."""
    p = cands.pairs
    highest = np.full(len(supply), -1, dtype=np.int64)
    if chosen:
        arcs = np.asarray([c.arc for c in chosen], dtype=np.int64)
        np.maximum.at(highest, p.s[arcs], p.demand.urgency[p.d[arcs]])
    return highest


@dataclass(frozen=True)
class LossWords:
    """Why runner-ups lost: words, and the same as data (what on, km farther, urgency)."""

    words: list[str]
    lost_on: list[str]
    km_further: list[float | None]
    competing_urgency: list[int | None]


def why_lost(others: IntArray, arcs: IntArray, cands: Candidates, weights: FloatArray,
             unplaced: frozenset[int], urgency_on: IntArray | None = None) -> LossWords:
    """In words and as data, why each runner-up arc lost to the chosen arc beside it (all at
    once). `urgency_on` (per supply row, see `urgency_on_supply`) names the urgency of the
    cases a runner-up's capacity went to."""
    if len(others) == 0:
        return LossWords([], [], [], [])
    p = cands.pairs
    score, other_score = cands.score[arcs], cands.score[others]
    mine, theirs = cands.terms[arcs] * weights, cands.terms[others] * weights
    deficit = np.argmax(mine - theirs, axis=1)
    at = np.arange(len(arcs))
    further = np.round(p.distance_km[others] - p.distance_km[arcs], 1)
    my_urgency = p.demand.urgency[p.d[arcs]]
    taken = (urgency_on[p.s[others]] if urgency_on is not None
             else np.full(len(others), -1, dtype=np.int64))
    out = LossWords([], [], [], [])
    for other, s, o, term, m, t, km, mine_urgent, theirs_urgent in zip(
            others.tolist(), score.tolist(), other_score.tolist(), deficit.tolist(),
            mine[at, deficit].tolist(), theirs[at, deficit].tolist(), further.tolist(),
            my_urgency.tolist(), taken.tolist(), strict=True):
        km_further = km if np.isfinite(km) else None
        urgency = None
        if other in unplaced:
            words, on = NO_TIME_LEFT.format(other=o), LostOn.TIME.value
        elif o < s:
            words = LOWER_SCORE.format(other=o, mine=s, term=TERMS_NAMES[term],
                                       theirs_term=t, mine_term=m)
            on = TERMS_NAMES[term]
            if km_further is not None and km_further >= 0.1:
                words += FARTHER.format(km=km_further)
        elif theirs_urgent > mine_urgent:
            urgency = theirs_urgent
            words = CAPACITY_ELSEWHERE.format(other=o) + MORE_URGENT.format(urgency=urgency)
            on = LostOn.URGENCY.value
        else:
            urgency = theirs_urgent if theirs_urgent > 0 else None
            words = CAPACITY_ELSEWHERE.format(other=o) + (
                AS_URGENT.format(urgency=urgency) if urgency is not None else "")
            on = LostOn.CAPACITY.value
        out.words.append(words)
        out.lost_on.append(on)
        out.km_further.append(km_further)
        out.competing_urgency.append(urgency)
    return out


def _score_terms_template(weights: FloatArray) -> str:
    """The score terms of an explanation as JSON with %r slots for value and contribution."""
    parts = [orjson.dumps({"name": name, "weight": weight}).decode()[:-1]
             .replace("%", "%%") + ',"value":%r,"contribution":%r}'
             for name, weight in zip(TERMS_NAMES, weights.tolist(), strict=True)]
    return "[" + ",".join(parts) + "]"


def explanations(cands: Candidates, chosen: Sequence[Allocation], supply: Supply,
                 weights: FloatArray, status: str,
                 unplaced: frozenset[int] = frozenset()) -> list[Explanation]:
    """One explanation per allocation: rules passed, score term by term, runner-ups.

    Built from the batch's arrays straight into JSON text (the `schemas.matches.Explanation`
    shape), so a district batch never holds a dict per term per proposal.
    `unplaced`: arcs the solver chose whose visit found no free time in the volunteer's day.
    """
    if not chosen:
        return []
    p = cands.pairs
    arcs = np.asarray([c.arc for c in chosen], dtype=np.int64)
    values = np.round(cands.terms[arcs], 4)
    contributions = np.round(cands.terms[arcs] * weights, 3)
    # Per allocation: value, contribution, value, contribution, ... in the order of TERMS.
    slots = np.stack([values, contributions], axis=2).reshape(len(arcs), -1).tolist()
    rows = p.d[arcs].tolist()
    rules = {int(kind): orjson.dumps(rules_for(kind)).decode() for kind in Kind}
    kinds = p.demand.kind[p.d[arcs]].tolist()
    # Runner-ups of every allocation in one go: (allocation, runner-up arc) pairs.
    alternatives = runner_up_arcs(cands, chosen, supply)
    lists = [alternatives.get(row, []) for row in rows]
    owner = np.repeat(np.arange(len(arcs)), [len(others) for others in lists])
    others = np.asarray([o for others in lists for o in others], dtype=np.int64)
    loss = why_lost(others, arcs[owner], cands, weights, unplaced,
                    urgency_on_supply(cands, chosen, supply))
    runner_ups = [{"offer_id": supply.offer_id[s], "score": round(score, 3), "why_lost": w,
                   "lost_on": on, "km_further": km, "competing_urgency": urgency}
                  for s, score, w, on, km, urgency in zip(
                      p.s[others].tolist(), cands.score[others].tolist(), loss.words,
                      loss.lost_on, loss.km_further, loss.competing_urgency, strict=True)]
    first = np.concatenate([[0], np.cumsum([len(others) for others in lists])]).tolist()
    template = _score_terms_template(weights)
    finite: list[bool] = np.all(np.isfinite(values) & np.isfinite(contributions),
                                axis=1).tolist()
    status_json = orjson.dumps(status).decode()
    out: list[Explanation] = []
    for i, numbers in enumerate(slots):
        # Terms are 0..1 by construction; were one not a number, orjson would write null.
        terms = (template % tuple(numbers) if finite[i] else orjson.dumps(
            [{"name": n, "weight": w, "value": x, "contribution": y} for n, w, x, y
             in zip(TERMS_NAMES, weights.tolist(), numbers[::2], numbers[1::2],
                    strict=True)]).decode())
        out.append(orjson.Fragment(
            f'{{"rules_passed":{rules[kinds[i]]},"score_terms":{terms},"runner_ups":'
            f'{orjson.dumps(runner_ups[first[i]:first[i + 1]]).decode()},'
            f'"solver_status":{status_json}}}'))
    return out


def binding_rule(failed_first: IntArray) -> int:
    """The rule that turned away the offers that came closest: the last one, in the order
    rules are checked, that any offer failed first.

    An offer failing a later rule passed every earlier one, so that rule is what really
    stood between the item and an offer; the rule that turned away the most offers (often
    reach, checked early) is only the commonest obstacle.
    """
    turned_away = np.flatnonzero(failed_first)
    return int(turned_away[-1]) if turned_away.size else 0


@dataclass(frozen=True)
class FullOffers:
    """The hard rules on offers with no capacity left, per demand row: how many of their units
    were eligible, how many gave the need at all, and what turned the others away."""

    eligible: IntArray
    joined: IntArray
    failed: IntArray  # demand rows x rules, as `Candidates.failed`

    @staticmethod
    def none(demand: Demand) -> FullOffers:
        """No full offers at all."""
        zeros = np.zeros(len(demand), dtype=np.int64)
        return FullOffers(zeros, zeros, np.zeros((len(demand), len(RULES)), dtype=np.int64))


def check_full_offers(demand: Demand, full: Supply, *, now: float, weights: Weights,
                      context: ScoringContext, excluded: set[tuple[str, str, str]],
                      rows: BoolArray) -> FullOffers:
    """The hard rules on the offers whose capacity is all held, for the rows given: an item
    whose eligible offers are all taken hears so, not that a rule stopped it."""
    if len(full) == 0 or not rows.any():
        return FullOffers.none(demand)
    cands = generate(demand, full, now=now, weights=weights, context=context,
                     excluded=excluded, k=1, only=rows)
    return FullOffers(eligible=np.bincount(cands.pairs.d, minlength=len(demand)),
                      joined=cands.joined, failed=cands.failed)


def competing_urgency(cands: Candidates, chosen: Sequence[Allocation]) -> IntArray:
    """Per demand row: the highest urgency of the other cases given capacity that one of its
    candidates could have used (-1: none)."""
    p = cands.pairs
    highest = np.full(len(p.demand), -1, dtype=np.int64)
    if not chosen or len(p) == 0:
        return highest
    arcs = np.asarray([c.arc for c in chosen], dtype=np.int64)
    order = np.argsort(p.s[arcs], kind="stable")
    given_s, given_d = p.s[arcs][order], p.d[arcs][order]
    low = np.searchsorted(given_s, p.s, side="left")
    counts = np.searchsorted(given_s, p.s, side="right") - low
    # Every (candidate arc, allocation on the same supply row) pair.
    arc = np.repeat(np.arange(len(p)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    given = np.repeat(low, counts) + np.arange(len(arc)) - first
    other = given_d[given] != p.d[arc]
    np.maximum.at(highest, p.d[arc[other]], p.demand.urgency[given_d[given[other]]])
    return highest


def held_earlier(cands: Candidates) -> BoolArray:
    """Per demand row: part of its candidates' capacity is held by earlier commitments."""
    p = cands.pairs
    held = p.supply.remaining[p.s] < p.supply.capacity[p.s] - 1e-9
    return np.bincount(p.d[held], minlength=len(p.demand)) > 0


# Who took the capacity, in words that follow "eligible offers' capacity".
TAKEN_WORDS = {
    TakenBy.MORE_URGENT_CASES: "went to more urgent cases in this batch (urgency {urgency})",
    TakenBy.AS_URGENT_BETTER_PLACED: "went to cases as urgent (or less) and better placed "
                                     "(nearer, better timed) in this batch",
    TakenBy.EARLIER_COMMITMENTS: "is held by earlier commitments (matches proposed or "
                                 "approved before)",
    TakenBy.EXPECTED_URGENT_CASES: "is kept for more urgent cases expected soon (as many "
                                   "came at this time a week before)",
}
NOT_IN_THE_PLAN = "could not serve it in the best overall plan"


def taken_by(urgency: int, competing: int, earlier: bool, kept: bool = False
             ) -> TakenBy | None:
    """Who holds the capacity an item's eligible offers had: more urgent cases of the batch,
    urgent cases expected soon, cases as urgent and better placed, else earlier
    commitments."""
    if competing > urgency:
        return TakenBy.MORE_URGENT_CASES
    if kept:
        return TakenBy.EXPECTED_URGENT_CASES
    if competing >= 0:
        return TakenBy.AS_URGENT_BETTER_PLACED
    return TakenBy.EARLIER_COMMITMENTS if earlier else None


def unmatched_reason(row: int, demand: Demand, cands: Candidates, had_arcs: bool,
                     served: float, need_name: str, *, full: FullOffers | None = None,
                     competing: int = -1, earlier: bool = False, kept: bool = False
                     ) -> tuple[str, str, TakenBy | None]:
    """Why an item is still (partly) open after the batch: (reason code, words, who took the
    capacity it could have had).

    Eligible offers it had as candidates went to others in the batch or are held by earlier
    commitments; eligible offers already full are held by earlier commitments; otherwise the
    rule that turned away the offers that came closest, full ones included. `kept`: capacity
    it could have had is kept for urgent cases expected soon.
    """
    full = full or FullOffers.none(demand)
    kind = Kind(int(demand.kind[row])).wire
    if had_arcs or kept:
        by = taken_by(int(demand.urgency[row]), competing, earlier, kept)
        words = TAKEN_WORDS[by].format(urgency=competing) if by else NOT_IN_THE_PLAN
        if served > 0:
            return "partly_served", (f"partly served ({served:g} of {demand.open_qty[row]:g}); "
                                     f"the rest of the eligible capacity {words}"), by
        return "capacity_taken", f"eligible offers' capacity {words}", by
    if full.eligible[row] > 0:
        by = TakenBy.EARLIER_COMMITMENTS
        return "capacity_taken", f"eligible offers' capacity {TAKEN_WORDS[by]}", by
    if cands.joined[row] + full.joined[row] == 0:
        return "no_offer", f"no active {kind} offer gives '{need_name}'", None
    rule = binding_rule(cands.failed[row] + full.failed[row])
    return RULES[rule].reason_code, f"{RULES[rule].reason} ('{need_name}')", None
