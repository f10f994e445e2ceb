"""Verify a statement: offline from its bundle, or against the database (SPEC §9, §10).

From the database, every revision of the epoch must (1) verify on its own, (2) be
stored in canonical form and chain to the revision before it, (3) equal the statement
rebuilt from the ledger rows (curation, the identity log up to the point it was
resolved from, allocations, corrections, pool, approvals, the pinned policy) — the
first difference, in the walk order of ``core.verification``, is reported with its
table, its line (keyed by event, recipient or component id) and field — and (4) carry, for every
credited event, the payload hash of its stored raw payload and the columns the
adapters' own parsing derives from that payload. Any inconsistency is a FAIL.
"""

from __future__ import annotations

import json
from typing import Any

from credit_pipeline.core.statement import BUNDLE_FORMAT_V2, BUNDLE_FORMAT_V3, statement_bytes
from credit_pipeline.core.verification import Difference, Expectations, Mismatch, VerificationReport, difference, shown, verify_bundle
from credit_pipeline.ledger.store import EpochRecord, LedgerError, LedgerStore
from credit_pipeline.stages.finalize import FinalizeRefused, ledger_statement
from credit_pipeline.stages.payload_check import payload_checks
from credit_pipeline.stages.resolve import pinned_document

MAX_BUNDLE_BYTES = 512 * 1024 * 1024

# Where each part of a statement is stored, for naming the table of a difference.
_TABLE_OF = {
    "events": "activity_events / activity_curation", "allocations": "epoch_allocations", "corrections": "statement_corrections",
    "pool": "epoch_pool_components", "approvals": "epoch_approvals", "policy": "epochs (pinned policy)",
    "policy_hash": "epochs (pinned policy)", "identity": "identity_events", "epoch": "epochs", "completeness": "epochs",
    "completeness_waiver": "epochs", "ledger_id": "ledger_identity", "payouts": "epoch_allocations / epoch_pool_components",
    "allocation_set_hash": "epoch_allocations", "issued_at": "payout_statements", "distribution": "identity_events (payout wallets)",
}
_CURATION_FIELDS = {"recipient_id", "resolution", "weight_override", "note", "curated_by", "curated_at", "weight", "decision"}


def verify_file_bytes(data: bytes, expectations: Expectations | None = None) -> VerificationReport:
    """Verify an exported bundle from its bytes (the hash is over canonical JSON, so whitespace and key order do not matter)."""
    if len(data) > MAX_BUNDLE_BYTES:
        return VerificationReport(ok=False, mismatch=f"file is {len(data)} bytes; a statement bundle is at most {MAX_BUNDLE_BYTES}")
    try:
        bundle = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return VerificationReport(ok=False, mismatch=f"not a JSON statement bundle: {exc}")
    except RecursionError:
        return VerificationReport(ok=False, mismatch="not a statement bundle: JSON nested too deeply")
    return verify_bundle(bundle, expectations)


def verify_stored(store: LedgerStore, key: str, expectations: Expectations | None = None) -> VerificationReport:
    """Recompute every statement revision of epoch ``key`` from the ledger and compare."""
    rows = store.statement_rows(key)
    if not rows:
        raise LedgerError(f"epoch {key} has no statement yet; finalize it first (materialize payout_statements)")
    epoch = store.get_epoch(key)
    report = VerificationReport(ok=False)
    previous: dict[str, Any] | None = None
    for row in rows:
        try:
            _verify_revision(store, epoch, row, previous, report, expectations)
        except Mismatch as exc:
            report.mismatch = f"revision {row['revision']}: {exc}"
            return report
        previous = row
    report.ok = True
    return report


