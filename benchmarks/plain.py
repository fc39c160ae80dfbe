"""A plain reading of the district, independent of the engine: the baselines and the judge.

Everything here is written from the wire contracts (`schemas/`) and the rules as the README
states them, with its own small functions: it imports nothing from `matcher.domain` or the
engine's services. Three things live here:

- `World`: every version of every offer and case, as the events said, and the registry;
- `eligible`: may this offer serve this item at this moment (the hard rules, plainly);
- `Greedy`: the baselines, first-come-first-served and urgency-first, each keeping its own
  ledger of what it gave;
- `judge`: beneficiary outcomes of any list of allocations (the engine's or a baseline's),
  and every allocation that breaks a rule or a capacity (violations).

So a baseline does not share the engine's candidates or score, and the engine is checked by
code that is not its own.
"""

from __future__ import annotations

import math
from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from schemas import (
    CaseClosed,
    CaseOpened,
    CaseUpdated,
    NodeRegistered,
    OfferPublished,
    OfferUpdated,
    OfferWithdrawn,
    PartnerRegistered,
)

DISTRICT_ZONE = ZoneInfo("Asia/Shanghai")  # volunteers' weeks run on the district's clock
SERVICE_TRAVEL_KM = 5.0  # people go this far to a service (README: reach)
MIN_SPLIT_HOURS = 1.0  # a splittable visit is at least an hour (or all that is asked)
QUARTER_HOUR = 0.25
URGENT = 4  # urgency at or above this is urgent
EPS = 1e-6


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Place:
    """A node of the hierarchy: its point and its workstation."""

    lat: float | None
    lon: float | None
    workstation: str | None  # None: the centre (reaches everywhere)


@dataclass
class Versions:
    """Every version of one offer or case, in the order they took effect."""

    at: list[datetime] = field(default_factory=list)
    value: list[Any] = field(default_factory=list)
    gone_at: datetime | None = None  # withdrawn or closed

    def add(self, at: datetime, value: Any) -> None:
        self.at.append(at)
        self.value.append(value)

    def as_of(self, moment: datetime) -> Any | None:
        """The version in force at `moment` (None before the first or after it was gone)."""
        if self.gone_at is not None and moment >= self.gone_at:
            return None
        found = None
        for at, value in zip(self.at, self.value, strict=True):
            if at <= moment:
                found = value
        return found

    @property
    def last(self) -> Any:
        return self.value[-1]


def _newer(table: dict[str, Versions], key: str, at: datetime, payload: Any) -> bool:
    """Record a version newer than any seen (a repeated or older one changes nothing)."""
    versions = table.setdefault(key, Versions())
    if versions.value and payload.version <= versions.last.version:
        return False
    versions.add(at, payload)
    return True


def _gone(table: dict[str, Versions], key: str, at: datetime) -> bool:
    """Record that an offer was withdrawn or a case closed (once)."""
    versions = table.get(key)
    if versions is None or versions.gone_at is not None:
        return False
    versions.gone_at = at
    return True


