"""Facts behind a proposal's plain explanation: who is served, how far, in which language.

Read from what the engine stored (cases, offers, the registry); nothing is re-scored. The
distance is the same great-circle distance the matching rules use, between the person's home
(or their grid's point) and the offer's place (or its node's point).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from matcher.domain.pairs import haversine_km
from matcher.storage.store import Store
from matcher.storage.tables import cases, need_items, nodes, offers, partners

Point = tuple[float, float]
OFFER_PLACE = {"volunteer": "home", "goods": "pickup", "service": "place"}


@dataclass(frozen=True)
class OfferFacts:
    """What a proposal's reader needs to know about one offer."""

    offer_id: str
    kind: str
    partner_name: str
    what: str  # the first skill, goods category or service type
    languages: tuple[str, ...]
    point: Point | None


@dataclass(frozen=True)
class ProposalFacts:
    """The person served, the offer chosen and its runner-ups, with distances in km."""

    pseudonym: str
    group: str
    vulnerability: int | None
    languages: tuple[str, ...]
    offer: OfferFacts | None
    km: float | None
    runner_ups: dict[str, tuple[OfferFacts, float | None]] = field(default_factory=dict)


def km_between(a: Point | None, b: Point | None) -> float | None:
    """Great-circle km between two points, or None when either is unknown."""
    if a is None or b is None:
        return None
    value = haversine_km(np.array([a[0]]), np.array([a[1]]), np.array([b[0]]),
                         np.array([b[1]]))
    return float(value[0])


def _point(location: Mapping[str, Any] | None) -> Point | None:
    """(lat, lon) of a wire location, if given."""
    if not location or location.get("lat") is None or location.get("lon") is None:
        return None
    return float(location["lat"]), float(location["lon"])


def _node_points(store: Store) -> dict[str, Point]:
    """Every registered node's point."""
    return {r.node_id: (float(r.lat), float(r.lon)) for r in store.conn.execute(
        select(nodes.c.node_id, nodes.c.lat, nodes.c.lon)) if r.lat is not None
        and r.lon is not None}


def _offers(store: Store, offer_ids: set[str], points: dict[str, Point]
            ) -> dict[str, OfferFacts]:
    """Facts of the named offers, with their partners' names."""
    if not offer_ids:
        return {}
    rows = store.conn.execute(
        select(offers.c.offer_id, offers.c.kind, offers.c.node_id, offers.c.payload,
               partners.c.name.label("partner_name"))
        .outerjoin(partners, partners.c.partner_id == offers.c.partner_id)
        .where(offers.c.offer_id.in_(sorted(offer_ids))))
    found = {}
    for r in rows:
        payload = r.payload or {}
        what = ((payload.get("skills") or [""])[0] if r.kind == "volunteer"
                else payload.get("category") or payload.get("service_type") or "")
        point = _point(payload.get(OFFER_PLACE.get(r.kind, ""))) or points.get(r.node_id)
        found[r.offer_id] = OfferFacts(
            offer_id=r.offer_id, kind=r.kind, partner_name=r.partner_name or "", what=what,
            languages=tuple(payload.get("languages") or ()), point=point)
    return found


def _people(store: Store, case_ids: set[str], points: dict[str, Point]
            ) -> dict[str, tuple[dict[str, Any], Point | None]]:
    """Each case's beneficiary record and home point (the grid's when no home is given)."""
    rows = store.conn.execute(select(cases.c.case_id, cases.c.grid_id, cases.c.beneficiary)
                              .where(cases.c.case_id.in_(sorted(case_ids))))
    return {r.case_id: (r.beneficiary or {},
                        _point((r.beneficiary or {}).get("location")) or points.get(r.grid_id))
            for r in rows}


def _asked_languages(store: Store, keys: set[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Languages an item's preferences require."""
    if not keys:
        return {}
    rows = store.conn.execute(select(need_items.c.case_id, need_items.c.item_id,
                                     need_items.c.preferences)
                              .where(need_items.c.case_id.in_(sorted({c for c, _ in keys}))))
    return {(r.case_id, r.item_id): list((r.preferences or {}).get("languages") or [])
            for r in rows if (r.case_id, r.item_id) in keys}


def facts_for(store: Store, proposals: Iterable[Any]) -> dict[str, ProposalFacts]:
    """Facts for each proposal (objects with proposal_id, case_id, item_id, offer_id and
    explanation), keyed by proposal id."""
    proposals = list(proposals)
    if not proposals:
        return {}
    points = _node_points(store)
    wanted = {p.offer_id for p in proposals} | {
        r["offer_id"] for p in proposals for r in p.explanation.get("runner_ups", [])}
    offer_facts = _offers(store, wanted, points)
    people = _people(store, {p.case_id for p in proposals}, points)
    asked = _asked_languages(store, {(p.case_id, p.item_id) for p in proposals})
    found: dict[str, ProposalFacts] = {}
    for p in proposals:
        beneficiary, home = people.get(p.case_id, ({}, None))
        spoken = [*beneficiary.get("languages", []), *asked.get((p.case_id, p.item_id), [])]
        chosen = offer_facts.get(p.offer_id)
        runner_ups = {r["offer_id"]: (offer_facts[r["offer_id"]],
                                      km_between(home, offer_facts[r["offer_id"]].point))
                      for r in p.explanation.get("runner_ups", [])
                      if r["offer_id"] in offer_facts}
        found[p.proposal_id] = ProposalFacts(
            pseudonym=str(beneficiary.get("pseudonym", "")), group=beneficiary.get("group", ""),
            vulnerability=beneficiary.get("vulnerability"),
            languages=tuple(dict.fromkeys(spoken)), offer=chosen,
            km=km_between(home, chosen.point if chosen else None), runner_ups=runner_ups)
    return found
