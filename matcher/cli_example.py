"""`matcher example offer|case|decision`: whole, valid, current messages a partner can send.

Each is printed with its topic and Kafka key. Ids are those of the simulated Qijiang district
that `matcher demo` registers (seed 7): a volunteer group in Shuanglong community, a grid of
that studio, and for a decision a pending proposal read from the demo's database. Times are
tomorrow on Beijing time (the district's zone), so nothing has expired or passed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import select

from matcher.settings import get_settings
from matcher.simulator.district import HOME_STUDIO, HOME_WORKSTATION, District, build_district
from schemas import Level, PartnerKind
from schemas.common import Location, TimeWindow
from schemas.envelope import Envelope
from schemas.matches import Decision, DecisionPayload, MatchDecided
from schemas.needs import Beneficiary, Case, CaseOpened, NeedItem, Preferences
from schemas.offers import OfferPublished, VolunteerOffer
from schemas.topics import Topics

DEMO_SEED = 7
STUDIO_ID = f"ws-{HOME_WORKSTATION}-st-{HOME_STUDIO}"
DEMO_COORDINATOR = "demo-centre"  # seeded by the demo; the centre's subtree holds every case


class Kind(StrEnum):
    """Which example to print."""

    OFFER = "offer"
    CASE = "case"
    DECISION = "decision"


@dataclass(frozen=True)
class Example:
    """A message as it goes on the wire: topic, key and JSON value."""

    topic: str
    key: str
    value: dict[str, Any]

    def render(self) -> str:
        """What the command prints: the topic and key as comments, then the JSON."""
        body = json.dumps(self.value, ensure_ascii=False, indent=2)
        return f"# topic: {self.topic}\n# key: {self.key}\n{body}"

    def line(self) -> str:
        """One line 'key<TAB>compact JSON', as `kcat -P -K$'\\t'` reads a keyed message."""
        return f"{self.key}\t{json.dumps(self.value, ensure_ascii=False, separators=(',', ':'))}"


def tomorrow_at(hour: int, zone: ZoneInfo, now: datetime | None = None) -> datetime:
    """Tomorrow at a whole hour on the district's clock."""
    today = (now or datetime.now(zone)).astimezone(zone).date()
    return datetime.combine(today + timedelta(days=1), time(hour), tzinfo=zone)


def _stamp(now: datetime) -> str:
    """A suffix that makes each printed id new, so examples can be sent more than once."""
    return now.strftime("%m%d%H%M%S")


def _wire(event: Envelope) -> dict[str, Any]:
    """The event as JSON-ready data, exactly as validated."""
    value: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    return value


def _volunteer_group(district: District) -> str:
    """A volunteer group of the district (one attached to Shuanglong if there is one)."""
    groups = [p for p in district.partners if p.kind is PartnerKind.VOLUNTEER_GROUP]
    home = [p for p in groups if p.home_node_id in (STUDIO_ID, f"ws-{HOME_WORKSTATION}")]
    return (home or groups)[0].partner_id


def _studio_point(district: District) -> Location:
    return district.location(STUDIO_ID)


def offer_example(topics: Topics, zone: ZoneInfo, now: datetime,
                  district: District | None = None) -> Example:
    """A volunteer's companionship visit tomorrow morning, published by a volunteer group."""
    district = district or build_district(seed=DEMO_SEED)
    partner_id = _volunteer_group(district)
    offer_id = f"offer-v-example-{_stamp(now)}"
    offer = VolunteerOffer(
        offer_id=offer_id, version=1, partner_id=partner_id, node_id=STUDIO_ID,
        volunteer_id=f"vol-example-{_stamp(now)}", skills=["companionship", "meal_delivery"],
        languages=["chongqing_dialect", "mandarin"],
        availability=[TimeWindow(start=tomorrow_at(9, zone, now),
                                 end=tomorrow_at(12, zone, now))],
        home=_studio_point(district), travel_radius_km=5.0, weekly_hour_limit=6.0)
    event = OfferPublished(event_id=uuid.uuid4(), occurred_at=now, producer=partner_id,
                           payload=offer)
    # A partner publishes on its own topic, which only its principal may write.
    return Example(topics.offers_of(partner_id), offer_id, _wire(event))


