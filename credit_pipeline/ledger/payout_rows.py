"""Approvals and statements: append-only, finalize in one locked transaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from credit_pipeline.core.epochs import parse_epoch_key
from credit_pipeline.core.statement import statement_bytes
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.records import EpochRecord, EpochStateError, LedgerError
from credit_pipeline.ledger.store_base import StoreBase


class PayoutStore(StoreBase):
    """Approvals and statements: append-only, finalize in one locked transaction."""

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
