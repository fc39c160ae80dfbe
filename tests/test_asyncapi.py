"""The AsyncAPI document in the repo is the one the code generates."""

from __future__ import annotations

import json

from events.app import asyncapi_json
from matcher.cli import ASYNCAPI_FILE
from matcher.settings import Settings


def generated() -> str:
    return asyncapi_json(Settings.model_construct(database_url="sqlite://"))


def test_committed_asyncapi_document_is_up_to_date() -> None:
    assert ASYNCAPI_FILE.read_text() == generated(), (
        "docs/asyncapi.json is stale: run `matcher asyncapi` and commit the result")


def test_asyncapi_documents_every_topic_and_payload_field() -> None:
    document = json.loads(generated())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"charity.registry", "charity.offers", "charity.needs", "charity.decisions",
            "charity.fulfilments", "charity.proposals", "charity.unmatched",
            "charity.dead-letter"} <= addresses
    schemas = document["components"]["schemas"]
    for name in ("VolunteerOffer", "GoodsOffer", "ServiceOffer", "Case", "NeedItem", "Proposal"):
        properties = schemas[name]["properties"]
        undocumented = [field for field, spec in properties.items()
                        if "description" not in spec and "$ref" not in spec
                        and "allOf" not in spec]
        assert not undocumented, f"{name}: fields without description: {undocumented}"
