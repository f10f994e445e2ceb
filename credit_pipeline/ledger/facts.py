"""Raw facts and source cursors: a page of events and its cursor in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.core.storable import QuarantinedItem
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.copy_rows import EVENT_COLUMNS, copy_from, copy_text, rows_copy_text
from credit_pipeline.ledger.records import CursorAdvance, PageWrite
from credit_pipeline.ledger.store_base import StoreBase, as_dicts

_COLUMNS = ", ".join(EVENT_COLUMNS)
_KNOWN = sa.text("SELECT event_id FROM activity_events WHERE event_id = ANY(CAST(:ids AS text[]))")
_UNIQUE_VIOLATION = "23505"
# A page that raced another writer is staged in a temporary table of this session (no constraints, indexes
# or triggers: the insert into activity_events applies them), emptied by the move and, whatever happens, at commit.
_STAGE = "staged_activity_events"
_STAGE_TABLE = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
                f"SELECT {_COLUMNS} FROM activity_events WITH NO DATA")
_MOVE_STAGED = (f"WITH page AS (DELETE FROM {_STAGE} RETURNING *) INSERT INTO activity_events ({_COLUMNS}) "
                f"SELECT {_COLUMNS} FROM page ON CONFLICT (event_id) DO NOTHING RETURNING event_id")


class FactsStore(StoreBase):
    """Raw facts and source cursors: a page of events and its cursor in one transaction."""

    def record_page(self, events: Sequence[ActivityEvent], cursor: CursorAdvance | None,
                    quarantined: Sequence[QuarantinedItem] = ()) -> PageWrite:
        """Insert a page of events, its quarantined items, and advance its cursor in one transaction.

        Re-inserting known events is a no-op; a quarantined item seen again is counted again. A
        quarantined item whose event is now stored (read on a later pass) is marked resolved. If
        anything fails, nothing is written, so a cursor never passes an uncommitted event.
        """
        if quarantined and cursor is None:
            raise ValueError("quarantined items need the page's stream (pass its cursor)")
        with self.transaction() as conn:
            new_ids = self._insert_events(conn, events)
            if quarantined:
                self._quarantine(conn, cursor, quarantined)
            if events or quarantined:
                self._resolve_quarantined(conn, [e.event_id for e in events], [q.raw_sha256 for q in quarantined])
            if cursor is not None:
                self._advance_cursor(conn, cursor)
        return PageWrite(new_ids=new_ids, seen=len(events) - len(new_ids))

    def _quarantine(self, conn: Connection, where: CursorAdvance, items: Sequence[QuarantinedItem]) -> None:
        q = t.quarantined_items
        rows = {i.raw_sha256: {"source": where.source, "stream": where.stream, "source_ref": where.source_ref, "raw_sha256": i.raw_sha256,
                               "item_key": i.item_key, "reason": i.reason, "excerpt": i.excerpt} for i in items}
        stmt = pg_insert(q).values(list(rows.values()))
        conn.execute(stmt.on_conflict_do_update(index_elements=["source", "stream", "source_ref", "raw_sha256"],
                                                set_={"last_seen_at": sa.func.now(), "times_seen": q.c.times_seen + 1, "reason": stmt.excluded.reason}))

    def _resolve_quarantined(self, conn: Connection, event_ids: list[str], shas: list[str]) -> None:
        """Quarantined items whose event is stored (now, or before they were quarantined) are resolved."""
        conn.execute(sa.text(
            "UPDATE quarantined_items q SET resolved_event_id = q.item_key FROM activity_events e "
            "WHERE q.resolved_event_id IS NULL AND q.item_key = e.event_id "
            "AND (q.item_key = ANY(CAST(:ids AS text[])) OR q.raw_sha256 = ANY(CAST(:shas AS text[])))"), {"ids": event_ids, "shas": shas})

    def unresolved_quarantined(self, shas: Sequence[str] | None = None, source: str | None = None) -> list[dict[str, Any]]:
        """Quarantined items not (yet) read on a later pass: all of them, or those among ``shas``."""
        q = t.quarantined_items
        query = sa.select(q).where(q.c.resolved_event_id.is_(None)).order_by(q.c.source, q.c.stream, q.c.source_ref, q.c.first_seen_at)
        if shas is not None:
            if not shas:
                return []
            query = query.where(q.c.raw_sha256.in_(list(shas)))
        if source:
            query = query.where(q.c.source == source)
        with self._reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def _insert_events(self, conn: Connection, events: Sequence[ActivityEvent]) -> list[str]:
        """Store the page's events not stored yet (the first of a repeated id) and return their ids, in page order.

        Those not found stored are COPY-ed straight into activity_events, under a savepoint of the caller's
        transaction: a page seen before costs one indexed look-up, and the rows pass the table's constraints
        as any insert does. When another writer stored some of them after the look-up (a unique violation),
        the savepoint is rolled back and they go through the idempotent insert instead.
        """
        first: dict[str, ActivityEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        if not first:
            return []
        known = set(conn.execute(_KNOWN, {"ids": list(first)}).scalars())
        fresh = [e for i, e in first.items() if i not in known]
        if not fresh:
            return []
        try:
            with conn.begin_nested():
                copy_from(conn, f"COPY activity_events ({_COLUMNS}) FROM STDIN", copy_text(fresh))
            return [e.event_id for e in fresh]
        except sa.exc.IntegrityError as exc:
            if getattr(exc.orig, "pgcode", None) != _UNIQUE_VIOLATION:
                raise
        return self._insert_staged(conn, fresh)

    def _insert_staged(self, conn: Connection, events: Sequence[ActivityEvent]) -> list[str]:
        """COPY ``events`` into this session's staging table, then move them by one ``INSERT ... ON CONFLICT DO NOTHING``."""
        conn.exec_driver_sql(_STAGE_TABLE)
        copy_from(conn, f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN", copy_text(events))
        stored = set(conn.exec_driver_sql(_MOVE_STAGED).scalars())
        return [e.event_id for e in events if e.event_id in stored]

    def _advance_cursor(self, conn: Connection, cursor: CursorAdvance) -> None:
        stmt = pg_insert(t.source_cursors).values(
            source=cursor.source, stream=cursor.stream, source_ref=cursor.source_ref, position=cursor.position
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["source", "stream", "source_ref"],
                set_={"position": stmt.excluded.position, "updated_at": sa.func.now()},
                # a pass that reached the same position (nothing new) leaves the row as it was: no write
                where=t.source_cursors.c.position.is_distinct_from(stmt.excluded.position),
            )
        )

    def get_cursor(self, source: str, stream: str, source_ref: str) -> dict[str, Any] | None:
        c = t.source_cursors.c
        with self._reading() as conn:
            return conn.execute(
                sa.select(c.position).where(c.source == source, c.stream == stream, c.source_ref == source_ref)
            ).scalar()

    def list_cursors(self, source: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.source_cursors).order_by(*t.source_cursors.primary_key.columns)
        if source:
            query = query.where(t.source_cursors.c.source == source)
        with self._reading() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def events_between(self, start: datetime, end: datetime, source: str | None = None) -> list[dict[str, Any]]:
        """Events with ``start <= event_time < end`` (without payloads), ordered by id."""
        e = t.activity_events.c
        cols = [col for col in t.activity_events.c if col.name != "payload"]
        query = sa.select(*cols).where(e.event_time >= start, e.event_time < end).order_by(e.event_id)
        if source:
            query = query.where(e.source == source)
        with self._reading() as conn:
            return as_dicts(conn.execute(query))

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        with self._reading() as conn:
            row = conn.execute(sa.select(t.activity_events).where(t.activity_events.c.event_id == event_id)).first()
        return None if row is None else dict(row._mapping)

    def payloads(self, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored raw payloads by event id (fetched in batches)."""
        e = t.activity_events.c
        found: dict[str, dict[str, Any]] = {}
        with self._reading() as conn:
            for i in range(0, len(event_ids), 5000):
                batch = list(event_ids[i:i + 5000])
                found.update({r.event_id: r.payload for r in conn.execute(sa.select(e.event_id, e.payload).where(e.event_id.in_(batch)))})
        return found

    def events_without_facts(self, event_ids: Sequence[str], facts_version: int) -> list[str]:
        """Those of ``event_ids`` whose rule facts at ``facts_version`` are not derived yet."""
        f = t.event_facts.c
        have: set[str] = set()
        with self._reading() as conn:
            for i in range(0, len(event_ids), 5000):
                batch = list(event_ids[i:i + 5000])
                have.update(conn.execute(sa.select(f.event_id).where(f.facts_version == facts_version, f.event_id.in_(batch))).scalars())
        return [e for e in event_ids if e not in have]

    def facts_of(self, event_ids: Sequence[str], facts_version: int) -> dict[str, dict[str, Any]]:
        """The rule facts of ``event_ids`` at ``facts_version``, by event id (those derived)."""
        f = t.event_facts.c
        found: dict[str, dict[str, Any]] = {}
        with self._reading() as conn:
            for i in range(0, len(event_ids), 5000):
                batch = list(event_ids[i:i + 5000])
                query = sa.select(f.event_id, f.facts).where(f.facts_version == facts_version, f.event_id.in_(batch))
                found.update({r.event_id: r.facts for r in conn.execute(query)})
        return found

    def record_facts(self, facts: dict[str, dict[str, Any]], facts_version: int) -> int:
        """Keep each event's rule facts (append-only; facts already derived are left as they are)."""
        rows = [{"event_id": k, "facts_version": facts_version, "facts": v} for k, v in facts.items()]
        if not rows:
            return 0
        with self.transaction() as conn:
            try:  # COPY, as a page's events are (a first resolution of a week derives facts for all of them)
                with conn.begin_nested():
                    copy_from(conn, "COPY event_facts (event_id, facts_version, facts) FROM STDIN",
                              rows_copy_text(t.event_facts, ("event_id", "facts_version", "facts"), rows))
                return len(rows)
            except sa.exc.IntegrityError as exc:  # another pass derived some of them meanwhile: keep theirs
                if getattr(exc.orig, "pgcode", None) != _UNIQUE_VIOLATION:
                    raise
            stmt = pg_insert(t.event_facts).on_conflict_do_nothing()
            written = 0
            for i in range(0, len(rows), 2000):
                written += conn.execute(stmt, rows[i:i + 2000]).rowcount or 0
            return written

    def event_counts(self, start: datetime, end: datetime, source: str) -> dict[tuple[str, str], int]:
        """Stored facts in ``[start, end)`` per (event_type, repo or channel)."""
        e = t.activity_events.c
        ref = sa.func.coalesce(e.metadata["repo"].astext, e.metadata["channel_id"].astext)
        query = (sa.select(e.event_type, ref.label("ref"), sa.func.count()).where(e.source == source, e.event_time >= start, e.event_time < end)
                 .group_by(e.event_type, ref))
        with self._reading() as conn:
            return {(r.event_type, r.ref): r[2] for r in conn.execute(query)}

    def event_times(self, event_ids: Sequence[str]) -> dict[str, datetime]:
        e = t.activity_events.c
        with self._reading() as conn:
            return {r.event_id: r.event_time for r in conn.execute(sa.select(e.event_id, e.event_time).where(e.event_id.in_(list(event_ids))))}
