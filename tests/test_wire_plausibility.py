"""Schema-valid nonsense is refused at the door: numbers that are strings, dates from 1969 or
9999, absurd amounts and versions, and JSON nested so deep that parsing it would stall."""

from __future__ import annotations

import copy
import json
import math
import time
from typing import Any

import pytest
from pydantic import ValidationError

from events.codec import describe_validation_error, json_decoder, nests_too_deep
from schemas.matches import fulfilment_event_adapter
from tests import factories as f


def goods_case() -> dict[str, Any]:
    return f.case("c1", items=[f.item("i1", kind="goods", need="rice", quantity=2, unit="kg")])


def with_change(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of the event with one dotted path set."""
    changed = copy.deepcopy(event)
    *parents, last = path.split(".")
    target: Any = changed
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return changed


def refusal(event: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        f.parse(event)
    return str(refused.value)


def test_a_well_formed_case_with_iso_dates_still_parses() -> None:
    event = f.parse(goods_case())
    assert event.occurred_at.year == 2030


@pytest.mark.parametrize("path, value", [
    ("payload.items.0.quantity", "2"),
    ("payload.items.0.urgency", "3"),
    ("payload.items.0.urgency", 3.0),
    ("payload.items.0.splittable", 1),
    ("payload.items.0.splittable", "true"),
    ("payload.version", "1"),
    ("payload.version", True),
    ("payload.beneficiary.vulnerability", "4"),
    ("payload.beneficiary.location", {"lat": "30.1", "lon": 120.1}),
])
def test_numbers_and_flags_are_not_coerced_from_other_types(path: str, value: Any) -> None:
    assert "valid" in refusal(with_change(goods_case(), path, value))


@pytest.mark.parametrize("path, value, why", [
    ("occurred_at", "1969-12-31T23:59:59+00:00", "occurred_at"),
    ("occurred_at", "2150-01-01T00:00:00+00:00", "occurred_at"),
    ("payload.items.0.window.start", "1900-01-01T09:00:00+08:00", "before 2000"),
    ("payload.items.0.window.end", "9999-12-31T12:00:00+08:00", "more than a year after"),
    ("payload.items.0.deadline", "2032-01-01T12:00:00+08:00", "more than a year after"),
])
def test_implausible_dates_are_refused_saying_which(path: str, value: str, why: str) -> None:
    message = refusal(with_change(goods_case(), path, value))
    assert why in message


def test_a_goods_expiry_years_ahead_is_refused() -> None:
    offer = f.goods_offer("o1", "p1")
    offer["payload"]["expires_at"] = "2040-01-01T00:00:00+08:00"
    assert "payload.expires_at" in refusal(offer)


@pytest.mark.parametrize("path, value", [
    ("payload.items.0.quantity", 1e308),
    ("payload.items.0.quantity", math.inf),
    ("payload.items.0.quantity", math.nan),
    ("payload.items.0.quantity", -1),
    ("payload.version", 2**31),
])
def test_amounts_and_versions_are_bounded(path: str, value: Any) -> None:
    refusal(with_change(goods_case(), path, value))


def test_a_fulfilment_of_1e308_is_refused() -> None:
    report = f.envelope("match.fulfilled", "p1", {"proposal_id": "p1", "outcome": "fulfilled",
                                                  "delivered": 1e308})
    with pytest.raises(ValidationError):
        fulfilment_event_adapter.validate_python(report)
    fulfilment_event_adapter.validate_python(
        with_change(report, "payload.delivered", 2))


class _Message:
    def __init__(self, body: bytes) -> None:
        self.body = body


async def test_json_nested_ten_thousand_deep_is_not_json_and_fast() -> None:
    body = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    started = time.perf_counter()
    decoded = await json_decoder(_Message(body))  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as refused:
        f.parse(decoded)
    code, reason = describe_validation_error(refused.value, body)
    assert time.perf_counter() - started < 0.5
    assert decoded == body
    assert (code, reason) == ("not_json", "message value nests deeper than 64 levels")


def test_depth_counts_structure_not_brackets_inside_strings() -> None:
    deep_text = json.dumps({"note": "[" * 500 + '\\"{' * 100}).encode()
    assert not nests_too_deep(deep_text)
    assert json.loads(deep_text)
    assert nests_too_deep(b"[" * 65 + b"]" * 65)
    assert not nests_too_deep(b"[" * 64 + b"]" * 64)


async def test_ordinary_events_still_decode() -> None:
    body = f.encode(goods_case())
    assert await json_decoder(_Message(body)) == json.loads(body)  # type: ignore[arg-type]


def test_the_engines_own_events_follow_its_clock_not_the_partners_horizon() -> None:
    from datetime import UTC, datetime

    from schemas.matches import MatchProposed

    offer_window = {"start": "2030-06-03T09:00:00+08:00", "end": "2030-06-03T11:00:00+08:00"}
    proposed = MatchProposed.model_validate({
        "event_id": "6f1c2b9e-3d4a-4f5b-9c1d-2e3f4a5b6c7d",
        "occurred_at": datetime(2026, 12, 1, tzinfo=UTC), "producer": "charity-matcher",
        "payload": {"proposal_id": "p1", "case_id": "c1", "item_id": "i1", "grid_id": "g1",
                    "offer_id": "o1", "partner_id": "p1", "kind": "goods", "amount": 2,
                    "unit": "kg", "window": offer_window, "score": 1.0,
                    "explanation": {"rules_passed": [], "score_terms": [],
                                    "solver_status": "OPTIMAL"}}})
    assert proposed.payload.window is not None


def test_only_fields_that_can_hold_dates_are_checked_for_plausibility() -> None:
    from schemas.common import date_fields
    from schemas.needs import Beneficiary, NeedItem
    from schemas.offers import GoodsOffer

    assert date_fields(NeedItem) == ("window", "deadline")
    assert date_fields(GoodsOffer) == ("expires_at",)
    assert date_fields(Beneficiary) == ()
