"""Epoch rows: creation, completeness, the move to review."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from credit_pipeline.core.completeness import short_streams
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
        with self._reading() as conn:
            row = conn.execute(sa.select(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))).first()
        return None if row is None else epoch_from_row(row)

    def list_epochs(self) -> list[EpochRecord]:
        with self._reading() as conn:
            return [epoch_from_row(r) for r in conn.execute(sa.select(t.epochs).order_by(t.epochs.c.epoch_key))]

    def epoch_summaries(self) -> list[dict[str, Any]]:
        """Per epoch: status, curated and counted events, pool total, latest statement hash, late events (stored after the
        epoch left open), and the completeness result and waiver."""
        query = sa.text("""
            SELECT e.epoch_key, e.window_start, e.window_end, e.status,
                   (SELECT count(*) FROM activity_curation c WHERE c.epoch_key = e.epoch_key) AS events,
                   (SELECT count(*) FROM activity_curation c WHERE c.epoch_key = e.epoch_key
                        AND c.included AND c.recipient_id IS NOT NULL) AS counted_events,
                   (SELECT coalesce(sum(amount), 0) FROM epoch_pool_components p WHERE p.epoch_key = e.epoch_key) AS pool,
                   (SELECT s.statement_hash FROM payout_statements s WHERE s.epoch_key = e.epoch_key
                        ORDER BY s.revision DESC LIMIT 1) AS statement_hash,
                   (SELECT max(s.revision) FROM payout_statements s WHERE s.epoch_key = e.epoch_key) AS revision,
                   (SELECT string_agg(s.statement_hash, ' <- ' ORDER BY s.revision DESC) FROM payout_statements s
                        WHERE s.epoch_key = e.epoch_key) AS chain,
                   -- events of the window stored after the epoch left open: kept as facts, not credited
                   CASE WHEN e.status = 'open' THEN 0 ELSE
                       (SELECT count(*) FROM activity_events a WHERE a.event_time >= e.window_start AND a.event_time < e.window_end
                            AND NOT EXISTS (SELECT 1 FROM activity_curation c WHERE c.event_id = a.event_id AND c.epoch_key = e.epoch_key))
                   END AS late_events,
                   e.completeness, e.completeness_waiver
            FROM epochs e ORDER BY e.epoch_key""")
        with self._reading() as conn:
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
        with self._reading() as conn:
            return {r.epoch_key.isoformat(): r.status for r in conn.execute(sa.select(t.epochs.c.epoch_key, t.epochs.c.status))}

    def waive_completeness(self, key: str, actor: str, reason: str) -> dict[str, Any]:
        """Record who waived which completeness shortfalls of an open epoch, when and why."""
        if not (reason or "").strip():
            raise LedgerError("a completeness waiver needs a reason (--reason): say why the missing items may be left out")
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status != "open":
                raise LedgerError(f"epoch {key} is {epoch.status}; a waiver only matters before it enters review")
            streams = short_streams(epoch.completeness)
            if not streams:
                raise LedgerError(f"epoch {key} has no completeness shortfall to waive (see its raw activity metadata)")
            waiver = {"by": actor, "reason": reason.strip(), "streams": streams,
                      "shortfall": {s: epoch.completeness[s].get("shortfall", 0) for s in streams},
                      "at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            conn.execute(sa.update(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key)).values(completeness_waiver=waiver))
            return waiver

    def enter_review(self, key: str, policy_text: str, policy_hash: str, approvers: list[str]) -> EpochRecord:
        """Move an open epoch to review, pinning the policy (its exact canonical JSON text) and approvers (idempotent)."""
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status != "open":
                return epoch
            conn.execute(
                sa.update(t.epochs)
                .where(t.epochs.c.epoch_key == parse_epoch_key(key))
                .values(status="review", policy=json.loads(policy_text), policy_text=policy_text, policy_hash=policy_hash,
                        approvers=approvers, review_at=sa.func.now())
            )
            return self._epoch(conn, key)

    def ledger_id(self) -> str:
        """The UUID made once for this ledger by its migrations (approval message v2 names it)."""
        with self._reading() as conn:
            value = conn.execute(sa.select(t.ledger_identity.c.ledger_id)).scalar()
        if value is None:
            raise LedgerError("this ledger has no ledger_identity row; run `credit-pipeline db upgrade`")
        return str(value)
