"""The payout statement bundle and its offline verification (SPEC §9).

A bundle is self-contained JSON: from it alone anyone can recompute every weight,
allocation, hash and payout, and recover who approved it. ``statement_hash`` is the
SHA-256 of the canonical JSON of everything else, so one changed byte is caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, CuratedEvent, event_weight, propose_allocations
from credit_pipeline.core.canonical import canonical_hash, canonical_json
from credit_pipeline.core.epochs import window_for_key
from credit_pipeline.core.hashing import SignatureError, allocation_set_hash, approval_message, recover_signer
from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import POOL_COMPONENTS, PolicyError, validate_policy

BUNDLE_FORMAT = "credit_pipeline.statement.v1"


def _iso(ts: Any) -> str:
    return ts.isoformat().replace("+00:00", "Z") if hasattr(ts, "isoformat") else str(ts)


def final_units(allocation: dict[str, Any]) -> int:
    """The admin's adjusted units when set, else the proposal."""
    final = allocation.get("final_units")
    return allocation["proposed_units"] if final is None else final


def build_statement(
    *,
    epoch_key: str,
    policy: dict[str, Any],
    policy_hash: str,
    events: Sequence[dict[str, Any]],
    allocations: Sequence[dict[str, Any]],
    pool_components: Sequence[dict[str, Any]],
    approvals: Sequence[dict[str, Any]],
    finalized_at: Any,
) -> dict[str, Any]:
    """Assemble the bundle from stored rows and compute payouts and hashes.

    ``events`` are the counted events (id, source, event_type, recipient_id,
    weight_override, payload_hash); ``allocations`` carry proposed_units,
    activity_count, final_units (None = proposal kept) and reason.
    """
    start, end = window_for_key(epoch_key)
    weights = policy["weights"]
    event_rows = [
        {
            "event_id": e["event_id"],
            "source": e["source"],
            "event_type": e["event_type"],
            "recipient_id": e["recipient_id"],
            "weight_override": e.get("weight_override"),
            "weight": event_weight(_curated(e), weights),
            "payload_hash": e["payload_hash"],
        }
        for e in sorted(events, key=lambda e: e["event_id"])
    ]
    allocation_rows = [
        {
            "recipient_id": a["recipient_id"],
            "proposed_units": a["proposed_units"],
            "activity_count": a["activity_count"],
            "final_units": final_units(a),
            "reason": a.get("reason"),
        }
        for a in sorted(allocations, key=lambda a: a["recipient_id"])
    ]
    finals = {a["recipient_id"]: a["final_units"] for a in allocation_rows}
    components = sorted(
        (
            {
                "component_id": c["component_id"],
                "amount": c["amount"],
                "algorithm_version": c["algorithm_version"],
                "inputs": c.get("inputs") or {},
                "evidence_ref": c.get("evidence_ref"),
            }
            for c in pool_components
        ),
        key=lambda c: c["component_id"],
    )
    pool_total = sum(c["amount"] for c in components)
    body: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "epoch": {"key": epoch_key, "start": _iso(start), "end": _iso(end), "finalized_at": _iso(finalized_at)},
        "algorithm": ALGORITHM_VERSION,
        "policy": policy,
        "policy_hash": policy_hash,
        "events": event_rows,
        "allocations": allocation_rows,
        "allocation_set_hash": allocation_set_hash(finals),
        "pool": {"components": components, "total": pool_total},
        "payouts": [line.to_dict() for line in compute_payouts(finals, pool_total)],
        "approvals": [
            {
                "signer": a["signer"],
                "signature": a["signature"],
                "allocation_set_hash": a["allocation_set_hash"],
                "approved_at": _iso(a["approved_at"]),
            }
            for a in sorted(approvals, key=lambda a: (_iso(a["approved_at"]), a["signature"]))
        ],
    }
    return {**body, "statement_hash": canonical_hash(body)}


def statement_bytes(bundle: dict[str, Any]) -> bytes:
    """The canonical bytes of a bundle: what is exported and compared."""
    return canonical_json(bundle).encode("utf-8")


def _curated(e: dict[str, Any]) -> CuratedEvent:
    return CuratedEvent(e["event_id"], e["source"], e["event_type"], e["recipient_id"], True, e.get("weight_override"))


@dataclass
class VerificationReport:
    """``ok`` when every recomputed value matches; ``mismatch`` names the first that does not."""

    ok: bool
    checks: list[str] = field(default_factory=list)
    mismatch: str | None = None


