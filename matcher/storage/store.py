"""The repository: every read and write of durable state, inside one transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Result,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import case as sql_case

from matcher.storage.tables import (
    UtcDateTime,
    audit_log,
    cases,
    need_items,
    nodes,
    offers,
    outbox,
    partners,
    proposals,
    write_revision,
)
from schemas.matches import ProposalStatus

# What matching reads of a beneficiary (see `frames.build_demand`).
MATCHED_BENEFICIARY = ("pseudonym", "group", "vulnerability", "location")
# Proposals in these states hold capacity of the offer and serve demand of the item.
HOLDING = (ProposalStatus.PROPOSED, ProposalStatus.APPROVED, ProposalStatus.FULFILLED)


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    level: str
    parent_id: str | None
    name: str
    path: str
    lat: float | None
    lon: float | None
    reach: dict[str, Any] | None = None  # default reach of offers based in the subtree


@dataclass(frozen=True)
class OfferRow:
    offer_id: str
    partner_id: str
    kind: str
    version: int
    status: str
    shard: str
    payload: dict[str, Any]


class GivenVisit(NamedTuple):
    """A volunteer visit that holds: whose, on which offer, when it starts (epoch seconds),
    and how many hours it takes."""

    volunteer_id: str
    offer_id: str
    start: float
    hours: float


def hours_given(visits: Iterable[GivenVisit]) -> list[tuple[str, float, float]]:
    """(volunteer, start, hours) of each visit, as `weeks.hours_by_week` counts them."""
    return [(visit.volunteer_id, visit.start, visit.hours) for visit in visits]


# How long a shard's batches go on reading only what was written since, from one whole read.
WHOLE_READ_EVERY = timedelta(hours=1)


@dataclass
class LiveRows:
    """A shard's live item and offer rows as its last batch read them.

    Every write of an offer or an item (or its case) takes a revision (`tables.write_revision`),
    so the next batch reads only the rows written since, and drops from the rest what time
    took out of play: items past their deadline, offers over. Once an hour everything is read
    again; the rows do not need it, it bounds the harm of a writer that forgot a revision.
    """

    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    items_revision: int = -1
    # Each offer with the moment it stops being live.
    offers: dict[str, tuple[datetime | None, OfferRow]] = field(default_factory=dict)
    offers_revision: int = -1
    # (volunteer, weekly hour limit) of the other offers giving this week's hours.
    limits: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)
    limits_revision: int = -1
    # Items opened in the window a forecast repeats, as last read (see `items_opened_between`).
    opened: OpenedWindow | None = None
    read_whole_at: datetime | None = None

    def read_whole_if_due(self, now: datetime) -> None:
        """Forget what was read, once an hour, so that the next reads are whole."""
        if self.read_whole_at is None or now - self.read_whole_at >= WHOLE_READ_EVERY:
            self.items_revision = self.offers_revision = self.limits_revision = -1
            self.opened = None
            self.read_whole_at = now


@dataclass
class OpenedWindow:
    """Items opened in [start, end) at least `min_urgency` urgent, by (case, item)."""

    start: datetime
    end: datetime
    min_urgency: int
    rows: dict[tuple[str, str], dict[str, Any]]


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    grid_id: str
    shard: str
    version: int
    status: str
    beneficiary: dict[str, Any]
    opened_at: datetime


@dataclass(frozen=True)
class ProposalRow:
    proposal_id: str
    case_id: str
    item_id: str
    offer_id: str
    slot: int | None
    partner_id: str
    kind: str
    amount: float
    unit: str
    status: str
    shard: str
    grid_id: str
    score: float
    explanation: dict[str, Any]
    created_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    decided_by: str | None
    decision_reason: str | None
    volunteer_id: str | None = None  # the person a volunteer visit sends
    decided_at: datetime | None = None


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    topic: str
    key: str
    value: str
    event_id: str
    event_type: str


def _columns(table: Table, row_type: type[Any]) -> list[Any]:
    """The table's columns that a row dataclass holds, in its field order."""
    return [table.c[name] for name in row_type.__dataclass_fields__]


# Statements on the hot path of ingest are built once, with bound parameters: building and
# cache-keying a fresh statement per event costs more than running it.


@cache
def _key_match(table: Table, key: tuple[str, ...]) -> Any:
    """WHERE key columns equal the bound parameters k_<column>."""
    return and_(*(table.c[name] == bindparam(f"k_{name}") for name in key))


@cache
def _select_key(table: Table, key: tuple[str, ...]) -> Any:
    return select(*(table.c[name] for name in key)).where(_key_match(table, key))


@cache
def _update_by_key(table: Table, key: tuple[str, ...]) -> Any:
    return update(table).where(_key_match(table, key))


@cache
def _select_row(table: Table, key: tuple[str, ...], row_type: type[Any]) -> Any:
    return select(*_columns(table, row_type)).where(_key_match(table, key))


_SEEN = select(audit_log.c.event_id).where(audit_log.c.event_id.in_(bindparam("ids",
                                                                               expanding=True)))
_PARTNER_HOME = select(partners.c.home_node_id).where(
    partners.c.partner_id == bindparam("k_partner_id"))
_CLOSE_ITEMS = update(need_items).where(need_items.c.case_id == bindparam("k_case_id")).values(
    status="closed", revision=bindparam("k_revision"))