@dataclass
class World:
    """What the events said: the registry, and every version of every offer and case."""

    nodes: dict[str, Any] = field(default_factory=dict)
    partners: dict[str, Any] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    offers: dict[str, Versions] = field(default_factory=dict)
    cases: dict[str, Versions] = field(default_factory=dict)
    opened_at: dict[str, datetime] = field(default_factory=dict)

    def apply(self, event: Any) -> str | None:
        """Take one event in; returns what changed: 'offer', 'case' or None."""
        at = event.occurred_at
        if isinstance(event, NodeRegistered):
            self.nodes[event.payload.node_id] = event.payload
            self.places.clear()
        elif isinstance(event, PartnerRegistered):
            self.partners[event.payload.partner_id] = event.payload
        elif isinstance(event, OfferPublished | OfferUpdated):
            return "offer" if _newer(self.offers, event.payload.offer_id, at, event.payload) \
                else None
        elif isinstance(event, OfferWithdrawn):
            return "offer" if _gone(self.offers, event.payload.offer_id, at) else None
        elif isinstance(event, CaseOpened | CaseUpdated):
            self.opened_at.setdefault(event.payload.case_id, at)
            return "case" if _newer(self.cases, event.payload.case_id, at, event.payload) \
                else None
        elif isinstance(event, CaseClosed):
            return "case" if _gone(self.cases, event.payload.case_id, at) else None
        return None

    def place(self, node_id: str) -> Place:
        """A node's point (its own, else the nearest ancestor's) and its workstation."""
        if node_id not in self.places:
            chain = []
            node = self.nodes.get(node_id)
            while node is not None:
                chain.append(node)
                node = self.nodes.get(node.parent_id) if node.parent_id else None
            point = next((n.location for n in chain if n.location is not None), None)
            workstation = next((n.node_id for n in chain if n.level == "workstation"), None)
            self.places[node_id] = Place(point.lat if point else None,
                                         point.lon if point else None, workstation)
        return self.places[node_id]


def km_between(lat1: float | None, lon1: float | None, lat2: float | None,
               lon2: float | None) -> float | None:
    """Great-circle distance in km (None when a point is unknown)."""
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def item_point(world: World, case: Any) -> tuple[float | None, float | None]:
    """Where the beneficiary is: their own location, else their grid's point."""
    location = case.beneficiary.location
    if location is not None:
        return location.lat, location.lon
    place = world.place(case.grid_id)
    return place.lat, place.lon


def offer_point(world: World, offer: Any) -> tuple[float | None, float | None]:
    """Where the offer is given from: home, pickup or place, else its node's point."""
    location = getattr(offer, "home", None) or getattr(offer, "pickup", None) \
        or getattr(offer, "place", None)
    if location is not None:
        return location.lat, location.lon
    place = world.place(offer.node_id)
    return place.lat, place.lon


def travel_km(world: World, offer: Any, case: Any) -> float | None:
    """Distance between the offer's place and the beneficiary."""
    return km_between(*offer_point(world, offer), *item_point(world, case))


# --------------------------------------------------------------------------- eligibility


def _need_matches(offer: Any, item: Any) -> bool:
    if offer.kind != item.kind:
        return False
    need = item.need.casefold()
    if offer.kind == "volunteer":
        return need in {skill.casefold() for skill in offer.skills}
    if offer.kind == "goods":
        return offer.category.casefold() == need and offer.unit.casefold() == item.unit.casefold()
    return bool(offer.service_type.casefold() == need)


def stated_reach(world: World, offer: Any) -> Any | None:
    """How an offer says it reaches people (README, reach): its own word, else its partner's
    default, else the default of its node or the nearest node above; None when none says."""
    reach = getattr(offer, "reach", None)
    if reach is not None:
        return reach
    partner = world.partners.get(offer.partner_id)
    if partner is not None and getattr(partner, "default_reach", None) is not None:
        return partner.default_reach
    node = world.nodes.get(offer.node_id)
    while node is not None:
        if getattr(node, "default_reach", None) is not None:
            return node.default_reach
        node = world.nodes.get(node.parent_id) if node.parent_id else None
    return None


def _in_workstation(world: World, offer: Any, case: Any) -> bool:
    """The offer's workstation's street (an offer of the centre reaches everywhere)."""
    workstation = world.place(offer.node_id).workstation
    return workstation is None or workstation == world.place(case.grid_id).workstation


def _in_reach(world: World, offer: Any, case: Any) -> bool:
    """Volunteers within their travel radius of home; other offers as they say (pickup or
    delivery within km of their place, or the whole district); where nothing says, people
    within a short trip of a service's place, and goods within the workstation."""
    if offer.kind == "volunteer":
        if offer.home is None:
            return _in_workstation(world, offer, case)
        km = travel_km(world, offer, case)
        return km is not None and km <= offer.travel_radius_km + EPS
    reach = stated_reach(world, offer)
    if reach is not None:
        if str(getattr(reach.mode, "value", reach.mode)) == "district":
            return True
        km = travel_km(world, offer, case)
        return _in_workstation(world, offer, case) if km is None else km <= reach.km + EPS
    if offer.kind == "service" and offer.place is not None:
        km = travel_km(world, offer, case)
        return km is not None and km <= SERVICE_TRAVEL_KM + EPS
    return _in_workstation(world, offer, case)


