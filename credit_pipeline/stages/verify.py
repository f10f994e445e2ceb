"""Verify a statement: offline from its bundle, or against the database (SPEC §9).

From the database, the stored bytes must (1) verify on their own, (2) equal the
statement rebuilt from the stored rows byte for byte, and (3) carry the payload
hash of every credited event's stored raw payload.
"""

from __future__ import annotations

import json
from typing import Any

from credit_pipeline.core.events import payload_hash
from credit_pipeline.core.statement import VerificationReport, statement_bytes, verify_bundle
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.finalize import statement_from_ledger


def verify_file_bytes(data: bytes) -> VerificationReport:
    """Verify an exported bundle from its bytes (whitespace and key order do not matter: the hash is over canonical JSON)."""
    try:
        bundle = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return VerificationReport(ok=False, mismatch=f"not a JSON statement bundle: {exc}")
    return verify_bundle(bundle)


def verify_stored(store: LedgerStore, key: str) -> VerificationReport:
    """Recompute epoch ``key``'s statement from the ledger and compare."""
    text = store.statement_text(key)
    if text is None:
        raise LedgerError(f"epoch {key} has no statement yet; finalize it first (materialize payout_statements)")
    bundle: dict[str, Any] = json.loads(text)
    report = verify_bundle(bundle)
    if not report.ok:
        return report
    if statement_bytes(bundle).decode() != text:
        return VerificationReport(False, report.checks, "stored statement is not in canonical form")
    epoch = store.get_epoch(key)
    assert epoch is not None and epoch.finalized_at is not None
    rebuilt = statement_bytes(statement_from_ledger(store, None, epoch, epoch.finalized_at)).decode()
    if rebuilt != text:
        return VerificationReport(False, report.checks, "statement rebuilt from the ledger rows differs from the stored statement")
    report.checks.append("rebuilt from ledger rows: identical bytes")
    payloads = store.payloads([e["event_id"] for e in bundle["events"]])
    for event in bundle["events"]:
        stored = payloads.get(event["event_id"])
        if stored is None or payload_hash(stored) != event["payload_hash"]:
            return VerificationReport(False, report.checks, f"stored payload of {event['event_id']} does not hash to {event['payload_hash']}")
    report.checks.append(f"payload hashes of {len(bundle['events'])} credited events")
    return report
