"""The hierarchy of the union and the partners that publish offers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, model_validator

from schemas.common import Identifier, Level, Location, Reach, WireModel
from schemas.envelope import InboundEnvelope


class PartnerKind(StrEnum):
    """Kinds of organisation that join the union."""

    ENTERPRISE = "enterprise"
    CHARITY = "charity"
    SOCIAL_WORK_AGENCY = "social_work_agency"
    VOLUNTEER_GROUP = "volunteer_group"
    MERCHANT = "merchant"
    GOVERNMENT_DEPARTMENT = "government_department"


class Node(WireModel):
    """One node of the four-level hierarchy: centre > workstation > studio > grid."""

    node_id: Identifier = Field(
        description="Stable id of the node.", examples=["ws-wenlong-st-shuanglong-g2"]
    )
    level: Level = Field(description="Level of the node in the hierarchy.", examples=["grid"])
    parent_id: Identifier | None = Field(
        default=None,
        description="Id of the parent node; only the district charity centre has none.",
        examples=["ws-wenlong-st-shuanglong"],
    )
    name: str = Field(
        min_length=1, max_length=120, description="Human name.", examples=["双龙社区第2网格"]
    )
    location: Location | None = Field(
        default=None,
        description="A representative point (centroid) of the node's area.",
        examples=[{"lat": 28.995, "lon": 106.668}],
    )
    default_reach: Reach | None = Field(
        default=None,
        description="How goods and services based in this node's subtree reach people when "
        "neither the offer nor its partner says; the nearest node up the hierarchy with one "
        "decides.",
        examples=[{"mode": "pickup", "km": 5.0}],
    )

    @model_validator(mode="after")
    def _parent_matches_level(self) -> Node:
        if (self.level is Level.CENTRE) != (self.parent_id is None):
            raise ValueError("the centre, and only the centre, has no parent")
        return self


class Partner(WireModel):
    """An organisation that publishes offers."""

    partner_id: Identifier = Field(description="Stable id of the partner.",
                                   examples=["partner-017"])
    name: str = Field(
        min_length=1, max_length=160, description="Organisation name.",
        examples=["重庆綦江文龙养老服务有限公司"],
    )
    kind: PartnerKind = Field(description="Kind of organisation.", examples=["enterprise"])
    home_node_id: Identifier = Field(
        description="Node of the hierarchy the partner is attached to.",
        examples=["ws-wenlong"],
    )
    default_reach: Reach | None = Field(
        default=None,
        description="How the partner's goods and services reach people when an offer does "
        "not say (e.g. a supermarket that delivers within 15 km).",
        examples=[{"mode": "delivery", "km": 15.0}],
    )


class NodeRegistered(InboundEnvelope):
    """A hierarchy node was created or renamed (the hierarchy is data the engine keeps)."""

    event_type: Literal["node.registered"] = Field(
        default="node.registered", description="Event discriminator.", examples=["node.registered"]
    )
    payload: Node = Field(description="The node.")


class PartnerRegistered(InboundEnvelope):
    """A partner joined the union (or changed its details)."""

    event_type: Literal["partner.registered"] = Field(
        default="partner.registered",
        description="Event discriminator.",
        examples=["partner.registered"],
    )
    payload: Partner = Field(description="The partner.")


RegistryEvent = Annotated[NodeRegistered | PartnerRegistered, Field(discriminator="event_type")]
registry_event_adapter: TypeAdapter[NodeRegistered | PartnerRegistered] = TypeAdapter(
    RegistryEvent
)
