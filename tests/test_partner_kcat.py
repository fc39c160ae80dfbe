"""The partner guide's shell examples, run as written with the real kcat and curl on the
secured broker: the operator adds the partner, the partner publishes an offer on its own topic,
the case system publishes a fitting case, the engine proposes a match; and the same offer sent
over HTTP lands on the partner's topic and is applied."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from events.app import build_app
from matcher.kafka_principals import CASES, apply_grants, cases_grants
from matcher.localkafka import ensure_topics
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


def first_block(text: str, heading: str) -> list[str]:
    """The commands of the first shell block after a heading (comments left out)."""
    block = re.search(r"```sh\n(.*?)```", text[text.index(heading):], re.S)
    assert block, heading
    return [line for line in block.group(1).splitlines()
            if line.strip() and not line.startswith("#")]


def guide_commands() -> tuple[list[str], list[str]]:
    """The operator's `matcher partners add` line and section 4's first shell block; then
    section 5's HTTP call."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    add = next(line for block in blocks for line in block.splitlines()
               if line.startswith("matcher partners add"))
    kafka = [add, *first_block(text, "## 4. Publishing with kcat")]
    return kafka, first_block(text, "## 5. Without a Kafka client")


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
    ensure_topics(admin, topics.all, 3)
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

    def offer_owner(offer_id: str) -> str | None:
        with unit_of_work(app.engine.db) as store:
            row = store.offer(offer_id)
            return None if row is None else row.partner_id

    def proposed() -> int:
        with unit_of_work(app.engine.db) as store:
            return store.count("proposals")

    # scripts/bin/kcat runs Debian's kcat on a librdkafka recent enough for Kafka 4's SCRAM.
    path = f"{PROJECT_ROOT / 'scripts' / 'bin'}:{Path(sys.executable).parent}"
    env = {**os.environ, "PATH": f"{path}:{os.environ['PATH']}",
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "MATCHER_TOPIC_PREFIX": settings.topic_prefix,
           "MATCHER_DATABASE_URL": settings.database_url}
    kafka_lines, http_lines = guide_commands()

    async def run(command: str) -> str:
        """The command in bash, without blocking the loop the engine (and its HTTP) runs on."""
        as_written = (command.replace("charity.", f"{settings.topic_prefix}.")
                      .replace("http://127.0.0.1:8080",
                               f"http://{settings.http_host}:{settings.http_port}"))
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", as_written, cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, f"{as_written}\n{out.decode()}\n{err.decode()}"
        return out.decode()
    async with running(app):
        await publish_events(admin, topics, registry)
        await wait_for(registered, timeout_s=120, what="the demo district registered")
        for command in kafka_lines:
            await run(command)
        for secret in ("partner-030.properties", "partner-030.key"):
            assert (workdir / secret).stat().st_mode & 0o077 == 0
        await wait_for(lambda: proposed() > 0, timeout_s=90, what="a proposal")
        [http_line] = http_lines
        accepted = json.loads(await run(http_line))
        assert accepted["topic"] == topics.offers_of("partner-030")
        await wait_for(lambda: offer_owner(accepted["key"]) == "partner-030",
                       what="the HTTP offer applied")
    with unit_of_work(app.engine.db) as store:
        [partner] = {row.partner_id for row in store.proposals_where()}
    assert partner == "partner-030"