def item_end(item: Any) -> datetime:
    """The last moment an item can be served: its window's end or its deadline."""
    return min(item.window.end, item.deadline)


def eligible(world: World, offer: Any, case: Any, item: Any, now: datetime) -> bool:
    """May this offer serve this item at `now` (reach, need, language, group, expiry)?"""
    if not _need_matches(offer, item) or item_end(item) <= now:
        return False
    if offer.kind == "volunteer" and item.preferences.languages:
        wanted = {language.casefold() for language in item.preferences.languages}
        if not wanted & {language.casefold() for language in offer.languages}:
            return False
    if offer.kind == "service" and offer.eligibility \
            and case.beneficiary.group not in offer.eligibility:
        return False
    if offer.kind == "goods" and offer.expires_at is not None \
            and offer.expires_at <= max(item.window.start, now):
        return False
    return _in_reach(world, offer, case)


def week_of(moment: datetime) -> tuple[int, int]:
    """ISO (year, week) on the district's clock."""
    year, week, _ = moment.astimezone(DISTRICT_ZONE).isocalendar()
    return year, week


# --------------------------------------------------------------------------- allocations


@dataclass(frozen=True)
class Given:
    """One allocation: so much of an offer (a slot, a visit) to one item."""

    case_id: str
    item_id: str
    offer_id: str
    kind: str
    amount: float
    made_at: datetime
    slot: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    volunteer_id: str | None = None

    @property
    def begun_by(self) -> datetime:
        """From this moment it has happened (or begun): goods when handed out."""
        return self.start if self.start is not None else self.made_at


class Ledger:
    """What one policy has given, with the running totals its capacity checks need."""

    def __init__(self) -> None:
        self.given: list[Given] = []
        self.by_offer: dict[str, float] = defaultdict(float)
        self.by_slot: dict[tuple[str, int], float] = defaultdict(float)
        self.by_item: dict[tuple[str, str], float] = defaultdict(float)
        self.offers_of_item: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.week_hours: dict[tuple[str, tuple[int, int]], float] = defaultdict(float)
        self.visits: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)

    def add(self, given: Given) -> None:
        self.given.append(given)
        self._count(given, +1)

    def drop(self, keep: Callable[[Given], bool]) -> int:
        """Drop the allocations `keep` says no to; returns how many."""
        kept, dropped = [], 0
        for given in self.given:
            if keep(given):
                kept.append(given)
            else:
                self._count(given, -1)
                dropped += 1
        self.given = kept
        return dropped

    def _count(self, given: Given, sign: int) -> None:
        self.by_offer[given.offer_id] += sign * given.amount
        if given.slot is not None:
            self.by_slot[(given.offer_id, given.slot)] += sign * given.amount
        key = (given.case_id, given.item_id)
        self.by_item[key] += sign * given.amount
        if sign > 0:
            self.offers_of_item[key].add(given.offer_id)
        elif self.by_item[key] <= EPS:
            self.offers_of_item[key].discard(given.offer_id)
        if given.volunteer_id is not None and given.start is not None and given.end is not None:
            hours = (given.end - given.start).total_seconds() / 3600.0
            self.week_hours[(given.volunteer_id, week_of(given.start))] += sign * hours
            visit = (given.start, given.end)
            if sign > 0:
                insort(self.visits[given.volunteer_id], visit)
            else:
                self.visits[given.volunteer_id].remove(visit)


