"""Matches: proposals made by the engine, decisions by coordinators, fulfilment by partners."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.common import (
    MAX_AMOUNT,
    AwareDatetime,
    Count,
    Identifier,
    Location,
    Number,
    TimeWindow,
    WireModel,
)
from schemas.envelope import Envelope, InboundEnvelope
from schemas.offers import OfferKind


class ScoreTerm(WireModel):
    """One named soft term of a proposal's score."""

    name: str = Field(description="Name of the term.", examples=["urgency"])
    weight: Number = Field(description="Weight of the term in the configuration.", examples=[10.0])
    value: Number = Field(description="Raw value of the term for this match, 0..1.",
                         examples=[0.8])
    contribution: Number = Field(description="weight x value, added to the score.",
                                examples=[8.0])


class LostOn(StrEnum):
    """What a runner-up lost on, besides the score term it trailed most on."""

    TIME = "time"
    CAPACITY = "capacity"
    URGENCY = "urgency"


class RunnerUp(WireModel):
    """An eligible offer that was not chosen, and why."""

    offer_id: Identifier = Field(description="The offer not chosen.", examples=["offer-v-0077"])
    score: Number = Field(description="Its score for this item.", examples=[41.5])
    why_lost: str = Field(description="Why it lost, in words.",
                          examples=["lower score (41.5 vs 57.3), mostly on travel (2.1 vs 8.8); "
                                    "4.9 km farther"])
    lost_on: str | None = Field(
        default=None,
        description="What it lost on: the score term it trailed most on (e.g. travel, "
        "urgency), 'time' (the volunteer had no free time left in the item's window), "
        "'capacity' (its capacity served cases no more urgent but better placed) or "
        "'urgency' (its capacity went to a more urgent case).",
        examples=["travel"])
    km_further: Number | None = Field(
        default=None,
        description="How much farther from the beneficiary it is than the chosen offer, in km "
        "(negative: nearer); none when a place is unknown.", examples=[4.9])
    competing_urgency: Count | None = Field(
        default=None, ge=1, le=5,
        description="When its capacity went to another case in the batch: the highest "
        "urgency among those cases.", examples=[5])


class Explanation(WireModel):
    """Why the engine proposed this match."""

    rules_passed: list[str] = Field(
        description="Names of the eligibility rules the match passed.",
        examples=[["kind_matches", "skill_matches", "within_travel_radius",
                   "time_windows_overlap"]],
    )
    score_terms: list[ScoreTerm] = Field(description="The score, term by term.")
    runner_ups: list[RunnerUp] = Field(default_factory=list,
                                       description="Best offers not chosen, with reasons.")
    solver_status: str = Field(description="Status of the solve that made it.",
                               examples=["OPTIMAL"])


class ProposalStatus(StrEnum):
    """Lifecycle of a proposal."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    REVOKED = "revoked"
    FULFILLED = "fulfilled"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class Proposal(WireModel):
    """A suggested allocation of (part of) an offer to a need item."""

    proposal_id: Identifier = Field(description="Id of the proposal.", examples=["prop-1a2b3c"])
    case_id: Identifier = Field(description="Case served.", examples=["case-000381"])
    item_id: Identifier = Field(description="Item of the case served.", examples=["i1"])
    grid_id: Identifier = Field(description="Grid of the case.",
                                examples=["ws-wenlong-st-shuanglong-g2"])
    offer_id: Identifier = Field(description="Offer used.", examples=["offer-v-0042"])
    partner_id: Identifier = Field(description="Partner owning the offer.",
                                   examples=["partner-017"])
    kind: OfferKind = Field(description="Kind of offer.", examples=["volunteer"])
    amount: Number = Field(gt=0, description="How much of the offer is allocated (item units).",
                          examples=[2])
    unit: str = Field(description="Unit of amount.", examples=["hours"])
    window: TimeWindow | None = Field(
        default=None, description="When it happens, where both sides' windows meet; for goods, "
        "when they can be handed over (from now or the item's window, until the item's "
        "deadline or the lot's expiry).",
        examples=[{"start": "2026-11-30T09:00:00+08:00", "end": "2026-11-30T11:00:00+08:00"}],
    )
    place: Location | None = Field(
        default=None, description="Where goods are handed over (the lot's pickup point) or a "
        "service is given; none for home visits and deliveries (brought to the beneficiary).",
        examples=[{"lat": 28.996, "lon": 106.668}])
    score: Number = Field(description="Total score of the match.", examples=[57.3])
    explanation: Explanation = Field(description="Rules, score terms and runner-ups.")


class MatchProposed(Envelope):
    """The engine proposed a match; a coordinator will decide."""

    event_type: Literal["match.proposed"] = Field(
        default="match.proposed", description="Event discriminator.", examples=["match.proposed"]
    )
    payload: Proposal = Field(description="The proposal.")


class Decision(StrEnum):
    """What a coordinator can decide."""

    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_ALTERNATIVE = "request_alternative"


class DecisionPayload(WireModel):
    """A coordinator's decision on a proposal."""

    proposal_id: Identifier = Field(description="The proposal decided.", examples=["prop-1a2b3c"])
    decision: Decision = Field(description="The decision.", examples=["approve"])
    coordinator_id: Identifier = Field(description="Who decided.", examples=["coord-wenlong"])
    reason: str = Field(default="", max_length=500, description="Why (required to reject).",
                        examples=["volunteer lives too far for a weekly visit"])


