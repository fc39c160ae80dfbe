"""The partner guide's shell examples, run as written with the real kcat on the secured broker:
the operator adds the partner, the partner publishes an offer on its own topic, the case
system publishes a fitting case, and the engine proposes a match."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from events.app import build_app
from matcher.kafka_principals import CASES, apply_grants, cases_grants, create_topics
from matcher.runner import running
from matcher.settings import PROJECT_ROOT
from matcher.simulator import build_district, registry_events
from matcher.simulator.publish import publish_events
from matcher.storage.store import unit_of_work
from schemas.topics import Topics
from tests.conftest import ENV
from tests.kafka_helpers import client, engine_settings, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

GUIDE = PROJECT_ROOT / "docs" / "partner-guide.md"
DEMO_SEED = 7


def guide_commands() -> list[str]:
    """The operator's `matcher partners add` line, then section 4's first shell block."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    add = next(line for block in blocks for line in block.splitlines()
               if line.startswith("matcher partners add"))
    section = text[text.index("## 4. Publishing with kcat"):]
    first = re.search(r"```sh\n(.*?)```", section, re.S)
    assert first
    publish = [line for line in first.group(1).splitlines()
               if line.strip() and not line.startswith("#")]
    return [add, *publish]


def kcat_or_skip() -> None:
    if shutil.which("kcat") is None:
        if ENV.ci:
            pytest.fail("kcat is not installed (scripts/test installs it from Debian)")
        pytest.skip("kcat is not installed (apt-get install kcat)")


async def test_the_guides_kcat_examples_produce_a_proposal(kafka_bootstrap: str,
                                                           tmp_path: Path) -> None:
    kcat_or_skip()
    admin = client(kafka_bootstrap)
    if not admin.uses_sasl or not os.environ.get("MATCHER_KAFKA_CLIENT_CONFIG"):
        pytest.skip("the broker of this run is not secured")
    settings = engine_settings(kafka_bootstrap, tmp_path, kafka_metadata_max_age_ms=1000)
    topics = Topics(settings.topic_prefix)
    create_topics(admin, topics.all, 3)
    # The guide's case line uses the local broker's `cases` principal, granted per prefix.
    apply_grants(admin, cases_grants(topics, principal=CASES))
    broker_home = Path(os.environ["MATCHER_KAFKA_CLIENT_CONFIG"]).parent
    workdir = tmp_path / "partner"
    workdir.mkdir()
    (workdir / ".kafka").symlink_to(broker_home)
    registry = registry_events(build_district(seed=DEMO_SEED),
                               datetime.now(UTC) - timedelta(hours=1))
    app = build_app(settings)

    def registered() -> bool:
        with unit_of_work(app.engine.db) as store:
            return store.count("audit_log") >= len(registry)

    def proposed() -> int:
        with unit_of_work(app.engine.db) as store:
            return store.count("proposals")

    # scripts/bin/kcat runs Debian's kcat on a librdkafka recent enough for Kafka 4's SCRAM.
    path = f"{PROJECT_ROOT / 'scripts' / 'bin'}:{Path(sys.executable).parent}"
    env = {**os.environ, "PATH": f"{path}:{os.environ['PATH']}",
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MATCHER_TOPIC_PREFIX": settings.topic_prefix}
    async with running(app):
        await publish_events(admin, topics, registry)
        await wait_for(registered, timeout_s=120, what="the demo district registered")
        for command in guide_commands():
            as_written = command.replace("charity.", f"{settings.topic_prefix}.")
            done = subprocess.run(["bash", "-c", as_written], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, f"{as_written}\n{done.stdout}\n{done.stderr}"
        assert (workdir / "partner-030.properties").stat().st_mode & 0o077 == 0
        await wait_for(lambda: proposed() > 0, timeout_s=90, what="a proposal")
    with unit_of_work(app.engine.db) as store:
        [partner] = {row.partner_id for row in store.proposals_where()}
    assert partner == "partner-030"
