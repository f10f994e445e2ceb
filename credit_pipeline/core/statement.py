"""The payout statement bundle (SPEC §9, §10).

A bundle is self-contained JSON: from it alone anyone can recompute every weight,
allocation, hash and payout, and recover who approved it. ``statement_hash`` is the
SHA-256 of the canonical JSON of everything else, so one changed byte is caught.

Format v2 (written since approval message v2) names the ledger it was issued by, its
revision and the statement it supersedes, and carries what an auditor needs to see
who decided what: each credited event's account and time, curation notes and their
authors, adjustments and corrections with reasons and authors, the completeness
result and any waiver, and a hash of the identity log the recipients were resolved
from. Format v3 adds ``distribution``: each line's payout wallet (with the signed binding that
proves it), token amount and Merkle proof, what is held and why (``core.distribution``). v1 and
v2 bundles stay verifiable (``core.verification``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, CuratedEvent, event_weight
from credit_pipeline.core.canonical import canonical_hash, canonical_json
from credit_pipeline.core.distribution import distribution
from credit_pipeline.core.epochs import window_for_key
from credit_pipeline.core.hashing import allocation_set_hash
from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import Policy, validate_policy
from credit_pipeline.core.rules import RULES_ALGORITHM_VERSION, RuleEvent, credited_account, decide
from credit_pipeline.core.wallets import PayoutWallet

BUNDLE_FORMAT_V1 = "credit_pipeline.statement.v1"
BUNDLE_FORMAT_V2 = "credit_pipeline.statement.v2"
BUNDLE_FORMAT_V3 = "credit_pipeline.statement.v3"
BUNDLE_FORMAT = BUNDLE_FORMAT_V3


def iso_utc(ts: Any) -> str | None:
    """A timestamp as ISO 8601 in UTC with ``Z`` (whatever offset it was read with)."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts.isoformat()} has no time zone")
        return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(ts)


def final_units(allocation: dict[str, Any]) -> int:
    """The admin's adjusted units when set, else the proposal."""
    final = allocation.get("final_units")
    return allocation["proposed_units"] if final is None else final


def curated_of(e: dict[str, Any]) -> CuratedEvent:
    """A bundle event as the allocation sees it (bundle events are counted events)."""
    return CuratedEvent(e["event_id"], e["source"], e["event_type"], e["recipient_id"], True, e.get("weight_override"))


def effective_corrections(corrections: Sequence[dict[str, Any]], revision: int) -> dict[str, dict[str, Any]]:
    """The correction in force per recipient at ``revision``: the latest one recorded up to it."""
    latest: dict[str, dict[str, Any]] = {}
    for c in corrections:  # in recording order
        if c["revision"] <= revision:
            latest[c["recipient_id"]] = c
    return latest


def corrected_allocations(allocations: Sequence[dict[str, Any]], corrections: Sequence[dict[str, Any]], revision: int) -> list[dict[str, Any]]:
    """Allocation rows with final units and reasons as they stand at ``revision``, sorted by recipient."""
    rows = {
        a["recipient_id"]: {
            "recipient_id": a["recipient_id"],
            "proposed_units": a["proposed_units"],
            "activity_count": a["activity_count"],
            "final_units": final_units(a),
            "reason": a.get("reason"),
            "adjusted_by": a.get("adjusted_by"),
            "adjusted_at": iso_utc(a.get("adjusted_at")),
            "corrected_in": None,
        }
        for a in allocations
    }
    for rid, c in effective_corrections(corrections, revision).items():
        row = rows.setdefault(rid, {"recipient_id": rid, "proposed_units": 0, "activity_count": 0, "adjusted_by": None, "adjusted_at": None})
        row.update(final_units=c["final_units"], reason=c["reason"], corrected_in=c["revision"])
    return [rows[r] for r in sorted(rows)]


