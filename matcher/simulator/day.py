"""A seeded day (or month) of offers and cases in the district, as wire events.

Pure: builds schema objects and returns them; publishing is `matcher.simulator.publish`.
Volunteers and households are stable rosters drawn from the seed alone, so the same people
recur on every simulated day; what they publish or need varies with the date.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache, cached_property
from typing import TypeVar

from matcher.simulator.district import District, jitter
from schemas import (
    Beneficiary,
    BeneficiaryGroup,
    Case,
    CaseClosed,
    CaseOpened,
    CaseUpdated,
    Closure,
    GoodsOffer,
    Level,
    Location,
    NeedItem,
    Node,
    NodeRegistered,
    OfferKind,
    OfferPublished,
    OfferUpdated,
    OfferWithdrawn,
    Partner,
    PartnerKind,
    PartnerRegistered,
    Preferences,
    SensitiveAttributes,
    ServiceOffer,
    ServiceSlot,
    TimeWindow,
    VolunteerOffer,
    Withdrawal,
)

Event = (
    NodeRegistered | PartnerRegistered | OfferPublished | OfferUpdated | OfferWithdrawn
    | CaseOpened | CaseUpdated | CaseClosed
)
AnyOffer = VolunteerOffer | GoodsOffer | ServiceOffer
T = TypeVar("T")

# Qijiang keeps China Standard Time all year: a fixed +08:00 is Asia/Shanghai.
TZ = timezone(timedelta(hours=8))

G = BeneficiaryGroup
ELDERLY_GROUPS = (G.ELDERLY_ALONE, G.ELDERLY)
CHILD_GROUPS = (G.LEFT_BEHIND_CHILD, G.CHILD_IN_DIFFICULTY)
MANDARIN = "mandarin"
DIALECT = "chongqing_dialect"


@dataclass(frozen=True)
class SkillSpec:
    """A volunteer skill: hours a need asks for, and supply relative to demand."""

    hours: tuple[float, float]
    supply_ratio: float
    splittable: bool = True


@dataclass(frozen=True)
class GoodsSpec:
    """A goods category: unit, household need, lot size, shelf life (days) and supply ratio."""

    unit: str
    need: tuple[float, float]
    step: float
    lot: tuple[float, float]
    shelf_days: tuple[int, int] | None
    supply_ratio: float


@dataclass(frozen=True)
class ServiceSpec:
    """A service type: its slots (fixed sittings or a run of slots), places, who may use it."""

    unit: str
    eligibility: tuple[BeneficiaryGroup, ...]
    places: tuple[int, int]
    supply_ratio: float
    sittings: tuple[tuple[float, float], ...] = ()
    hours: tuple[float, float] = (8.5, 17.0)
    slot_minutes: int = 60
    slots: tuple[int, int] = (1, 1)


# Supply ratios below 1 make a need scarce; under 0.5 it is rare (few such volunteers exist).
SKILLS: dict[str, SkillSpec] = {
    "companionship": SkillSpec((1.5, 3.0), 1.8, splittable=False),
    "home_cleaning": SkillSpec((2.0, 3.5), 0.9),
    "meal_delivery": SkillSpec((1.0, 2.0), 1.6),
    "hospital_escort": SkillSpec((2.0, 3.5), 0.7, splittable=False),
    "tutoring": SkillSpec((1.5, 2.5), 0.9),
    "haircut": SkillSpec((0.5, 1.0), 1.3, splittable=False),
    "home_repair": SkillSpec((1.5, 3.5), 0.6),
    "smart_device_help": SkillSpec((1.0, 2.0), 1.5),
    "psychological_support": SkillSpec((1.0, 2.0), 0.35, splittable=False),
    "nursing_care": SkillSpec((2.0, 4.0), 0.3, splittable=False),
    "sign_language": SkillSpec((1.0, 2.0), 0.2, splittable=False),
    "legal_aid": SkillSpec((1.0, 2.0), 0.4, splittable=False),
}
# Skills many volunteers add to their main one.
GENERAL_SKILLS = ("companionship", "meal_delivery", "home_cleaning", "smart_device_help")

# Vegetables, milk and bread spoil within 1-5 days; grain, oil and bedding keep.
GOODS: dict[str, GoodsSpec] = {
    "rice": GoodsSpec("kg", (5, 25), 5, (10, 60), None, 1.6),
    "cooking_oil": GoodsSpec("litre", (2.5, 10), 2.5, (5, 25), None, 1.4),
    "flour": GoodsSpec("kg", (5, 10), 5, (10, 30), None, 0.9),
    "vegetables": GoodsSpec("kg", (2, 6), 1, (3, 15), (1, 3), 0.8),
    "milk": GoodsSpec("box", (1, 3), 1, (2, 8), (3, 5), 0.9),
    "bread": GoodsSpec("bag", (1, 3), 1, (2, 8), (1, 2), 0.85),
    "eggs": GoodsSpec("tray", (1, 2), 1, (1, 5), (7, 14), 0.9),
    "quilt": GoodsSpec("piece", (1, 2), 1, (1, 5), None, 0.7),
    "winter_clothing": GoodsSpec("piece", (1, 4), 1, (2, 10), None, 0.8),
    "adult_diapers": GoodsSpec("pack", (1, 4), 1, (2, 8), None, 0.6),
    "school_supplies": GoodsSpec("set", (1, 2), 1, (2, 8), None, 0.9),
    "walking_aid": GoodsSpec("piece", (1, 1), 1, (1, 2), None, 0.3),
}
PERISHABLE = frozenset(name for name, spec in GOODS.items() if spec.shelf_days is not None)

SERVICES: dict[str, ServiceSpec] = {
    "physiotherapy": ServiceSpec(
        "session", (G.ELDERLY_ALONE, G.ELDERLY, G.DISABLED, G.ILL_OR_RECOVERING), (1, 2), 0.75,
        hours=(8.5, 17.0), slot_minutes=60, slots=(2, 4)),
    "canteen_meal": ServiceSpec(
        "meal", (G.ELDERLY_ALONE, G.ELDERLY, G.DISABLED, G.LOW_INCOME), (6, 18), 3.0,
        sittings=((11.0, 12.5), (17.0, 18.5))),
    "counselling": ServiceSpec(
        "session", (*CHILD_GROUPS, G.ILL_OR_RECOVERING, G.LOW_INCOME, G.DISABLED), (1, 1), 0.5,
        hours=(9.0, 17.5), slot_minutes=60, slots=(1, 3)),
    "child_screening": ServiceSpec(
        "session", CHILD_GROUPS, (1, 2), 0.6, hours=(9.0, 16.5), slot_minutes=45, slots=(2, 4)),
    "health_consultation": ServiceSpec(
        "session", (), (1, 2), 1.6, hours=(8.5, 17.0), slot_minutes=30, slots=(2, 5)),
    "health_lecture": ServiceSpec(
        "session", (), (15, 45), 4.0, sittings=((9.5, 11.0), (14.5, 16.0))),
    "handicraft_session": ServiceSpec(
        "session", (*ELDERLY_GROUPS, G.DISABLED, G.LEFT_BEHIND_CHILD), (6, 18), 2.0,
        sittings=((9.0, 11.0), (14.5, 16.5))),
    "smart_home_care": ServiceSpec(
        "session", (*ELDERLY_GROUPS, G.DISABLED), (1, 1), 0.6,
        hours=(9.0, 17.0), slot_minutes=90, slots=(1, 2)),
}

NEED_KIND: dict[str, OfferKind] = {
    **dict.fromkeys(SKILLS, OfferKind.VOLUNTEER),
    **dict.fromkeys(GOODS, OfferKind.GOODS),
    **dict.fromkeys(SERVICES, OfferKind.SERVICE),
}

# Who is served, and how often each group turns up among cases.
GROUP_SHARES: dict[BeneficiaryGroup, float] = {
    G.ELDERLY_ALONE: 0.24, G.ELDERLY: 0.20, G.DISABLED: 0.12, G.LOW_INCOME: 0.18,
    G.LEFT_BEHIND_CHILD: 0.11, G.CHILD_IN_DIFFICULTY: 0.07, G.ILL_OR_RECOVERING: 0.08,
}
VULNERABILITY: dict[BeneficiaryGroup, tuple[int, int]] = {
    G.ELDERLY_ALONE: (3, 5), G.ELDERLY: (1, 4), G.DISABLED: (3, 5), G.LOW_INCOME: (2, 4),
    G.LEFT_BEHIND_CHILD: (2, 4), G.CHILD_IN_DIFFICULTY: (3, 5), G.ILL_OR_RECOVERING: (2, 5),
}
# What each group asks for, with relative weights; every service asked for is open to the group.
GROUP_NEEDS: dict[BeneficiaryGroup, dict[str, float]] = {
    G.ELDERLY_ALONE: {
        "companionship": 5, "home_cleaning": 3, "meal_delivery": 3, "canteen_meal": 4,
        "physiotherapy": 2, "smart_home_care": 2, "hospital_escort": 2, "haircut": 1, "rice": 2,
        "cooking_oil": 1, "milk": 2, "quilt": 1, "adult_diapers": 1, "nursing_care": 1,
        "smart_device_help": 1, "health_consultation": 1,
    },
    G.ELDERLY: {
        "canteen_meal": 4, "health_consultation": 3, "health_lecture": 3, "physiotherapy": 3,
        "handicraft_session": 2, "smart_device_help": 2, "companionship": 2, "haircut": 1,
        "milk": 1, "eggs": 1,
    },
    G.DISABLED: {
        "home_cleaning": 3, "physiotherapy": 3, "hospital_escort": 2, "sign_language": 1,
        "adult_diapers": 2, "walking_aid": 1, "home_repair": 2, "canteen_meal": 1,
        "companionship": 1, "rice": 1, "smart_home_care": 1,
    },
    G.LOW_INCOME: {
        "rice": 4, "cooking_oil": 3, "flour": 2, "vegetables": 3, "winter_clothing": 2,
        "quilt": 2, "canteen_meal": 2, "legal_aid": 1, "eggs": 2, "school_supplies": 1,
        "counselling": 0.5, "home_repair": 1,
    },
    G.LEFT_BEHIND_CHILD: {
        "tutoring": 4, "child_screening": 3, "handicraft_session": 2, "school_supplies": 3,
        "milk": 2, "companionship": 2, "counselling": 1, "winter_clothing": 1, "bread": 1,
    },
    G.CHILD_IN_DIFFICULTY: {
        "child_screening": 4, "counselling": 3, "psychological_support": 2, "tutoring": 2,
        "school_supplies": 2, "milk": 1, "winter_clothing": 1, "bread": 1,
    },
    G.ILL_OR_RECOVERING: {
        "hospital_escort": 4, "physiotherapy": 3, "nursing_care": 2, "meal_delivery": 2,
        "health_consultation": 2, "milk": 1, "eggs": 1, "vegetables": 1, "home_cleaning": 1,
    },
}
ITEMS_PER_CASE: dict[int, float] = {1: 0.40, 2: 0.37, 3: 0.23}
URGENCY_WEIGHTS: dict[int, float] = {1: 0.10, 2: 0.30, 3: 0.35, 4: 0.17, 5: 0.08}
RECURRING_SHARE: dict[str, float] = {"companionship": 0.5, "home_cleaning": 0.2, "tutoring": 0.4}

HEALTH_NOTES = (
    "hypertension", "type 2 diabetes", "after hip surgery, walks with a frame", "mild dementia",
    "hearing impaired", "after a stroke, left-side weakness", "chronic bronchitis",
    "arthritis in both knees", "visually impaired", "recovering from pneumonia",
    "wheelchair user", "heart disease, on daily medication",
)
INCOME_NOTES = (
    "minimum living allowance", "extreme poverty support", "low-income margin household",
    "pension only", "temporary hardship relief", "no regular income",
)
SCREENING_NOTES = (
    "not yet screened", "low risk", "follow-up advised", "referred to school counsellor",
    "moderate anxiety, under support", "sleep problems reported",
)
VOLUNTEER_WITHDRAWALS = ("volunteer fell ill", "family emergency", "called in to work",
                         "heavy rain, cannot travel")
GOODS_WITHDRAWALS = ("already given out at the store", "damaged in storage", "donor cancelled",
                     "failed quality check")
SERVICE_WITHDRAWALS = ("doctor reassigned", "venue unavailable", "equipment fault",
                       "staff shortage")
CLOSURE_REASONS = ("needs met by relatives", "moved in with family", "admitted to hospital",
                   "moved to a care home", "duplicate of another case", "declined help")

# Who publishes what: weights by partner kind, per offer kind, overridden for some needs.
P = PartnerKind
PUBLISHERS: dict[OfferKind, dict[PartnerKind, float]] = {
    OfferKind.VOLUNTEER: {P.VOLUNTEER_GROUP: 5, P.SOCIAL_WORK_AGENCY: 2, P.CHARITY: 2,
                          P.ENTERPRISE: 1, P.GOVERNMENT_DEPARTMENT: 0.5, P.MERCHANT: 0.3},
    OfferKind.GOODS: {P.MERCHANT: 4, P.ENTERPRISE: 3, P.CHARITY: 2,
                      P.GOVERNMENT_DEPARTMENT: 1},
    OfferKind.SERVICE: {P.SOCIAL_WORK_AGENCY: 2, P.ENTERPRISE: 2, P.CHARITY: 1,
                        P.GOVERNMENT_DEPARTMENT: 1},
}
NEED_PUBLISHERS: dict[str, dict[PartnerKind, float]] = {
    "vegetables": {P.MERCHANT: 6, P.ENTERPRISE: 1},
    "bread": {P.MERCHANT: 6, P.CHARITY: 1},
    "milk": {P.MERCHANT: 4, P.ENTERPRISE: 2},
    "physiotherapy": {P.ENTERPRISE: 3, P.CHARITY: 1, P.GOVERNMENT_DEPARTMENT: 1},
    "canteen_meal": {P.MERCHANT: 3, P.CHARITY: 2, P.ENTERPRISE: 1},
    "counselling": {P.SOCIAL_WORK_AGENCY: 5, P.CHARITY: 1},
    "child_screening": {P.SOCIAL_WORK_AGENCY: 4, P.GOVERNMENT_DEPARTMENT: 1},
    "health_consultation": {P.GOVERNMENT_DEPARTMENT: 2, P.ENTERPRISE: 2},
    "health_lecture": {P.GOVERNMENT_DEPARTMENT: 3, P.ENTERPRISE: 1},
    "handicraft_session": {P.SOCIAL_WORK_AGENCY: 2, P.VOLUNTEER_GROUP: 2, P.CHARITY: 2},
    "smart_home_care": {P.ENTERPRISE: 5},
}

# Volunteers' usual free time (hours of the day) and how far they go (km, by how they travel).
PERIODS: dict[str, tuple[float, float]] = {
    "morning": (8.0, 12.0), "afternoon": (13.5, 18.0), "evening": (18.5, 21.0),
    "day": (8.0, 18.0),
}
PERIOD_WEIGHTS: dict[str, float] = {
    "morning": 0.3, "afternoon": 0.35, "evening": 0.1, "day": 0.25,
}
TRAVEL_RADII_KM = (2.0, 3.0, 3.0, 5.0, 5.0, 5.0, 8.0, 10.0, 15.0)
WEEKLY_HOUR_LIMITS = (2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 6.0)
WINDOW_HOURS = (1.5, 2.0, 2.0, 2.5, 3.0)
ALL_DAY_WINDOW_HOURS = (3.0, 4.0, 5.0, 6.0)

# Shares of entities that change during the day.
OFFER_UPDATE_SHARE = 0.08
OFFER_WITHDRAW_SHARE = 0.04
CASE_UPDATE_SHARE = 0.10
CASE_CLOSE_SHARE = 0.03
SECOND_CHANGE_SHARE = 0.25
# Nobody changes offers or cases after 22:30, so changes never spill into the next day.
LATEST_EVENT_HOUR = 22.5

# Weekly rhythm of a month: grid workers open fewer cases at weekends, more volunteers are free.
WEEKDAY_SCALE: dict[str, tuple[float, ...]] = {
    "cases": (1.1, 1.05, 1.0, 1.0, 1.0, 0.65, 0.55),
    "volunteer": (0.9, 0.9, 0.95, 0.95, 1.0, 1.3, 1.25),
    "goods": (1.0, 1.0, 1.0, 1.0, 1.1, 0.9, 0.8),
    "service": (1.05, 1.05, 1.05, 1.05, 1.05, 0.6, 0.4),
}
PROFILE_SAMPLES = 20_000
# People known per grid (a grid covers a few hundred households; these are the ones in need).
HOUSEHOLDS_PER_GRID = 12
VOLUNTEERS_PER_GRID = 5


@dataclass(frozen=True)
class Volunteer:
    """A person on a partner's volunteer roster (stable across days)."""

    volunteer_id: str
    partner_id: str
    node_id: str
    home: Location
    languages: tuple[str, ...]
    skills: tuple[str, ...]
    travel_radius_km: float
    weekly_hour_limit: float
    periods: tuple[str, ...]


