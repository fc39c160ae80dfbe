"""`matcher replay`: a shadow run of a recorded stream on a simulated clock.

A district tries a new configuration on yesterday's events before switching. Each input line
is what a topic carried, `{"at", "topic", "key", "value"}`; the replay drives the engine as the
service does, on a throw-away SQLite database, with a clock that jumps from one moment to the
next instead of waiting:

- events are validated as the Kafka edge validates them and applied with `ingest_batch`
  (refusals become dead letters);
- a changed shard is matched once its batch window has passed (`match_shard`);
- pending proposals are swept every `sweep_interval_s`, and the nightly rebalance runs at
  `rebalance_at` local time (`rebalance`);
- a synthetic coordinator approves a share of the proposals some minutes after they are made
  and rejects the others with a reason, as `match.decided` events; with `fulfil`, offering
  partners report approved matches fulfilled at the end of their window.

Everything the engine would publish is written to `outputs.jsonl`, with the simulated moment.
"""

from __future__ import annotations

import heapq
import json
import random
import secrets
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select

from matcher.services.coordinators import add_coordinator
from matcher.services.desk import Desk
from matcher.services.engine import Incoming, MatchingEngine, Refused
from matcher.services.matching import MatchingConfig
from matcher.services.rebalancing import next_run_at, options_from, rebalance
from matcher.settings import Settings
from matcher.storage.coordination import escalations
from matcher.storage.database import migrate, open_engine
from matcher.storage.store import unit_of_work
from matcher.storage.tables import nodes, proposals
from schemas.common import Level
from schemas.matches import FulfilmentEvent, MatchDecided, MatchFulfilled
from schemas.needs import NeedEvent
from schemas.offers import OfferEvent
from schemas.registry import RegistryEvent
from schemas.topics import Topics

TOPIC_EVENTS: dict[str, TypeAdapter[Any]] = {
    "registry": TypeAdapter(RegistryEvent), "offers": TypeAdapter(OfferEvent),
    "needs": TypeAdapter(NeedEvent), "decisions": TypeAdapter(MatchDecided),
    "fulfilments": TypeAdapter(FulfilmentEvent),
}
COORDINATOR = "replay-coordinator"
REJECTION = "not approved in this replay (synthetic coordinator)"
# After the last input the replay goes on this long, so decisions, fulfilments and sweeps
# due soon after it still happen.
TAIL = timedelta(hours=24)
Progress = Callable[[int, int], None]


class ReplayError(ValueError):
    """An input line that is not a recorded record (not the record's payload: that is refused
    by the engine like any bad event)."""


@dataclass(frozen=True)
class ReplayOptions:
    """How the synthetic coordinator and partners behave."""

    approve_share: float = 0.8
    approve_delay_min: float = 30.0
    fulfil: bool = False
    seed: int = 7


@dataclass(frozen=True)
class Line:
    """One recorded record."""

    at: datetime
    topic: str
    key: str | None
    value: Any
    number: int


@dataclass
class ReplaySummary:
    """What the replay did, for the closing table."""

    lines: int = 0
    applied: int = 0
    decisions: int = 0
    fulfilments: int = 0
    duplicates: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    published: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    sweeps: int = 0
    rebalances: int = 0
    seconds: float = 0.0
    first: datetime | None = None
    last: datetime | None = None


# --- reading the stream ----------------------------------------------------------------------


