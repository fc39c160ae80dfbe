"""Events the engine sends to itself."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import Identifier, WireModel
from schemas.envelope import Envelope


class ShardChange(WireModel):
    """A shard whose demand or supply changed."""

    shard: Identifier = Field(description="Id of the shard (a hierarchy node).",
                              examples=["centre"])


class ShardChanged(Envelope):
    """State of a shard changed; its owner runs a matching batch after the batch window."""

    event_type: Literal["shard.changed"] = Field(
        default="shard.changed", description="Event discriminator.", examples=["shard.changed"]
    )
    payload: ShardChange = Field(description="Which shard.")