@dataclass(frozen=True)
class Household:
    """A person a grid worker knows (stable across days); `weight` is how often they need help."""

    pseudonym: str
    grid_id: str
    group: BeneficiaryGroup
    vulnerability: int
    languages: tuple[str, ...]
    location: Location
    sensitive: SensitiveAttributes | None
    weight: float

    def beneficiary(self) -> Beneficiary:
        """The pseudonymous wire form."""
        return Beneficiary(pseudonym=self.pseudonym, group=self.group,
                           vulnerability=self.vulnerability, languages=list(self.languages),
                           location=self.location, sensitive=self.sensitive)


@dataclass(frozen=True)
class NeedBalance:
    """Demand and supply of one need (skill, goods category or service type) in a day."""

    kind: OfferKind
    need: str
    unit: str
    items: int
    demand: float
    supply: float

    @property
    def covered_share(self) -> float:
        """Share of the demand the supply could cover, ignoring time, place and language."""
        return 1.0 if self.demand == 0 else min(1.0, self.supply / self.demand)


class _Day:
    """Everything the generators of one day share: the district, the date, the RNG."""

    def __init__(self, district: District, day: date, seed: int) -> None:
        self.district = district
        self.day = day
        self.rng = random.Random(f"day:{seed}:{day.isoformat()}")
        self.correlation_id = f"sim-{day.isoformat()}"
        self.stamp = day.strftime("%Y%m%d")

    def at(self, hours: float, days: int = 0) -> datetime:
        """The moment `hours` after midnight of the day (+`days`), to the second."""
        midnight = datetime.combine(self.day, time(), TZ)
        return midnight + timedelta(days=days, seconds=round(hours * 3600))

    def hour_of(self, moment: datetime) -> float:
        """Hours since midnight of the day."""
        return (moment - self.at(0)).total_seconds() / 3600

    def event_id(self) -> uuid.UUID:
        """A v4 uuid from the seeded RNG, so a seed replays the same ids."""
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    @cached_property
    def partners_by_home(self) -> dict[str, list[Partner]]:
        by_home: dict[str, list[Partner]] = defaultdict(list)
        for partner in self.district.partners:
            by_home[partner.home_node_id].append(partner)
        return by_home