def _free_stretches(windows: Iterable[tuple[datetime, datetime]],
                    busy: Sequence[tuple[datetime, datetime]]
                    ) -> list[tuple[datetime, datetime]]:
    """The parts of the windows not taken by any visit."""
    free = []
    for start, end in windows:
        at = start
        for busy_start, busy_end in busy:
            if busy_end <= at or busy_start >= end:
                continue
            if busy_start > at:
                free.append((at, busy_start))
            at = max(at, busy_end)
        if at < end:
            free.append((at, end))
    return free


def _floor(amount: float, step: float) -> float:
    return math.floor(amount / step + EPS) * step


# --------------------------------------------------------------------------- the baselines


def fcfs_order(world: World, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """First come, first served: by the case's opening, then the item's place in the case."""
    return sorted(keys, key=lambda key: (world.opened_at[key[0]], key))


def urgency_order(world: World, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Most urgent first (urgency x vulnerability), then the nearest deadline, then arrival."""
    def rank(key: tuple[str, str]) -> tuple[float, datetime, datetime]:
        case = world.cases[key[0]].last
        item = next(i for i in case.items if i.item_id == key[1])
        return (-item.urgency * case.beneficiary.vulnerability, item_end(item),
                world.opened_at[key[0]])
    return sorted(keys, key=rank)


@dataclass
class Greedy:
    """A greedy policy: at each batch, open items in its order take the nearest eligible
    offers with capacity left, as much as each can give, until served."""

    name: str
    world: World
    order: Callable[[World, Iterable[tuple[str, str]]], list[tuple[str, str]]]
    ledger: Ledger = field(default_factory=Ledger)
    seconds: float = 0.0
    # Per volunteer, the lowest weekly limit their live offers state (this batch).
    _limits: dict[str, float] = field(default_factory=dict)

    def on_event(self, kind: str | None, event: Any, now: datetime) -> None:
        """Drop what a change makes impossible (not yet begun); the next batch re-matches."""
        if kind == "offer":
            offer_id = event.payload.offer_id
            self.ledger.drop(lambda g: g.offer_id != offer_id or g.begun_by <= now)
        elif kind == "case":
            case_id = event.payload.case_id
            self.ledger.drop(lambda g: g.case_id != case_id or g.begun_by <= now)

    def batch(self, now: datetime) -> int:
        """Serve open items in this policy's order; returns how many allocations were made."""
        world = self.world
        live_offers: dict[tuple[str, str], list[Any]] = defaultdict(list)
        self._limits = {}
        for versions in world.offers.values():
            offer = versions.as_of(now)
            if offer is None:
                continue
            if offer.kind == "volunteer":
                self._limits[offer.volunteer_id] = min(
                    offer.weekly_hour_limit,
                    self._limits.get(offer.volunteer_id, offer.weekly_hour_limit))
            need = (offer.skills if offer.kind == "volunteer" else
                    [offer.category if offer.kind == "goods" else offer.service_type])
            for word in need:
                live_offers[(offer.kind, word.casefold())].append(offer)
        wanting: list[tuple[str, str]] = []
        for case_id, versions in world.cases.items():
            case = versions.as_of(now)
            if case is None:
                continue
            for item in case.items:
                if item_end(item) > now and \
                        self.ledger.by_item[(case_id, item.item_id)] < item.quantity - EPS:
                    wanting.append((case_id, item.item_id))
        made = 0
        for case_id, item_id in self.order(world, wanting):
            case = world.cases[case_id].last
            item = next(i for i in case.items if i.item_id == item_id)
            offers = live_offers.get((item.kind, item.need.casefold()), [])
            made += self._serve(case, item, offers, now)
        return made

    def _serve(self, case: Any, item: Any, offers: list[Any], now: datetime) -> int:
        key = (case.case_id, item.item_id)
        left = item.quantity - self.ledger.by_item[key]
        whole = not item.splittable
        if whole and self.ledger.by_item[key] > EPS:
            return 0
        nearest = sorted(
            (o for o in offers if eligible(self.world, o, case, item, now)),
            key=lambda o: (travel_km(self.world, o, case) or 0.0, o.offer_id))
        made = 0
        for offer in nearest:
            if left <= EPS:
                break
            given = self._take(offer, case, item, left, whole, now)
            if given is None:
                continue
            self.ledger.add(given)
            left -= given.amount
            made += 1
            if whole:
                break
        return made

    def _take(self, offer: Any, case: Any, item: Any, left: float, whole: bool,
              now: datetime) -> Given | None:
        base = dict(case_id=case.case_id, item_id=item.item_id, offer_id=offer.offer_id,
                    kind=offer.kind, made_at=now)
        if offer.kind == "goods":
            amount = _floor(min(left, offer.quantity - self.ledger.by_offer[offer.offer_id]), 0.1)
            if amount <= EPS or (whole and amount < left - EPS):
                return None
            return Given(amount=amount, **base)
        begin, finish = max(item.window.start, now), item_end(item)
        if offer.kind == "service":
            for index, slot in enumerate(offer.slots):
                if slot.window.start < begin or slot.window.end > finish:
                    continue
                room = slot.places - self.ledger.by_slot[(offer.offer_id, index)]
                amount = min(left, math.floor(room + EPS))
                if amount >= 1 and not (whole and amount < left - EPS):
                    return Given(amount=amount, slot=index, start=slot.window.start,
                                 end=slot.window.end, **base)
            return None
        return self._visit(offer, item, left, whole, begin, finish, base)

    def _visit(self, offer: Any, item: Any, left: float, whole: bool, begin: datetime,
               finish: datetime, base: dict[str, Any]) -> Given | None:
        """The longest free stretch of the volunteer's time inside the item's window."""
        volunteer = offer.volunteer_id
        limit = min(offer.weekly_hour_limit, self._limits.get(volunteer, math.inf))
        offer_room = min(offer.weekly_hour_limit, sum(w.hours for w in offer.availability)) \
            - self.ledger.by_offer[offer.offer_id]
        windows = [(max(w.start, begin), min(w.end, finish)) for w in offer.availability
                   if min(w.end, finish) > max(w.start, begin)]
        best: tuple[float, datetime] | None = None
        for start, end in _free_stretches(windows, self.ledger.visits[volunteer]):
            week_room = limit - self.ledger.week_hours[(volunteer, week_of(start))]
            hours = _floor(min(left, (end - start).total_seconds() / 3600.0, week_room,
                               offer_room), QUARTER_HOUR)
            if best is None or hours > best[0] + EPS:
                best = (hours, start)
        if best is None:
            return None
        hours, start = best
        needed = left if whole else min(left, MIN_SPLIT_HOURS)
        if hours < needed - EPS:
            return None
        return Given(amount=hours, start=start, end=start + timedelta(hours=hours),
                     volunteer_id=volunteer, **base)


# --------------------------------------------------------------------------- the judge


@dataclass(frozen=True)
class Outcome:
    """What beneficiaries got from one policy's allocations, and what broke a rule."""

    name: str
    fulfilment: float  # sum(priority x share served by the deadline) / sum(priority)
    by_kind: dict[str, float]
    urgent_in_full: float  # share of urgent items served in full by their deadline
    items_in_full: float
    allocations: int
    mean_km: float
    expiring_goods_unused: float  # mean share of each expiring lot never given
    grids_left_behind: float  # share of grids under 50 % priority-weighted fulfilment
    grid_gini: float
    continuity: float  # recurring visits by a volunteer the beneficiary already had
    violations: dict[str, int]


def priority(item: Any, case: Any) -> int:
    """How much serving an item matters: urgency (1..5) x vulnerability (1..5)."""
    return int(item.urgency * case.beneficiary.vulnerability)


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative values (0: all equal)."""
    ordered = sorted(values)
    n, total = len(ordered), sum(ordered)
    if n == 0 or total == 0:
        return 0.0
    return sum((2 * i - n - 1) * v for i, v in enumerate(ordered, start=1)) / (n * total)


def _violations(world: World, given: Sequence[Given]) -> dict[str, int]:
    """Each allocation checked against the versions in force when it was made, and every
    capacity counted over all allocations together."""
    broken: dict[str, int] = defaultdict(int)
    by_offer: dict[str, float] = defaultdict(float)
    by_slot: dict[tuple[str, int], float] = defaultdict(float)
    by_item: dict[tuple[str, str], float] = defaultdict(float)
    offers_of_item: dict[tuple[str, str], set[str]] = defaultdict(set)
    week_hours: dict[tuple[str, tuple[int, int]], float] = defaultdict(float)
    week_offers: dict[tuple[str, tuple[int, int]], set[str]] = defaultdict(set)
    weeks_over: set[tuple[str, tuple[int, int]]] = set()
    visits: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for g in given:
        offer = world.offers[g.offer_id].as_of(g.made_at) if g.offer_id in world.offers else None
        case = world.cases[g.case_id].as_of(g.made_at) if g.case_id in world.cases else None
        item = next((i for i in case.items if i.item_id == g.item_id), None) if case else None
        if offer is None or case is None or item is None:
            broken["gone_when_made"] += 1
            continue
        if not eligible(world, offer, case, item, g.made_at):
            broken["not_eligible"] += 1
        if g.start is not None and g.end is not None:
            if g.start < item.window.start or g.end > item_end(item) + timedelta(seconds=1):
                broken["outside_item_window"] += 1
            if offer.kind == "volunteer" and not any(
                    w.start <= g.start and g.end <= w.end for w in offer.availability):
                broken["outside_availability"] += 1
        by_offer[g.offer_id] += g.amount
        if g.slot is not None:
            by_slot[(g.offer_id, g.slot)] += g.amount
            if g.slot >= len(offer.slots) or by_slot[(g.offer_id, g.slot)] > \
                    offer.slots[g.slot].places + EPS:
                broken["slot_over_places"] += 1
        if offer.kind == "goods" and by_offer[g.offer_id] > offer.quantity + EPS:
            broken["goods_over_quantity"] += 1
        key = (g.case_id, g.item_id)
        by_item[key] += g.amount
        offers_of_item[key].add(g.offer_id)
        if by_item[key] > item.quantity + EPS:
            broken["item_over_served"] += 1
        if not item.splittable and len(offers_of_item[key]) > 1:
            broken["whole_item_split"] += 1
        if g.volunteer_id is not None and g.start is not None and g.end is not None:
            week = (g.volunteer_id, week_of(g.start))
            week_hours[week] += (g.end - g.start).total_seconds() / 3600.0
            week_offers[week].add(g.offer_id)
            # The lowest limit the volunteer states, on the offers booked that week, in the
            # versions in force now: a limit raised since an earlier booking counts raised.
            limit = min((version.weekly_hour_limit for version in
                         (world.offers[o].as_of(g.made_at) for o in week_offers[week])
                         if version is not None), default=math.inf)
            if week_hours[week] > limit + EPS:
                weeks_over.add(week)
            visits[g.volunteer_id].append((g.start, g.end))
    broken["volunteer_week_over_limit"] = len(weeks_over)
    for spans in visits.values():
        spans.sort()
        broken["volunteer_in_two_places"] += sum(
            later[0] < earlier[1] for earlier, later in pairwise(spans))
    return {name: count for name, count in sorted(broken.items()) if count}


def judge(name: str, world: World, given: Sequence[Given], until: datetime) -> Outcome:
    """Outcomes over the items due by `until` of cases still open then, as their last version
    says (an item due later may still be served, so it is not judged yet)."""
    served_by_deadline: dict[tuple[str, str], float] = defaultdict(float)
    for g in given:
        case = world.cases[g.case_id].last
        item = next((i for i in case.items if i.item_id == g.item_id), None)
        if item is None:
            continue
        done_by = g.end if g.end is not None else g.made_at
        if done_by <= item_end(item) + timedelta(seconds=1):
            served_by_deadline[(g.case_id, g.item_id)] += g.amount
    weights, kind_sums, grid_sums = 0.0, defaultdict(lambda: [0.0, 0.0]), \
        defaultdict(lambda: [0.0, 0.0])
    served_weight = 0.0
    urgent = urgent_full = full = items = 0
    for case_id, versions in world.cases.items():
        if versions.gone_at is not None and versions.gone_at <= until:
            continue
        case = versions.last
        for item in case.items:
            if item_end(item) > until:
                continue
            share = min(1.0, served_by_deadline[(case_id, item.item_id)] / item.quantity)
            w = priority(item, case)
            weights += w
            served_weight += w * share
            for table, key in ((kind_sums, item.kind), (grid_sums, case.grid_id)):
                table[key][0] += w * share
                table[key][1] += w
            items += 1
            in_full = share >= 1.0 - EPS
            full += in_full
            if item.urgency >= URGENT:
                urgent += 1
                urgent_full += in_full
    grid_shares = [done / total for done, total in grid_sums.values() if total]
    kms = [km for g in given
           if (km := travel_km(world, world.offers[g.offer_id].last, world.cases[g.case_id].last))
           is not None]
    return Outcome(
        name=name, fulfilment=served_weight / weights if weights else 0.0,
        by_kind={k: done / total for k, (done, total) in sorted(kind_sums.items())},
        urgent_in_full=urgent_full / urgent if urgent else 0.0,
        items_in_full=full / items if items else 0.0, allocations=len(given),
        mean_km=sum(kms) / len(kms) if kms else math.nan,
        expiring_goods_unused=_unused_goods(world, given, until),
        grids_left_behind=(sum(s < 0.5 for s in grid_shares) / len(grid_shares)
                           if grid_shares else 0.0),
        grid_gini=gini(grid_shares), continuity=_continuity(world, given),
        violations=_violations(world, sorted(given, key=lambda g: g.made_at)),
    )


def _unused_goods(world: World, given: Sequence[Given], until: datetime) -> float:
    """Mean share of each lot that expired by `until` (not withdrawn) and was never given."""
    by_offer: dict[str, float] = defaultdict(float)
    for g in given:
        by_offer[g.offer_id] += g.amount
    shares = []
    for offer_id, versions in world.offers.items():
        offer = versions.last
        if offer.kind != "goods" or offer.expires_at is None or offer.expires_at > until:
            continue
        if versions.gone_at is not None and versions.gone_at < offer.expires_at:
            continue
        shares.append(max(0.0, 1.0 - by_offer[offer_id] / offer.quantity))
    return sum(shares) / len(shares) if shares else 0.0


def _continuity(world: World, given: Sequence[Given]) -> float:
    """Share of visits for recurring needs made by a volunteer who had visited the same
    beneficiary before (the first visit of each beneficiary is not counted)."""
    seen: dict[str, set[str]] = defaultdict(set)
    counted = kept = 0
    for g in sorted((g for g in given if g.volunteer_id and g.start), key=lambda g: g.start
                    or g.made_at):
        case = world.cases[g.case_id].last
        item = next((i for i in case.items if i.item_id == g.item_id), None)
        person = case.beneficiary.pseudonym
        if item is not None and item.preferences.recurring and seen[person]:
            counted += 1
            kept += g.volunteer_id in seen[person]
        assert g.volunteer_id is not None
        seen[person].add(g.volunteer_id)
    return kept / counted if counted else math.nan


def as_given(row: Any) -> Given:
    """An engine proposal row (holding) as an allocation."""
    def utc(moment: datetime | None) -> datetime | None:
        if moment is None:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    made = utc(row.created_at)
    assert made is not None
    return Given(case_id=row.case_id, item_id=row.item_id, offer_id=row.offer_id,
                 kind=row.kind, amount=float(row.amount), made_at=made, slot=row.slot,
                 start=utc(row.window_start), end=utc(row.window_end),
                 volunteer_id=row.volunteer_id)
