"""The AsyncAPI examples are Qijiang's: node ids the simulated district forms, places inside
the district, its dialect; so a partner copying an example is not dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from matcher.cli import ASYNCAPI_FILE
from matcher.simulator.district import build_district

NODE_FIELDS = {"node_id", "parent_id", "home_node_id", "grid_id"}
# Qijiang district, generously: about 28.4-29.2 N, 106.3-107.0 E.
LAT, LON = (28.4, 29.2), (106.3, 107.0)


def examples_of(schema: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    """(property name, example) for every example in the document."""
    if isinstance(schema, dict):
        for example in schema.get("examples", []) if name else []:
            yield name, example
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for prop, sub in value.items():
                    yield from examples_of(sub, prop)
            elif key != "examples":
                yield from examples_of(value, name if key in ("anyOf", "allOf") else "")
    elif isinstance(schema, list):
        for value in schema:
            yield from examples_of(value, name)


def document_examples() -> list[tuple[str, Any]]:
    return list(examples_of(json.loads(ASYNCAPI_FILE.read_text())))


def test_node_id_examples_are_ids_the_simulated_district_forms() -> None:
    known = {node.node_id for node in build_district(seed=7).nodes}
    node_examples = [(n, e) for n, e in document_examples() if n in NODE_FIELDS]
    assert node_examples
    assert all(example in known for _, example in node_examples), node_examples


def test_place_examples_lie_in_qijiang() -> None:
    places = [e for n, e in document_examples() if isinstance(e, dict) and "lat" in e]
    points = [(n, e) for n, e in document_examples() if n in ("lat", "lon")]
    assert places and points
    assert all(LAT[0] <= p["lat"] <= LAT[1] and LON[0] <= p["lon"] <= LON[1] for p in places)
    bounds = {"lat": LAT, "lon": LON}
    assert all(bounds[n][0] <= e <= bounds[n][1] for n, e in points), points


def test_no_example_names_hangzhou() -> None:
    text = ASYNCAPI_FILE.read_text().lower()
    assert "hangzhou" not in text and "gongchen" not in text
