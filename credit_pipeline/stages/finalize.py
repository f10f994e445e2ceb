"""Finalize: split the pool over the approved allocation set into an immutable statement (SPEC §8-§10).

Everything happens in one transaction that holds the epoch row: read the curated
events, allocations, pool and approvals; check that a valid approval matches the
current allocation hash; build the bundle; write it; move the epoch to finalized.
Finalizing again returns the stored statement unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from credit_pipeline.core.allocation import counts
from credit_pipeline.core.hashing import SignatureError, allocation_set_hash, approval_message, recover_signer
from credit_pipeline.core.statement import build_statement, final_units
from credit_pipeline.ledger.store import EpochRecord, LedgerError, LedgerStore
from credit_pipeline.stages.allocate import curated_for_allocation


class FinalizeRefused(LedgerError):
    """The epoch cannot be finalized yet; the message says what is missing."""


@dataclass(frozen=True)
class FinalizeResult:
    bundle: dict[str, Any]
    written: bool

    @property
    def statement_hash(self) -> str:
        return self.bundle["statement_hash"]


def valid_approvals(approvals: list[dict[str, Any]], epoch: EpochRecord, allocation_hash: str, pool_total: int) -> list[dict[str, Any]]:
    """Approvals whose signature recovers to a pinned approver over the current message."""
    message = approval_message(epoch.key, epoch.policy_hash or "", allocation_hash, pool_total)
    pinned = {a.lower() for a in epoch.approvers or []}
    valid = []
    for a in approvals:
        try:
            signer = recover_signer(message, a["signature"])
        except SignatureError:
            continue
        if a["allocation_set_hash"] == allocation_hash and signer == a["signer"] and signer in pinned:
            valid.append(a)
    return valid


def statement_from_ledger(store: LedgerStore, conn: Connection | None, epoch: EpochRecord, finalized_at: datetime) -> dict[str, Any]:
    """Build the statement bundle from the stored rows (also used to re-verify)."""
    key = epoch.key
    if epoch.policy is None or epoch.policy_hash is None:
        raise FinalizeRefused(f"epoch {key} has no pinned policy; it must be in review first")
    rows = store.curated_events(key, conn)
    curated = {c.event_id: c for c in curated_for_allocation(rows)}
    events = [
        {"event_id": r["event_id"], "source": r["source"], "event_type": r["event_type"], "recipient_id": r["recipient_id"],
         "weight_override": r["weight_override"], "payload_hash": r["payload_hash"]}
        for r in rows if counts(curated[r["event_id"]])
    ]
    allocations = [
        {"recipient_id": a["recipient_id"], "proposed_units": a["proposed_units"], "activity_count": a["activity_count"],
         "final_units": a["final_units"], "reason": a["reason"]}
        for a in store.allocations(key, conn)
    ]
    components = store.pool_components(key, conn)
    if "base_issuance" not in {c["component_id"] for c in components}:
        raise FinalizeRefused(f"epoch {key} has no base_issuance pool component; materialize epoch_allocations for it")
    pool_total = sum(c["amount"] for c in components)
    ahash = allocation_set_hash({a["recipient_id"]: final_units(a) for a in allocations})
    approvals = valid_approvals(store.approvals(key, conn), epoch, ahash, pool_total)
    if not approvals:
        raise FinalizeRefused(
            f"epoch {key} has no valid approval for its current allocation set {ahash[:16]}… (pool {pool_total}); "
            f"an approver must sign it first: credit-pipeline approve --epoch {key}"
        )
    return build_statement(epoch_key=key, policy=epoch.policy, policy_hash=epoch.policy_hash, events=events,
                           allocations=allocations, pool_components=components, approvals=approvals, finalized_at=finalized_at)


def finalize_epoch(store: LedgerStore, key: str) -> FinalizeResult:
    """Write the statement and finalize (idempotent)."""
    bundle, written = store.finalize(key, lambda conn, epoch, at: statement_from_ledger(store, conn, epoch, at))
    return FinalizeResult(bundle, written)