# ---------------------------------------------------------------- public API


def simulate_day(
    district: District,
    day: date,
    seed: int = 7,
    cases: int = 600,
    volunteer_offers: int = 400,
    goods_offers: int = 150,
    service_offers: int = 80,
) -> list[Event]:
    """One day of offers and cases in the district, sorted by when they happened."""
    ctx = _Day(district, day, seed)
    # Roster sizes follow the district, not the day's counts, so people recur across days.
    grids = len(district.grid_ids)
    roster = build_volunteers(district, seed, max(VOLUNTEERS_PER_GRID * grids, volunteer_offers))
    households = build_households(district, seed, max(HOUSEHOLDS_PER_GRID * grids, cases))
    events: list[Event] = []
    for serial, volunteer in enumerate(ctx.rng.sample(roster, volunteer_offers), start=1):
        events.extend(_offer_events(ctx, _volunteer_offer(ctx, volunteer, serial)))
    for serial in range(1, goods_offers + 1):
        events.extend(_offer_events(ctx, _goods_offer(ctx, serial)))
    for serial in range(1, service_offers + 1):
        events.extend(_offer_events(ctx, _service_offer(ctx, serial)))
    for number, household in enumerate(_weighted_sample(ctx.rng, households, cases), start=1):
        events.extend(_case_events(ctx, household, number))
    events.sort(key=lambda event: event.occurred_at)  # stable: an entity's versions keep order
    return events