class Store:
    """Typed access to the tables through one open connection (one transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.conn = connection
        # Read-through caches for the transaction's life: nodes, and event ids known seen.
        self._nodes: dict[str, NodeRow | None] = {}
        self._seen: dict[str, bool] = {}
        self._audit: list[dict[str, Any]] = []  # written in one statement by `flush`
        self._absent: dict[str, set[str]] = {"offers": set(), "cases": set()}
        self._partners: dict[str, str | None] = {}
        # New offers and cases are inserted together by `flush` (see `hold_back_inserts`).
        self._new_offers: dict[str, dict[str, Any]] = {}
        self._new_cases: dict[str, dict[str, Any]] = {}
        self._new_items: list[dict[str, Any]] = []

    def _upsert(self, table: Table, key: dict[str, Any], values: dict[str, Any],
                on_create: dict[str, Any] | None = None) -> bool:
        """Update the row with this key, or insert it (with `on_create` too); True if new."""
        names = tuple(key)
        bound = {f"k_{name}": value for name, value in key.items()}
        if self.conn.execute(_select_key(table, names), bound).first():
            self.conn.execute(_update_by_key(table, names), {**bound, **values})
            return False
        self.conn.execute(insert(table), {**key, **values, **(on_create or {})})
        return True

    # --- idempotency and audit -------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        """Whether an event with this id was applied before."""
        if event_id not in self._seen:
            self.look_up_seen([event_id])
        return self._seen[event_id]

    def look_up_seen(self, event_ids: Sequence[str]) -> None:
        """Find out at once which of these event ids were applied before (a poll's worth)."""
        fresh = [i for i in event_ids if i not in self._seen]
        for chunk in _chunks(fresh):
            self._seen.update(dict.fromkeys(chunk, False))
            self._seen.update(dict.fromkeys(
                self.conn.execute(_SEEN, {"ids": list(chunk)}).scalars(), True))

    def record_applied(
        self,
        *,
        event_id: str,
        event_type: str,
        topic: str,
        producer: str,
        occurred_at: datetime,
        applied_at: datetime,
        summary: str,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        """Append the event to the audit log (also marks its id as seen); the rows of a
        transaction are written together when it ends (`flush`)."""
        self._audit.append({
            "event_id": event_id, "event_type": event_type, "topic": topic,
            "partition": partition, "offset": offset, "producer": producer,
            "occurred_at": occurred_at, "applied_at": applied_at, "summary": summary})
        self._seen[event_id] = True

    def look_up_absent(self, *, offer_ids: Sequence[str] = (),
                       case_ids: Sequence[str] = ()) -> None:
        """Find out at once which of these offers and cases do not exist yet (a poll's new
        ones), so that checking each of them costs no query."""
        for kind, column, ids in (("offers", offers.c.offer_id, offer_ids),
                                  ("cases", cases.c.case_id, case_ids)):
            for chunk in _chunks(sorted(set(ids))):
                found = set(self.conn.execute(select(column).where(column.in_(chunk))).scalars())
                self._absent[kind].update(set(chunk) - found)

    def look_up_registry(self, *, node_ids: Iterable[str], partner_ids: Iterable[str]) -> None:
        """Read at once the nodes and partners a poll's events name, instead of one query
        per event (those not registered are remembered as absent)."""
        for chunk in _chunks(sorted(set(node_ids) - set(self._nodes))):
            found = {row.node_id: row for row in (NodeRow(*r) for r in self.conn.execute(
                select(*_columns(nodes, NodeRow)).where(nodes.c.node_id.in_(chunk))))}
            self._nodes.update({node_id: found.get(node_id) for node_id in chunk})
        for chunk in _chunks(sorted(set(partner_ids) - set(self._partners))):
            homes = dict(self.conn.execute(select(partners.c.partner_id, partners.c.home_node_id)
                                           .where(partners.c.partner_id.in_(chunk))).all())
            self._partners.update({partner_id: homes.get(partner_id) for partner_id in chunk})

    def flush(self) -> None:
        """Write what was held back, one statement per table: new offers, new cases and
        their items, audit rows. Call it before any statement that may read them directly."""
        if self._new_offers or self._new_items:
            revision = next_revision(self.conn)
            for row in [*self._new_offers.values(), *self._new_items]:
                row["revision"] = revision
        for table, rows in ((offers, list(self._new_offers.values())),
                            (cases, list(self._new_cases.values())),
                            (need_items, self._new_items), (audit_log, self._audit)):
            insert_many(self.conn, table, rows)
        self._new_offers, self._new_cases, self._new_items, self._audit = {}, {}, [], []

    # --- hierarchy and partners --------------------------------------------------------------

    def node(self, node_id: str) -> NodeRow | None:
        """The node with this id, if known."""
        if node_id not in self._nodes:
            row = self.conn.execute(_select_row(nodes, ("node_id",), NodeRow),
                                    {"k_node_id": node_id}).first()
            self._nodes[node_id] = NodeRow(**row._mapping) if row else None
        return self._nodes[node_id]

    def all_nodes(self) -> list[NodeRow]:
        """Every node of the hierarchy."""
        return [NodeRow(*r) for r in self.conn.execute(select(*_columns(nodes, NodeRow)))]

    def upsert_node(self, *, node_id: str, level: str, parent_id: str | None, name: str,
                    path: str, lat: float | None, lon: float | None,
                    reach: dict[str, Any] | None = None) -> None:
        """Create or replace a node."""
        self._upsert(nodes, {"node_id": node_id},
                     dict(level=level, parent_id=parent_id, name=name, path=path, lat=lat,
                          lon=lon, reach=reach))
        self._nodes.pop(node_id, None)

    def partner_home(self, partner_id: str) -> str | None:
        """Home node of a registered partner, or None if not registered."""
        if partner_id not in self._partners:
            self._partners[partner_id] = self.conn.execute(
                _PARTNER_HOME, {"k_partner_id": partner_id}).scalar_one_or_none()
        return self._partners[partner_id]

    def partner_name(self, partner_id: str) -> str | None:
        """Registry name of a partner, or None if not registered."""
        return self.conn.execute(select(partners.c.name)
                                 .where(partners.c.partner_id == partner_id)).scalar_one_or_none()

    def upsert_partner(self, *, partner_id: str, name: str, kind: str, home_node_id: str,
                       at: datetime, reach: dict[str, Any] | None = None) -> None:
        """Create or replace a partner."""
        self._upsert(partners, {"partner_id": partner_id},
                     dict(name=name, kind=kind, home_node_id=home_node_id, reach=reach),
                     on_create={"registered_at": at})
        self._partners.pop(partner_id, None)

    def partner_reaches(self) -> dict[str, dict[str, Any]]:
        """The default reach of every partner that states one."""
        return {partner_id: reach for partner_id, reach in self.conn.execute(
            select(partners.c.partner_id, partners.c.reach).where(partners.c.reach.is_not(None)))
            if reach}

    def count_partners(self) -> int:
        """How many partners are registered."""
        return int(self.conn.execute(select(func.count()).select_from(partners)).scalar_one())

    # --- offers --------------------------------------------------------------------------------

    def offer(self, offer_id: str) -> OfferRow | None:
        """The offer with this id, if known."""
        if offer_id in self._new_offers:
            return OfferRow(**{name: self._new_offers[offer_id][name]
                               for name in OfferRow.__dataclass_fields__})
        if offer_id in self._absent["offers"]:
            return None
        row = self.conn.execute(_select_row(offers, ("offer_id",), OfferRow),
                                {"k_offer_id": offer_id}).first()
        return OfferRow(**row._mapping) if row else None

    def save_offer(self, *, offer_id: str, partner_id: str, kind: str, version: int,
                   status: str, node_id: str, shard: str, capacity: float, unit: str,
                   expires_at: datetime | None, payload: dict[str, Any], at: datetime,
                   live_until: datetime | None = None, new: bool = False) -> None:
        """Create or replace an offer (`live_until`: when it stops being matchable; `new`:
        the caller knows it does not exist yet: it is inserted at `flush`)."""
        values = dict(partner_id=partner_id, kind=kind, version=version, status=status,
                      node_id=node_id, shard=shard, capacity=capacity, unit=unit,
                      expires_at=expires_at, payload=payload, updated_at=at,
                      live_until=live_until)
        self._absent["offers"].discard(offer_id)
        if new:
            self._new_offers[offer_id] = {"offer_id": offer_id, **values}
        else:
            self._upsert(offers, {"offer_id": offer_id},
                         {**values, "revision": next_revision(self.conn)})

    def withdraw_offer(self, offer_id: str, *, version: int, at: datetime) -> None:
        """Mark an offer withdrawn."""
        self.conn.execute(
            update(offers).where(offers.c.offer_id == offer_id)
            .values(status="withdrawn", version=version, updated_at=at,
                    revision=next_revision(self.conn))
        )

    def active_offers(self, shard: str | None = None, *, now: datetime | None = None,
                      cache: LiveRows | None = None) -> list[OfferRow]:
        """Active offers, of one shard or all; with `now`, only those still matchable; with a
        `cache`, only the offers written since its last read are read (see `LiveRows`)."""
        conditions = [offers.c.status == "active"]
        if shard is not None:
            conditions.append(offers.c.shard == shard)
        if now is not None:
            conditions.append(_live_offer(now))
        query = select(*_columns(offers, OfferRow)).where(*conditions)
        if cache is None:
            rows = self.conn.execute(query.order_by(offers.c.offer_id))
            return [OfferRow(*r) for r in rows]
        revision = self.current_revision()
        with_end = query.add_columns(offers.c.live_until)
        if cache.offers_revision < 0:
            cache.offers = {}
            fresh = self.conn.execute(with_end).all()
        else:
            changed = sorted(self.offers_written_since(cache.offers_revision))
            for offer_id in changed:
                cache.offers.pop(offer_id, None)
            fresh = [row for chunk in _chunks(changed) for row in self.conn.execute(
                with_end.where(offers.c.offer_id.in_(chunk)))]
            if now is not None:
                cache.offers = {offer_id: kept for offer_id, kept in cache.offers.items()
                                if kept[0] is None or kept[0] > now}
        cache.offers.update((row.offer_id, (row.live_until, OfferRow(*row[:-1])))
                            for row in fresh)
        cache.offers_revision = revision
        return [cache.offers[offer_id][1] for offer_id in sorted(cache.offers)]

    def partner_offers(self, partner_id: str, *, limit: int) -> list[OfferRow]:
        """A partner's offers, newest first (active and withdrawn)."""
        rows = self.conn.execute(
            select(*_columns(offers, OfferRow)).where(offers.c.partner_id == partner_id)
            .order_by(offers.c.updated_at.desc(), offers.c.offer_id).limit(limit))
        return [OfferRow(*r) for r in rows]

    # --- cases ---------------------------------------------------------------------------------

    def case(self, case_id: str) -> CaseRow | None:
        """The case with this id, if known."""
        if case_id in self._new_cases:
            return CaseRow(**{name: self._new_cases[case_id][name]
                              for name in CaseRow.__dataclass_fields__})
        if case_id in self._absent["cases"]:
            return None
        row = self.conn.execute(_select_row(cases, ("case_id",), CaseRow),
                                {"k_case_id": case_id}).first()
        return CaseRow(**row._mapping) if row else None

    def save_case(self, *, case_id: str, grid_id: str, shard: str, version: int,
                  beneficiary: dict[str, Any], items: Sequence[dict[str, Any]],
                  at: datetime, new: bool = False) -> None:
        """Create or replace a case and its items (items not listed any more are closed).

        `new`: the caller knows the case does not exist yet: it is inserted at `flush`.
        """
        values = dict(grid_id=grid_id, shard=shard, version=version, status="open",
                      beneficiary=beneficiary, pseudonym=beneficiary.get("pseudonym"),
                      updated_at=at)
        self._absent["cases"].discard(case_id)
        if new:
            self._new_cases[case_id] = {"case_id": case_id, **values, "opened_at": at}
            self._new_items.extend({**item, "case_id": case_id, "status": "open"}
                                   for item in items)
            return
        created = self._upsert(cases, {"case_id": case_id}, values, on_create={"opened_at": at})
        revision = next_revision(self.conn)  # the case's changes reach all of its items
        if not created:
            self.conn.execute(_CLOSE_ITEMS, {"k_case_id": case_id, "k_revision": revision})
        for item in items:
            self._upsert(need_items, {"case_id": case_id, "item_id": item["item_id"]},
                         {**{k: v for k, v in item.items() if k != "item_id"},
                          "status": "open", "revision": revision})

    def close_case(self, case_id: str, *, version: int, at: datetime) -> None:
        """Mark a case and all its items closed."""
        self.conn.execute(update(cases).where(cases.c.case_id == case_id)
                          .values(status="closed", version=version, updated_at=at))
        self.conn.execute(update(need_items).where(need_items.c.case_id == case_id)
                          .values(status="closed", revision=next_revision(self.conn)))

    def open_items(self, shard: str | None = None, *, now: datetime | None = None
                   ) -> list[dict[str, Any]]:
        """Open items of open cases with their case's grid, beneficiary and opening time;
        with `now`, only those whose deadline is still ahead (what can still be matched)."""
        query = (
            select(need_items, cases.c.grid_id, cases.c.shard, cases.c.beneficiary,
                   cases.c.opened_at, cases.c.version.label("case_version"))
            .join(cases, cases.c.case_id == need_items.c.case_id)
            .where(and_(need_items.c.status == "open", cases.c.status == "open"))
        )
        if shard is not None:
            query = query.where(cases.c.shard == shard)
        if now is not None:
            query = query.where(need_items.c.deadline > now)
        query = query.order_by(need_items.c.case_id, need_items.c.item_id)
        return _dicts(self.conn.execute(query))

    def live_items(self, shard: str, *, now: datetime, cache: LiveRows | None = None
                   ) -> list[dict[str, Any]]:
        """`open_items(shard, now=now)` as a batch reads it: each beneficiary holds only what
        matching reads of it (`MATCHED_BENEFICIARY`), decoded once per case and shared by its
        items (a district batch reads ~100k items; their sensitive attributes never enter
        it), and the item's status and case's shard, known here, are left out. With a
        `cache`, only the items written since its last read are read (see `LiveRows`)."""
        live = (need_items.c.status == "open", cases.c.status == "open",
                cases.c.shard == shard, need_items.c.deadline > now)
        query = _item_rows(*live)
        if cache is None:
            return self._decoded_items(query)
        revision = self.current_revision()
        if cache.items_revision < 0:
            cache.items = {}
            fresh = self._decoded_items(query)
        else:
            changed = self.conn.execute(select(need_items.c.case_id, need_items.c.item_id)
                                        .where(need_items.c.revision > cache.items_revision)
                                        ).all()
            for case_id, item_id in changed:
                cache.items.pop((case_id, item_id), None)
            fresh = [item for chunk in _chunks(sorted({case for case, _ in changed}))
                     for item in self._decoded_items(query.where(
                         need_items.c.case_id.in_(chunk)))]
            cache.items = {key: item for key, item in cache.items.items()
                           if item["deadline"] > now}
        cache.items.update(((item["case_id"], item["item_id"]), item) for item in fresh)
        cache.items_revision = revision
        return [cache.items[key] for key in sorted(cache.items)]

    def items_opened_between(self, shard: str, start: datetime, end: datetime, *,
                             min_urgency: int, cache: LiveRows | None = None
                             ) -> list[dict[str, Any]]:
        """Items of the shard's cases opened in [start, end) at least this urgent, whatever
        became of them, as `live_items` gives rows (a forecast repeats them).

        With a `cache`, a window that slid forward since the last read reads only the
        cases opened since its old end. The window is in the past, so its cases are all
        known; only an edit of one of them is missed, until the hourly whole read
        (`LiveRows.read_whole_if_due`)."""
        def read(since: datetime) -> list[dict[str, Any]]:
            return self._decoded_items(_item_rows(
                cases.c.shard == shard, cases.c.opened_at >= since, cases.c.opened_at < end,
                need_items.c.urgency >= min_urgency))

        if cache is None:
            return read(start)
        known = cache.opened
        if (known is None or known.min_urgency != min_urgency or start < known.start
                or end < known.end or known.end < start):
            cache.opened = known = OpenedWindow(start=start, end=end, min_urgency=min_urgency,
                                                rows={})
            fresh = read(start)
        else:
            fresh = read(known.end)
            known.rows = {key: row for key, row in known.rows.items()
                          if row["opened_at"] >= start}
            known.start, known.end = start, end
        known.rows.update(((row["case_id"], row["item_id"]), row) for row in fresh)
        return [known.rows[key] for key in sorted(known.rows)]

    def _decoded_items(self, query: Any) -> list[dict[str, Any]]:
        """Item rows with each case's beneficiary decoded once, narrowed to what matching
        reads."""
        items = _dicts(self.conn.execute(query))
        last_case, last = None, {}
        for item in items:  # ordered by case: a case's items come together
            if item["case_id"] != last_case:
                whole = orjson.loads(item["beneficiary"])
                last_case, last = item["case_id"], {key: whole[key] for key in
                                                    MATCHED_BENEFICIARY if key in whole}
            item["beneficiary"] = last
        return items

    def shards_with_open_demand(self) -> set[str]:
        """Shards that have at least one open case."""
        return set(self.conn.execute(
            select(cases.c.shard).where(cases.c.status == "open").distinct()).scalars())

    def case_items(self, case_id: str) -> dict[str, dict[str, Any]]:
        """The open items of a case as they were saved, by item id."""
        fields = [c.name for c in need_items.columns
                  if c.name not in ("case_id", "status", "unmatched_code", "unmatched_reason",
                                    "revision")]
        if case_id in self._new_cases:
            return {item["item_id"]: {name: item[name] for name in fields}
                    for item in self._new_items if item["case_id"] == case_id}
        rows = self.conn.execute(
            select(*(need_items.c[name] for name in fields)).where(
                and_(need_items.c.case_id == case_id, need_items.c.status == "open")))
        return {row.item_id: dict(row._mapping) for row in rows}

    def item_keys(self, case_id: str) -> set[str]:
        """Ids of the open items of a case."""
        return set(self.conn.execute(
            select(need_items.c.item_id).where(
                and_(need_items.c.case_id == case_id, need_items.c.status == "open"))
        ).scalars())

    # --- proposals -----------------------------------------------------------------------------

    def add_proposal(self, **values: Any) -> None:
        """Store a new proposal."""
        self.conn.execute(insert(proposals).values(**values,
                                                   revision=next_revision(self.conn)))

    def add_proposals(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store many new proposals at once (each row as for `add_proposal`, same keys)."""
        if rows:
            revision = next_revision(self.conn)
            insert_many(self.conn, proposals, [{**row, "revision": revision} for row in rows])

    def proposal(self, proposal_id: str) -> ProposalRow | None:
        """The proposal with this id, if known."""
        row = self.conn.execute(
            select(*_columns(proposals, ProposalRow))
            .where(proposals.c.proposal_id == proposal_id)
        ).first()
        return ProposalRow(**row._mapping) if row else None

    def partner_proposals(self, partner_id: str, *, limit: int) -> list[ProposalRow]:
        """The latest proposals made of a partner's offers, newest first."""
        rows = self.conn.execute(
            select(*_columns(proposals, ProposalRow))
            .where(proposals.c.partner_id == partner_id)
            .order_by(proposals.c.created_at.desc(), proposals.c.proposal_id).limit(limit))
        return [ProposalRow(**r._mapping) for r in rows]

    def proposals_where(self, *conditions: Any) -> list[ProposalRow]:
        """Proposals matching SQLAlchemy conditions on the proposals table."""
        rows = self.conn.execute(
            select(*_columns(proposals, ProposalRow))
            .where(*conditions).order_by(proposals.c.created_at, proposals.c.proposal_id)
        )
        return [ProposalRow(*r) for r in rows]

    def holding_for_offer(self, offer_id: str) -> list[ProposalRow]:
        """Proposals that hold capacity of the offer."""
        return self.proposals_where(proposals.c.offer_id == offer_id,
                                    proposals.c.status.in_([s.value for s in HOLDING]))

    def holding_for_case(self, case_id: str) -> list[ProposalRow]:
        """Proposals that serve demand of the case."""
        return self.proposals_where(proposals.c.case_id == case_id,
                                    proposals.c.status.in_([s.value for s in HOLDING]))

    def holding_for_volunteer(self, volunteer_id: str, *, since: datetime
                              ) -> list[ProposalRow]:
        """Visits of one volunteer that hold (any offer, any shard) and end after `since`."""
        return self.proposals_where(proposals.c.volunteer_id == volunteer_id,
                                    proposals.c.kind == "volunteer",
                                    proposals.c.status.in_([s.value for s in HOLDING]),
                                    proposals.c.window_end > since)

    def move_slots(self, offer_id: str, moves: Mapping[int, int | None]) -> None:
        """Renumber the slots the offer's proposals refer to (old index -> new), all at once;
        -> None: the slot is gone (what began on it stays, on no slot of the list)."""
        if moves:
            self.conn.execute(update(proposals).where(
                proposals.c.offer_id == offer_id, proposals.c.slot.in_(list(moves))).values(
                slot=sql_case(dict(moves), value=proposals.c.slot),
                revision=next_revision(self.conn)))

    def set_proposal_status(self, proposal_id: str, status: ProposalStatus, *,
                            at: datetime, by: str | None = None, reason: str | None = None,
                            delivered: float | None = None) -> None:
        """Move a proposal to a new status, recording who and why."""
        values: dict[str, Any] = {"status": status.value, "decided_at": at,
                                  "revision": next_revision(self.conn)}
        if by is not None:
            values["decided_by"] = by
        if reason is not None:
            values["decision_reason"] = reason
        if delivered is not None:
            values["delivered"] = delivered
        self.conn.execute(
            update(proposals).where(proposals.c.proposal_id == proposal_id).values(**values)
        )

    def held_by_offer(self, shard: str | None = None, *, now: datetime | None = None
                      ) -> dict[tuple[str, int | None], float]:
        """Capacity held per (offer, slot) by holding proposals; with `now`, of the offers
        still matchable only (found through the offers' live index, not all of history)."""
        query = (
            select(proposals.c.offer_id, proposals.c.slot, func.sum(proposals.c.amount))
            .where(proposals.c.status.in_([s.value for s in HOLDING]))
            .group_by(proposals.c.offer_id, proposals.c.slot)
        )
        if now is not None:
            live = select(offers.c.offer_id).where(offers.c.status == "active", _live_offer(now))
            if shard is not None:
                live = live.where(offers.c.shard == shard)
            query = query.where(proposals.c.offer_id.in_(live))
        elif shard is not None:
            query = query.where(proposals.c.shard == shard)
        return {(o, s): float(a) for o, s, a in self.conn.execute(query)}

    def served_by_item(self, shard: str | None = None) -> dict[tuple[str, str], float]:
        """Demand served per (case, item) by holding proposals (of the shard's, if given)."""
        query = (
            select(proposals.c.case_id, proposals.c.item_id, func.sum(proposals.c.amount))
            .where(proposals.c.status.in_([s.value for s in HOLDING]))
            .group_by(proposals.c.case_id, proposals.c.item_id)
        )
        if shard is not None:
            query = query.where(proposals.c.shard == shard)
        return {(c, i): float(a) for c, i, a in self.conn.execute(query)}

    def excluded_pairs(self, shard: str | None = None) -> set[tuple[str, str, str]]:
        """(case, item, offer) triples a coordinator turned down: never proposed again."""
        query = select(proposals.c.case_id, proposals.c.item_id, proposals.c.offer_id).where(
            proposals.c.status == ProposalStatus.REJECTED.value
        )
        if shard is not None:
            query = query.where(proposals.c.shard == shard)
        return {(c, i, o) for c, i, o in self.conn.execute(query)}

    def served_and_excluded(self, shard: str, *, now: datetime
                            ) -> tuple[dict[tuple[str, str], float], set[tuple[str, str, str]]]:
        """For the shard's items still matchable only, in one read: what holding proposals
        serve per (case, item), and the (case, item, offer) triples turned down."""
        served: dict[tuple[str, str], float] = {}
        excluded: set[tuple[str, str, str]] = set()
        rejected = ProposalStatus.REJECTED.value
        query = _of_live_items(select(
            proposals.c.case_id, proposals.c.item_id, proposals.c.offer_id, proposals.c.status,
            proposals.c.amount).where(
            proposals.c.status.in_([*(s.value for s in HOLDING), rejected])), shard, now)
        for case_id, item_id, offer_id, status, amount in self.conn.execute(query):
            if status == rejected:
                excluded.add((case_id, item_id, offer_id))
            else:
                served[case_id, item_id] = served.get((case_id, item_id), 0.0) + float(amount)
        return served, excluded

    # --- what a recorded batch checks has not moved under it ---------------------------------

    def offer_versions(self, offer_ids: Sequence[str]) -> dict[str, int]:
        """Version of each of these offers that is still active."""
        return {offer_id: version for chunk in _chunks(offer_ids)
                for offer_id, version in self.conn.execute(
                    select(offers.c.offer_id, offers.c.version)
                    .where(offers.c.offer_id.in_(chunk), offers.c.status == "active"))}

    def open_case_versions(self, case_ids: Sequence[str]) -> dict[str, int]:
        """Version of each of these cases that is still open."""
        return {case_id: version for chunk in _chunks(case_ids)
                for case_id, version in self.conn.execute(
                    select(cases.c.case_id, cases.c.version)
                    .where(cases.c.case_id.in_(chunk), cases.c.status == "open"))}

    def held_for_offers(self, offer_ids: Sequence[str]) -> dict[tuple[str, int | None], float]:
        """Capacity held per (offer, slot) of these offers by holding proposals."""
        return self._holding_sums(proposals.c.offer_id, proposals.c.slot, offer_ids)

    def served_for_cases(self, case_ids: Sequence[str]) -> dict[tuple[str, str], float]:
        """Demand served per (case, item) of these cases by holding proposals."""
        return self._holding_sums(proposals.c.case_id, proposals.c.item_id, case_ids)

    def _holding_sums(self, owner: Any, part: Any, ids: Sequence[str]) -> dict[Any, float]:
        """Amounts of holding proposals per (owner, part), for owners among `ids`."""
        sums: dict[Any, float] = {}
        for chunk in _chunks(ids):
            for first, second, amount in self.conn.execute(
                    select(owner, part, func.sum(proposals.c.amount))
                    .where(owner.in_(chunk), proposals.c.status.in_([s.value for s in HOLDING]))
                    .group_by(owner, part)):
                sums[first, second] = float(amount)
        return sums

    def turned_down_for_cases(self, case_ids: Sequence[str]) -> set[tuple[str, str, str]]:
        """(case, item, offer) triples of these cases a coordinator turned down."""
        return {(case_id, item_id, offer_id) for chunk in _chunks(case_ids)
                for case_id, item_id, offer_id in self.conn.execute(
                    select(proposals.c.case_id, proposals.c.item_id, proposals.c.offer_id)
                    .where(proposals.c.case_id.in_(chunk),
                           proposals.c.status == ProposalStatus.REJECTED.value))}

    def met_volunteers(self, beneficiaries: Sequence[str]) -> set[tuple[str, str]]:
        """(beneficiary, volunteer) pairs of these beneficiaries that met in an approved or
        done visit."""
        return {(ben, vol) for chunk in _chunks(beneficiaries)
                for ben, vol in self.conn.execute(
                    select(proposals.c.beneficiary, proposals.c.volunteer_id).where(
                        proposals.c.beneficiary.in_(chunk), proposals.c.kind == "volunteer",
                        proposals.c.status.in_([ProposalStatus.APPROVED.value,
                                                ProposalStatus.FULFILLED.value]),
                        proposals.c.volunteer_id.is_not(None)).distinct())}

    def offers_written_since(self, revision: int) -> set[str]:
        """Ids of the offers written after this revision."""
        return set(self.conn.execute(select(offers.c.offer_id)
                                     .where(offers.c.revision > revision)).scalars())

    def current_revision(self) -> int:
        """The revision of the last write of proposals, offers or items this transaction sees."""
        return int(self.conn.execute(select(write_revision.c.revision)).scalar_one())

    def proposals_changed_since(self, revision: int
                                ) -> list[tuple[str, str, str | None, str | None]]:
        """(offer, case, volunteer, beneficiary) of each proposal written after `revision`."""
        return [(offer_id, case_id, volunteer_id, beneficiary)
                for offer_id, case_id, volunteer_id, beneficiary in self.conn.execute(
                    select(proposals.c.offer_id, proposals.c.case_id, proposals.c.volunteer_id,
                           proposals.c.beneficiary).where(proposals.c.revision > revision))]

    def holding_volunteer_visits(self) -> list[ProposalRow]:
        """Volunteer visits promised (proposed or approved), with their time windows."""
        return self.proposals_where(
            proposals.c.kind == "volunteer",
            proposals.c.status.in_([ProposalStatus.PROPOSED.value, ProposalStatus.APPROVED.value]),
        )

    def promised_visits(self, *, now: datetime | None = None,
                        excluding_shard: str | None = None,
                        volunteer_ids: Sequence[str] | None = None
                        ) -> dict[str, list[tuple[float, float]]]:
        """Visits promised (proposed or approved) per volunteer id, as epoch seconds; with
        `now`, only those that still occupy the volunteer's future; with `volunteer_ids`,
        only theirs."""
        query = select(proposals.c.volunteer_id, proposals.c.window_start,
                       proposals.c.window_end).where(
            proposals.c.kind == "volunteer",
            proposals.c.status.in_([ProposalStatus.PROPOSED.value, ProposalStatus.APPROVED.value]),
            proposals.c.volunteer_id.is_not(None), proposals.c.window_start.is_not(None),
            proposals.c.window_end.is_not(None))
        if now is not None:
            query = query.where(proposals.c.window_end > now)
        if excluding_shard is not None:
            query = query.where(proposals.c.shard != excluding_shard)
        queries = ([query] if volunteer_ids is None else
                   [query.where(proposals.c.volunteer_id.in_(chunk))
                    for chunk in _chunks(volunteer_ids)])
        busy: dict[str, list[tuple[float, float]]] = {}
        for each in queries:
            for volunteer, start, end in self.conn.execute(each):
                busy.setdefault(volunteer, []).append((start.timestamp(), end.timestamp()))
        return busy

    def given_visits(self, *, since: datetime, volunteer_ids: Sequence[str] | None = None
                     ) -> list[GivenVisit]:
        """Volunteer visits that hold (proposed, approved or fulfilled) ending after `since`:
        what a volunteer already gives in the weeks from `since` on, on any offer and in any
        shard, and on which offers (whose stated weekly limits then count)."""
        query = select(proposals.c.volunteer_id, proposals.c.offer_id, proposals.c.window_start,
                       proposals.c.amount).where(
            proposals.c.kind == "volunteer",
            proposals.c.status.in_([s.value for s in HOLDING]),
            proposals.c.volunteer_id.is_not(None), proposals.c.window_start.is_not(None),
            proposals.c.window_end > since)
        queries = ([query] if volunteer_ids is None else
                   [query.where(proposals.c.volunteer_id.in_(chunk))
                    for chunk in _chunks(volunteer_ids)])
        return [GivenVisit(volunteer, offer, start.timestamp(), float(hours))
                for each in queries
                for volunteer, offer, start, hours in self.conn.execute(each)]

    def stated_limits_of(self, offer_ids: Iterable[str], cache: LiveRows | None = None
                         ) -> dict[str, float]:
        """The lowest weekly hour limit each volunteer states on these of their offers that
        are still active (read from the payloads in the database: no payload is decoded).
        With a `cache`, only the versions are read, and the limits of versions not seen."""
        ids = sorted(set(offer_ids))
        if cache is None:
            return _lowest_per_volunteer(self._stated_limits(ids).values())
        revision = self.current_revision()
        known = {} if cache.limits_revision < 0 else cache.limits
        changed = self.offers_written_since(cache.limits_revision) if known else set()
        stale = [offer_id for offer_id in ids if offer_id in changed or offer_id not in known]
        fresh = self._stated_limits(stale)
        cache.limits = {offer_id: fresh.get(offer_id, (None, None)) if offer_id in stale
                        else known[offer_id] for offer_id in ids}
        cache.limits_revision = revision
        return _lowest_per_volunteer(cache.limits.values())

    def _stated_limits(self, offer_ids: Sequence[str]
                       ) -> dict[str, tuple[str | None, float | None]]:
        """(volunteer, weekly hour limit) each of these offers states, if active and a
        volunteer's."""
        volunteer = offers.c.payload["volunteer_id"].as_string()
        limit = offers.c.payload["weekly_hour_limit"].as_float()
        return {offer_id: (volunteer_id, hours) for chunk in _chunks(offer_ids)
                for offer_id, volunteer_id, hours in self.conn.execute(
                    select(offers.c.offer_id, volunteer, limit).where(
                        offers.c.offer_id.in_(chunk), offers.c.status == "active",
                        offers.c.kind == "volunteer"))}

    def volunteer_history(self, shard: str | None = None, *, now: datetime | None = None
                          ) -> set[tuple[str, str]]:
        """(beneficiary pseudonym, volunteer id) pairs that met in an approved or done visit;
        with a shard, only for beneficiaries with an open case there; with `now` too, only
        for those with an item still matchable (the only ones a batch scores)."""
        query = select(proposals.c.beneficiary, proposals.c.volunteer_id).where(
            proposals.c.kind == "volunteer",
            proposals.c.status.in_([ProposalStatus.APPROVED.value,
                                    ProposalStatus.FULFILLED.value]),
            proposals.c.beneficiary.is_not(None), proposals.c.volunteer_id.is_not(None),
        ).distinct()
        if shard is not None and now is not None:
            # From the live items to their beneficiaries' visits, by index: not all of history.
            query = query.join(cases, cases.c.pseudonym == proposals.c.beneficiary).join(
                need_items, need_items.c.case_id == cases.c.case_id).where(
                cases.c.status == "open", cases.c.shard == shard,
                need_items.c.status == "open", need_items.c.deadline > now)
        elif shard is not None:
            query = query.where(proposals.c.beneficiary.in_(
                select(cases.c.pseudonym).where(cases.c.status == "open",
                                                cases.c.shard == shard)))
        return {(ben, vol) for ben, vol in self.conn.execute(query)}

    def set_unmatched(self, case_id: str, item_id: str, *, code: str | None,
                      reason: str | None, taken_by: str | None = None) -> None:
        """Remember why an item is (partly) unmatched, or clear it."""
        self.conn.execute(
            update(need_items)
            .where(and_(need_items.c.case_id == case_id, need_items.c.item_id == item_id))
            .values(unmatched_code=code, unmatched_reason=reason, unmatched_taken_by=taken_by,
                    revision=next_revision(self.conn))
        )

    def set_unmatched_many(
            self, rows: Sequence[tuple[str, str, str | None, str | None, str | None]]) -> None:
        """`set_unmatched` for many (case, item, code, reason, taken by) at once (one
        executemany)."""
        if not rows:
            return
        revision = next_revision(self.conn)
        self.conn.execute(
            update(need_items)
            .where(and_(need_items.c.case_id == bindparam("b_case"),
                        need_items.c.item_id == bindparam("b_item")))
            .values(unmatched_code=bindparam("b_code"), unmatched_reason=bindparam("b_reason"),
                    unmatched_taken_by=bindparam("b_taken_by"), revision=revision),
            [{"b_case": case, "b_item": item, "b_code": code, "b_reason": reason,
              "b_taken_by": taken_by} for case, item, code, reason, taken_by in rows],
        )

    def count_proposals(self, status: ProposalStatus | None = None) -> int:
        """How many proposals there are (in one status, or all)."""
        query = select(func.count()).select_from(proposals)
        if status is not None:
            query = query.where(proposals.c.status == status.value)
        return int(self.conn.execute(query).scalar_one())

    # --- shard batches -------------------------------------------------------------------------

    def lock_shard(self, shard: str) -> None:
        """Hold the shard until this transaction ends, so two batches never overlap on it.

        Kafka partition ownership already gives each shard one engine instance; this guards
        the moment of a rebalance, when the old owner may still be finishing a batch.
        SQLite has one writer at a time anyway.
        """
        if self.conn.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.blake2b(shard.encode(), digest_size=8).digest(),
                                 "big", signed=True)
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    # --- outbox --------------------------------------------------------------------------------

    def add_outbox_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue outgoing events (rows of topic, key, value, event_id, event_type, at, as
        `matcher.services.outbound` routes them); published after this transaction commits."""
        insert_many(self.conn, outbox, [
            {"topic": row["topic"], "key": row["key"], "value": row["value"],
             "event_id": row["event_id"], "event_type": row["event_type"],
             "created_at": row["at"]} for row in rows])

    def unpublished(self, limit: int = 1000) -> list[OutboxRow]:
        """Outgoing events not yet confirmed by the broker, oldest first."""
        rows = self.conn.execute(
            select(outbox.c.seq, outbox.c.topic, outbox.c.key, outbox.c.value,
                   outbox.c.event_id, outbox.c.event_type)
            .where(outbox.c.published_at.is_(None)).order_by(outbox.c.seq).limit(limit)
        )
        return [OutboxRow(*r) for r in rows]

    def mark_published(self, seqs: Iterable[int], at: datetime) -> None:
        """Record that the broker confirmed these outgoing events."""
        seq_list = list(seqs)
        if seq_list:
            self.conn.execute(update(outbox).where(outbox.c.seq.in_(seq_list))
                              .values(published_at=at))

    def count(self, table_name: str) -> int:
        """Rows in a table (for summaries and tests)."""
        table = {t.name: t for t in (audit_log, cases, need_items, nodes, offers, outbox,
                                     partners, proposals)}[table_name]
        return int(self.conn.execute(select(func.count()).select_from(table)).scalar_one())


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows (all with the same keys) in one driver call: COPY on PostgreSQL, one
    executemany elsewhere.

    Each value is bound by its column's own type, as SQLAlchemy would; SQLAlchemy's per-row
    parameter handling, skipped here, costs more than the write when a batch records ~100k rows.
    """
    if not rows:
        return
    dialect = conn.dialect
    names = list(rows[0])
    bound: list[list[Any]] = []
    for name in names:
        kind = table.c[name].type
        process = kind.dialect_impl(dialect).bind_processor(dialect)
        column = [row[name] for row in rows]
        if process is not None and isinstance(kind, UtcDateTime):
            # A batch's rows share a few moments (its own, its windows): bind each once.
            seen: dict[Any, Any] = {}
            column = [seen[v] if v in seen else seen.setdefault(v, process(v)) for v in column]
        elif process is not None:
            column = [process(v) for v in column]
        bound.append(column)
    params = list(zip(*bound, strict=True))
    quote = dialect.identifier_preparer.quote
    target = f"{dialect.identifier_preparer.format_table(table)} ({', '.join(map(quote, names))})"
    if dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
        return
    marks = ", ".join("?" if dialect.paramstyle == "qmark" else "%s" for _ in names)
    conn.exec_driver_sql(f"INSERT INTO {target} VALUES ({marks})", params)


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """Rows as dicts, keyed once per result: a row's own mapping costs more than reading it."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def _item_rows(*conditions: Any) -> Any:
    """Item rows as a batch reads them, with their case's grid, beneficiary, opening and
    version (not the item's status), of the items meeting the conditions, ordered by case."""
    return (
        select(*(c for c in need_items.c if c.name not in ("status", "revision")),
               cases.c.grid_id,
               cast(cases.c.beneficiary, Text).label("beneficiary"), cases.c.opened_at,
               cases.c.version.label("case_version"))
        .join(cases, cases.c.case_id == need_items.c.case_id)
        .where(*conditions)
        .order_by(need_items.c.case_id, need_items.c.item_id)
    )


def _lowest_per_volunteer(limits: Iterable[tuple[str | None, float | None]]
                          ) -> dict[str, float]:
    """The lowest of the limits stated for each volunteer."""
    lowest: dict[str, float] = {}
    for volunteer, limit in limits:
        if volunteer is not None and limit is not None:
            lowest[volunteer] = min(float(limit), lowest.get(volunteer, float(limit)))
    return lowest


def next_revision(conn: Connection) -> int:
    """The revision for a write of proposals, offers or need items in this transaction (see
    `write_revision`): taking it locks the counter until the transaction ends."""
    return int(conn.execute(update(write_revision).values(
        revision=write_revision.c.revision + 1).returning(
        write_revision.c.revision)).scalar_one())


def _chunks(ids: Sequence[str], size: int = 5000) -> Iterator[Sequence[str]]:
    """Ids in slices small enough for one IN list on every backend."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _of_live_items(query: Any, shard: str | None, now: datetime) -> Any:
    """Restrict a proposals query to items of the shard still open before their deadline."""
    query = query.join(need_items, and_(
        need_items.c.case_id == proposals.c.case_id,
        need_items.c.item_id == proposals.c.item_id)).where(
        need_items.c.status == "open", need_items.c.deadline > now)
    if shard is not None:
        query = query.join(cases, cases.c.case_id == need_items.c.case_id).where(
            cases.c.shard == shard)
    return query


def _live_offer(now: datetime) -> Any:
    """The condition that an offer's windows, slots or shelf life are not over yet."""
    return or_(offers.c.live_until.is_(None), offers.c.live_until > now)


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Store]:
    """A transaction: committed when the block ends normally, rolled back on error."""
    with engine.begin() as connection:
        store = Store(connection)
        yield store
        store.flush()


@contextmanager
def snapshot(engine: Engine) -> Iterator[Store]:
    """A read-only transaction over one consistent state of the database.

    SQLite's WAL gives every transaction its own snapshot; PostgreSQL needs REPEATABLE READ
    for every statement of the transaction to see the same one.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield Store(connection)
