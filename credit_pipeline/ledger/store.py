"""The ledger store: one object whose public methods are each one transaction.

Writes are batched (multi-row ``INSERT ... ON CONFLICT``), never row by row. The
database enforces the invariants (append-only, freeze, unique keys); the methods
check again first so a user sees a message that names the thing to fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from credit_pipeline.core.allocation import ProposedAllocation
from credit_pipeline.core.epochs import parse_epoch_key, window_for_key
from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.core.policy import POOL_COMPONENTS
from credit_pipeline.core.statement import statement_bytes
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.engine import get_engine
from credit_pipeline.ledger.migrations import ensure_current


class LedgerError(RuntimeError):
    """A write the ledger refuses, with a message that says what to do."""


class IdentityConflict(LedgerError):
    """The account is already bound to another person."""


class EpochStateError(LedgerError):
    """The epoch is not in the status the operation needs."""


@dataclass(frozen=True)
class CursorAdvance:
    """Where a stream's collection reached, written with the page it covers."""

    source: str
    stream: str
    source_ref: str
    position: dict[str, Any]


@dataclass(frozen=True)
class PageWrite:
    new_ids: list[str]
    seen: int

    @property
    def new(self) -> int:
        return len(self.new_ids)


@dataclass(frozen=True)
class EpochRecord:
    key: str
    start: datetime
    end: datetime
    status: str
    policy: dict[str, Any] | None
    policy_hash: str | None
    approvers: list[str] | None
    completeness: dict[str, Any] | None
    completeness_waiver: dict[str, Any] | None
    final_collection_at: datetime | None
    review_at: datetime | None
    finalized_at: datetime | None


@dataclass(frozen=True)
class CurationProposal:
    """The resolution-owned fields of a curation row (admin fields are never set here)."""

    event_id: str
    recipient_id: str | None
    resolution: str


def _int(value: Decimal | int | None) -> int | None:
    return None if value is None else int(value)


def _epoch(row: sa.Row) -> EpochRecord:
    return EpochRecord(
        key=row.epoch_key.isoformat(), start=row.window_start, end=row.window_end, status=row.status,
        policy=row.policy, policy_hash=row.policy_hash, approvers=row.approvers, completeness=row.completeness,
        completeness_waiver=row.completeness_waiver, final_collection_at=row.final_collection_at,
        review_at=row.review_at, finalized_at=row.finalized_at,
    )


def _event_row(event: ActivityEvent) -> dict[str, Any]:
    return event.model_dump()


