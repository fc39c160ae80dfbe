"""Why a match was proposed, and why an item stayed open, built from the batch's arrays.

Explanations are plain JSON-ready dicts (the `schemas.matches.Explanation` shape): a district
batch explains tens of thousands of proposals, and a validated model per row would cost more
than the solve. The edge validates what it publishes through the schema's tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from matcher.domain.allocation import Allocation
from matcher.domain.candidates import Candidates
from matcher.domain.frames import Demand, Supply
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


def _why_lost(other: int, arc: int, cands: Candidates, weights: np.ndarray,
              unplaced: frozenset[int]) -> str:
    """In words, why the runner-up arc lost to the chosen arc."""
    score, other_score = float(cands.score[arc]), float(cands.score[other])
    if other in unplaced:
        return (f"higher score ({other_score:.1f}) but the volunteer has no free time left "
                "in the item's window")
    if other_score < score:
        mine, theirs = cands.terms[arc] * weights, cands.terms[other] * weights
        deficit = int(np.argmax(mine - theirs))
        return (f"lower score ({other_score:.1f} vs {score:.1f}), mostly on "
                f"{TERMS_NAMES[deficit]} ({theirs[deficit]:.1f} vs {mine[deficit]:.1f})")
    return (f"higher score ({other_score:.1f}) but its capacity serves other needs in the "
            "best overall plan")


TERMS_NAMES = list(TERMS)


def explanations(cands: Candidates, chosen: Sequence[Allocation], supply: Supply,
                 weights: np.ndarray, status: str,
                 unplaced: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """One explanation per allocation: rules passed, score term by term, runner-ups.

    `unplaced`: arcs the solver chose whose visit found no free time in the volunteer's day.
    """
    if not chosen:
        return []
    p = cands.pairs
    arcs = np.asarray([c.arc for c in chosen], dtype=np.int64)
    values = np.round(cands.terms[arcs], 4).tolist()
    contributions = np.round(cands.terms[arcs] * weights, 3).tolist()
    weight_list = weights.tolist()
    rows = p.d[arcs].tolist()
    rules = {kind: rules_for(kind) for kind in Kind}
    kinds = p.demand.kind[p.d[arcs]].tolist()
    alternatives = runner_up_arcs(cands, chosen, supply)
    out: list[dict[str, Any]] = []
    for i, arc in enumerate(arcs.tolist()):
        out.append({
            "rules_passed": list(rules[Kind(kinds[i])]),
            "score_terms": [{"name": name, "weight": w, "value": v, "contribution": c}
                            for name, w, v, c in zip(TERMS_NAMES, weight_list, values[i],
                                                     contributions[i], strict=True)],
            "runner_ups": [{"offer_id": supply.offer_id[int(p.s[other])],
                            "score": round(float(cands.score[other]), 3),
                            "why_lost": _why_lost(other, arc, cands, weights, unplaced)}
                           for other in alternatives.get(rows[i], [])],
            "solver_status": status,
        })
    return out


def unmatched_reason(row: int, demand: Demand, cands: Candidates, had_arcs: bool,
                     served: float, need_name: str) -> tuple[str, str]:
    """Why an item is still (partly) open after the batch: (reason code, words)."""
    kind = Kind(int(demand.kind[row])).wire
    if cands.joined[row] == 0:
        return "no_offer", f"no active {kind} offer gives '{need_name}'"
    if not had_arcs:
        rule = int(np.argmax(cands.failed[row]))
        return RULES[rule].reason_code, f"{RULES[rule].reason} ('{need_name}')"
    if served > 0:
        return "partly_served", (f"partly served ({served:g} of {demand.open_qty[row]:g}); "
                                 "eligible capacity is used up")
    return "capacity_taken", ("eligible offers' capacity went to more urgent or better-placed "
                              "cases")