def simulate_month(
    district: District,
    start: date,
    days: int = 30,
    seed: int = 7,
    cases: int = 600,
    volunteer_offers: int = 400,
    goods_offers: int = 150,
    service_offers: int = 80,
) -> Iterator[list[Event]]:
    """Each day's events from `start` on; the counts are a weekday baseline, scaled by weekday."""
    for offset in range(days):
        day = start + timedelta(days=offset)
        weekday = day.weekday()
        yield simulate_day(
            district, day, seed=seed,
            cases=round(cases * WEEKDAY_SCALE["cases"][weekday]),
            volunteer_offers=round(volunteer_offers * WEEKDAY_SCALE["volunteer"][weekday]),
            goods_offers=round(goods_offers * WEEKDAY_SCALE["goods"][weekday]),
            service_offers=round(service_offers * WEEKDAY_SCALE["service"][weekday]),
        )


def registry_events(district: District, at: datetime) -> list[NodeRegistered | PartnerRegistered]:
    """Registration of every node (parents first) and then every partner, all at `at`.

    Event ids are uuid5 of the entity and the moment, so re-registering replays the same ids.
    """
    correlation_id = "sim-registry"
    producer = district.centre_id  # the centre administers the hierarchy and the membership
    events: list[NodeRegistered | PartnerRegistered] = [
        NodeRegistered(event_id=_registry_id("node", node.node_id, at), occurred_at=at,
                       producer=producer, correlation_id=correlation_id, payload=node)
        for node in _parents_first(district)
    ]
    events.extend(
        PartnerRegistered(event_id=_registry_id("partner", partner.partner_id, at),
                          occurred_at=at, producer=producer, correlation_id=correlation_id,
                          payload=partner)
        for partner in district.partners
    )
    return events


def build_volunteers(district: District, seed: int, size: int) -> list[Volunteer]:
    """The volunteer roster: who, for which partner, where, with which skills and languages."""
    rng = random.Random(f"volunteers:{seed}")
    partners = district.partners
    weights = [PUBLISHERS[OfferKind.VOLUNTEER].get(p.kind, 0.0) for p in partners]
    skill_weights = supply_weights(OfferKind.VOLUNTEER)
    used: set[str] = set()
    roster: list[Volunteer] = []
    for _ in range(size):
        partner = rng.choices(partners, weights=weights)[0]
        roster.append(_volunteer(rng, district, partner, skill_weights, _pseudonym(rng, "vol",
                                                                                 used)))
    return roster


def build_households(district: District, seed: int, size: int) -> list[Household]:
    """The households grid workers know; busier grids (older estates) hold more of them."""
    rng = random.Random(f"households:{seed}")
    grids = district.grid_ids
    grid_load = [rng.lognormvariate(0.0, 0.5) for _ in grids]
    used: set[str] = set()
    households: list[Household] = []
    for _ in range(size):
        grid = rng.choices(grids, weights=grid_load)[0]
        households.append(_household(rng, district, grid, _pseudonym(rng, "ben", used)))
    return households


def day_balance(events: Sequence[Event]) -> dict[str, NeedBalance]:
    """Final demand and supply per need in a day's events (closed cases, withdrawn offers out).

    It bounds what matching could cover before time, place, language and eligibility count;
    a volunteer's hours count for their first (main) skill only.
    """
    offers, cases = _final_state(events)
    items: dict[str, int] = defaultdict(int)
    demand: dict[str, float] = defaultdict(float)
    supply: dict[str, float] = defaultdict(float)
    for case in cases:
        for item in case.items:
            items[item.need] += 1
            demand[item.need] += item.quantity
    for offer in offers:
        need, amount = _offer_supply(offer)
        supply[need] += amount
    return {
        need: NeedBalance(kind=NEED_KIND[need], need=need, unit=unit_of(need), items=items[need],
                          demand=demand[need], supply=supply[need])
        for need in NEED_KIND
        if need in demand or need in supply
    }


def coverage_by_kind(balance: dict[str, NeedBalance]) -> dict[OfferKind, float]:
    """Share of need items per kind whose need has enough supply (items-weighted, unit-free)."""
    weighted: dict[OfferKind, float] = defaultdict(float)
    counted: dict[OfferKind, int] = defaultdict(int)
    for entry in balance.values():
        weighted[entry.kind] += entry.items * entry.covered_share
        counted[entry.kind] += entry.items
    return {kind: weighted[kind] / counted[kind] for kind in counted if counted[kind]}


def unit_of(need: str) -> str:
    """The unit a need (and the offers serving it) is counted in."""
    kind = NEED_KIND[need]
    if kind is OfferKind.VOLUNTEER:
        return "hours"
    if kind is OfferKind.GOODS:
        return GOODS[need].unit
    return SERVICES[need].unit


@cache
def demand_profile() -> dict[str, float]:
    """Expected quantity of each need per case, estimated once from the case generator."""
    rng = random.Random("demand-profile")
    groups, shares = list(GROUP_SHARES), list(GROUP_SHARES.values())
    totals: dict[str, float] = defaultdict(float)
    for _ in range(PROFILE_SAMPLES):
        group = rng.choices(groups, weights=shares)[0]
        for need in _pick_needs(rng, group):
            totals[need] += _need_quantity(rng, need)
    return {need: totals[need] / PROFILE_SAMPLES for need in NEED_KIND}


@cache
def supply_weights(kind: OfferKind) -> dict[str, float]:
    """How often an offer of `kind` serves each need, so supply tracks demand x supply_ratio."""
    profile = demand_profile()
    return {need: _supply_ratio(need) * profile[need] / _mean_offer_size(need)
            for need, need_kind in NEED_KIND.items() if need_kind is kind}


# ---------------------------------------------------------------- rosters


def _pseudonym(rng: random.Random, prefix: str, used: set[str]) -> str:
    """A fresh random pseudonym such as `ben-3fa92c1d`."""
    while True:
        candidate = f"{prefix}-{rng.getrandbits(32):08x}"
        if candidate not in used:
            used.add(candidate)
            return candidate


