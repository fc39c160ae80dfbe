"""What a shard's last batch left settled, so the next batch looks only at what changed.

A batch proven optimal over all of each item's eligible offers leaves no open item with an
eligible offer that still has capacity: every such pair scores above zero, so the solver would
have used it. Rules only ever close pairs as time passes (deadlines, windows, expiry). Until
something changes, another batch would find nothing; after a change it can serve, or owes a
new reason to, only:

- items that are new, whose case changed, or that are served more or less than before (a
  match released; or a part served, after which a shorter free window fits what is left);
- items asking for what an offer gives that is new, changed or gone, or that has capacity
  back: a proposal on it released, a visit of its volunteer cancelled, the volunteer's hours
  given back or their weekly limit raised.

Every other item keeps its plan and its reason, so the batch is narrowed to these items and
the offers giving what they ask for. A change of the hierarchy or of a partner's reach, and
an hour without a whole batch, look at everything again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from matcher.domain.allocation import Allocation, coverage
from matcher.domain.candidates import Candidates
from matcher.domain.frames import Supply, offer_needs
from matcher.domain.weeks import stated_limits, week_of
from matcher.services.matching import LiveInputs, lowest
from matcher.storage.store import NodeRow

ItemKey = tuple[str, str]
UnitKey = tuple[str, int | None]
# Amounts are stored rounded to 4 places; a release frees far more than this.
SLACK = 1e-3
# Time alone never opens a pair, but it can make an item's reason stale (the offer that took
# its capacity has passed, say): a whole batch this often keeps every reason current.
REVIEW_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Settled:
    """The shard as its last batch left it: what it read, plus the capacity it took."""

    reviewed_at: datetime  # when a batch last looked at the whole shard
    items: dict[ItemKey, int]  # case version
    served: dict[ItemKey, float]
    offers: dict[str, int]  # offer version
    needs: dict[str, frozenset[str]]  # what each offer gives
    held: dict[UnitKey, float]
    busy: dict[str, frozenset[tuple[float, float]]]
    given: dict[tuple[str, int], float]
    limits: dict[str, float]  # each volunteer's lowest stated weekly limit
    nodes: dict[str, NodeRow]
    reaches: Mapping[str, Mapping[str, object]]


def settle(inputs: LiveInputs, reviewed_at: datetime, allocations: Sequence[Allocation] = (),
           cands: Candidates | None = None, supply: Supply | None = None) -> Settled:
    """The settled state after a batch over `inputs` recorded `allocations` (arcs of `cands`
    over `supply`): the capacity they hold counts as held already."""
    held = dict(inputs.held)
    if allocations and cands is not None and supply is not None:
        for a in allocations:
            s = int(cands.pairs.s[a.arc])
            slot = int(supply.slot[s])
            unit = (supply.offer_id[s], slot if slot >= 0 else None)
            held[unit] = held.get(unit, 0.0) + a.amount
    return Settled(
        reviewed_at=reviewed_at,
        items={(i["case_id"], i["item_id"]): i["case_version"] for i in inputs.items},
        served=dict(inputs.served),  # an item the batch served is looked at again
        offers={o.offer_id: o.version for o in inputs.offers},
        needs={o.offer_id: frozenset(offer_needs(o.payload)) for o in inputs.offers},
        held=held,
        busy={volunteer: frozenset(visits) for volunteer, visits in inputs.busy.items()},
        given=dict(inputs.given),
        limits=effective_limits(inputs),
        nodes=inputs.nodes,
        reaches=inputs.reach.partners,
    )


def effective_limits(inputs: LiveInputs) -> dict[str, float]:
    """Each volunteer's weekly limit: the lowest their live offers or other offers state."""
    return lowest(stated_limits(o.payload for o in inputs.offers), inputs.limits)


def items_to_match(settled: Settled | None, inputs: LiveInputs) -> set[ItemKey] | None:
    """The open items a batch over `inputs` must look at; None when it must look at all."""
    if (settled is None or inputs.now - settled.reviewed_at >= REVIEW_EVERY
            or inputs.nodes != settled.nodes or inputs.reach.partners != settled.reaches):
        return None
    changed = changed_items(settled, inputs)
    offers = changed_offers(settled, inputs)
    needs = {need for offer_id in offers for need in settled.needs.get(offer_id, ())}
    needs.update(need for o in inputs.offers if o.offer_id in offers
                 for need in offer_needs(o.payload))  # an update may change what it gives
    if needs:
        changed |= {(i["case_id"], i["item_id"]) for i in inputs.items
                    if i["need"].lower() in needs}
    return changed


def changed_items(settled: Settled, inputs: LiveInputs) -> set[ItemKey]:
    """Items that are new, whose case changed, or whose served amount moved."""
    out: set[ItemKey] = set()
    for item in inputs.items:
        key = (item["case_id"], item["item_id"])
        if (settled.items.get(key) != item["case_version"]
                or abs(inputs.served.get(key, 0.0) - settled.served.get(key, 0.0)) > SLACK):
            out.add(key)
    return out


def changed_offers(settled: Settled, inputs: LiveInputs) -> set[str]:
    """Offers that are new, changed or gone, or have capacity back."""
    live = {o.offer_id: o.version for o in inputs.offers}
    out = {offer_id for offer_id, version in live.items()
           if settled.offers.get(offer_id) != version}
    out |= settled.offers.keys() - live.keys()
    out |= {unit[0] for unit, amount in settled.held.items()
            if inputs.held.get(unit, 0.0) < amount - SLACK}
    freed = freed_volunteers(settled, inputs)
    if freed:
        out |= {o.offer_id for o in inputs.offers if o.payload.get("volunteer_id") in freed}
    return out


def freed_volunteers(settled: Settled, inputs: LiveInputs) -> set[str]:
    """Volunteers with time back: a promised visit still ahead gone, hours given back in a
    week still to come, or a weekly limit raised or no longer stated."""
    now = inputs.now.timestamp()
    out = {volunteer for volunteer, visits in settled.busy.items()
           if any(end > now for _, end in visits - frozenset(inputs.busy.get(volunteer, ())))}
    this_week = week_of(inputs.now, inputs.timezone)
    out |= {volunteer for (volunteer, week), hours in settled.given.items()
            if week >= this_week and inputs.given.get((volunteer, week), 0.0) < hours - SLACK}
    limits = effective_limits(inputs)
    out |= {volunteer for volunteer, limit in settled.limits.items()
            if limits.get(volunteer, float("inf")) > limit + SLACK}
    return out



def narrowed(inputs: LiveInputs, keys: Iterable[ItemKey]) -> LiveInputs:
    """The inputs of a batch over these items only, and the offers giving what they ask for.
    Grid coverage stays the whole shard's, so scores are those of a whole batch."""
    wanted = set(keys)
    items = [i for i in inputs.items if (i["case_id"], i["item_id"]) in wanted]
    needs = {i["need"].lower() for i in items}
    offers = [o for o in inputs.offers if not needs.isdisjoint(offer_needs(o.payload))]
    whole = inputs.coverage if inputs.coverage is not None else coverage(inputs.items,
                                                                          inputs.served)
    return dataclasses.replace(inputs, items=items, offers=offers, coverage=whole)
