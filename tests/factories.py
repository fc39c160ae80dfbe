"""Events as a partner system would write them: plain dicts, turned into JSON bytes by tests.

Deliberately not built from the project's models, so tests check the wire contract itself.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from matcher.services.ingest import IncomingEvent

CST = timezone(timedelta(hours=8))
DAY = datetime(2030, 6, 3, tzinfo=CST)  # far ahead, so nothing has expired or passed
CENTRE, WS, STUDIO, GRID, GRID2 = "centre", "ws-wenlong", "ws-wenlong-st-shuanglong", \
    "ws-wenlong-st-shuanglong-g1", "ws-wenlong-st-shuanglong-g2"
WS_B, STUDIO_B, GRID_B = "ws-gunan", "ws-gunan-st-1", "ws-gunan-st-1-g1"


def at(hour: float) -> str:
    """An ISO time on the test day."""
    return (DAY + timedelta(hours=hour)).isoformat()


def envelope(event_type: str, producer: str, payload: dict[str, Any],
             event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": at(7),
        "producer": producer,
        "correlation_id": "test",
        "payload": payload,
    }


def node(node_id: str, level: str, parent: str | None, lat: float, lon: float
         ) -> dict[str, Any]:
    return envelope("node.registered", CENTRE, {
        "node_id": node_id, "level": level, "parent_id": parent, "name": node_id,
        "location": {"lat": lat, "lon": lon},
    })


def hierarchy() -> list[dict[str, Any]]:
    """A centre with two workstations, a studio each, and three grids."""
    return [
        node(CENTRE, "centre", None, 29.03, 106.65),
        node(WS, "workstation", CENTRE, 29.05, 106.66),
        node(STUDIO, "studio", WS, 29.051, 106.661),
        node(GRID, "grid", STUDIO, 29.052, 106.662),
        node(GRID2, "grid", STUDIO, 29.055, 106.665),
        node(WS_B, "workstation", CENTRE, 28.95, 106.60),
        node(STUDIO_B, "studio", WS_B, 28.951, 106.601),
        node(GRID_B, "grid", STUDIO_B, 28.952, 106.602),
    ]


def partner(partner_id: str, home: str = WS, kind: str = "volunteer_group") -> dict[str, Any]:
    return envelope("partner.registered", CENTRE, {
        "partner_id": partner_id, "name": f"Partner {partner_id}", "kind": kind,
        "home_node_id": home,
    })


def volunteer_offer(offer_id: str, partner_id: str, *, skills: list[str] | None = None,
                    languages: list[str] | None = None, start: float = 9, end: float = 12,
                    node_id: str = STUDIO, version: int = 1, hours: float = 6,
                    event_type: str = "offer.published", lat: float = 29.0515,
                    lon: float = 106.6615, radius_km: float = 5.0,
                    volunteer_id: str | None = None) -> dict[str, Any]:
    return envelope(event_type, partner_id, {
        "kind": "volunteer", "offer_id": offer_id, "version": version,
        "partner_id": partner_id, "node_id": node_id,
        "volunteer_id": volunteer_id or f"vol-{offer_id}",
        "skills": skills or ["companionship"], "languages": languages or ["mandarin"],
        "availability": [{"start": at(start), "end": at(end)}],
        "home": {"lat": lat, "lon": lon}, "travel_radius_km": radius_km,
        "weekly_hour_limit": hours,
    })


def goods_offer(offer_id: str, partner_id: str, *, category: str = "rice",
                quantity: float = 50, unit: str = "kg", expires_in_days: float | None = None,
                node_id: str = WS, version: int = 1) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "kind": "goods", "offer_id": offer_id, "version": version, "partner_id": partner_id,
        "node_id": node_id, "category": category, "quantity": quantity, "unit": unit,
    }
    if expires_in_days is not None:
        payload["expires_at"] = (DAY + timedelta(days=expires_in_days)).isoformat()
    return envelope("offer.published", partner_id, payload)


def service_offer(offer_id: str, partner_id: str, *, service_type: str = "physiotherapy",
                  places: int = 2, start: float = 14, end: float = 15,
                  eligibility: list[str] | None = None, node_id: str = WS) -> dict[str, Any]:
    return envelope("offer.published", partner_id, {
        "kind": "service", "offer_id": offer_id, "version": 1, "partner_id": partner_id,
        "node_id": node_id, "service_type": service_type,
        "slots": [{"window": {"start": at(start), "end": at(end)}, "places": places}],
        "eligibility": eligibility or [],
    })


def withdrawal(offer_id: str, partner_id: str, version: int = 2) -> dict[str, Any]:
    return envelope("offer.withdrawn", partner_id, {
        "offer_id": offer_id, "version": version, "reason": "volunteer fell ill",
    })


def item(item_id: str = "i1", *, kind: str = "volunteer", need: str = "companionship",
         quantity: float = 2, unit: str = "hours", start: float = 8, end: float = 18,
         urgency: int = 3, splittable: bool = True, languages: list[str] | None = None
         ) -> dict[str, Any]:
    return {
        "item_id": item_id, "kind": kind, "need": need, "quantity": quantity, "unit": unit,
        "window": {"start": at(start), "end": at(end)}, "deadline": at(end),
        "urgency": urgency, "splittable": splittable,
        "preferences": {"languages": languages or []},
    }


def case(case_id: str, *, grid: str = GRID, items: list[dict[str, Any]] | None = None,
         version: int = 1, event_type: str = "case.opened", vulnerability: int = 3,
         group: str = "elderly_alone", producer: str | None = None) -> dict[str, Any]:
    return envelope(event_type, producer or grid, {
        "case_id": case_id, "version": version, "grid_id": grid,
        "beneficiary": {"pseudonym": f"ben-{case_id}", "group": group,
                        "vulnerability": vulnerability,
                        "location": {"lat": 29.052, "lon": 106.662},
                        "sensitive": {"health": "diabetic"}},
        "items": items or [item()],
    })


def closure(case_id: str, producer: str = GRID, version: int = 2) -> dict[str, Any]:
    return envelope("case.closed", producer, {"case_id": case_id, "version": version,
                                              "reason": "moved away"})


def decision(proposal_id: str, decision_: str = "approve", reason: str = "") -> dict[str, Any]:
    return envelope("match.decided", "coord-wenlong", {
        "proposal_id": proposal_id, "decision": decision_, "coordinator_id": "coord-wenlong",
        "reason": reason,
    })


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


_ADAPTER: TypeAdapter[IncomingEvent] = TypeAdapter(
    Annotated[IncomingEvent, Field(discriminator="event_type")]
)


def parse(event: dict[str, Any]) -> IncomingEvent:
    """The event as the engine's edge would validate it."""
    return _ADAPTER.validate_python(event)