def build_statement(
    *,
    ledger_id: str,
    epoch_key: str,
    revision: int,
    supersedes: str | None,
    policy: dict[str, Any],
    policy_hash: str,
    events: Sequence[dict[str, Any]],
    allocations: Sequence[dict[str, Any]],
    corrections: Sequence[dict[str, Any]],
    pool_components: Sequence[dict[str, Any]],
    approvals: Sequence[dict[str, Any]],
    finalized_at: Any,
    issued_at: Any,
    identity: dict[str, Any],
    completeness: dict[str, Any] | None,
    completeness_waiver: dict[str, Any] | None,
    wallets: Mapping[str, PayoutWallet],
    bundle_format: str = BUNDLE_FORMAT,
) -> dict[str, Any]:
    """Assemble a v3 bundle from stored rows and compute payouts, their distribution and hashes.

    ``wallets`` are the payout wallets the identity log prefix leaves (``core.wallets.payout_wallets``).
    ``bundle_format`` v2 rebuilds a statement written before v3 exactly (no distribution), for verify.

    ``events`` are the counted events; ``allocations`` carry proposed_units,
    activity_count, final_units (None = proposal kept), reason and who adjusted;
    ``corrections`` every correction recorded for the epoch (in order).
    """
    start, end = window_for_key(epoch_key)
    weights = policy["weights"]
    rules_policy = validate_policy(policy, f"pinned policy of epoch {epoch_key}") if policy.get("rules") is not None else None
    if rules_policy is not None:
        event_rows = rules_event_rows(events, rules_policy)
    else:
        event_rows = [
            {
                "event_id": e["event_id"],
                "source": e["source"],
                "event_type": e["event_type"],
                "platform_user_id": e["platform_user_id"],
                "platform_login": e["platform_login"],
                "event_time": iso_utc(e["event_time"]),
                "recipient_id": e["recipient_id"],
                "resolution": e["resolution"],
                "weight_override": e.get("weight_override"),
                "weight": event_weight(curated_of(e), weights),
                "payload_hash": e["payload_hash"],
                "note": e.get("note"),
                "curated_by": e.get("curated_by"),
                "curated_at": iso_utc(e.get("curated_at")),
            }
            for e in sorted(events, key=lambda e: e["event_id"])
        ]
    allocation_rows = corrected_allocations(allocations, corrections, revision)
    finals = {a["recipient_id"]: a["final_units"] for a in allocation_rows}
    components = sorted(
        (
            {
                "component_id": c["component_id"],
                "amount": c["amount"],
                "algorithm_version": c["algorithm_version"],
                "inputs": c.get("inputs") or {},
                "evidence_ref": c.get("evidence_ref"),
                "recorded_by": c.get("recorded_by"),
            }
            for c in pool_components
        ),
        key=lambda c: c["component_id"],
    )
    pool_total = sum(c["amount"] for c in components)
    payouts = [line.to_dict() for line in compute_payouts(finals, pool_total)]
    if bundle_format not in (BUNDLE_FORMAT_V2, BUNDLE_FORMAT_V3):
        raise ValueError(f"cannot build a statement in format {bundle_format!r}")
    body: dict[str, Any] = {
        "format": bundle_format,
        "ledger_id": ledger_id,
        "revision": revision,
        "supersedes": supersedes,
        "epoch": {"key": epoch_key, "start": iso_utc(start), "end": iso_utc(end), "finalized_at": iso_utc(finalized_at)},
        "issued_at": iso_utc(issued_at),
        "algorithm": ALGORITHM_VERSION if rules_policy is None else RULES_ALGORITHM_VERSION,
        "policy": policy,
        "policy_hash": policy_hash,
        "completeness": completeness,
        "completeness_waiver": completeness_waiver,
        "identity": identity,
        "events": event_rows,
        "allocations": allocation_rows,
        "corrections": [
            {"revision": c["revision"], "recipient_id": c["recipient_id"], "final_units": c["final_units"], "reason": c["reason"],
             "corrected_by": c.get("corrected_by"), "corrected_at": iso_utc(c.get("corrected_at"))}
            for c in corrections if c["revision"] <= revision
        ],
        "allocation_set_hash": allocation_set_hash(finals),
        "pool": {"components": components, "total": pool_total},
        "payouts": payouts,
        "distribution": distribution(payouts, policy.get("payout"), wallets),
        "approvals": [
            {"signer": a["signer"], "signature": a["signature"], "approved_at": iso_utc(a["approved_at"])}
            for a in sorted(approvals, key=lambda a: (iso_utc(a["approved_at"]), a["signature"]))
        ],
    }
    if bundle_format == BUNDLE_FORMAT_V2:
        del body["distribution"]
    return {**body, "statement_hash": canonical_hash(body)}


def rule_event_of(e: dict[str, Any]) -> RuleEvent:
    """A bundle event (format v2 under a policy with rules) as the rules see it."""
    when = datetime.fromisoformat(str(e["event_time"]).replace("Z", "+00:00"))
    return RuleEvent(e["event_id"], e["source"], e["event_type"], e["recipient_id"], e["platform_user_id"], when,
                     e.get("weight_override"), e.get("facts") or {})


def rules_event_rows(events: Sequence[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    """Bundle rows of every candidate event under a policy with rules: the account it credits, its rule facts
    and the decision the rules give it (counted or the rule that stopped it, weight, units, capped)."""
    rows = []
    for e in sorted(events, key=lambda e: e["event_id"]):
        facts = e.get("facts") or {}
        user_id, login, _ = credited_account(e["event_type"], (e["platform_user_id"], e["platform_login"], bool(e.get("is_bot"))),
                                             facts, policy)
        rows.append({
            "event_id": e["event_id"], "source": e["source"], "event_type": e["event_type"], "platform_user_id": user_id,
            "platform_login": login, "event_time": iso_utc(e["event_time"]), "recipient_id": e["recipient_id"],
            "resolution": e["resolution"], "weight_override": e.get("weight_override"), "payload_hash": e["payload_hash"],
            "note": e.get("note"), "curated_by": e.get("curated_by"), "curated_at": iso_utc(e.get("curated_at")), "facts": facts,
        })
    decisions = decide([rule_event_of(r) for r in rows], policy)
    for r in rows:
        d = decisions[r["event_id"]]
        r["weight"] = d.weight
        r["decision"] = {k: v for k, v in d.to_dict().items() if k != "weight"}
    return rows


def counted_events(bundle: dict[str, Any]) -> tuple[int, int, int]:
    """(events counted, events a rule did not count, milli-units capped) of a bundle; v1/no-rules bundles count all."""
    events = bundle.get("events") or []
    decisions = [e.get("decision") or {"counted": True, "capped": 0} for e in events]
    counted = sum(1 for d in decisions if d.get("counted"))
    return counted, len(events) - counted, sum(int(d.get("capped") or 0) for d in decisions)


def statement_bytes(bundle: dict[str, Any]) -> bytes:
    """The canonical bytes of a bundle: what is exported and compared."""
    return canonical_json(bundle).encode("utf-8")


def verify_bundle(bundle: Any, expectations: Any = None) -> Any:
    """Recompute a bundle from itself (SPEC §12's entry point; see ``core.verification``)."""
    from credit_pipeline.core.verification import verify_bundle as verify

    return verify(bundle, expectations)