class LedgerStore:
    """Transactions over the ledger tables."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None, migrate: bool = True) -> LedgerStore:
        """Connect (embedded server by default) and bring the schema up to date."""
        engine = get_engine(url)
        if migrate:
            ensure_current(engine)
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        """Read on the caller's connection (inside its transaction) or a fresh one."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as fresh:
                yield fresh

    # -- events and cursors -------------------------------------------------

    def record_page(self, events: Sequence[ActivityEvent], cursor: CursorAdvance | None) -> PageWrite:
        """Insert a page of events and advance its cursor in one transaction.

        Re-inserting known events is a no-op. If anything fails, neither the events
        nor the cursor are written, so a cursor never passes an uncommitted event.
        """
        with self.transaction() as conn:
            new_ids = self._insert_events(conn, events)
            if cursor is not None:
                self._advance_cursor(conn, cursor)
        return PageWrite(new_ids=new_ids, seen=len(events) - len(new_ids))

    def _insert_events(self, conn: Connection, events: Sequence[ActivityEvent]) -> list[str]:
        if not events:
            return []
        stmt = pg_insert(t.activity_events).on_conflict_do_nothing(index_elements=["event_id"])
        # insertmanyvalues batches these into multi-row INSERTs with RETURNING.
        result = conn.execute(stmt.returning(t.activity_events.c.event_id), [_event_row(e) for e in events])
        return [row.event_id for row in result]

    def _advance_cursor(self, conn: Connection, cursor: CursorAdvance) -> None:
        stmt = pg_insert(t.source_cursors).values(
            source=cursor.source, stream=cursor.stream, source_ref=cursor.source_ref, position=cursor.position
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["source", "stream", "source_ref"],
                set_={"position": stmt.excluded.position, "updated_at": sa.func.now()},
            )
        )

    def get_cursor(self, source: str, stream: str, source_ref: str) -> dict[str, Any] | None:
        c = t.source_cursors.c
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(c.position).where(c.source == source, c.stream == stream, c.source_ref == source_ref)
            ).scalar()

    def list_cursors(self, source: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.source_cursors).order_by(*t.source_cursors.primary_key.columns)
        if source:
            query = query.where(t.source_cursors.c.source == source)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def events_between(self, start: datetime, end: datetime, source: str | None = None) -> list[dict[str, Any]]:
        """Events with ``start <= event_time < end`` (without payloads), ordered by id."""
        e = t.activity_events.c
        cols = [col for col in t.activity_events.c if col.name != "payload"]
        query = sa.select(*cols).where(e.event_time >= start, e.event_time < end).order_by(e.event_id)
        if source:
            query = query.where(e.source == source)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.activity_events).where(t.activity_events.c.event_id == event_id)).first()
        return None if row is None else dict(row._mapping)

    def payloads(self, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored raw payloads by event id (fetched in batches)."""
        e = t.activity_events.c
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(event_ids), 5000):
                batch = list(event_ids[i:i + 5000])
                found.update({r.event_id: r.payload for r in conn.execute(sa.select(e.event_id, e.payload).where(e.event_id.in_(batch)))})
        return found

    # -- epochs --------------------------------------------------------------

    def ensure_epoch(self, key: str) -> EpochRecord:
        """The epoch row for ``key``, created ``open`` on first use."""
        start, end = window_for_key(key)
        with self.transaction() as conn:
            conn.execute(
                pg_insert(t.epochs)
                .values(epoch_key=parse_epoch_key(key), window_start=start, window_end=end)
                .on_conflict_do_nothing(index_elements=["epoch_key"])
            )
            return self._epoch(conn, key)

    def _epoch(self, conn: Connection, key: str, lock: bool = False) -> EpochRecord:
        query = sa.select(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise EpochStateError(f"epoch {key} does not exist yet; collect or resolve its activity first")
        return _epoch(row)

    def get_epoch(self, key: str) -> EpochRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))).first()
        return None if row is None else _epoch(row)

    def list_epochs(self) -> list[EpochRecord]:
        with self.engine.connect() as conn:
            return [_epoch(r) for r in conn.execute(sa.select(t.epochs).order_by(t.epochs.c.epoch_key))]

    def epoch_summaries(self) -> list[dict[str, Any]]:
        """Per epoch: status, curated and counted events, pool total, latest statement hash."""
        query = sa.text("""
            SELECT e.epoch_key, e.window_start, e.window_end, e.status,
                   (SELECT count(*) FROM activity_curation c WHERE c.epoch_key = e.epoch_key) AS events,
                   (SELECT count(*) FROM activity_curation c WHERE c.epoch_key = e.epoch_key
                        AND c.included AND c.recipient_id IS NOT NULL) AS counted_events,
                   (SELECT coalesce(sum(amount), 0) FROM epoch_pool_components p WHERE p.epoch_key = e.epoch_key) AS pool,
                   (SELECT s.statement_hash FROM payout_statements s WHERE s.epoch_key = e.epoch_key
                        ORDER BY s.revision DESC LIMIT 1) AS statement_hash
            FROM epochs e ORDER BY e.epoch_key""")
        with self.engine.connect() as conn:
            return [{**r._mapping, "epoch_key": r.epoch_key.isoformat(), "pool": int(r.pool)} for r in conn.execute(query)]

    def record_completeness(self, key: str, completeness: dict[str, Any], final_collection_at: datetime | None) -> None:
        """Merge per-stream completeness results into the epoch (other streams' entries stay)."""
        e = t.epochs.c
        with self.transaction() as conn:
            values: dict[str, Any] = {"completeness": sa.func.coalesce(e.completeness, sa.cast({}, JSONB)).op("||")(sa.cast(completeness, JSONB))}
            if final_collection_at is not None:
                values["final_collection_at"] = sa.func.greatest(e.final_collection_at, final_collection_at)
            conn.execute(sa.update(t.epochs).where(e.epoch_key == parse_epoch_key(key)).values(**values))

    def event_counts(self, start: datetime, end: datetime, source: str) -> dict[tuple[str, str], int]:
        """Stored facts in ``[start, end)`` per (event_type, repo or channel)."""
        e = t.activity_events.c
        ref = sa.func.coalesce(e.metadata["repo"].astext, e.metadata["channel_id"].astext)
        query = (sa.select(e.event_type, ref.label("ref"), sa.func.count()).where(e.source == source, e.event_time >= start, e.event_time < end)
                 .group_by(e.event_type, ref))
        with self.engine.connect() as conn:
            return {(r.event_type, r.ref): r[2] for r in conn.execute(query)}

    def event_times(self, event_ids: Sequence[str]) -> dict[str, datetime]:
        e = t.activity_events.c
        with self.engine.connect() as conn:
            return {r.event_id: r.event_time for r in conn.execute(sa.select(e.event_id, e.event_time).where(e.event_id.in_(list(event_ids))))}

    def epoch_statuses(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.epoch_key.isoformat(): r.status for r in conn.execute(sa.select(t.epochs.c.epoch_key, t.epochs.c.status))}

    def waive_completeness(self, key: str, actor: str, reason: str) -> None:
        if not reason.strip():
            raise LedgerError("a completeness waiver needs a reason")
        with self.transaction() as conn:
            conn.execute(
                sa.update(t.epochs)
                .where(t.epochs.c.epoch_key == parse_epoch_key(key))
                .values(completeness_waiver={"by": actor, "reason": reason, "at": datetime.now(UTC).isoformat()})
            )

    def enter_review(self, key: str, policy: dict[str, Any], policy_hash: str, approvers: list[str]) -> EpochRecord:
        """Move an open epoch to review, pinning the policy and approver set (idempotent)."""
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status != "open":
                return epoch
            conn.execute(
                sa.update(t.epochs)
                .where(t.epochs.c.epoch_key == parse_epoch_key(key))
                .values(status="review", policy=policy, policy_hash=policy_hash, approvers=approvers, review_at=sa.func.now())
            )
            return self._epoch(conn, key)

    # -- curation ------------------------------------------------------------

    def curate(self, key: str, proposals: Iterable[CurationProposal]) -> int:
        """Put events into epoch ``key`` with their resolution; returns rows written.

        Admin fields (included, weight_override, note) are never touched. An event
        already curated into another epoch stays there (one epoch per event).
        """
        rows = [{"event_id": p.event_id, "epoch_key": parse_epoch_key(key), "recipient_id": p.recipient_id, "resolution": p.resolution} for p in proposals]
        if not rows:
            return 0
        c = t.activity_curation.c
        stmt = pg_insert(t.activity_curation)
        stmt = stmt.on_conflict_do_update(
            index_elements=["event_id"],
            set_={"recipient_id": stmt.excluded.recipient_id, "resolution": stmt.excluded.resolution, "resolved_at": sa.func.now()},
            where=sa.and_(
                c.epoch_key == stmt.excluded.epoch_key,
                sa.or_(c.recipient_id.is_distinct_from(stmt.excluded.recipient_id), c.resolution != stmt.excluded.resolution),
            ),
        )
        with self.transaction() as conn:
            return len(conn.execute(stmt.returning(c.event_id), rows).all())

    def set_curation(self, event_id: str, *, actor: str, included: bool | None = None,
                     weight_override: int | None = None, clear_override: bool = False, note: str | None = None) -> None:
        """An admin's curation of one event: exclude/include, override weight, note."""
        if weight_override is not None and (isinstance(weight_override, bool) or weight_override < 0):
            raise LedgerError(f"weight override for {event_id} must be an integer >= 0 milli-units (got {weight_override})")
        values: dict[str, Any] = {"curated_by": actor, "curated_at": sa.func.now()}
        if included is not None:
            values["included"] = included
        if weight_override is not None or clear_override:
            values["weight_override"] = weight_override
        if note is not None:
            values["note"] = note
        with self.transaction() as conn:
            done = conn.execute(sa.update(t.activity_curation).where(t.activity_curation.c.event_id == event_id).values(**values))
            if done.rowcount == 0:
                raise LedgerError(f"event {event_id} is not curated into any epoch yet; run resolution for its epoch first")

    def curated_events(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        """The epoch's curation rows joined with their events (no payloads)."""
        c, e = t.activity_curation.c, t.activity_events.c
        query = (
            sa.select(c.event_id, c.recipient_id, c.resolution, c.included, c.weight_override, c.note,
                      e.source, e.event_type, e.platform_user_id, e.platform_login, e.is_bot, e.event_time, e.payload_hash)
            .join_from(t.activity_curation, t.activity_events, c.event_id == e.event_id)
            .where(c.epoch_key == parse_epoch_key(key))
            .order_by(c.event_id)
        )
        with self._reading(conn) as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def count_curated_outside_window(self, key: str) -> int:
        """Curated events whose time is outside the epoch's ``[start, end)`` (the trigger makes this 0)."""
        start, end = window_for_key(key)
        c, e = t.activity_curation.c, t.activity_events.c
        query = (sa.select(sa.func.count()).select_from(t.activity_curation.join(t.activity_events, c.event_id == e.event_id))
                 .where(c.epoch_key == parse_epoch_key(key), sa.or_(e.event_time < start, e.event_time >= end)))
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    # -- allocations ---------------------------------------------------------

    def upsert_allocations(self, key: str, proposals: Sequence[ProposedAllocation], algorithm_version: str) -> None:
        """Write proposals, keeping every admin adjustment; drop unadjusted rows no longer proposed."""
        a = t.epoch_allocations.c
        epoch_key = parse_epoch_key(key)
        with self.transaction() as conn:
            if proposals:
                stmt = pg_insert(t.epoch_allocations)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["epoch_key", "recipient_id"],
                    set_={"proposed_units": stmt.excluded.proposed_units, "activity_count": stmt.excluded.activity_count,
                          "algorithm_version": stmt.excluded.algorithm_version, "proposed_at": sa.func.now()},
                    where=sa.or_(a.proposed_units != stmt.excluded.proposed_units, a.activity_count != stmt.excluded.activity_count,
                                 a.algorithm_version != stmt.excluded.algorithm_version),
                )
                conn.execute(stmt, [
                    {"epoch_key": epoch_key, "recipient_id": p.recipient_id, "proposed_units": p.proposed_units,
                     "activity_count": p.activity_count, "algorithm_version": algorithm_version}
                    for p in proposals
                ])
            keep = [p.recipient_id for p in proposals]
            conn.execute(sa.delete(t.epoch_allocations).where(a.epoch_key == epoch_key, a.final_units.is_(None), a.recipient_id.not_in(keep)))
            # An adjusted recipient who lost every event keeps its adjustment with proposal 0.
            conn.execute(sa.update(t.epoch_allocations).where(a.epoch_key == epoch_key, a.final_units.is_not(None), a.recipient_id.not_in(keep),
                                                              sa.or_(a.proposed_units != 0, a.activity_count != 0)).values(proposed_units=0, activity_count=0))

    def adjust_allocation(self, key: str, recipient_id: str, final_units: int | None, reason: str | None, actor: str) -> None:
        """Set (or clear, with ``final_units=None``) an admin's final units for a recipient."""
        if final_units is not None:
            if isinstance(final_units, bool) or not isinstance(final_units, int) or final_units < 0:
                raise LedgerError(f"final units for {recipient_id} must be an integer >= 0 (got {final_units!r})")
            if not (reason or "").strip():
                raise LedgerError(f"adjusting {recipient_id} in epoch {key} needs a reason (--reason)")
        epoch_key = parse_epoch_key(key)
        with self.transaction() as conn:
            if self._epoch(conn, key).status == "finalized":
                raise EpochStateError(f"epoch {key} is finalized; its allocations are frozen")
            values = {"final_units": final_units, "reason": reason if final_units is not None else None,
                      "adjusted_by": actor, "adjusted_at": sa.func.now()}
            stmt = pg_insert(t.epoch_allocations).values(epoch_key=epoch_key, recipient_id=recipient_id, proposed_units=0,
                                                          activity_count=0, algorithm_version="manual", **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["epoch_key", "recipient_id"], set_=values))

    def allocations(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        a = t.epoch_allocations.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.epoch_allocations).where(a.epoch_key == parse_epoch_key(key)).order_by(a.recipient_id))
            return [dict(r._mapping) for r in rows]

    # -- pool ----------------------------------------------------------------

    def add_pool_component(self, key: str, component_id: str, amount: int, *, algorithm_version: str,
                           inputs: dict[str, Any] | None = None, evidence_ref: str | None = None, actor: str | None = None) -> bool:
        """Record a pool component once (append-only); True when written now.

        Recording the same component with the same amount again is a no-op; a
        different amount is refused (components never change; add a ``top_up``).
        """
        if component_id not in POOL_COMPONENTS:
            raise LedgerError(f"pool component {component_id!r} is not one of {', '.join(POOL_COMPONENTS)}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise LedgerError(f"pool component {component_id} amount must be an integer >= 0 (got {amount!r})")
        p = t.epoch_pool_components.c
        with self.transaction() as conn:
            inserted = conn.execute(
                pg_insert(t.epoch_pool_components)
                .values(epoch_key=parse_epoch_key(key), component_id=component_id, amount=amount, algorithm_version=algorithm_version,
                        inputs=inputs or {}, evidence_ref=evidence_ref, recorded_by=actor)
                .on_conflict_do_nothing(index_elements=["epoch_key", "component_id"])
                .returning(p.component_id)
            ).first()
            if inserted:
                return True
            existing = conn.execute(sa.select(p.amount).where(p.epoch_key == parse_epoch_key(key), p.component_id == component_id)).scalar()
            if int(existing) != amount:
                raise LedgerError(f"epoch {key} already has {component_id} = {int(existing)}; components are append-only, "
                                  "record the difference as a top_up instead")
            return False

    def pool_components(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        p = t.epoch_pool_components.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.epoch_pool_components).where(p.epoch_key == parse_epoch_key(key)).order_by(p.component_id))
            return [{**r._mapping, "amount": int(r.amount)} for r in rows]

    # -- approvals and statements ---------------------------------------------

    def record_approval(self, key: str, *, allocation_set_hash: str, policy_hash: str, pool_total: int,
                        message: str, signer: str, signature: str) -> None:
        """Append an approval (the caller has verified the signature against the epoch)."""
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status != "review":
                raise EpochStateError(f"epoch {key} is {epoch.status}; approvals are recorded only in review")
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(t.epoch_approvals).values(
                        epoch_key=parse_epoch_key(key), allocation_set_hash=allocation_set_hash, policy_hash=policy_hash,
                        pool_total=pool_total, message=message, signer=signer, signature=signature))
            except sa.exc.IntegrityError:
                raise LedgerError(f"this signature or signer already approved allocation {allocation_set_hash[:12]} of epoch {key}") from None

    def approvals(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        a = t.epoch_approvals.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.epoch_approvals).where(a.epoch_key == parse_epoch_key(key)).order_by(a.approval_id))
            return [{**r._mapping, "pool_total": int(r.pool_total)} for r in rows]

    def finalize(self, key: str, build: Callable[[Connection, EpochRecord, datetime], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """Write the epoch's statement and move it to finalized, in one transaction.

        ``build(conn, epoch, finalized_at)`` returns the bundle; it reads through
        ``conn`` while this transaction holds the epoch row ``FOR UPDATE``, and every
        curation/allocation write waits on that lock (see the freeze trigger), so
        nothing changes between what is read and what is written. A finalized epoch
        returns its stored statement unchanged (``False``); a concurrent second
        finalize waits for the first and then does the same.
        """
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status == "finalized":
                return self._latest_statement(conn, key), False
            if epoch.status != "review":
                raise EpochStateError(f"epoch {key} is {epoch.status}; only an epoch in review can be finalized")
            finalized_at = conn.execute(sa.select(sa.func.now())).scalar()
            bundle = build(conn, epoch, finalized_at)
            conn.execute(sa.insert(t.payout_statements).values(
                statement_hash=bundle["statement_hash"], epoch_key=parse_epoch_key(key), revision=1,
                allocation_set_hash=bundle["allocation_set_hash"], pool_total=bundle["pool"]["total"],
                bundle=statement_bytes(bundle).decode("utf-8")))
            conn.execute(sa.update(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))
                         .values(status="finalized", finalized_at=finalized_at))
            return bundle, True

    def _latest_statement(self, conn: Connection, key: str) -> dict[str, Any]:
        s = t.payout_statements.c
        text = conn.execute(sa.select(s.bundle).where(s.epoch_key == parse_epoch_key(key)).order_by(s.revision.desc()).limit(1)).scalar()
        if text is None:
            raise LedgerError(f"epoch {key} is finalized but has no statement; the ledger is inconsistent")
        return json.loads(text)

    def statement(self, key: str) -> dict[str, Any] | None:
        """The latest statement bundle of an epoch, or None."""
        with self.engine.connect() as conn:
            try:
                return self._latest_statement(conn, key)
            except LedgerError:
                return None

    def statement_text(self, key: str) -> str | None:
        """The exact stored bytes (text) of the latest statement."""
        s = t.payout_statements.c
        with self.engine.connect() as conn:
            return conn.execute(sa.select(s.bundle).where(s.epoch_key == parse_epoch_key(key)).order_by(s.revision.desc()).limit(1)).scalar()

    # -- identity ------------------------------------------------------------

    def bind(self, provider: str, external_id: str, user_id: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> bool:
        """Bind an account to a person; True when new. Refuses an account another person holds."""
        b = t.user_bindings.c
        with self.transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{provider}:{external_id}"})
            current = conn.execute(sa.select(b.user_id).where(b.provider == provider, b.external_id == external_id)).scalar()
            if current == user_id:
                return False
            if current is not None:
                raise IdentityConflict(f"{provider} account {external_id} is already bound to {current}; "
                                       f"revoke that binding first (credit-pipeline identity revoke {provider} {external_id})")
            event_id = conn.execute(sa.insert(t.identity_events).values(
                action="bind", provider=provider, external_id=external_id, user_id=user_id, evidence=evidence or {}, actor=actor
            ).returning(t.identity_events.c.identity_event_id)).scalar()
            conn.execute(sa.insert(t.user_bindings).values(provider=provider, external_id=external_id, user_id=user_id, identity_event_id=event_id))
            return True

    def revoke(self, provider: str, external_id: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> str:
        """Remove an account's binding (logged); returns the person it was bound to."""
        b = t.user_bindings.c
        with self.transaction() as conn:
            current = conn.execute(sa.select(b.user_id).where(b.provider == provider, b.external_id == external_id).with_for_update()).scalar()
            if current is None:
                raise LedgerError(f"{provider} account {external_id} is not bound to anyone")
            conn.execute(sa.insert(t.identity_events).values(
                action="revoke", provider=provider, external_id=external_id, user_id=current, evidence=evidence or {}, actor=actor))
            conn.execute(sa.delete(t.user_bindings).where(b.provider == provider, b.external_id == external_id))
            return current

    def merge_users(self, from_user: str, into_user: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> int:
        """Move every account of ``from_user`` to ``into_user`` (one logged merge per account)."""
        if from_user == into_user:
            raise LedgerError("a person cannot be merged into themselves")
        b = t.user_bindings.c
        with self.transaction() as conn:
            accounts = conn.execute(sa.select(b.provider, b.external_id).where(b.user_id == from_user).with_for_update()).all()
            if not accounts:
                raise LedgerError(f"{from_user} has no bound accounts; nothing to merge")
            for provider, external_id in accounts:
                event_id = conn.execute(sa.insert(t.identity_events).values(
                    action="merge", provider=provider, external_id=external_id, user_id=into_user, previous_user_id=from_user,
                    evidence=evidence or {}, actor=actor).returning(t.identity_events.c.identity_event_id)).scalar()
                conn.execute(sa.update(t.user_bindings).where(b.provider == provider, b.external_id == external_id)
                             .values(user_id=into_user, identity_event_id=event_id, bound_at=sa.func.now()))
            return len(accounts)

    def bindings(self) -> dict[tuple[str, str], str]:
        """The current account → person index."""
        b = t.user_bindings.c
        with self.engine.connect() as conn:
            return {(r.provider, r.external_id): r.user_id for r in conn.execute(sa.select(b.provider, b.external_id, b.user_id))}

    def identity_log(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t.identity_events).order_by(t.identity_events.c.identity_event_id))]