class MatchDecided(InboundEnvelope):
    """A coordinator decided on a proposal."""

    event_type: Literal["match.decided"] = Field(
        default="match.decided", description="Event discriminator.", examples=["match.decided"]
    )
    payload: DecisionPayload = Field(description="The decision.")


class Outcome(StrEnum):
    """How an approved match ended."""

    FULFILLED = "fulfilled"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class FulfilmentPayload(WireModel):
    """A partner reports how an approved match went."""

    proposal_id: Identifier = Field(description="The approved proposal.",
                                    examples=["prop-1a2b3c"])
    outcome: Outcome = Field(description="How it ended.", examples=["fulfilled"])
    delivered: Number = Field(default=0, ge=0, le=MAX_AMOUNT,
                              description="Amount actually given (item units).",
                              examples=[2])
    note: str = Field(default="", max_length=500, description="Free text.",
                      examples=["stayed for tea"])


class MatchFulfilled(InboundEnvelope):
    """A partner reported the outcome of an approved match."""

    event_type: Literal["match.fulfilled"] = Field(
        default="match.fulfilled", description="Event discriminator.",
        examples=["match.fulfilled"],
    )
    payload: FulfilmentPayload = Field(description="The outcome.")


class TakenBy(StrEnum):
    """Who holds the capacity of the eligible offers an item did not get."""

    MORE_URGENT_CASES = "more_urgent_cases"
    AS_URGENT_BETTER_PLACED = "as_urgent_better_placed"
    EARLIER_COMMITMENTS = "earlier_commitments"
    EXPECTED_URGENT_CASES = "expected_urgent_cases"


class Unmatched(WireModel):
    """A need item the engine could not (fully) serve in a batch, and why."""

    case_id: Identifier = Field(description="Case.", examples=["case-000381"])
    item_id: Identifier = Field(description="Item.", examples=["i1"])
    grid_id: Identifier = Field(description="Grid of the case.",
                                examples=["ws-wenlong-st-shuanglong-g2"])
    open_quantity: Number = Field(description="What is still unserved.", examples=[2])
    reason_code: str = Field(description="Machine-readable reason.",
                             examples=["no_eligible_offer"])
    reason: str = Field(description="Reason in words.",
                        examples=["no volunteer with skill 'physiotherapy' within reach"])
    taken_by: TakenBy | None = Field(
        default=None,
        description="For capacity_taken and partly_served: who holds the eligible capacity "
        "(more urgent cases or cases as urgent and better placed in this batch, or earlier "
        "commitments); none for the other reasons.",
        examples=["more_urgent_cases"])


class NeedUnmatched(Envelope):
    """A need item is left (partly) unmatched after a batch."""

    event_type: Literal["need.unmatched"] = Field(
        default="need.unmatched", description="Event discriminator.", examples=["need.unmatched"]
    )
    payload: Unmatched = Field(description="The item and the reason.")


decision_event_adapter: TypeAdapter[MatchDecided] = TypeAdapter(MatchDecided)
FulfilmentEvent = Annotated[MatchFulfilled, Field(discriminator="event_type")]
fulfilment_event_adapter: TypeAdapter[MatchFulfilled] = TypeAdapter(MatchFulfilled)


class Revocation(WireModel):
    """The engine took a proposal back (offer withdrawn, case closed or changed, plan moved)."""

    proposal_id: Identifier = Field(description="The proposal revoked.", examples=["prop-1a2b3c"])
    case_id: Identifier = Field(description="Case it served.", examples=["case-000381"])
    item_id: Identifier = Field(description="Item it served.", examples=["i1"])
    offer_id: Identifier = Field(description="Offer it used.", examples=["offer-v-0042"])
    previous_status: ProposalStatus = Field(description="Status before revocation.",
                                            examples=["approved"])
    reason_code: str = Field(description="Machine-readable reason.", examples=["offer_withdrawn"])
    reason: str = Field(description="Reason in words.",
                        examples=["offer offer-v-0042 was withdrawn: volunteer fell ill"])


class MatchRevoked(Envelope):
    """A proposal or approved match was revoked; its capacity and demand are free again."""

    event_type: Literal["match.revoked"] = Field(
        default="match.revoked", description="Event discriminator.", examples=["match.revoked"]
    )
    payload: Revocation = Field(description="What was revoked, and why.")


