"""Reading the identity log as of a point, for statements and their verification."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from credit_pipeline.core.statement import iso_utc
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.store_base import StoreBase


class IdentityLogStore(StoreBase):
    """The identity log up to an event id (the whole log when ``through`` is None)."""

    def identity_log_through(self, through: int | None = None, conn: Connection | None = None) -> list[dict[str, Any]]:
        e = t.identity_events.c
        query = sa.select(t.identity_events).order_by(e.identity_event_id)
        if through is not None:
            query = query.where(e.identity_event_id <= through)
        with self._reading(conn) as conn:
            return [{**r._mapping, "created_at": iso_utc(r.created_at)} for r in conn.execute(query)]