class _Mismatch(Exception):
    pass


def _expect(report: VerificationReport, what: str, stored: Any, recomputed: Any) -> None:
    if stored != recomputed:
        raise _Mismatch(f"{what}: bundle has {stored!r}, recomputed {recomputed!r}")
    report.checks.append(what)


def verify_bundle(bundle: dict[str, Any]) -> VerificationReport:
    """Recompute every number and hash of a bundle from the bundle alone."""
    report = VerificationReport(ok=False)
    try:
        _verify(bundle, report)
    except _Mismatch as exc:
        report.mismatch = str(exc)
        return report
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        report.mismatch = f"bundle is malformed: {type(exc).__name__}: {exc}"
        return report
    report.ok = True
    return report


def _verify(bundle: dict[str, Any], report: VerificationReport) -> None:
    _expect(report, "format", bundle.get("format"), BUNDLE_FORMAT)
    body = {k: v for k, v in bundle.items() if k != "statement_hash"}
    _expect(report, "statement_hash", bundle.get("statement_hash"), canonical_hash(body))
    key = bundle["epoch"]["key"]
    start, end = window_for_key(key)
    _expect(report, "epoch window", (bundle["epoch"]["start"], bundle["epoch"]["end"]), (_iso(start), _iso(end)))
    _expect(report, "algorithm", bundle["algorithm"], ALGORITHM_VERSION)
    try:
        policy = validate_policy(bundle["policy"], "bundle policy")
    except PolicyError as exc:
        raise _Mismatch(str(exc)) from None
    _expect(report, "policy (re-validated)", bundle["policy"], policy.canonical())
    _expect(report, "policy_hash", bundle["policy_hash"], policy.policy_hash)

    events = bundle["events"]
    ids = [e["event_id"] for e in events]
    _expect(report, "event ids unique and sorted", ids, sorted(set(ids)))
    for e in events:
        _expect(report, f"weight of {e['event_id']}", e["weight"], event_weight(_curated(e), policy.weights))
    proposed = {p.recipient_id: p for p in propose_allocations(map(_curated, events), policy.weights)}
    allocations = bundle["allocations"]
    _expect(report, "allocation recipients sorted", [a["recipient_id"] for a in allocations], sorted({a["recipient_id"] for a in allocations}))
    missing = sorted(set(proposed) - {a["recipient_id"] for a in allocations})
    _expect(report, "every credited recipient has an allocation", missing, [])
    finals: dict[str, int] = {}
    for a in allocations:
        rid = a["recipient_id"]
        p = proposed.get(rid)
        _expect(report, f"proposed units of {rid}", a["proposed_units"], p.proposed_units if p else 0)
        _expect(report, f"activity count of {rid}", a["activity_count"], p.activity_count if p else 0)
        if a["final_units"] != a["proposed_units"] and not a.get("reason"):
            raise _Mismatch(f"final units of {rid} differ from the proposal without a reason")
        finals[rid] = a["final_units"]
    allocation_hash = allocation_set_hash(finals)
    _expect(report, "allocation_set_hash", bundle["allocation_set_hash"], allocation_hash)

    components = bundle["pool"]["components"]
    for c in components:
        if c["component_id"] not in POOL_COMPONENTS:
            raise _Mismatch(f"pool component {c['component_id']!r} is not one of {', '.join(POOL_COMPONENTS)}")
        if isinstance(c["amount"], bool) or not isinstance(c["amount"], int) or c["amount"] < 0:
            raise _Mismatch(f"pool component {c['component_id']} amount {c['amount']!r} is not an integer >= 0")
    _expect(report, "base_issuance present", "base_issuance" in {c["component_id"] for c in components}, True)
    pool_total = sum(c["amount"] for c in components)
    _expect(report, "pool total", bundle["pool"]["total"], pool_total)
    _expect(report, "payout lines", bundle["payouts"], [line.to_dict() for line in compute_payouts(finals, pool_total)])

    message = approval_message(key, policy.policy_hash, allocation_hash, pool_total)
    valid = 0
    for a in bundle["approvals"]:
        try:
            signer = recover_signer(message, a["signature"])
        except SignatureError as exc:
            raise _Mismatch(str(exc)) from None
        _expect(report, f"signer of approval {a['signature'][:12]}…", a["signer"], signer)
        if signer not in policy.approvers:
            raise _Mismatch(f"approval signer {signer} is not in the pinned approvers {policy.approvers}")
        valid += 1
    _expect(report, "at least one valid approval", valid > 0, True)
