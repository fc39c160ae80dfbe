"""How far an offer reaches: its own word, else its partner's, else its nodes', else the old rule.

Reach is data (`schemas.common.Reach`, here as its plain dict). Each source is asked in
turn, and the first that says something decides:

1. the offer's own `reach`;
2. its partner's `default_reach`;
3. the `default_reach` of the nearest node, from the offer's node up to the centre;
4. where the data says nothing, the rule the engine always had: a service with a place is
   within a short trip of it (`service_travel_km`), goods reach their workstation's street.

Volunteers are not concerned: they travel their own radius from home.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PICKUP, DELIVERY, DISTRICT = "pickup", "delivery", "district"
# Modes the old rule and volunteers give: a travel radius from home, or the workstation.
TRAVEL, WORKSTATION = "travel", "workstation"
# Codes of the modes in the supply frame.
MODE_CODES = {TRAVEL: 0, PICKUP: 1, DELIVERY: 2, DISTRICT: 3, WORKSTATION: 4}
# People travel to a service: within this distance of its place it is within their reach.
SERVICE_TRAVEL_KM = 5.0
# How many parents are walked at most (the hierarchy has four levels; this only bounds a loop).
MAX_DEPTH = 16


@dataclass(frozen=True)
class ReachDefaults:
    """What the data and the settings say beyond the offers: partners' defaults, and the
    distance people travel to a service when nothing says otherwise."""

    partners: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    service_travel_km: float = SERVICE_TRAVEL_KM


@dataclass(frozen=True)
class ResolvedReach:
    """An offer's reach as rules use it: a mode and a radius (NaN: its workstation's street;
    +inf: the whole district)."""

    mode: str
    radius_km: float

    @property
    def code(self) -> int:
        """The mode's code in the supply frame."""
        return MODE_CODES[self.mode]


def offer_place(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Where an offer is: a volunteer's home, a lot's pickup point, a service's place (None:
    only its node's point is known)."""
    return payload.get("home") or payload.get("pickup") or payload.get("place") or None


def offer_reach(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """An offer says how it reaches people."""
    reach = payload.get("reach")
    return reach if reach else None


def partner_reach(partner_id: str, defaults: ReachDefaults) -> Mapping[str, Any] | None:
    """A partner says how its offers reach people when they do not."""
    return defaults.partners.get(partner_id) or None


def node_reach(node_id: str, nodes: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The nearest node, from the offer's own up to the centre, says how offers reach people."""
    current: str | None = node_id
    for _ in range(MAX_DEPTH):
        node = nodes.get(current) if current is not None else None
        if node is None:
            return None
        reach = getattr(node, "reach", None)
        if reach:
            return reach
        current = getattr(node, "parent_id", None)
    return None


def stated(reach: Mapping[str, Any]) -> ResolvedReach:
    """A stated reach: a radius for pickup and delivery, everywhere for district."""
    mode = str(reach["mode"])
    if mode == DISTRICT:
        return ResolvedReach(DISTRICT, math.inf)
    return ResolvedReach(mode, float(reach["km"]))


def old_rule(payload: Mapping[str, Any], has_own_place: bool,
             service_travel_km: float) -> ResolvedReach:
    """Where the data says nothing: people travel a short way to a service's place, and goods
    (or a service without a place) reach their workstation's street."""
    if payload["kind"] == "service" and has_own_place:
        return ResolvedReach(PICKUP, service_travel_km)
    return ResolvedReach(WORKSTATION, math.nan)


def volunteer_reach(payload: Mapping[str, Any], has_home: bool) -> ResolvedReach:
    """A volunteer goes as far as their travel radius from home (their workstation without one)."""
    if not has_home:
        return ResolvedReach(WORKSTATION, math.nan)
    return ResolvedReach(TRAVEL, float(payload["travel_radius_km"]))


# Who said how far an offer reaches (`reach_and_source`).
SAID_BY_OFFER, SAID_BY_PARTNER, SAID_BY_NODE, SAID_BY_RULE = "offer", "partner", "node", "rule"


def resolve_reach(payload: Mapping[str, Any], *, has_own_place: bool,
                  nodes: Mapping[str, Any], defaults: ReachDefaults) -> ResolvedReach:
    """An offer's reach: its own word, else its partner's, else its nearest node's, else the
    old rule."""
    return reach_and_source(payload, has_own_place=has_own_place, nodes=nodes,
                            defaults=defaults)[0]


def reach_and_source(payload: Mapping[str, Any], *, has_own_place: bool,
                     nodes: Mapping[str, Any], defaults: ReachDefaults
                     ) -> tuple[ResolvedReach, str]:
    """An offer's reach and who said it (a volunteer's radius is the offer's own word), so a
    partner can see which default their offers follow."""
    if payload["kind"] == "volunteer":
        return volunteer_reach(payload, has_own_place), SAID_BY_OFFER
    for source, reach in ((SAID_BY_OFFER, offer_reach(payload)),
                          (SAID_BY_PARTNER, partner_reach(payload["partner_id"], defaults)),
                          (SAID_BY_NODE, node_reach(payload["node_id"], nodes))):
        if reach:
            return stated(reach), source
    return old_rule(payload, has_own_place, defaults.service_travel_km), SAID_BY_RULE