def read_lines(path: Path) -> list[Line]:
    """Every line of a recorded stream, in time order (ties keep the file's order)."""
    lines: list[Line] = []
    with path.open(encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            if text.strip():
                lines.append(_line(text, number))
    lines.sort(key=lambda line: (line.at, line.number))
    return lines


def _line(text: str, number: int) -> Line:
    """One record: `at` defaults to the value's occurred_at."""
    try:
        record = json.loads(text)
    except ValueError as error:
        raise ReplayError(f"line {number}: not JSON ({error})") from error
    if not isinstance(record, dict) or "topic" not in record or "value" not in record:
        raise ReplayError(f"line {number}: needs 'topic' and 'value'")
    if record["topic"] not in TOPIC_EVENTS:
        raise ReplayError(f"line {number}: topic must be one of {', '.join(TOPIC_EVENTS)}, "
                          f"not {record['topic']!r}")
    at = record.get("at") or (record["value"] or {}).get("occurred_at")
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError as error:
        raise ReplayError(f"line {number}: 'at' (or the value's occurred_at) is not an "
                          "ISO-8601 time") from error
    if moment.tzinfo is None:
        raise ReplayError(f"line {number}: 'at' needs an offset")
    return Line(at=moment, topic=record["topic"], key=record.get("key"),
                value=record["value"], number=number)


def write_stream(path: Path, records: Iterator[tuple[datetime, str, str | None, Any]]) -> int:
    """Write records as a replayable stream; how many."""
    count = 0
    with path.open("w", encoding="utf-8") as file:
        for at, topic, key, value in records:
            file.write(json.dumps({"at": at.isoformat(), "topic": topic, "key": key,
                                   "value": value}, ensure_ascii=False) + "\n")
            count += 1
    return count


# --- the run ---------------------------------------------------------------------------------


class SimulatedClock:
    """The engine's clock: the moment the replay has reached."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, to: datetime) -> None:
        self.now = max(self.now, to)


class Replay:
    """One replay of a stream into a fresh engine."""

    def __init__(self, settings: Settings, options: ReplayOptions, out_dir: Path,
                 database_dir: Path) -> None:
        self.settings = settings
        self.options = options
        self.rng = random.Random(options.seed)
        self.topics = Topics(settings.topic_prefix)
        self.clock = SimulatedClock(datetime.fromtimestamp(0).astimezone())
        db = open_engine(f"sqlite:///{database_dir / 'replay.db'}")
        migrate(db)
        self.engine = MatchingEngine(
            db=db, topics=self.topics, shard_level=Level(settings.shard_level),
            matching=MatchingConfig.from_settings(settings, self.topics),
            clock=self.clock)
        self.desk = Desk(engine=self.engine, settings=settings)
        self.out_dir = out_dir
        self.summary = ReplaySummary()
        self._agenda: list[tuple[datetime, int, str, Any]] = []
        self._sequence = 0
        self._match_due: datetime | None = None
        # Before this moment no pending proposal can be due for escalation or expiry.
        self._sweep_not_before = datetime.min.replace(tzinfo=UTC)
        self._coordinator: str | None = None

    # -- the agenda: what happens at which simulated moment

    def _plan(self, at: datetime, action: str, detail: Any = None) -> None:
        self._sequence += 1
        heapq.heappush(self._agenda, (at, self._sequence, action, detail))

    def _run_until(self, moment: datetime, outputs: IO[str]) -> None:
        """Everything due up to `moment`, in time order."""
        while True:
            next_match = self._match_due
            next_planned = self._agenda[0][0] if self._agenda else None
            candidates = [t for t in (next_match, next_planned) if t is not None and t <= moment]
            if not candidates:
                break
            at = min(candidates)
            self.clock.advance(at)
            if next_match is not None and at == next_match:
                self._match(outputs)
                continue
            _, _, action, detail = heapq.heappop(self._agenda)
            getattr(self, f"_do_{action}")(detail, outputs)
        self.clock.advance(moment)

    # -- what the service does

    def _ingest(self, batch: list[tuple[Line, Any]], outputs: IO[str], *,
                synthetic: bool = False) -> None:
        """Apply events that arrived together, as one poll."""
        outcomes = self.engine.ingest_batch([Incoming(event, f"{self.topics.prefix}."
                                                      f"{line.topic}") for line, event in batch])
        for (line, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Refused):
                self._dead_letter(line, outcome.error.code, outcome.error.reason, outputs)
            elif outcome.duplicate:
                self.summary.duplicates += 1
            elif not synthetic:
                self.summary.applied += 1
        self._after_change(outputs)

    def _after_change(self, outputs: IO[str]) -> None:
        """Publish what was queued; a changed shard is matched after the batch window."""
        self._drain(outputs)
        if self.engine.pending_shards() and self._match_due is None:
            self._match_due = self.clock.now + timedelta(seconds=self.settings.batch_window_s)

    def _match(self, outputs: IO[str]) -> None:
        """The matching batch of every changed shard."""
        self._match_due = None
        for shard in self.engine.due_shards(0.0):
            self.engine.match_shard(shard)
            self.summary.batches += 1
        self._after_change(outputs)

    def _do_sweep(self, _: Any, outputs: IO[str]) -> None:
        if self.clock.now >= self._sweep_not_before and self._sweep_could_act():
            self.desk.sweep()
            self.summary.sweeps += 1
            self._after_change(outputs)
        self._plan(self.clock.now + timedelta(seconds=self.settings.sweep_interval_s), "sweep")

    def _sweep_could_act(self) -> bool:
        """Whether any pending proposal is old enough to escalate or expire now. A sweep with
        nothing due changes nothing, so skipping it keeps the run identical, only faster."""
        pending = proposals.c.status == "proposed"
        with unit_of_work(self.engine.db) as store:
            oldest = store.conn.execute(select(func.min(proposals.c.created_at))
                                        .where(pending)).scalar()
            oldest_unescalated = store.conn.execute(
                select(func.min(proposals.c.created_at)).where(
                    pending, proposals.c.proposal_id.not_in(select(escalations.c.proposal_id)))
            ).scalar()
        now = self.clock.now
        expire = timedelta(seconds=self.settings.proposal_expire_after_s)
        escalate = timedelta(seconds=self.settings.proposal_escalate_after_s)
        due = [moment for moment in (oldest and _utc(oldest) + expire,
                                     oldest_unescalated and _utc(oldest_unescalated) + escalate)
               if moment is not None]
        # Proposals made later fall due later, and deciding or escalating one only moves the
        # oldest forward: until the earliest due moment no sweep can act, so none asks again.
        self._sweep_not_before = min(due, default=now + timedelta(
            seconds=min(self.settings.proposal_expire_after_s,
                        self.settings.proposal_escalate_after_s)))
        return bool(due) and self._sweep_not_before <= now

    def _do_nightly(self, _: Any, outputs: IO[str]) -> None:
        options = options_from(self.settings, self.engine, trigger="nightly",
                               requested_by="scheduler")
        rebalance(self.engine, options)
        self.summary.rebalances += 1
        self._after_change(outputs)
        self._plan(next_run_at(self.clock.now + timedelta(minutes=1), self.settings.rebalance_at,
                               self.settings.rebalance_timezone), "nightly")

    # -- the synthetic coordinator and partners

    def _do_decide(self, detail: tuple[str, bool], outputs: IO[str]) -> None:
        proposal_id, approve = detail
        coordinator = self._coordinator_id()
        with unit_of_work(self.engine.db) as store:
            proposal = store.proposal(proposal_id)
        if coordinator is None or proposal is None or proposal.status != "proposed":
            return  # revoked or expired meanwhile: no longer in anyone's queue
        event = MatchDecided.model_validate({
            "event_id": str(uuid.uuid4()), "occurred_at": self.clock.now.isoformat(),
            "producer": coordinator, "payload": {
                "proposal_id": proposal_id, "decision": "approve" if approve else "reject",
                "coordinator_id": coordinator, "reason": "" if approve else REJECTION}})
        self.summary.decisions += 1
        self._apply_own(event, "decisions", outputs)

    def _do_fulfil(self, detail: tuple[str, str, float], outputs: IO[str]) -> None:
        proposal_id, partner_id, amount = detail
        with unit_of_work(self.engine.db) as store:
            proposal = store.proposal(proposal_id)
        if proposal is None or proposal.status != "approved":
            return  # released meanwhile: the partner was told (match.revoked) and stood down
        event = MatchFulfilled.model_validate({
            "event_id": str(uuid.uuid4()), "occurred_at": self.clock.now.isoformat(),
            "producer": partner_id, "payload": {"proposal_id": proposal_id,
                                                "outcome": "fulfilled", "delivered": amount,
                                                "note": ""}})
        self.summary.fulfilments += 1
        self._apply_own(event, "fulfilments", outputs)

    def _apply_own(self, event: Any, topic: str, outputs: IO[str]) -> None:
        """A synthetic event through the same ingest as a recorded one."""
        line = Line(at=self.clock.now, topic=topic, key=None,
                    value=json.loads(event.model_dump_json()), number=0)
        self._ingest([(line, event)], outputs, synthetic=True)

    def _coordinator_id(self) -> str | None:
        """A coordinator at the root of the hierarchy, made the first time one is needed."""
        if self._coordinator is None:
            with unit_of_work(self.engine.db) as store:
                root = store.conn.execute(select(nodes.c.node_id)
                                          .where(nodes.c.parent_id.is_(None))).scalar()
                if root is None:
                    return None
                add_coordinator(store, username=COORDINATOR, display_name="Replay",
                                node_id=root, password=secrets.token_urlsafe(16),
                                clock=self.clock)
            self._coordinator = COORDINATOR
        return self._coordinator

    # -- outputs

    def _drain(self, outputs: IO[str]) -> None:
        """Write what the engine queued for the broker, and react as the world would."""
        while rows := self.engine.unpublished(1000):
            for row in rows:
                if row.topic == self.topics.shard_changes:
                    continue  # internal: tells other instances, not the world
                value = json.loads(row.value)
                self._write(outputs, row.topic, row.key, value)
                self.summary.published[row.event_type] += 1
                self._react(row.event_type, value.get("payload", {}))
            self.engine.mark_published([row.seq for row in rows])

    def _react(self, event_type: str, payload: dict[str, Any]) -> None:
        """The synthetic coordinator's and partners' answers to what was published."""
        if event_type == "match.proposed":
            approve = self.rng.random() < self.options.approve_share
            delay = timedelta(minutes=self.options.approve_delay_min)
            self._plan(self.clock.now + delay, "decide", (payload["proposal_id"], approve))
        elif event_type == "match.approved" and self.options.fulfil:
            window = payload.get("window") or {}
            end = datetime.fromisoformat(window["end"]) if window.get("end") else \
                self.clock.now + timedelta(hours=1)
            self._plan(max(end, self.clock.now), "fulfil",
                       (payload["proposal_id"], payload["partner_id"],
                        float(payload["amount"])))

    def _dead_letter(self, line: Line, code: str, reason: str, outputs: IO[str]) -> None:
        self.summary.refused[code] += 1
        self._write(outputs, self.topics.dead_letter, line.key, line.value,
                    reason_code=code, reason=reason)

    def _write(self, outputs: IO[str], topic: str, key: str | None, value: Any,
               **extra: str) -> None:
        outputs.write(json.dumps({"at": self.clock.now.isoformat(), "topic": topic,
                                  "key": key, "value": value, **extra},
                                 ensure_ascii=False) + "\n")

    # -- the whole stream

    def run(self, lines: list[Line], progress: Progress = lambda done, total: None
            ) -> ReplaySummary:
        """Replay every line; returns the summary (outputs are in out_dir/outputs.jsonl)."""
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / "outputs.jsonl").open("w", encoding="utf-8") as outputs:
            if lines:
                self.clock.now = lines[0].at
                self.summary.first, self.summary.last = lines[0].at, lines[-1].at
                self._plan(lines[0].at + timedelta(seconds=self.settings.sweep_interval_s),
                           "sweep")
                self._plan(next_run_at(lines[0].at, self.settings.rebalance_at,
                                       self.settings.rebalance_timezone), "nightly")
            index = 0
            while index < len(lines):
                moment = lines[index].at
                self._run_until(moment, outputs)
                batch: list[tuple[Line, Any]] = []
                while index < len(lines) and lines[index].at == moment:
                    line = lines[index]
                    event = self._validated(line, outputs)
                    if event is not None:
                        batch.append((line, event))
                    index += 1
                if batch:
                    self._ingest(batch, outputs)
                progress(index, len(lines))
            if lines:
                self._run_until(lines[-1].at + TAIL, outputs)
        self.summary.lines = len(lines)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _validated(self, line: Line, outputs: IO[str]) -> Any | None:
        """The event of a line, validated as the Kafka edge does; None when refused."""
        raw = json.dumps(line.value, ensure_ascii=False).encode()
        try:
            return TOPIC_EVENTS[line.topic].validate_json(raw)
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            self._dead_letter(line, "schema_violation", f"{where}: {first['msg']}", outputs)
            return None


def _utc(moment: datetime) -> datetime:
    """A stored moment, aware (SQLite hands back naive UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def replay_file(events: Path, out_dir: Path, settings: Settings, options: ReplayOptions,
                progress: Progress = lambda done, total: None) -> ReplaySummary:
    """Replay a recorded stream into a throw-away database; outputs go to out_dir."""
    lines = read_lines(events)
    run_settings = settings.model_copy(update={"rebalance_report_dir": out_dir / "rebalance"})
    with tempfile.TemporaryDirectory(prefix="matcher-replay-") as database_dir:
        return Replay(run_settings, options, out_dir, Path(database_dir)).run(lines, progress)