class Assignment(WireModel):
    """An approved match, told to the partner whose offer serves it."""

    proposal_id: Identifier = Field(description="The approved proposal; quote it when "
                                    "reporting fulfilment.", examples=["prop-1a2b3c"])
    case_id: Identifier = Field(description="Case served.", examples=["case-000381"])
    item_id: Identifier = Field(description="Item of the case served.", examples=["i1"])
    grid_id: Identifier = Field(description="Grid of the case (whose grid worker to contact).",
                                examples=["ws-wenlong-st-shuanglong-g2"])
    beneficiary: Identifier = Field(description="Pseudonym of the beneficiary; never a name.",
                                    examples=["ben-7f3a"])
    offer_id: Identifier = Field(description="The partner's offer used.",
                                 examples=["offer-v-0042"])
    partner_id: Identifier = Field(description="Partner owning the offer.",
                                   examples=["partner-017"])
    kind: OfferKind = Field(description="Kind of offer.", examples=["volunteer"])
    amount: Number = Field(gt=0, description="How much of the offer is committed (item units).",
                          examples=[2])
    unit: str = Field(description="Unit of amount.", examples=["hours"])
    window: TimeWindow | None = Field(
        default=None, description="When it happens.",
        examples=[{"start": "2026-11-30T09:00:00+08:00", "end": "2026-11-30T11:00:00+08:00"}],
    )
    approved_by: str = Field(description="Coordinator who approved, or 'auto' for automatic "
                             "approval of a kind configured so.", examples=["coord-wenlong"])
    note: str = Field(default="", max_length=500, description="The coordinator's note.",
                      examples=["please call the grid worker before the first visit"])


class MatchApproved(Envelope):
    """A coordinator approved a match: the partner's capacity is committed to it."""

    event_type: Literal["match.approved"] = Field(
        default="match.approved", description="Event discriminator.", examples=["match.approved"]
    )
    payload: Assignment = Field(description="What the partner is asked to deliver.")


class _FateOfProposal(WireModel):
    """Which proposal changed fate, for whom, and why."""

    proposal_id: Identifier = Field(description="The proposal.", examples=["prop-1a2b3c"])
    case_id: Identifier = Field(description="Case it served.", examples=["case-000381"])
    item_id: Identifier = Field(description="Item it served.", examples=["i1"])
    grid_id: Identifier = Field(description="Grid of the case (whose coordinators hear of it).",
                                examples=["ws-wenlong-st-shuanglong-g2"])
    offer_id: Identifier = Field(description="Offer it used.", examples=["offer-v-0042"])
    partner_id: Identifier = Field(description="Partner owning the offer.",
                                   examples=["partner-017"])
    reason_code: str = Field(description="Machine-readable reason.",
                             examples=["capacity_reduced"])
    reason: str = Field(description="Reason in words.",
                        examples=["offer offer-v-0042 now gives 4 hours a week, less than was "
                                  "approved"])


class Rejection(_FateOfProposal):
    """A coordinator turned a proposal down; the item is matched again without that offer."""

    decided_by: Identifier = Field(description="Coordinator who decided.",
                                   examples=["coord-wenlong"])


class MatchRejected(Envelope):
    """A coordinator rejected a proposal, or sent it back for an alternative."""

    event_type: Literal["match.rejected"] = Field(
        default="match.rejected", description="Event discriminator.", examples=["match.rejected"]
    )
    payload: Rejection = Field(description="The proposal turned down, and why.")


class Expiry(_FateOfProposal):
    """Nobody decided on a proposal in time; its capacity and demand are free again."""

    pending_since: AwareDatetime = Field(description="When the proposal was made.",
                                         examples=["2026-11-30T09:00:00+08:00"])


class MatchExpired(Envelope):
    """A proposal expired undecided."""

    event_type: Literal["match.expired"] = Field(
        default="match.expired", description="Event discriminator.", examples=["match.expired"]
    )
    payload: Expiry = Field(description="The proposal that expired, and why.")


class Release(_FateOfProposal):
    """An approved match the engine had to take back: an update of its offer or case made it
    impossible (slot removed, volunteer no longer free) or left its offer, the volunteer's
    week or the item over-committed. The fewest matches are released; nothing begun is."""

    kind: OfferKind = Field(description="Kind of offer.", examples=["volunteer"])
    amount: Number = Field(gt=0, description="How much was committed (item units).",
                          examples=[2])
    unit: str = Field(description="Unit of amount.", examples=["hours"])
    window: TimeWindow | None = Field(
        default=None, description="When it would have happened.",
        examples=[{"start": "2026-11-30T09:00:00+08:00", "end": "2026-11-30T11:00:00+08:00"}],
    )


class MatchReleased(Envelope):
    """An approved match was released; the partner need not deliver it, the item is open again."""

    event_type: Literal["match.released"] = Field(
        default="match.released", description="Event discriminator.", examples=["match.released"]
    )
    payload: Release = Field(description="The approved match released, and why.")