def _volunteer(
    rng: random.Random,
    district: District,
    partner: Partner,
    skill_weights: dict[str, float],
    volunteer_id: str,
) -> Volunteer:
    """One volunteer of `partner`, living near one of the partner's studios."""
    studio = rng.choice(district.descendants(partner.home_node_id, Level.STUDIO))
    at_home = district.node_by_id[partner.home_node_id].level is Level.STUDIO
    # Members of a workstation-level group often sign up through their own studio.
    node = studio if at_home or rng.random() < 0.5 else partner.home_node_id
    main = _weighted_choice(rng, skill_weights)
    extras = [s for s in GENERAL_SKILLS if s != main and rng.random() < 0.2]
    return Volunteer(
        volunteer_id=volunteer_id, partner_id=partner.partner_id, node_id=node,
        home=jitter(rng, district.location(studio), 1.5),
        languages=_volunteer_languages(rng), skills=(main, *extras),
        travel_radius_km=rng.choice(TRAVEL_RADII_KM),
        weekly_hour_limit=rng.choice(WEEKLY_HOUR_LIMITS),
        periods=_volunteer_periods(rng),
    )


def _volunteer_languages(rng: random.Random) -> tuple[str, ...]:
    """Most volunteers are local; students from elsewhere speak only Mandarin."""
    roll = rng.random()
    languages = ((MANDARIN, DIALECT) if roll < 0.78 else (MANDARIN,) if roll < 0.93
                 else (DIALECT,))
    return (*languages, "english") if rng.random() < 0.03 else languages


def _volunteer_periods(rng: random.Random) -> tuple[str, ...]:
    """The part(s) of the day a volunteer is usually free."""
    main = _weighted_choice(rng, PERIOD_WEIGHTS)
    if main == "morning" and rng.random() < 0.25:
        return ("morning", "afternoon")
    return (main,)


def _household(rng: random.Random, district: District, grid: str, pseudonym: str) -> Household:
    """One person known to a grid worker."""
    group = _weighted_choice(rng, GROUP_SHARES)
    return Household(
        pseudonym=pseudonym, grid_id=grid, group=group,
        vulnerability=rng.randint(*VULNERABILITY[group]),
        languages=_household_languages(rng, group),
        location=jitter(rng, district.location(grid), 0.4),
        sensitive=_sensitive(rng, group),
        weight=rng.lognormvariate(0.0, 0.6),
    )


def _household_languages(rng: random.Random, group: BeneficiaryGroup) -> tuple[str, ...]:
    """Many elderly people speak only the Chongqing dialect."""
    if group in ELDERLY_GROUPS and rng.random() < 0.6:
        return (DIALECT,)
    return (DIALECT, MANDARIN)


def _sensitive(rng: random.Random, group: BeneficiaryGroup) -> SensitiveAttributes | None:
    """Health, income or screening notes, as a grid worker would record them."""
    health = income = screening = None
    if group not in CHILD_GROUPS and group is not G.LOW_INCOME and rng.random() < 0.8:
        health = rng.choice(HEALTH_NOTES)
    if rng.random() < (0.95 if group is G.LOW_INCOME else 0.3):
        income = rng.choice(INCOME_NOTES)
    if group in CHILD_GROUPS and rng.random() < 0.7:
        screening = rng.choice(SCREENING_NOTES)
    if health is None and income is None and screening is None:
        return None
    return SensitiveAttributes(health=health, income=income, child_screening=screening)


# ---------------------------------------------------------------- offers


def _publisher(ctx: _Day, need: str) -> Partner:
    """A partner of a kind that typically offers `need`."""
    weights = NEED_PUBLISHERS.get(need, PUBLISHERS[NEED_KIND[need]])
    partners = ctx.district.partners
    return ctx.rng.choices(partners, weights=[weights.get(p.kind, 0.0) for p in partners])[0]


def _offer_node(ctx: _Day, partner: Partner) -> str:
    """The partner's home node, or (half the time) one of the studios under it."""
    if ctx.district.node_by_id[partner.home_node_id].level is Level.STUDIO:
        return partner.home_node_id
    if ctx.rng.random() < 0.5:
        return partner.home_node_id
    return ctx.rng.choice(ctx.district.descendants(partner.home_node_id, Level.STUDIO))


def _volunteer_offer(
    ctx: _Day, volunteer: Volunteer, serial: int
) -> tuple[VolunteerOffer, datetime]:
    """Today's offer of one volunteer (their free windows), and when it was published."""
    availability = _availability(ctx, volunteer)
    # Volunteers sign up from early morning, some time before they are free.
    lead = timedelta(hours=ctx.rng.uniform(0.5, 3.0))
    published = max(availability[0].start - lead, ctx.at(6.0 + ctx.rng.uniform(0, 0.5)))
    return VolunteerOffer(
        offer_id=f"offer-v-{ctx.stamp}-{serial:05d}", version=1,
        partner_id=volunteer.partner_id, node_id=volunteer.node_id,
        volunteer_id=volunteer.volunteer_id, skills=list(volunteer.skills),
        languages=list(volunteer.languages), availability=availability,
        home=volunteer.home, travel_radius_km=volunteer.travel_radius_km,
        weekly_hour_limit=volunteer.weekly_hour_limit,
    ), published


def _availability(ctx: _Day, volunteer: Volunteer) -> list[TimeWindow]:
    """A window somewhere in each of the volunteer's usual periods; all-day people give more."""
    windows: list[TimeWindow] = []
    for period in volunteer.periods:
        low, high = PERIODS[period]
        width = ctx.rng.choice(ALL_DAY_WINDOW_HOURS if period == "day" else WINDOW_HOURS)
        start = low + _half_hours(ctx.rng.uniform(0, max(0.0, high - low - width)))
        windows.append(TimeWindow(start=ctx.at(start), end=ctx.at(min(start + width, high))))
    return windows


def _goods_offer(ctx: _Day, serial: int) -> tuple[GoodsOffer, datetime]:
    """A lot of goods given by a merchant, enterprise, charity or department, and when."""
    category = _weighted_choice(ctx.rng, supply_weights(OfferKind.GOODS))
    spec = GOODS[category]
    partner = _publisher(ctx, category)
    node = _offer_node(ctx, partner)
    published = ctx.at(ctx.rng.triangular(7.0, 19.0, 9.0))
    return GoodsOffer(
        offer_id=f"offer-g-{ctx.stamp}-{serial:05d}", version=1, partner_id=partner.partner_id,
        node_id=node, category=category, unit=spec.unit,
        quantity=_stepped(ctx.rng.uniform(*spec.lot), spec.step),
        expires_at=_expiry(ctx, spec), pickup=jitter(ctx.rng, ctx.district.location(node), 0.3),
    ), published


