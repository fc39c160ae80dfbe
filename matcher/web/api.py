"""The JSON API under /api: a coordinator's queue, decisions and read models (OpenAPI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from matcher.services import impact, oversight
from matcher.services.decisions import DecisionResult
from matcher.services.jurisdiction import Coordinator
from matcher.web.auth import (
    SignInRequired,
    check_password,
    desk_of,
    end_session,
    signed_in,
    start_session,
)
from schemas.matches import Decision
from schemas.offers import OfferKind

router = APIRouter(prefix="/api", tags=["coordination"])
Username = Annotated[str, Depends(signed_in)]
EntityId = Annotated[str, Path(min_length=1, max_length=80, description="Id of the entity.")]


class Body(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not a silent default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SignIn(Body):
    username: str = Field(min_length=1, max_length=80, examples=["coord-wenlong"])
    password: str = Field(min_length=1, max_length=200, examples=["correct horse battery"])


class Approval(Body):
    reason: str = Field(default="", max_length=500, description="Optional note to the partner.",
                        examples=["call the grid worker before the first visit"])


class Rejection(Body):
    reason: str = Field(min_length=1, max_length=500, description="Why (required).",
                        examples=["volunteer lives too far for a weekly visit"])

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a rejection needs a reason")
        return value


class AlternativeRequest(Body):
    reason: str = Field(default="", max_length=500, description="What would fit better.",
                        examples=["prefers a volunteer speaking the local dialect"])


class Me(BaseModel):
    username: str
    display_name: str
    node_id: str
    level: str


class SignedIn(Me):
    token: str = Field(description="API token: send 'Authorization: Bearer <token>' instead "
                       "of a password; DELETE /api/session revokes it.")
    token_type: str = Field(default="bearer", examples=["bearer"])
    expires_in_s: float = Field(description="Seconds until the token and session expire.")


class DecisionOut(BaseModel):
    proposal_id: str
    status: str
    summary: str


def _me(coordinator: Coordinator) -> Me:
    return Me(username=coordinator.username, display_name=coordinator.display_name,
              node_id=coordinator.node_id, level=coordinator.level)


def _out(result: DecisionResult) -> DecisionOut:
    return DecisionOut(proposal_id=result.proposal_id, status=result.status.value,
                       summary=result.summary)


@router.post("/session", response_model=SignedIn, responses={
    401: {"description": "Wrong username or password."},
    429: {"description": "Too many failed sign-ins for this account or address; see "
          "Retry-After."}})
def sign_in(body: SignIn, request: Request) -> SignedIn:
    """Sign in; the session cookie, or the returned bearer token, authenticates further calls."""
    coordinator = check_password(request, body.username, body.password, channel="http:api")
    if coordinator is None:
        raise SignInRequired()
    start_session(request, coordinator.username)
    desk = desk_of(request)
    return SignedIn(**_me(coordinator).model_dump(),
                    token=desk.open_session(coordinator.username, "token"),
                    expires_in_s=desk.settings.session_max_age_s)


@router.delete("/session", status_code=204)
def sign_out(request: Request) -> None:
    """Sign out: the session cookie and the bearer token sent stop working everywhere."""
    end_session(request)


@router.get("/me", response_model=Me)
def me(username: Username, request: Request) -> Me:
    """Who I am and which node I coordinate."""
    return desk_of(request).read(lambda store, c: _me(c), username)


@router.get("/proposals", response_model=list[oversight.QueueEntry])
def pending_proposals(
    username: Username, request: Request,
    grid_id: Annotated[str | None, Query(max_length=80, description="Only this grid.")] = None,
    kind: Annotated[OfferKind | None, Query(description="Only this kind of offer.")] = None,
    min_urgency: Annotated[int | None, Query(ge=1, le=5, description="Urgency at least.")]
    = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[oversight.QueueEntry]:
    """Pending proposals in my jurisdiction, most urgent first."""
    desk = desk_of(request)
    return desk.read(lambda store, c: oversight.pending_queue(
        store, c, now=desk.engine.clock(), grid_id=grid_id,
        kind=kind.value if kind else None, min_urgency=min_urgency, limit=limit), username)


@router.get("/proposals/{proposal_id}", response_model=oversight.ProposalView)
def get_proposal(proposal_id: EntityId, username: Username,
                 request: Request) -> oversight.ProposalView:
    """One proposal with its explanation (rules, score terms, runner-ups) and history."""
    desk = desk_of(request)
    return desk.read(lambda store, c: oversight.proposal_view(
        store, c, proposal_id, now=desk.engine.clock()), username)


@router.post("/proposals/{proposal_id}/approve", response_model=DecisionOut)
def approve(proposal_id: EntityId, body: Approval, username: Username,
            request: Request) -> DecisionOut:
    """Approve: the offer's capacity is committed and the partner receives an assignment."""
    return _out(desk_of(request).decide(username, proposal_id, Decision.APPROVE, body.reason,
                                        channel="http:api"))