def _verify_revision(store: LedgerStore, epoch: EpochRecord | None, row: dict[str, Any], previous: dict[str, Any] | None,
                     report: VerificationReport, expectations: Expectations | None) -> None:
    revision = row["revision"]
    try:
        bundle = json.loads(row["bundle"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise Mismatch(f"payout_statements: the stored bundle is not JSON ({exc})") from None
    # The payload check starts first (in worker processes for a large statement) and is reported last.
    with payload_checks(store, bundle, revision) as payloads:
        alone = verify_bundle(bundle, expectations)
        if not alone.ok:
            raise Mismatch(alone.mismatch)
        report.checks += [f"r{revision}: {c}" for c in alone.checks]
        report.proved = alone.proved
        _check_stored_revision(store, epoch, row, previous, bundle, report)
        payloads.wait()
    report.checks.append(f"r{revision}: payloads and columns of {len(bundle['events'])} credited events")


def _check_stored_revision(store: LedgerStore, epoch: EpochRecord | None, row: dict[str, Any], previous: dict[str, Any] | None,
                           bundle: dict[str, Any], report: VerificationReport) -> None:
    revision = row["revision"]
    if statement_bytes(bundle).decode() != row["bundle"]:
        raise Mismatch("payout_statements: the stored statement is not in canonical form")
    _check_chain(row, previous, bundle)
    report.checks.append(f"r{revision}: chains to revision {revision - 1}" if previous else "r1: first revision")
    if epoch is None or epoch.status != "finalized":
        raise Mismatch(f"epochs: epoch {row['epoch_key']} has a statement but is {epoch.status if epoch else 'missing'}")
    _check_pinned(epoch, bundle)
    report.checks.append(f"r{revision}: pinned policy and approvers of the epoch row")
    if bundle["format"] in (BUNDLE_FORMAT_V2, BUNDLE_FORMAT_V3):  # v1 predates the rows a rebuild needs
        _check_rebuilt(store, epoch, row, bundle)
        report.checks.append(f"r{revision}: rebuilt from the ledger rows, identical")


def _check_chain(row: dict[str, Any], previous: dict[str, Any] | None, bundle: dict[str, Any]) -> None:
    want_revision = previous["revision"] + 1 if previous else 1
    want_supersedes = previous["statement_hash"] if previous else None
    if row["revision"] != want_revision or row["supersedes"] != want_supersedes:
        raise Mismatch(f"payout_statements: revision {row['revision']} supersedes {row['supersedes']}, but the chain needs "
                       f"revision {want_revision} superseding {want_supersedes}")
    if row["statement_hash"] != bundle["statement_hash"] or bundle.get("revision", 1) != row["revision"] \
            or bundle.get("supersedes") != row["supersedes"]:
        raise Mismatch("payout_statements: the row's hash, revision or supersedes differ from its bundle's")


def _check_pinned(epoch: EpochRecord, bundle: dict[str, Any]) -> None:
    if epoch.policy_hash != bundle["policy_hash"] or pinned_document(epoch) != bundle["policy"]:
        raise Mismatch(f"epochs: the pinned policy of epoch {epoch.key} ({epoch.policy_hash}) is not the statement's ({bundle['policy_hash']})")
    if sorted(a.lower() for a in epoch.approvers or []) != sorted(bundle["policy"].get("approvers", [])):
        raise Mismatch(f"epochs.approvers: epoch {epoch.key} pins {epoch.approvers}, the statement's policy names "
                       f"{bundle['policy'].get('approvers')}")


def _check_rebuilt(store: LedgerStore, epoch: EpochRecord, row: dict[str, Any], bundle: dict[str, Any]) -> None:
    through = bundle["identity"]["through_event_id"]
    try:
        rebuilt = ledger_statement(store, None, epoch, row["revision"], row["created_at"], identity_through=through,
                                   bundle_format=bundle["format"])
    except FinalizeRefused as exc:
        raise Mismatch(f"ledger rows: {exc}") from None
    if rebuilt is None:
        raise Mismatch(f"statement_corrections: no correction is recorded for revision {row['revision']}")
    # Equal documents need no walk; the walk (which names the first differing field and its table) is for a mismatch.
    diff = None if rebuilt.bundle == bundle else difference(bundle, rebuilt.bundle)
    if diff:
        raise Mismatch(f"{_table_of(diff)}: {diff}")
    if rebuilt.drift:
        raise Mismatch(f"activity_curation / epoch_allocations: {rebuilt.drift[0]}")


def _table_of(diff: Difference) -> str:
    """The table a difference between the statement and its rebuild is stored in."""
    if diff.section == "events":
        return "activity_curation" if diff.leaf in _CURATION_FIELDS else "activity_events"
    return _TABLE_OF.get(diff.section, "payout_statements")