def _expiry(ctx: _Day, spec: GoodsSpec) -> datetime | None:
    """End of the last day perishable goods are usable; none for durable goods."""
    if spec.shelf_days is None:
        return None
    return ctx.at(23.0 + 59 / 60, days=ctx.rng.randint(*spec.shelf_days))


def _service_offer(ctx: _Day, serial: int) -> tuple[ServiceOffer, datetime]:
    """A day's capacity of one service, and when it was published (mostly mornings)."""
    service_type = _weighted_choice(ctx.rng, supply_weights(OfferKind.SERVICE))
    spec = SERVICES[service_type]
    partner = _publisher(ctx, service_type)
    node = _offer_node(ctx, partner)
    published = ctx.at(ctx.rng.uniform(6.0, 10.0) if ctx.rng.random() < 0.9
                       else ctx.rng.uniform(10.0, 12.0))
    return ServiceOffer(
        offer_id=f"offer-s-{ctx.stamp}-{serial:05d}", version=1, partner_id=partner.partner_id,
        node_id=node, service_type=service_type, slots=_slots(ctx, spec, published),
        eligibility=_eligibility(ctx, spec),
        place=jitter(ctx.rng, ctx.district.location(node), 0.2),
    ), published


def _slots(ctx: _Day, spec: ServiceSpec, published: datetime) -> list[ServiceSlot]:
    """Sittings or a run of consecutive slots, all starting an hour or more after publication."""
    earliest = ctx.hour_of(_ceil_half_hour(published + timedelta(hours=1)))
    if spec.sittings:
        open_sittings = [s for s in spec.sittings if s[0] >= earliest] or [spec.sittings[-1]]
        chosen = ctx.rng.sample(open_sittings, ctx.rng.randint(1, len(open_sittings)))
        spans = sorted(chosen)
    else:
        length = spec.slot_minutes / 60
        count = ctx.rng.randint(*spec.slots)
        opens = max(spec.hours[0], earliest)
        # The run of slots sits anywhere in opening hours, so afternoons are served too.
        first = opens + _half_hours(ctx.rng.uniform(0, max(0.0, spec.hours[1] - opens
                                                          - count * length)))
        spans = [(first + i * length, first + (i + 1) * length) for i in range(count)]
        spans = [s for s in spans if s[1] <= spec.hours[1]] or spans[:1]
    return [ServiceSlot(window=TimeWindow(start=ctx.at(lo), end=ctx.at(hi)),
                        places=ctx.rng.randint(*spec.places)) for lo, hi in spans]


def _eligibility(ctx: _Day, spec: ServiceSpec) -> list[BeneficiaryGroup]:
    """The service's groups; some providers take only part of them (e.g. funded for one)."""
    if spec.eligibility and ctx.rng.random() < 0.25:
        return sorted(ctx.rng.sample(spec.eligibility, ctx.rng.randint(1, len(spec.eligibility))))
    if not spec.eligibility and ctx.rng.random() < 0.1:
        return list(ELDERLY_GROUPS)
    return list(spec.eligibility)


def _offer_events(ctx: _Day, published_offer: tuple[AnyOffer, datetime]) -> list[Event]:
    """Publication of an offer, then maybe updates and a withdrawal, before it is used."""
    offer, published = published_offer
    events: list[Event] = [OfferPublished(
        event_id=ctx.event_id(), occurred_at=published, producer=offer.partner_id,
        correlation_id=ctx.correlation_id, payload=offer)]
    latest = _offer_last_change(ctx, offer)
    moment, current = published, offer
    changes = _change_count(ctx.rng, OFFER_UPDATE_SHARE)
    for _ in range(changes):
        next_moment = _follow_up(ctx, moment, latest)
        if next_moment is None:
            break
        moment, current = next_moment, _updated_offer(ctx, current)
        events.append(OfferUpdated(
            event_id=ctx.event_id(), occurred_at=moment, producer=offer.partner_id,
            correlation_id=ctx.correlation_id, payload=current))
    withdraws = ctx.rng.random() < OFFER_WITHDRAW_SHARE
    withdrawn_at = _follow_up(ctx, moment, latest) if withdraws else None
    if withdrawn_at is not None:
        events.append(OfferWithdrawn(
            event_id=ctx.event_id(), occurred_at=withdrawn_at, producer=offer.partner_id,
            correlation_id=ctx.correlation_id,
            payload=Withdrawal(offer_id=offer.offer_id, version=current.version + 1,
                               reason=_withdrawal_reason(ctx, offer))))
    return events


def _offer_last_change(ctx: _Day, offer: AnyOffer) -> datetime:
    """Latest sensible moment to change an offer: its first use, or late evening for goods."""
    if isinstance(offer, VolunteerOffer):
        return offer.availability[0].start
    if isinstance(offer, ServiceOffer):
        return offer.slots[0].window.start
    return ctx.at(LATEST_EVENT_HOUR)


def _updated_offer(ctx: _Day, offer: AnyOffer) -> AnyOffer:
    """The next version of an offer, changed the way partners usually change them."""
    version = offer.version + 1
    rng = ctx.rng
    if isinstance(offer, VolunteerOffer):
        if rng.random() < 0.5:
            return offer.model_copy(update={"version": version,
                                            "weekly_hour_limit": rng.choice(WEEKLY_HOUR_LIMITS)})
        last = offer.availability[-1]
        later = timedelta(minutes=30 * rng.randint(1, 3))
        extended = TimeWindow(start=last.start, end=last.end + later)
        return offer.model_copy(update={"version": version,
                                        "availability": [*offer.availability[:-1], extended]})
    if isinstance(offer, GoodsOffer):
        step = GOODS[offer.category].step
        quantity = max(step, _stepped(offer.quantity * rng.uniform(0.5, 1.6), step))
        return offer.model_copy(update={"version": version, "quantity": quantity})
    if len(offer.slots) > 1 and rng.random() < 0.4:
        return offer.model_copy(update={"version": version, "slots": offer.slots[:-1]})
    slots = [slot.model_copy(update={"places": max(1, slot.places + rng.randint(-2, 3))})
             for slot in offer.slots]
    return offer.model_copy(update={"version": version, "slots": slots})


def _withdrawal_reason(ctx: _Day, offer: AnyOffer) -> str:
    """Why a partner takes this kind of offer back."""
    if isinstance(offer, VolunteerOffer):
        return ctx.rng.choice(VOLUNTEER_WITHDRAWALS)
    if isinstance(offer, GoodsOffer):
        return ctx.rng.choice(GOODS_WITHDRAWALS)
    return ctx.rng.choice(SERVICE_WITHDRAWALS)


# ---------------------------------------------------------------- cases


