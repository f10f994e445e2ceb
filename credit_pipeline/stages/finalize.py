"""Finalize: split the pool over the approved allocation set into an immutable statement (SPEC §8-§10).

Everything happens in one transaction that holds the epoch row: read the curated
events, the identity log, allocations, corrections, pool and approvals; re-derive
the recipients and allocations from them and refuse on any difference; check that
a valid approval of the next revision matches; build the bundle; verify it exactly
as ``verify`` would; write it; move the epoch to finalized. Finalizing again returns
the stored statement unchanged; a recorded, approved correction issues revision n+1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from credit_pipeline.core.allocation import counts
from credit_pipeline.core.hashing import SignatureError, allocation_set_hash, approval_message, recover_signer
from credit_pipeline.core.identity import identity_digest, replay_bindings
from credit_pipeline.core.policy import validate_policy
from credit_pipeline.core.statement import BUNDLE_FORMAT, build_statement, corrected_allocations
from credit_pipeline.core.verification import verify_bundle
from credit_pipeline.core.wallets import payout_wallets
from credit_pipeline.ledger.store import EpochRecord, LedgerError, LedgerStore
from credit_pipeline.stages.derive import allocation_drift, resolution_drift
from credit_pipeline.stages.resolve import curated_event, pinned_document


class FinalizeRefused(LedgerError):
    """The epoch cannot be finalized yet; the message says what is missing."""


@dataclass(frozen=True)
class FinalizeResult:
    bundle: dict[str, Any]
    written: bool

    @property
    def statement_hash(self) -> str:
        return self.bundle["statement_hash"]


@dataclass
class LedgerStatement:
    """A statement rebuilt from the ledger rows, with every way the rows disagree with each other."""

    bundle: dict[str, Any]
    drift: list[str] = field(default_factory=list)
    approvals: int = 0


def valid_approvals(approvals: list[dict[str, Any]], message: str, allocation_hash: str, revision: int,
                    pinned: set[str]) -> list[dict[str, Any]]:
    """Approvals of ``revision`` whose signature recovers to a pinned approver over ``message``."""
    valid = []
    for a in approvals:
        if a.get("revision", 1) != revision or a["allocation_set_hash"] != allocation_hash:
            continue
        try:
            signer = recover_signer(message, a["signature"])
        except SignatureError:
            continue
        if signer == a["signer"] and signer in pinned:
            valid.append(a)
    return valid


def ledger_statement(store: LedgerStore, conn: Connection | None, epoch: EpochRecord, revision: int, issued_at: datetime,
                     *, identity_through: int | None = None, bundle_format: str = BUNDLE_FORMAT) -> LedgerStatement | None:
    """Build revision ``revision`` of the epoch's statement from the stored rows.

    None when a revision above 1 has no correction recorded for it. ``identity_through``
    fixes the identity log prefix (verify passes the statement's); default: all of it. ``bundle_format``
    is the format to build (verify passes the stored statement's, so a v2 statement rebuilds as v2).
    """
    key = epoch.key
    document = pinned_document(epoch)
    if document is None or epoch.policy_hash is None:
        raise FinalizeRefused(f"epoch {key} has no pinned policy; it must be in review first (materialize epoch_allocations)")
    policy = validate_policy(document, f"pinned policy of epoch {key}")
    corrections = store.corrections(key, conn)
    statements = [s for s in store.statement_rows(key) if s["revision"] < revision] if revision > 1 else []
    if revision > 1 and not any(c["revision"] == revision for c in corrections):
        return None
    supersedes = statements[-1]["statement_hash"] if statements else None
    rows = store.curated_events(key, conn)
    log = store.identity_log_through(identity_through, conn)
    bindings = replay_bindings(log)
    stored = store.allocations(key, conn)
    drift = resolution_drift(rows, bindings, policy) + allocation_drift(rows, stored, policy)
    counted = [r for r in rows if counts(curated_event(r))]
    components = store.pool_components(key, conn)
    pool_total = sum(c["amount"] for c in components)
    allocations = corrected_allocations(stored, corrections, revision)
    ahash = allocation_set_hash({a["recipient_id"]: a["final_units"] for a in allocations})
    ledger_id = store.ledger_id()
    message = approval_message(key, epoch.policy_hash, ahash, pool_total, ledger_id=ledger_id, revision=revision, supersedes=supersedes)
    approvals = valid_approvals(store.approvals(key, conn), message, ahash, revision, {a.lower() for a in epoch.approvers or []})
    bundle = build_statement(
        ledger_id=ledger_id, epoch_key=key, revision=revision, supersedes=supersedes, policy=document,
        policy_hash=epoch.policy_hash, events=counted, allocations=stored, corrections=corrections,
        pool_components=components, approvals=approvals,
        finalized_at=issued_at if revision == 1 else epoch.finalized_at, issued_at=issued_at,
        identity=identity_digest(log), completeness=epoch.completeness, completeness_waiver=epoch.completeness_waiver,
        wallets=payout_wallets(log), bundle_format=bundle_format,
    )
    return LedgerStatement(bundle, drift, len(approvals))


def _build_for_finalize(store: LedgerStore, conn: Connection, epoch: EpochRecord, revision: int, issued_at: datetime) -> dict[str, Any] | None:
    key = epoch.key
    built = ledger_statement(store, conn, epoch, revision, issued_at)
    if built is None:
        return None  # finalized, nothing new to issue
    if "base_issuance" not in {c["component_id"] for c in built.bundle["pool"]["components"]}:
        raise FinalizeRefused(f"epoch {key} has no base_issuance pool component; materialize epoch_allocations for it")
    if built.drift:
        raise FinalizeRefused(f"epoch {key}'s stored allocations are not what its rows derive ({'; '.join(built.drift[:5])}); "
                              "materialize resolved_activity and epoch_allocations, then approve the new set")
    if not built.approvals:
        bundle = built.bundle
        raise FinalizeRefused(
            f"epoch {key} has no valid approval for revision {revision} of its allocation set "
            f"{bundle['allocation_set_hash'][:16]}… (pool {bundle['pool']['total']}); an approver must sign it first: "
            f"credit-pipeline approve --epoch {key}"
        )
    report = verify_bundle(built.bundle)
    if not report.ok:
        raise FinalizeRefused(f"the statement built for epoch {key} does not verify ({report.mismatch}); nothing was written")
    return built.bundle


def finalize_epoch(store: LedgerStore, key: str, issued_at: datetime | None = None) -> FinalizeResult:
    """Write the next statement revision and finalize (idempotent when nothing new is approved).

    ``issued_at`` stamps the statement and the epoch's ``finalized_at``; it defaults to the database clock. A replay
    of a recorded week (the kill tests) passes a fixed time so that its bytes are the recorded run's.
    """
    with store.atomic():  # every read the build makes goes through the finalize transaction
        bundle, written = store.finalize(key, lambda conn, epoch, revision, at: _build_for_finalize(store, conn, epoch, revision, at),
                                        issued_at=issued_at)
    return FinalizeResult(bundle, written)
