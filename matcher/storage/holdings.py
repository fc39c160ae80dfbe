"""What proposals hold, as one shard's batches read it, kept from one batch to the next.

A batch reads what holding proposals take of the live offers and serve of the live items,
which offers were turned down for which items, the volunteers' promised and given visits,
and which volunteers met which beneficiaries. Each of these is a sum over proposals by one
key: offer, case, volunteer or beneficiary. Every write of a proposal stamps the row with a
revision (`tables.write_revision`), so a batch reads the keys of the proposals written
since its last read, and reads again only those keys and the ones that became live. The
rest comes from the last batch. Keys that are no longer live are dropped, so the cache never
grows with history.

Once an hour, and when the week turns (given hours count from the week's start), it reads
everything again. The rows do not need it; it bounds the harm of a writer that forgot to
take a revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from matcher.storage.store import GivenVisit, Store

# How long a shard's batches go on from one whole read.
REREAD_EVERY = timedelta(hours=1)


class ProposalSums(NamedTuple):
    """What proposals hold, as `matching.LiveInputs` takes it."""

    held: dict[tuple[str, int | None], float]  # capacity held per (offer, slot)
    served: dict[tuple[str, str], float]  # demand served per (case, item)
    excluded: set[tuple[str, str, str]]  # (case, item, offer) turned down
    busy: dict[str, list[tuple[float, float]]]  # visits still ahead, per volunteer
    given: list[GivenVisit]  # visits that hold, ending after the week's start
    history: set[tuple[str, str]]  # (beneficiary, volunteer) who met


def proposal_sums(store: Store, shard: str, *, now: datetime, since: datetime
                  ) -> ProposalSums:
    """The shard's sums read whole, by the live offers' and items' indexes (`since`: the
    start of this week)."""
    served, excluded = store.served_and_excluded(shard, now=now)
    return ProposalSums(held=store.held_by_offer(shard, now=now), served=served,
                        excluded=excluded, busy=store.promised_visits(now=now),
                        given=store.given_visits(since=since),
                        history=store.volunteer_history(shard, now=now))


@dataclass
class CaseSums:
    """One case's items: served amounts, and the offers turned down for each."""

    served: dict[str, float] = field(default_factory=dict)
    turned_down: set[tuple[str, str]] = field(default_factory=set)  # (item, offer)