def _case_events(ctx: _Day, household: Household, number: int) -> list[Event]:
    """A case opened by the household's grid, then maybe updated and closed the same day."""
    # Grid workers open most cases after the morning round; a few calls come in the evening.
    opened = ctx.at(ctx.rng.triangular(8.0, 17.5, 9.0) if ctx.rng.random() < 0.9
                    else ctx.rng.uniform(17.5, 20.5))
    case = Case(case_id=f"case-{ctx.stamp}-{number:05d}", version=1, grid_id=household.grid_id,
                beneficiary=household.beneficiary(), items=_items(ctx, household, opened))
    grid = household.grid_id
    events: list[Event] = [CaseOpened(
        event_id=ctx.event_id(), occurred_at=opened, producer=grid,
        correlation_id=ctx.correlation_id, payload=case)]
    moment, latest = opened, ctx.at(LATEST_EVENT_HOUR)
    for _ in range(_change_count(ctx.rng, CASE_UPDATE_SHARE)):
        next_moment = _follow_up(ctx, moment, latest)
        if next_moment is None:
            break
        moment, case = next_moment, _updated_case(ctx, household, case, next_moment)
        events.append(CaseUpdated(
            event_id=ctx.event_id(), occurred_at=moment, producer=grid,
            correlation_id=ctx.correlation_id, payload=case))
    closes = ctx.rng.random() < CASE_CLOSE_SHARE
    closed_at = _follow_up(ctx, moment, latest) if closes else None
    if closed_at is not None:
        events.append(CaseClosed(
            event_id=ctx.event_id(), occurred_at=closed_at, producer=grid,
            correlation_id=ctx.correlation_id,
            payload=Closure(case_id=case.case_id, version=case.version + 1,
                            reason=ctx.rng.choice(CLOSURE_REASONS))))
    return events


def _items(ctx: _Day, household: Household, opened: datetime) -> list[NeedItem]:
    """The requested items of a new case."""
    needs = _pick_needs(ctx.rng, household.group)
    return [_item(ctx, household, f"i{index}", need, opened)
            for index, need in enumerate(needs, start=1)]


def _pick_needs(rng: random.Random, group: BeneficiaryGroup) -> list[str]:
    """1-3 distinct needs typical of the group."""
    count = _weighted_choice(rng, ITEMS_PER_CASE)
    weights = dict(GROUP_NEEDS[group])
    picked: list[str] = []
    while len(picked) < count and weights:
        need = _weighted_choice(rng, weights)
        picked.append(need)
        del weights[need]
    return picked


def _need_quantity(rng: random.Random, need: str) -> float:
    """Hours, units of goods, or sessions a household asks for."""
    kind = NEED_KIND[need]
    if kind is OfferKind.VOLUNTEER:
        return _stepped(rng.uniform(*SKILLS[need].hours), 0.5)
    if kind is OfferKind.GOODS:
        spec = GOODS[need]
        return _stepped(rng.uniform(*spec.need), spec.step)
    # A couple eats together at the canteen; other services are one session per person.
    return 2.0 if need == "canteen_meal" and rng.random() < 0.2 else 1.0


def _item(ctx: _Day, household: Household, item_id: str, need: str, opened: datetime) -> NeedItem:
    """One requested item with its window, deadline, urgency and preferences."""
    kind = NEED_KIND[need]
    quantity = _need_quantity(ctx.rng, need)
    urgency = _urgency(ctx.rng, household, need)
    window = _item_window(ctx, kind, need, quantity, urgency, opened)
    return NeedItem(
        item_id=item_id, kind=kind, need=need, quantity=quantity, unit=unit_of(need),
        window=window, deadline=_deadline(ctx, window, kind, quantity), urgency=urgency,
        splittable=_splittable(need), preferences=_preferences(ctx, household, need),
    )


def _urgency(rng: random.Random, household: Household, need: str) -> int:
    """Urgency from 1 to 5: more vulnerable people and hospital trips are more urgent."""
    urgency = _weighted_choice(rng, URGENCY_WEIGHTS)
    if household.vulnerability >= 4 and rng.random() < 0.4:
        urgency += 1
    if need in ("hospital_escort", "nursing_care") or need in PERISHABLE:
        urgency += 1
    return min(5, urgency)


def _item_window(
    ctx: _Day, kind: OfferKind, need: str, quantity: float, urgency: int, opened: datetime
) -> TimeWindow:
    """When the item is wanted: from later today, for hours (urgent) or up to three days."""
    start = _ceil_half_hour(opened + timedelta(hours=ctx.rng.uniform(0.5, 2.0)))
    if start > ctx.at(22.0):
        start = _ceil_half_hour(opened + timedelta(minutes=15))
    rng = ctx.rng
    if kind is OfferKind.VOLUNTEER:
        roll = rng.random()
        if urgency >= 4 or roll < 0.2:
            end = start + timedelta(hours=quantity + rng.choice((1, 2, 3)))
        elif roll < 0.55:  # any time today
            end = max(ctx.at(20.0), start + timedelta(hours=quantity + 1))
        else:
            end = ctx.at(18.0, days=rng.randint(1, 3))
    elif kind is OfferKind.GOODS:
        if need in PERISHABLE or urgency >= 4:
            end = start + timedelta(hours=rng.choice((4, 8, 24)))
        else:
            end = ctx.at(18.0, days=rng.randint(1, 3))
    elif urgency >= 4:
        end = start + timedelta(hours=rng.choice((6, 8)))
    else:
        end = max(ctx.at(18.5, days=rng.choice((0, 1, 2))), start + timedelta(hours=2))
    return TimeWindow(start=start, end=end)


def _deadline(ctx: _Day, window: TimeWindow, kind: OfferKind, quantity: float) -> datetime:
    """Usually the window's end; sometimes earlier, but never before the work could be done."""
    if ctx.rng.random() < 0.7:
        return window.end
    span = (window.end - window.start).total_seconds()
    earlier = window.start + timedelta(seconds=round(span * ctx.rng.uniform(0.5, 0.95)))
    needed = timedelta(hours=quantity if kind is OfferKind.VOLUNTEER else 0.5)
    return min(window.end, max(earlier, window.start + needed))


def _splittable(need: str) -> bool:
    """Goods and most hours may be split; sessions and one-person tasks may not."""
    kind = NEED_KIND[need]
    if kind is OfferKind.VOLUNTEER:
        return SKILLS[need].splittable
    return kind is OfferKind.GOODS


def _preferences(ctx: _Day, household: Household, need: str) -> Preferences:
    """Dialect for elderly people's volunteers, known partners, the same volunteer again."""
    rng = ctx.rng
    languages: list[str] = []
    if NEED_KIND[need] is OfferKind.VOLUNTEER:
        if household.languages == (DIALECT,) and rng.random() < 0.7:
            languages = [DIALECT]
        elif household.group in CHILD_GROUPS and rng.random() < 0.08:
            languages = [MANDARIN]
    preferred: list[str] = []
    nearby = _nearby_partners(ctx, household.grid_id)
    if nearby and rng.random() < 0.12:
        preferred = [rng.choice(nearby).partner_id]
    recurring = rng.random() < RECURRING_SHARE.get(need, 0.0)
    return Preferences(languages=languages, preferred_partner_ids=preferred, recurring=recurring)


