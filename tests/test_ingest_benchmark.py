"""The ingest benchmark at a tiny size against the session's real broker: its bookkeeping holds.

The engine runs as its own `matcher run` process, as in the benchmark. Only the harness's
invariants are asserted (every event accounted for, the raw consumers read what was published,
latency samples exist), never a speed: the machine running the tests is shared.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from tests.kafka_helpers import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import ingest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# A registry of a few dozen events, so that it does not dominate a 300-event run.
TINY = ingest.DistrictShape(workstations=1, studios_per_ws=2, grids_per_studio=3, partners=20)


def tiny_config(bootstrap: str, tmp_path: Path) -> ingest.RunConfig:
    prefix = f"tb{uuid.uuid4().hex[:10]}"
    return ingest.RunConfig(bootstrap=ingest.loopback_only(bootstrap), prefix=prefix,
                            workdir=tmp_path / prefix, http_port=free_port(), district=TINY,
                            engine_env={"MATCHER_BATCH_WINDOW_S": "0.2"})


async def test_throughput_accounts_for_every_event(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = await ingest.throughput(tiny_config(kafka_bootstrap, tmp_path), events=300,
                                     timeout_s=90)

    assert result.events == result.registry_events + 300
    for raw in (result.raw, result.validated):
        assert raw.events == result.events and raw.rate > 0
    assert result.raw.by_topic == result.validated.by_topic
    assert result.validated.invalid == 0
    assert result.registry.complete and result.registry.accounted == result.registry_events
    engine = result.engine
    assert engine.complete and engine.lag == 0
    assert engine.expected == 300 and engine.accounted == 300
    assert engine.applied + engine.dead_letters + (engine.duplicates or 0) == 300
    assert engine.samples and engine.rate > 0 and result.ratio > 0
    assert len(engine.load_before) == 3
    table = ingest.throughput_table(result, "sqlite")
    assert "| **engine / raw** |" in table and "300 of 300" in table


async def test_latency_has_a_sample_per_case(kafka_bootstrap: str, tmp_path: Path) -> None:
    (result,) = await ingest.latency(tiny_config(kafka_bootstrap, tmp_path), [20.0],
                                     duration_s=3.0, grace_s=40.0, warm_offers=30)

    assert result.published > 0 and result.cases > 0
    assert result.proposed + result.unmatched + result.lost == result.cases
    assert result.proposed + result.unmatched > 0
    assert result.p50_s is not None and result.max_s is not None
    assert 0 < result.p50_s <= result.max_s
    assert result.malformed_outcomes == 0
    assert "| 20 / " in ingest.latency_table([result])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert ingest.percentile(values, 0.50) == 50.0
    assert ingest.percentile(values, 0.99) == 99.0
    assert ingest.percentile([], 0.5) is None
