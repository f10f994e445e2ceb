"""Epoch rows: creation, completeness, the move to review."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from credit_pipeline.core.epochs import parse_epoch_key, window_for_key
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.records import EpochRecord, LedgerError, epoch_from_row
from credit_pipeline.ledger.store_base import StoreBase


class EpochStore(StoreBase):
    """Epoch rows: creation, completeness, the move to review."""

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

    def get_epoch(self, key: str) -> EpochRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))).first()
        return None if row is None else epoch_from_row(row)

    def list_epochs(self) -> list[EpochRecord]:
        with self.engine.connect() as conn:
            return [epoch_from_row(r) for r in conn.execute(sa.select(t.epochs).order_by(t.epochs.c.epoch_key))]

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