@router.post("/proposals/{proposal_id}/reject", response_model=DecisionOut)
def reject(proposal_id: EntityId, body: Rejection, username: Username,
           request: Request) -> DecisionOut:
    """Reject with a reason: the item is matched again without this offer."""
    return _out(desk_of(request).decide(username, proposal_id, Decision.REJECT, body.reason,
                                        channel="http:api"))


@router.post("/proposals/{proposal_id}/alternative", response_model=DecisionOut)
def alternative(proposal_id: EntityId, body: AlternativeRequest, username: Username,
                request: Request) -> DecisionOut:
    """Ask for another offer: this one is turned down and the item matched again."""
    return _out(desk_of(request).decide(username, proposal_id, Decision.REQUEST_ALTERNATIVE,
                                        body.reason, channel="http:api"))


@router.get("/cases/{case_id}", response_model=oversight.CaseView)
def get_case(case_id: EntityId, username: Username, request: Request) -> oversight.CaseView:
    """A case in my jurisdiction (sensitive attributes included), its proposals and history."""
    desk = desk_of(request)
    return desk.read(lambda store, c: oversight.case_view(
        store, c, case_id, now=desk.engine.clock()), username)


@router.get("/offers/{offer_id}", response_model=oversight.OfferView)
def get_offer(offer_id: EntityId, username: Username, request: Request) -> oversight.OfferView:
    """An offer based in or serving my jurisdiction, with the proposals on it."""
    desk = desk_of(request)
    return desk.read(lambda store, c: oversight.offer_view(
        store, c, offer_id, now=desk.engine.clock()), username)


@router.get("/partners/{partner_id}", response_model=oversight.PartnerView)
def get_partner(partner_id: EntityId, username: Username,
                request: Request) -> oversight.PartnerView:
    """A partner attached in my jurisdiction or with an offer based in or serving it."""
    return desk_of(request).read(
        lambda store, c: oversight.partner_view(store, c, partner_id), username)


@router.get("/unmatched", response_model=list[oversight.UnmatchedNeed])
def unmatched(username: Username, request: Request,
              grid_id: Annotated[str | None, Query(max_length=80)] = None,
              ) -> list[oversight.UnmatchedNeed]:
    """Open needs in my jurisdiction the engine could not serve, with its reasons."""
    return desk_of(request).read(
        lambda store, c: oversight.unmatched_needs(store, c, grid_id=grid_id), username)


@router.get("/nodes", response_model=list[oversight.NodeEntry])
def list_nodes(username: Username, request: Request) -> list[oversight.NodeEntry]:
    """The whole hierarchy (ids, levels, names, parents): the ids partners put on events."""
    return desk_of(request).read(lambda store, c: oversight.node_registry(store), username)


@router.get("/stats", response_model=impact.QueueStats)
def stats(username: Username, request: Request) -> impact.QueueStats:
    """Queue statistics and impact figures of my jurisdiction."""
    desk = desk_of(request)
    return desk.read(lambda store, c: impact.queue_stats(store, c, now=desk.engine.clock()),
                     username)