def case_example(topics: Topics, zone: ZoneInfo, now: datetime,
                 district: District | None = None) -> Example:
    """An elderly person living alone in a Shuanglong grid who asks for a companion visit."""
    district = district or build_district(seed=DEMO_SEED)
    grid_id = district.descendants(STUDIO_ID, Level.GRID)[0]
    case_id = f"case-example-{_stamp(now)}"
    case = Case(
        case_id=case_id, version=1, grid_id=grid_id,
        beneficiary=Beneficiary(pseudonym=f"ben-example-{_stamp(now)}", group="elderly_alone",
                                vulnerability=4, languages=["chongqing_dialect"],
                                location=district.location(grid_id)),
        items=[NeedItem(item_id="i1", kind="volunteer", need="companionship", quantity=2,
                        unit="hours",
                        window=TimeWindow(start=tomorrow_at(9, zone, now),
                                          end=tomorrow_at(12, zone, now)),
                        deadline=tomorrow_at(12, zone, now), urgency=4, splittable=False,
                        preferences=Preferences(languages=["chongqing_dialect"]))])
    event = CaseOpened(event_id=uuid.uuid4(), occurred_at=now, producer=grid_id, payload=case)
    return Example(topics.needs, case_id, _wire(event))


def pending_proposal(database_url: str) -> str | None:
    """The oldest pending proposal in a database, if it has one."""
    from matcher.storage.database import open_engine
    from matcher.storage.tables import proposals

    engine = open_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(proposals.c.proposal_id).where(proposals.c.status == "proposed")
                .order_by(proposals.c.created_at, proposals.c.proposal_id).limit(1)
            ).scalar_one_or_none()
    finally:
        engine.dispose()


def decision_example(topics: Topics, now: datetime, proposal_id: str,
                     coordinator_id: str = DEMO_COORDINATOR) -> Example:
    """A coordinator approving one proposal."""
    event = MatchDecided(
        event_id=uuid.uuid4(), occurred_at=now, producer=coordinator_id,
        payload=DecisionPayload(proposal_id=proposal_id, decision=Decision.APPROVE,
                                coordinator_id=coordinator_id, reason=""))
    return Example(topics.decisions, proposal_id, _wire(event))


def example_command(
    kind: Annotated[Kind, typer.Argument(help="offer, case or decision.")],
    prefix: Annotated[str | None, typer.Option(
        help="Topic prefix (default: MATCHER_TOPIC_PREFIX, or the demo's printed one).")] = None,
    database: Annotated[Path | None, typer.Option(
        help="For a decision: the database to take a pending proposal from "
        "(default: the demo's).")] = None,
    proposal: Annotated[str | None, typer.Option(
        help="For a decision: the proposal to approve.")] = None,
    kcat: Annotated[bool, typer.Option(
        "--kcat", help="Print one line 'key<TAB>json' for kcat -P -K$'\\t' instead.")] = False,
    payload: Annotated[bool, typer.Option(
        "--payload", help="Print only the payload, as the partner HTTP API "
        "(/api/partner) takes it.")] = False,
) -> None:
    """Print a whole, valid, current message with its topic and Kafka key."""
    settings = get_settings()
    zone = ZoneInfo(settings.timezone)
    now = datetime.now(zone).replace(microsecond=0)
    topics = Topics(prefix or settings.topic_prefix)
    if kind is Kind.OFFER:
        example = offer_example(topics, zone, now)
    elif kind is Kind.CASE:
        example = case_example(topics, zone, now)
    else:
        path = database or settings.demo_db
        found = proposal or (pending_proposal(f"sqlite:///{path}") if path.is_file() else None)
        if found is None:
            raise typer.BadParameter("no pending proposal found: run `matcher demo` first, or "
                                     "pass --proposal", param_hint="--proposal")
        example = decision_example(topics, now, found)
    if payload:
        typer.echo(json.dumps(example.value["payload"], ensure_ascii=False))
    else:
        typer.echo(example.line() if kcat else example.render())
