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

Items the last batch itself left worth another look (`left_to_find`: candidates cut, a visit
that filled a window) are looked at again too. Every other item keeps its plan and its
reason, so the batch is narrowed to these items and the offers giving what they ask for.
A change of the hierarchy or of a partner's reach, and an hour without a whole batch, look
at everything again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from matcher.domain.allocation import Allocation, coverage
from matcher.domain.candidates import Candidates
from matcher.domain.frames import Supply, offer_needs
from matcher.domain.weeks import week_of
from matcher.services.matching import LiveInputs
from matcher.storage.store import OfferRow

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
    inputs: LiveInputs  # what the batch read
    held: dict[UnitKey, float]  # held then, with what the batch proposed
    needs: OfferNeeds  # what each live offer gives
    revisit: frozenset[ItemKey] = frozenset()  # items the batch left worth another look


# What each offer gives, by offer id, with the row it was read from: unchanged rows (the same
# objects, from the shard's row cache) keep theirs from batch to batch.
OfferNeeds = dict[str, tuple[OfferRow, frozenset[str]]]


def needs_of(offers: Sequence[OfferRow], known: OfferNeeds | None = None) -> OfferNeeds:
    """What each offer gives, taken from `known` for the rows read before."""
    known = known or {}
    out: OfferNeeds = {}
    for offer in offers:
        seen = known.get(offer.offer_id)
        out[offer.offer_id] = seen if seen is not None and seen[0] is offer else (
            offer, frozenset(offer_needs(offer.payload)))
    return out


def settle(inputs: LiveInputs, reviewed_at: datetime, needs: OfferNeeds,
           allocations: Sequence[Allocation] = (), cands: Candidates | None = None,
           supply: Supply | None = None, revisit: Iterable[ItemKey] = ()) -> Settled:
    """The settled state after a batch over `inputs` recorded `allocations` (arcs of `cands`
    over `supply`): the capacity they hold counts as held already; `revisit`: the items it
    left that another batch could still serve."""
    held = dict(inputs.held)
    if allocations and cands is not None and supply is not None:
        for a in allocations:
            s = int(cands.pairs.s[a.arc])
            slot = int(supply.slot[s])
            unit = (supply.offer_id[s], slot if slot >= 0 else None)
            held[unit] = held.get(unit, 0.0) + a.amount
    return Settled(reviewed_at=reviewed_at, inputs=inputs, held=held, needs=needs,
                   revisit=frozenset(revisit))


def items_to_match(settled: Settled | None, inputs: LiveInputs, needs: OfferNeeds
                   ) -> set[ItemKey] | None:
    """The open items a batch over `inputs` must look at; None when it must look at all.
    `needs`: what the live offers give."""
    if settled is None or inputs.now - settled.reviewed_at >= REVIEW_EVERY:
        return None
    before = settled.inputs
    if inputs.nodes != before.nodes or inputs.reach.partners != before.reach.partners:
        return None
    changed = changed_items(before, inputs, settled.revisit)
    offers = changed_offers(settled, inputs, needs)
    wanted = {need for offer_id in offers for source in (settled.needs, needs)
              if offer_id in source for need in source[offer_id][1]}
    if wanted:
        changed |= {(i["case_id"], i["item_id"]) for i in inputs.items
                    if i["need"].lower() in wanted}
    return changed


def changed_items(before: LiveInputs, inputs: LiveInputs,
                  revisit: frozenset[ItemKey] = frozenset()) -> set[ItemKey]:
    """Items that are new, whose case changed, or whose served amount moved, and those of
    `revisit` still open."""
    versions = {(i["case_id"], i["item_id"]): i["case_version"] for i in before.items}
    out: set[ItemKey] = set()
    for item in inputs.items:
        key = (item["case_id"], item["item_id"])
        if (key in revisit or versions.get(key) != item["case_version"]
                or abs(inputs.served.get(key, 0.0) - before.served.get(key, 0.0)) > SLACK):
            out.add(key)
    return out


def changed_offers(settled: Settled, inputs: LiveInputs, needs: OfferNeeds) -> set[str]:
    """Offers that are new, changed or gone, or have capacity back (`needs`: the live
    offers' rows, as `settled.needs` holds the last batch's)."""
    before = settled.needs
    out = {offer_id for offer_id, (row, _) in needs.items()
           if offer_id not in before or before[offer_id][0].version != row.version}
    out |= before.keys() - needs.keys()
    out |= {unit[0] for unit, amount in settled.held.items()
            if inputs.held.get(unit, 0.0) < amount - SLACK}
    # A volunteer's offers share one weekly limit: when one changes or goes, the others may
    # have hours back.
    rows = [source[o][0] for o in out for source in (before, needs) if o in source]
    freed = freed_volunteers(settled.inputs, inputs) | {
        str(row.payload["volunteer_id"]) for row in rows if row.payload.get("volunteer_id")}
    if freed:
        out |= {o.offer_id for o in inputs.offers if o.payload.get("volunteer_id") in freed}
    return out


def freed_volunteers(before: LiveInputs, inputs: LiveInputs) -> set[str]:
    """Volunteers with time back: a promised visit still ahead gone, hours given back in a
    week still to come, or a weekly limit of their other offers raised or gone (their live
    offers' limits change with the offers' versions)."""
    now = inputs.now.timestamp()
    out = {volunteer for volunteer, visits in before.busy.items()
           if inputs.busy.get(volunteer) != visits
           and any(end > now for _, end in set(visits) - set(inputs.busy.get(volunteer, ())))}
    this_week = week_of(inputs.now, inputs.timezone)
    out |= {volunteer for (volunteer, week), hours in before.given.items()
            if week >= this_week and inputs.given.get((volunteer, week), 0.0) < hours - SLACK}
    out |= {volunteer for volunteer, limit in before.limits.items()
            if inputs.limits.get(volunteer, float("inf")) > limit + SLACK}
    return out


def narrowed(inputs: LiveInputs, keys: Iterable[ItemKey], needs: OfferNeeds) -> LiveInputs:
    """The inputs of a batch over these items only, the offers giving what they ask for
    (`needs`: what each offer gives) and the cases expected soon asking for the same. Grid
    coverage stays the whole shard's, so scores are those of a whole batch."""
    wanted = set(keys)
    items = [i for i in inputs.items if (i["case_id"], i["item_id"]) in wanted]
    asked = {i["need"].lower() for i in items}
    offers = [o for o in inputs.offers if not asked.isdisjoint(needs[o.offer_id][1])]
    whole = inputs.coverage if inputs.coverage is not None else coverage(inputs.items,
                                                                          inputs.served)
    expected = [i for i in inputs.expected if i["need"].lower() in asked]
    return dataclasses.replace(inputs, items=items, offers=offers, coverage=whole,
                               expected=expected)
