"""Rebalancing: the nightly (or requested) re-optimisation of a whole district, and its diff.

`rebalance.requested` goes to the rebalance topic (an input of the engine);
`rebalance.completed` goes to the rebalance-reports topic (an output), one per run, with the
diff summary. The proposals themselves change through the normal flow: `match.proposed` and
`match.revoked` on the proposals topic.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, TypeAdapter

from schemas.common import AwareDatetime, Count, Flag, Identifier, Number, WireModel
from schemas.envelope import Envelope, InboundEnvelope


class RebalanceRequest(WireModel):
    """Who asks for a rebalancing run, and why."""

    requested_by: Identifier = Field(description="Coordinator or system asking for the run.",
                                     examples=["coord-centre"])
    reason: str = Field(default="", max_length=500, description="Why the run is wanted.",
                        examples=["large goods donation arrived this afternoon"])


class RebalanceRequested(InboundEnvelope):
    """Someone asked the engine to re-optimise the district now rather than tonight."""

    event_type: Literal["rebalance.requested"] = Field(
        default="rebalance.requested", description="Event discriminator.",
        examples=["rebalance.requested"],
    )
    payload: RebalanceRequest = Field(description="The request.")


class ChangeKind(StrEnum):
    """What a rebalancing run did to one proposal."""

    NEW = "new"
    MOVED = "moved"
    REVOKED = "revoked"
    RELEASED = "released"


class PlanChange(WireModel):
    """One line of the diff: a proposal made, moved, revoked, or an approved match released."""

    change: ChangeKind = Field(description="new: proposed for demand left open; moved: the "
                               "old proposal revoked and a better one made for the same item; "
                               "revoked: taken back so its capacity serves others, or no longer "
                               "possible; released: an approved match that became impossible.",
                               examples=["moved"])
    case_id: Identifier = Field(description="Case served.", examples=["case-000381"])
    item_id: Identifier = Field(description="Item of the case.", examples=["i1"])
    grid_id: Identifier = Field(description="Grid of the case.",
                                examples=["ws-wenlong-st-shuanglong-g2"])
    old_proposal_id: Identifier | None = Field(
        default=None, description="The proposal revoked or released (moved, revoked, released).",
        examples=["prop-1a2b3c"])
    new_proposal_ids: list[Identifier] = Field(
        default_factory=list, description="Proposals made (new, moved).",
        examples=[["prop-9f8e7d"]])
    old_offer_id: Identifier | None = Field(default=None, description="Offer used before.",
                                            examples=["offer-v-0042"])
    new_offer_ids: list[Identifier] = Field(default_factory=list,
                                            description="Offers used now.",
                                            examples=[["offer-v-0077"]])
    reason_code: str = Field(description="Machine-readable reason.",
                             examples=["better_match"])
    reason: str = Field(description="Reason in words.",
                        examples=["offer-v-0077 scores 55.0 against 41.2 (+13.8), more than "
                                  "the change penalty 10"])
    score_before: Number = Field(description="Score of what the item had from this change "
                                "before (0 for new).", examples=[41.2])
    score_after: Number = Field(description="Score of what it has now (0 when revoked).",
                               examples=[55.0])


class RunStatus(StrEnum):
    """How a run ended."""

    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"


class RebalanceSummary(WireModel):
    """What a rebalancing run did: counts, objective before and after, and the diff."""

    run_id: Identifier = Field(description="Id of the run.", examples=["rebalance-20261130-0200"])
    trigger: str = Field(description="What started it: nightly, cli or event.",
                         examples=["nightly"])
    requested_by: str = Field(description="Who asked for it.", examples=["scheduler"])
    status: RunStatus = Field(description="completed, busy (another run held the lease) or "
                              "failed.", examples=["completed"])
    started_at: AwareDatetime = Field(description="When the run started.",
                                      examples=["2026-11-30T02:00:00+08:00"])
    finished_at: AwareDatetime = Field(description="When it finished.",
                                       examples=["2026-11-30T02:00:41+08:00"])
    shards: list[str] = Field(description="Shards re-solved.", examples=[["centre"]])
    new: Count = Field(description="Proposals made for demand left open.", examples=[37])
    moved: Count = Field(description="Pending proposals moved to a better offer.", examples=[12])
    revoked: Count = Field(description="Pending proposals revoked without replacement.",
                         examples=[3])
    released: Count = Field(description="Approved matches released as impossible.", examples=[1])
    kept: Count = Field(description="Pending proposals left as they were.", examples=[880])
    moves_capped: Count = Field(description="Moves worth making but held back by the nightly "
                              "cap.", examples=[0])
    objective_before: Number = Field(description="Score of the pending plan (score points).",
                                    examples=[51234.5])
    objective_after: Number = Field(description="Score of the new pending plan.",
                                   examples=[52310.0])
    bound: Number = Field(description="Proven upper bound of the stability-adjusted objective.",
                         examples=[53400.0])
    note: str = Field(default="", description="Anything out of the ordinary, in words.",
                      examples=[""])
    changes: list[PlanChange] = Field(default_factory=list,
                                      description="The diff, line by line (see "
                                      "changes_truncated).")
    changes_truncated: Flag = Field(default=False, description="True when the diff was cut "
                                    "to keep the event small; the stored report holds it all.",
                                    examples=[False])


class RebalanceCompleted(Envelope):
    """A rebalancing run finished (or was refused): its summary and diff."""

    event_type: Literal["rebalance.completed"] = Field(
        default="rebalance.completed", description="Event discriminator.",
        examples=["rebalance.completed"],
    )
    payload: RebalanceSummary = Field(description="What the run did.")


rebalance_requested_adapter: TypeAdapter[RebalanceRequested] = TypeAdapter(RebalanceRequested)