def _nearby_partners(ctx: _Day, grid: str) -> list[Partner]:
    """Partners attached to the grid's studio or workstation (the ones residents know)."""
    studio, workstation = ctx.district.ancestors(grid)[:2]
    return [*ctx.partners_by_home.get(studio, []), *ctx.partners_by_home.get(workstation, [])]


def _updated_case(ctx: _Day, household: Household, case: Case, at: datetime) -> Case:
    """The next version of a case: more urgent, a changed quantity, or an added item."""
    version = case.version + 1
    rng = ctx.rng
    roll = rng.random()
    if roll < 0.4:
        index = rng.randrange(len(case.items))
        item = case.items[index]
        raised = item.model_copy(update={"urgency": min(5, item.urgency + 1)})
        return case.model_copy(update={"version": version,
                                       "items": _replace(case.items, index, raised)})
    if roll < 0.7:
        index = rng.randrange(len(case.items))
        item = case.items[index]
        quantity = _need_quantity(rng, item.need)
        changed = item.model_copy(update={
            "quantity": quantity,
            "deadline": _deadline(ctx, item.window, item.kind, quantity)})
        return case.model_copy(update={"version": version,
                                       "items": _replace(case.items, index, changed)})
    asked = {item.need for item in case.items}
    fresh = [need for need in GROUP_NEEDS[household.group] if need not in asked]
    if not fresh or len(case.items) >= 50:
        beneficiary = case.beneficiary.model_copy(
            update={"vulnerability": min(5, case.beneficiary.vulnerability + 1)})
        return case.model_copy(update={"version": version, "beneficiary": beneficiary})
    added = _item(ctx, household, f"i{len(case.items) + 1}", rng.choice(fresh), at)
    return case.model_copy(update={"version": version, "items": [*case.items, added]})


# ---------------------------------------------------------------- balance


def _final_state(events: Sequence[Event]) -> tuple[list[AnyOffer], list[Case]]:
    """The last version of each offer and case still live after the day's events."""
    offers: dict[str, AnyOffer] = {}
    cases: dict[str, Case] = {}
    for event in events:
        if isinstance(event, OfferPublished | OfferUpdated):
            offers[event.payload.offer_id] = event.payload
        elif isinstance(event, OfferWithdrawn):
            offers.pop(event.payload.offer_id, None)
        elif isinstance(event, CaseOpened | CaseUpdated):
            cases[event.payload.case_id] = event.payload
        elif isinstance(event, CaseClosed):
            cases.pop(event.payload.case_id, None)
    return list(offers.values()), list(cases.values())


def _offer_supply(offer: AnyOffer) -> tuple[str, float]:
    """The need an offer mainly serves and how much of it the day holds."""
    if isinstance(offer, VolunteerOffer):
        hours = sum(window.hours for window in offer.availability)
        return offer.skills[0], min(hours, offer.weekly_hour_limit)
    if isinstance(offer, GoodsOffer):
        return offer.category, offer.quantity
    return offer.service_type, float(sum(slot.places for slot in offer.slots))


def _supply_ratio(need: str) -> float:
    """Target supply over demand of a need."""
    kind = NEED_KIND[need]
    if kind is OfferKind.VOLUNTEER:
        return SKILLS[need].supply_ratio
    if kind is OfferKind.GOODS:
        return GOODS[need].supply_ratio
    return SERVICES[need].supply_ratio


def _mean_offer_size(need: str) -> float:
    """Expected amount one offer gives of a need (volunteer hours do not depend on the skill)."""
    kind = NEED_KIND[need]
    if kind is OfferKind.VOLUNTEER:
        return 1.0
    if kind is OfferKind.GOODS:
        return sum(GOODS[need].lot) / 2
    spec = SERVICES[need]
    slots = (len(spec.sittings) + 1) / 2 if spec.sittings else sum(spec.slots) / 2
    return slots * sum(spec.places) / 2


# ---------------------------------------------------------------- helpers


def _weighted_choice(rng: random.Random, weights: dict[T, float]) -> T:
    """One key of `weights`, drawn with probability proportional to its weight."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _weighted_sample(rng: random.Random, households: list[Household], k: int) -> list[Household]:
    """`k` distinct households, frequent ones more likely (Efraimidis-Spirakis keys)."""
    keyed = sorted(households, key=lambda h: rng.random() ** (1.0 / h.weight), reverse=True)
    return keyed[:k]


def _change_count(rng: random.Random, share: float) -> int:
    """How many updates an entity gets today: usually none, sometimes one, rarely two."""
    if rng.random() >= share:
        return 0
    return 2 if rng.random() < SECOND_CHANGE_SHARE else 1


def _follow_up(ctx: _Day, after: datetime, latest: datetime) -> datetime | None:
    """A moment 10 min to 6 h after `after` and before `latest`, if there is room."""
    room = (latest - after).total_seconds() - 600
    if room <= 0:
        return None
    return after + timedelta(seconds=600 + round(ctx.rng.uniform(0, min(room, 6 * 3600))))


def _ceil_half_hour(moment: datetime) -> datetime:
    """The moment rounded up to the next :00 or :30."""
    floored = moment.replace(minute=(moment.minute // 30) * 30, second=0, microsecond=0)
    return floored if floored == moment else floored + timedelta(minutes=30)


def _stepped(value: float, step: float) -> float:
    """`value` rounded to a multiple of `step`, at least one step."""
    return max(step, round(value / step) * step)


def _half_hours(hours: float) -> float:
    """`hours` rounded to the nearest half hour."""
    return round(hours * 2) / 2


def _replace(items: list[NeedItem], index: int, item: NeedItem) -> list[NeedItem]:
    """A copy of `items` with one item replaced."""
    return [item if i == index else current for i, current in enumerate(items)]


def _parents_first(district: District) -> list[Node]:
    """Nodes ordered so every parent precedes its children (breadth-first from the centre)."""
    order = [district.centre_id]
    for node_id in order:
        order.extend(district.children_of[node_id])
    return [district.node_by_id[node_id] for node_id in order]


REGISTRY_NAMESPACE = uuid.UUID("0b6f4a52-9f0e-4c1e-8a57-6a0f8f0c2d11")


def _registry_id(entity: str, entity_id: str, at: datetime) -> uuid.UUID:
    """A stable event id for registering one entity at one moment."""
    return uuid.uuid5(REGISTRY_NAMESPACE, f"{entity}:{entity_id}:{at.isoformat()}")

