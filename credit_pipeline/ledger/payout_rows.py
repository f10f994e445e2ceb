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


def _aware(at: datetime, name: str) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise LedgerError(f"{name} must be a datetime with a time zone (got {at!r})")
    return at


# An advisory lock key: identity writes hold it shared, finalize exclusively ("idlg").
IDENTITY_LOG_LOCK = 0x69646C67


class PayoutStore(StoreBase):
    """Approvals and statements: append-only, finalize in one locked transaction."""

    def record_approval(self, key: str, *, allocation_set_hash: str, policy_hash: str, pool_total: int, message: str,
                        signer: str, signature: str, revision: int = 1, ledger_id: str | None = None,
                        supersedes: str | None = None, approved_at: datetime | None = None) -> None:
        """Append an approval (the caller has verified the signature against the epoch's next revision).

        ``approved_at`` defaults to the database clock; a caller that replays a recorded week passes a fixed time.
        """
        stamp = {} if approved_at is None else {"approved_at": _aware(approved_at, "approved_at")}
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            wanted = "review" if revision == 1 else "finalized"
            if epoch.status != wanted:
                raise EpochStateError(f"epoch {key} is {epoch.status}; revision {revision} is approved only while it is {wanted}")
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(t.epoch_approvals).values(
                        epoch_key=parse_epoch_key(key), allocation_set_hash=allocation_set_hash, policy_hash=policy_hash,
                        pool_total=pool_total, message=message, signer=signer, signature=signature, revision=revision,
                        ledger_id=ledger_id, supersedes=supersedes, **stamp))
            except sa.exc.IntegrityError as exc:
                if "approval_once_per_message" in str(exc.orig) or "signature" in str(exc.orig):
                    raise LedgerError(f"{signer} already approved this exact message for epoch {key} (revision {revision}, "
                                      f"allocation set {allocation_set_hash[:12]}…, pool {pool_total}); nothing to do") from None
                raise LedgerError(f"approval refused by the ledger: {str(exc.orig).splitlines()[0]}") from None

    def approvals(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        a = t.epoch_approvals.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.epoch_approvals).where(a.epoch_key == parse_epoch_key(key)).order_by(a.approval_id))
            return [{**r._mapping, "pool_total": int(r.pool_total)} for r in rows]

    def finalize(self, key: str, build: Callable[[Connection, EpochRecord, int, datetime], dict[str, Any] | None],
                 issued_at: datetime | None = None) -> tuple[dict[str, Any], bool]:
        """Write the epoch's next statement revision, in one transaction that holds the epoch row.

        ``build(conn, epoch, revision, issued_at)`` returns the bundle, or None when
        there is nothing new to issue (a finalized epoch without a pending
        correction): then the latest statement is returned unchanged (``False``).
        It reads through ``conn`` while this transaction holds the epoch row
        ``FOR UPDATE``; every curation, allocation and identity write waits on that
        lock, so nothing changes between what is read and what is written. A
        concurrent second finalize waits for the first and then does the same.
        ``issued_at`` defaults to the database clock (a replay of a recorded week passes a fixed time).
        """
        with self.transaction() as conn:
            # Identity writes hold this lock shared: the log the statement hashes is the one finalize saw.
            # Taken before the epoch row, in the same order as identity writes, so the two never deadlock.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": IDENTITY_LOG_LOCK})
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status not in ("review", "finalized"):
                raise EpochStateError(f"epoch {key} is {epoch.status}; only an epoch in review can be finalized")
            latest = self._latest_revision(conn, key)
            issued_at = conn.execute(sa.select(sa.func.now())).scalar() if issued_at is None else _aware(issued_at, "issued_at")
            bundle = build(conn, epoch, latest + 1, issued_at)
            if bundle is None:
                return self._latest_statement(conn, key), False
            conn.execute(sa.insert(t.payout_statements).values(
                statement_hash=bundle["statement_hash"], epoch_key=parse_epoch_key(key), revision=bundle["revision"],
                supersedes=bundle["supersedes"], allocation_set_hash=bundle["allocation_set_hash"],
                pool_total=bundle["pool"]["total"], bundle=statement_bytes(bundle).decode("utf-8"), created_at=issued_at))
            if epoch.status == "review":
                conn.execute(sa.update(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))
                             .values(status="finalized", finalized_at=issued_at))
            return bundle, True

    def _latest_revision(self, conn: Connection, key: str) -> int:
        s = t.payout_statements.c
        return conn.execute(sa.select(sa.func.coalesce(sa.func.max(s.revision), 0)).where(s.epoch_key == parse_epoch_key(key))).scalar()

    def statement_rows(self, key: str) -> list[dict[str, Any]]:
        """Every statement revision of an epoch, oldest first, with its exact stored text."""
        s = t.payout_statements.c
        with self._reading() as conn:
            rows = conn.execute(sa.select(t.payout_statements).where(s.epoch_key == parse_epoch_key(key)).order_by(s.revision))
            return [{**r._mapping, "pool_total": int(r.pool_total)} for r in rows]

    # -- corrections ---------------------------------------------------------

    def add_correction(self, key: str, recipient_id: str, final_units: int, reason: str, actor: str) -> int:
        """Record a correction for the next statement revision of a finalized epoch; returns that revision."""
        if isinstance(final_units, bool) or not isinstance(final_units, int) or final_units < 0:
            raise LedgerError(f"corrected final units for {recipient_id} must be an integer >= 0 (got {final_units!r})")
        if not (reason or "").strip():
            raise LedgerError(f"a correction of {recipient_id} in epoch {key} needs a reason (--reason)")
        with self.transaction() as conn:
            epoch = self._epoch(conn, key, lock=True)
            if epoch.status != "finalized":
                raise EpochStateError(f"epoch {key} is {epoch.status}, not finalized: adjust it instead "
                                      f"(credit-pipeline adjust --epoch {key} ...); corrections supersede a finalized statement")
            revision = self._latest_revision(conn, key) + 1
            conn.execute(sa.insert(t.statement_corrections).values(
                epoch_key=parse_epoch_key(key), revision=revision, recipient_id=recipient_id, final_units=final_units,
                reason=reason.strip(), corrected_by=actor))
            return revision

    def corrections(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        """Every correction of an epoch, in recording order."""
        c = t.statement_corrections.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.statement_corrections).where(c.epoch_key == parse_epoch_key(key)).order_by(c.correction_id))
            return [dict(r._mapping) for r in rows]

    def _latest_statement(self, conn: Connection, key: str) -> dict[str, Any]:
        s = t.payout_statements.c
        text = conn.execute(sa.select(s.bundle).where(s.epoch_key == parse_epoch_key(key)).order_by(s.revision.desc()).limit(1)).scalar()
        if text is None:
            raise LedgerError(f"epoch {key} is finalized but has no statement; the ledger is inconsistent")
        return json.loads(text)

    def statement(self, key: str) -> dict[str, Any] | None:
        """The latest statement bundle of an epoch, or None."""
        with self._reading() as conn:
            try:
                return self._latest_statement(conn, key)
            except LedgerError:
                return None

    def statement_text(self, key: str) -> str | None:
        """The exact stored bytes (text) of the latest statement."""
        s = t.payout_statements.c
        with self._reading() as conn:
            return conn.execute(sa.select(s.bundle).where(s.epoch_key == parse_epoch_key(key)).order_by(s.revision.desc()).limit(1)).scalar()