@dataclass
class Holdings:
    """One shard's proposal sums by key, as its last batch read them."""

    revision: int = -1
    read_at: datetime | None = None
    since: datetime | None = None  # the week's start the given visits count from
    offers: dict[str, dict[int | None, float]] = field(default_factory=dict)
    cases: dict[str, CaseSums] = field(default_factory=dict)
    busy: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    given: dict[str, list[GivenVisit]] = field(default_factory=dict)
    met: dict[str, set[str]] = field(default_factory=dict)  # volunteers per beneficiary

    def read(self, store: Store, *, now: datetime, since: datetime,
             offer_ids: Sequence[str], items: Sequence[dict[str, Any]]) -> ProposalSums:
        """The sums for these live offers and items, reading only what changed since the
        last read (`since`: the start of this week)."""
        revision = store.current_revision()
        if (self.revision < 0 or self.since != since or self.read_at is None
                or now - self.read_at >= REREAD_EVERY):
            self._read_all(store, now=now, since=since)
            self.read_at = now
        else:
            self._read_changed(store, now=now, changes=store.proposals_changed_since(
                self.revision))
        self.revision = revision
        return self._sums(store, now=now, offer_ids=offer_ids, items=items)

    def _read_all(self, store: Store, *, now: datetime, since: datetime) -> None:
        """Forget every key; the live ones are read again by `_sums`."""
        self.since = since
        self.offers, self.cases, self.met = {}, {}, {}
        self.busy = store.promised_visits(now=now)
        self.given = _by_volunteer(store.given_visits(since=since))

    def _read_changed(self, store: Store, *, now: datetime,
                      changes: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        """Drop the keys of proposals written since; read the volunteers' visits again."""
        volunteers = set()
        for offer_id, case_id, volunteer_id, beneficiary in changes:
            self.offers.pop(offer_id, None)
            self.cases.pop(case_id, None)
            if beneficiary is not None:
                self.met.pop(beneficiary, None)
            if volunteer_id is not None:
                volunteers.add(volunteer_id)
        if volunteers:
            ids = sorted(volunteers)
            assert self.since is not None
            for volunteer in ids:
                self.busy.pop(volunteer, None)
                self.given.pop(volunteer, None)
            self.busy.update(store.promised_visits(now=now, volunteer_ids=ids))
            self.given.update(_by_volunteer(store.given_visits(since=self.since,
                                                               volunteer_ids=ids)))

    def _sums(self, store: Store, *, now: datetime, offer_ids: Sequence[str],
              items: Sequence[dict[str, Any]]) -> ProposalSums:
        """Read the live keys not known yet, drop the others, and add up."""
        live_offers = set(offer_ids)
        live_cases = {item["case_id"] for item in items}
        beneficiaries = {pseudonym for item in items
                         if (pseudonym := item["beneficiary"].get("pseudonym")) is not None}
        self.offers = {o: sums for o, sums in self.offers.items() if o in live_offers}
        self.cases = {c: sums for c, sums in self.cases.items() if c in live_cases}
        self.met = {b: met for b, met in self.met.items() if b in beneficiaries}
        self._read_offers(store, sorted(live_offers - self.offers.keys()))
        self._read_cases(store, sorted(live_cases - self.cases.keys()))
        self._read_met(store, sorted(beneficiaries - self.met.keys()))
        moment = now.timestamp()
        self.busy = {volunteer: ahead for volunteer, visits in self.busy.items()
                     if (ahead := [v for v in visits if v[1] > moment])}
        served: dict[tuple[str, str], float] = {}
        excluded: set[tuple[str, str, str]] = set()
        for item in items:
            case_id, item_id = item["case_id"], item["item_id"]
            sums = self.cases[case_id]
            if item_id in sums.served:
                served[case_id, item_id] = sums.served[item_id]
            excluded.update((case_id, item_id, offer_id) for turned, offer_id
                            in sums.turned_down if turned == item_id)
        return ProposalSums(
            held={(offer_id, slot): amount for offer_id in offer_ids
                  for slot, amount in self.offers[offer_id].items()},
            served=served, excluded=excluded, busy=self.busy,
            given=[visit for visits in self.given.values() for visit in visits],
            history={(beneficiary, volunteer) for beneficiary, met in self.met.items()
                     for volunteer in met})

    def _read_offers(self, store: Store, offer_ids: Sequence[str]) -> None:
        for offer_id in offer_ids:
            self.offers[offer_id] = {}
        for (offer_id, slot), amount in store.held_for_offers(offer_ids).items():
            self.offers[offer_id][slot] = amount

    def _read_cases(self, store: Store, case_ids: Sequence[str]) -> None:
        for case_id in case_ids:
            self.cases[case_id] = CaseSums()
        for (case_id, item_id), amount in store.served_for_cases(case_ids).items():
            self.cases[case_id].served[item_id] = amount
        for case_id, item_id, offer_id in store.turned_down_for_cases(case_ids):
            self.cases[case_id].turned_down.add((item_id, offer_id))

    def _read_met(self, store: Store, beneficiaries: Sequence[str]) -> None:
        for beneficiary in beneficiaries:
            self.met[beneficiary] = set()
        for beneficiary, volunteer in store.met_volunteers(beneficiaries):
            self.met[beneficiary].add(volunteer)


def _by_volunteer(visits: Iterable[GivenVisit]) -> dict[str, list[GivenVisit]]:
    """Visits grouped by their volunteer."""
    out: dict[str, list[GivenVisit]] = {}
    for visit in visits:
        out.setdefault(visit.volunteer_id, []).append(visit)
    return out
