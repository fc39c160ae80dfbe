"""Why a match was proposed, and why an item stayed open, built from the batch's arrays.

Explanations are JSON text built from arrays (the `schemas.matches.Explanation` shape): a
district batch explains tens of thousands of proposals, and a model or even a dict per term per
row would cost more than the solve. The edge validates what it publishes through the schema's
tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

from matcher.domain.allocation import Allocation
from matcher.domain.candidates import Candidates
from matcher.domain.frames import Demand, FloatArray, IntArray, Supply
from matcher.domain.kinds import Kind
from matcher.domain.rules import RULES, rules_for
from matcher.domain.scoring import TERMS

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

TERMS_NAMES = list(TERMS)

# An explanation as JSON text, ready to be written to the proposal and its event as is.
Explanation = orjson.Fragment


def why_lost(others: IntArray, arcs: IntArray, cands: Candidates, weights: FloatArray,
             unplaced: frozenset[int]) -> list[str]:
    """In words, why each runner-up arc lost to the chosen arc beside it (all at once)."""
    if len(others) == 0:
        return []
    score, other_score = cands.score[arcs], cands.score[others]
    mine, theirs = cands.terms[arcs] * weights, cands.terms[others] * weights
    deficit = np.argmax(mine - theirs, axis=1)
    at = np.arange(len(arcs))
    words: list[str] = []
    for other, s, o, term, m, t in zip(
            others.tolist(), score.tolist(), other_score.tolist(), deficit.tolist(),
            mine[at, deficit].tolist(), theirs[at, deficit].tolist(), strict=True):
        if other in unplaced:
            words.append(NO_TIME_LEFT.format(other=o))
        elif o < s:
            words.append(LOWER_SCORE.format(other=o, mine=s, term=TERMS_NAMES[term],
                                            theirs_term=t, mine_term=m))
        else:
            words.append(CAPACITY_ELSEWHERE.format(other=o))
    return words


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
    words = why_lost(others, arcs[owner], cands, weights, unplaced)
    runner_ups = [{"offer_id": supply.offer_id[s], "score": round(score, 3), "why_lost": w}
                  for s, score, w in zip(p.s[others].tolist(), cands.score[others].tolist(),
                                         words, strict=True)]
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


def unmatched_reason(row: int, demand: Demand, cands: Candidates, had_arcs: bool,
                     served: float, need_name: str) -> tuple[str, str]:
    """Why an item is still (partly) open after the batch: (reason code, words)."""
    kind = Kind(int(demand.kind[row])).wire
    if cands.joined[row] == 0:
        return "no_offer", f"no active {kind} offer gives '{need_name}'"
    if not had_arcs:
        rule = binding_rule(cands.failed[row])
        return RULES[rule].reason_code, f"{RULES[rule].reason} ('{need_name}')"
    if served > 0:
        return "partly_served", (f"partly served ({served:g} of {demand.open_qty[row]:g}); "
                                 "eligible capacity is used up")
    return "capacity_taken", ("eligible offers' capacity went to more urgent or better-placed "
                              "cases")
