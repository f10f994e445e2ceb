"""Delta passes: what a resolution or allocation pass read, so that the next one can skip what did not change.

Every input a pass reads is append-only or stamped when written, so a few aggregates identify it:

- the facts of a window: their count (``activity_events`` is append-only: the count grows with each new fact);
- the identity log: its newest ``identity_event_id`` (bindings are derived from the log);
- an epoch's curation: its row count, the newest ``resolved_at`` (stamped whenever resolution writes a row) and
  the number and newest ``curated_at`` of the rows an admin touched.

A mark is a cache, never a fact: a missing or unequal mark only makes the next pass a full one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from credit_pipeline.core.epochs import parse_epoch_key
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.store_base import StoreBase, as_dicts


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class PassMarkStore(StoreBase):
    """The inputs of a pass, and the marks passes leave."""

    def window_fact_count(self, start: datetime, end: datetime) -> int:
        e = t.activity_events.c
        with self._reading() as conn:
            return conn.execute(sa.select(sa.func.count()).where(e.event_time >= start, e.event_time < end)).scalar_one()

    def identity_head(self) -> int:
        with self._reading() as conn:
            return conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.identity_events.c.identity_event_id), 0))).scalar_one()

    def curation_digest(self, key: str) -> dict[str, Any]:
        c = t.activity_curation.c
        touched = c.curated_at.is_not(None)
        query = sa.select(sa.func.count(), sa.func.max(c.resolved_at), sa.func.count().filter(touched), sa.func.max(c.curated_at)) \
            .where(c.epoch_key == parse_epoch_key(key))
        with self._reading() as conn:
            rows, resolved, admin, curated = conn.execute(query).one()
        return {"rows": rows, "resolved_at": _stamp(resolved), "admin_rows": admin, "curated_at": _stamp(curated)}

    def pass_mark(self, key: str, stage: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        m = t.epoch_pass_marks.c
        with self._reading() as conn:
            row = conn.execute(sa.select(m.mark, m.summary).where(m.epoch_key == parse_epoch_key(key), m.stage == stage)).first()
        return None if row is None else (row.mark, row.summary)

    def record_pass_mark(self, key: str, stage: str, mark: dict[str, Any], summary: dict[str, Any] | None) -> None:
        stmt = pg_insert(t.epoch_pass_marks).values(epoch_key=parse_epoch_key(key), stage=stage, mark=mark, summary=summary)
        stmt = stmt.on_conflict_do_update(index_elements=["epoch_key", "stage"],
                                          set_={"mark": stmt.excluded.mark, "summary": stmt.excluded.summary, "recorded_at": sa.func.now()})
        with self.transaction() as conn:
            conn.execute(stmt)

    def record_pass_summary(self, key: str, stage: str, mark: dict[str, Any], summary: dict[str, Any]) -> bool:
        """Keep ``summary`` with the pass mark ``mark``; False (nothing written) when the mark has been replaced."""
        m = t.epoch_pass_marks.c
        with self.transaction() as conn:
            done = conn.execute(sa.update(t.epoch_pass_marks).where(
                m.epoch_key == parse_epoch_key(key), m.stage == stage, m.mark == mark)
                .values(summary=summary))
            return done.rowcount == 1

    def uncurated_events_between(self, start: datetime, end: datetime, key: str) -> list[dict[str, Any]]:
        """The window's facts epoch ``key`` has not curated (without payloads), ordered by id."""
        e, c = t.activity_events.c, t.activity_curation.c
        cols = [col for col in t.activity_events.c if col.name != "payload"]
        query = sa.select(*cols).where(e.event_time >= start, e.event_time < end, ~sa.exists().where(
            c.event_id == e.event_id, c.epoch_key == parse_epoch_key(key))).order_by(e.event_id)
        with self._reading() as conn:
            return as_dicts(conn.execute(query))

    def window_event_batches(self, start: datetime, end: datetime, key: str | None = None, *, curated: bool = False,
                             batch: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """The window's facts (without payloads) ordered by id, ``batch`` at a time through a server-side cursor.

        With ``key``, only those epoch ``key`` has curated (``curated=True``) or has not (``curated=False``)."""
        e, c = t.activity_events.c, t.activity_curation.c
        cols = [col for col in t.activity_events.c if col.name != "payload"]
        query = sa.select(*cols).where(e.event_time >= start, e.event_time < end)
        if key is not None:
            held = sa.exists().where(c.event_id == e.event_id, c.epoch_key == parse_epoch_key(key))
            query = query.where(held if curated else ~held)
        query = query.order_by(e.event_id).execution_options(stream_results=True, yield_per=batch)
        with self._reading() as conn:
            result = conn.execute(query)
            keys = list(result.keys())
            for part in result.partitions():
                yield [dict(zip(keys, row)) for row in part]
