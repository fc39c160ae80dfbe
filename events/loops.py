"""The engine's background loops: relaying the outbox, matching changed shards, sweeping
pending proposals, the nightly rebalance, and refreshing the operators' gauges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime

from sqlalchemy import Engine

from events.bootstrap import Services
from events.handlers import consumer_groups
from events.lag import lag_by_topic
from events.publishers import Publishers
from matcher.observability import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    OLDEST_PENDING_AGE,
    OUTBOX_BACKLOG,
    PENDING_PROPOSALS,
    PENDING_SHARDS,
    PROPOSALS,
    UNMATCHED_ITEMS,
)
from matcher.services.rebalancing import rebalance_nightly
from matcher.storage.operator_figures import operator_figures

log = logging.getLogger("matcher.events")

RELAY_BATCH = 500
LOOP_TICK_S = 0.1
# Under a flood of events, matching takes at most about a quarter of the process's time, so
# ingest keeps up; on a quiet day a batch is short and its rest with it. A rest never delays
# the next proposals by more than MAX_REST_S.
REST_FACTOR = 3.0
MAX_REST_S = 2.0
# Operators read these gauges on dashboards refreshed every few tens of seconds.
GAUGE_INTERVAL_S = 15.0


async def relay_outbox(services: Services, publishers: Publishers) -> None:
    """Publish committed outgoing events in batches, then mark them published (at-least-once)."""
    engine, wake = services.engine, services.wake_relay
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=1.0)
        wake.clear()
        try:
            while rows := await asyncio.to_thread(engine.unpublished, RELAY_BATCH):
                OUTBOX_BACKLOG.set(len(rows))
                await publishers.send(rows)
                await asyncio.to_thread(engine.mark_published, [r.seq for r in rows])
                log.debug("outbox relayed", extra={"events": len(rows)})
            OUTBOX_BACKLOG.set(0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbox relay failed; retrying")
            await asyncio.sleep(1.0)


async def match_continuously(services: Services) -> None:
    """Every shard that changed is matched once its batch window has passed; while ingest is
    behind (more than a full poll waiting), also only once it has rested REST_FACTOR times as
    long as its last batch took, so a burst of events is not starved by matching. When ingest
    keeps up, a shard is matched as soon as its window has passed: its proposals come sooner."""
    engine, ownership = services.engine, services.ownership
    rest_until: dict[str, float] = {}
    while True:
        await asyncio.sleep(LOOP_TICK_S)
        PENDING_SHARDS.set(engine.pending_shards())
        now = time.monotonic()
        resting = ({shard for shard, until in rest_until.items() if now < until}
                   if services.polls.behind() else set())
        for shard in engine.due_shards(services.settings.batch_window_s, resting=resting):
            if not ownership.owns(shard):
                continue  # another instance owns it and heard of the change too
            try:
                report = await asyncio.to_thread(engine.match_shard, shard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("matching batch failed", extra={"shard": shard})
                engine.mark_dirty({shard})
                await asyncio.sleep(1.0)
                continue
            rest_until[shard] = time.monotonic() + min(REST_FACTOR * report.total_s,
                                                       MAX_REST_S)
            BATCH_SECONDS.labels(shard=shard).observe(report.total_s)
            PROPOSALS.labels(shard=shard).inc(report.proposals)
            log.info("matching batch done", extra=report.__dict__)
            services.wake_relay.set()


def refresh_figures(db: Engine, now: datetime) -> None:
    """Set the pending-proposal and unmatched-item gauges from the database (read-only)."""
    with db.connect() as conn:
        figures = operator_figures(conn, now)
    PENDING_PROPOSALS.set(figures.pending_proposals)
    OLDEST_PENDING_AGE.set(figures.oldest_pending_age_s)
    UNMATCHED_ITEMS.set(figures.unmatched_items)


async def refresh_figures_forever(services: Services) -> None:
    """Refresh the database-derived gauges every GAUGE_INTERVAL_S."""
    while True:
        try:
            await asyncio.to_thread(refresh_figures, services.db, services.engine.clock())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("operator gauges not refreshed", exc_info=True)
        await asyncio.sleep(GAUGE_INTERVAL_S)


async def measure_lag_forever(services: Services) -> None:
    """Set the consumer lag of every input topic every GAUGE_INTERVAL_S."""
    settings = services.settings
    groups = consumer_groups(settings.consumer_group, services.topics)
    while True:
        try:
            for topic, lag in (await lag_by_topic(services.kafka, groups)).items():
                CONSUMER_LAG.labels(topic=topic).set(lag)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("consumer lag not measured", exc_info=True)
        await asyncio.sleep(GAUGE_INTERVAL_S)


def start_loops(services: Services, publishers: Publishers) -> list[asyncio.Task[None]]:
    """Start every background loop of a running engine."""
    tasks = [
        asyncio.create_task(relay_outbox(services, publishers), name="relay_outbox"),
        asyncio.create_task(match_continuously(services), name="match_continuously"),
        asyncio.create_task(services.desk.sweep_forever(services.wake_relay.set),
                            name="sweep_pending"),
        asyncio.create_task(refresh_figures_forever(services), name="refresh_figures"),
        asyncio.create_task(measure_lag_forever(services), name="measure_lag"),
    ]
    if services.settings.rebalance_enabled:
        tasks.append(asyncio.create_task(
            rebalance_nightly(services.engine, services.settings, services.wake_relay.set),
            name="rebalance_nightly"))
    return tasks


async def stop_loops(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the loops and wait until each has stopped."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
