"""Offline verification of a statement bundle (SPEC §9, §10).

Everything is recomputed from the bundle alone: weights, proposals, corrections,
the allocation set hash, the pool, the payout lines, the approval message and the
signers it recovers to; ``statement_hash`` is compared last, so a FAIL names the
first *semantic* difference rather than only "the hash differs".

What an offline verify proves is that the bundle is internally consistent and was
signed by keys its own policy names. It cannot know on its own whether that policy
or those keys are the DAO's: ``Expectations`` (the approver addresses, policy hash
and ledger id the auditor trusts) turn that into a check.
"""

from __future__ import annotations

import re
from datetime import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, event_weight, propose_allocations
from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.epochs import window_for_key
from credit_pipeline.core.hashing import SignatureError, allocation_set_hash, approval_message, recover_signer
from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import POOL_COMPONENTS, PolicyError, validate_policy
from credit_pipeline.core.recipients import RecipientIdError, check_recipient_id
from credit_pipeline.core.statement import BUNDLE_FORMAT_V1, BUNDLE_FORMAT_V2, curated_of, effective_corrections, iso_utc

HEX64 = re.compile(r"[0-9a-f]{64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Expectations:
    """What the auditor trusts, independent of the bundle; empty means "not checked"."""

    approvers: frozenset[str] = frozenset()
    policy_hash: str | None = None
    ledger_id: str | None = None

    @classmethod
    def of(cls, approvers: Iterable[str] = (), policy_hash: str | None = None, ledger_id: str | None = None) -> Expectations:
        return cls(frozenset(a.strip().lower() for a in approvers), (policy_hash or "").strip().lower() or None,
                   (ledger_id or "").strip().lower() or None)


@dataclass
class VerificationReport:
    """``ok`` when every recomputed value matches; ``mismatch`` names the first that does not.

    ``proved`` says what was established and from what (epoch, revision, ledger,
    policy hash, approvers, recovered signers), for the auditor to read.
    """

    ok: bool
    checks: list[str] = field(default_factory=list)
    mismatch: str | None = None
    proved: dict[str, Any] = field(default_factory=dict)


class Mismatch(Exception):
    """A recomputed value that differs; the message names it."""


def expect(report: VerificationReport, what: str, stored: Any, recomputed: Any) -> None:
    if stored != recomputed:
        raise Mismatch(f"{what}: bundle has {stored!r}, recomputed {recomputed!r}")
    report.checks.append(what)


def verify_bundle(bundle: Any, expectations: Expectations | None = None) -> VerificationReport:
    """Recompute every number and hash of a bundle from the bundle alone."""
    report = VerificationReport(ok=False)
    try:
        if not isinstance(bundle, dict):
            raise Mismatch(f"a statement bundle is a JSON object (got {type(bundle).__name__})")
        fmt = bundle.get("format")
        if fmt == BUNDLE_FORMAT_V2:
            _verify(bundle, report, v2=True)
        elif fmt == BUNDLE_FORMAT_V1:
            _verify(bundle, report, v2=False)
        else:
            raise Mismatch(f"format: {fmt!r} is not a statement bundle format ({BUNDLE_FORMAT_V1} or {BUNDLE_FORMAT_V2})")
        _check_expectations(report, expectations or Expectations())
    except Mismatch as exc:
        report.mismatch = str(exc)
        return report
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        report.mismatch = f"bundle is malformed: {type(exc).__name__}: {exc}"
        return report
    report.ok = True
    return report


def _verify(bundle: dict[str, Any], report: VerificationReport, *, v2: bool) -> None:
    key = bundle["epoch"]["key"]
    start, end = window_for_key(key)
    expect(report, "epoch window", (bundle["epoch"]["start"], bundle["epoch"]["end"]), (iso_utc(start), iso_utc(end)))
    expect(report, "algorithm", bundle["algorithm"], ALGORITHM_VERSION)
    revision, supersedes, ledger_id = (bundle["revision"], bundle["supersedes"], bundle["ledger_id"]) if v2 else (1, None, None)
    if v2:
        if not isinstance(ledger_id, str) or not UUID.fullmatch(ledger_id):
            raise Mismatch(f"ledger_id {ledger_id!r} is not a ledger id (a lowercase UUID)")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise Mismatch(f"revision {revision!r} is not a whole number >= 1")
        if (revision == 1) != (supersedes is None) or (supersedes is not None and not HEX64.fullmatch(str(supersedes))):
            raise Mismatch(f"revision {revision} supersedes {supersedes!r}: revision 1 supersedes nothing, later ones a statement hash")
    policy_doc = bundle["policy"]
    expect(report, "policy_hash (SHA-256 of the pinned policy)", bundle["policy_hash"], canonical_hash(policy_doc))
    try:
        policy = validate_policy(policy_doc, "bundle policy")
    except PolicyError as exc:
        raise Mismatch(str(exc)) from None

    events = bundle["events"]
    ids = [e["event_id"] for e in events]
    expect(report, "event ids unique and sorted", ids, sorted(set(ids)))
    for e in events:
        _check_event(e, start, end, v2)
        expect(report, f"weight of {e['event_id']}", e["weight"], event_weight(curated_of(e), policy.weights))
    proposed = {p.recipient_id: p for p in propose_allocations(map(curated_of, events), policy.weights)}

    allocations = bundle["allocations"]
    recipients = [a["recipient_id"] for a in allocations]
    expect(report, "allocation recipients unique and sorted", recipients, sorted(set(recipients)))
    missing = sorted(set(proposed) - set(recipients))
    expect(report, "every credited recipient has an allocation", missing, [])
    corrections = effective_corrections(bundle.get("corrections") or [], revision) if v2 else {}
    for c in (bundle.get("corrections") or []) if v2 else []:
        if c["revision"] > revision or c["revision"] < 2:
            raise Mismatch(f"correction of {c['recipient_id']} names revision {c['revision']}, outside 2..{revision}")
    finals: dict[str, int] = {}
    for a in allocations:
        rid = _recipient(a["recipient_id"], "allocation")
        p = proposed.get(rid)
        expect(report, f"proposed units of {rid}", a["proposed_units"], p.proposed_units if p else 0)
        expect(report, f"activity count of {rid}", a["activity_count"], p.activity_count if p else 0)
        if rid in corrections:
            expect(report, f"final units of {rid} (correction of revision {corrections[rid]['revision']})",
                   (a["final_units"], a["reason"]), (corrections[rid]["final_units"], corrections[rid]["reason"]))
        if a["final_units"] != a["proposed_units"] and not (a.get("reason") or "").strip():
            raise Mismatch(f"final units of {rid} differ from the proposal without a reason")
        units = a["final_units"]
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise Mismatch(f"final units of {rid} = {units!r} is not a whole number >= 0")
        finals[rid] = units
    allocation_hash = allocation_set_hash(finals)
    expect(report, "allocation_set_hash", bundle["allocation_set_hash"], allocation_hash)

    components = bundle["pool"]["components"]
    for c in components:
        if c["component_id"] not in POOL_COMPONENTS:
            raise Mismatch(f"pool component {c['component_id']!r} is not one of {', '.join(POOL_COMPONENTS)}")
        if isinstance(c["amount"], bool) or not isinstance(c["amount"], int) or c["amount"] < 0:
            raise Mismatch(f"pool component {c['component_id']} amount {c['amount']!r} is not an integer >= 0")
    expect(report, "base_issuance present", "base_issuance" in {c["component_id"] for c in components}, True)
    pool_total = sum(c["amount"] for c in components)
    expect(report, "pool total", bundle["pool"]["total"], pool_total)
    _expect_payouts(report, bundle["payouts"], [line.to_dict() for line in compute_payouts(finals, pool_total)])

    if v2:
        message = approval_message(key, bundle["policy_hash"], allocation_hash, pool_total, ledger_id=ledger_id,
                                   revision=revision, supersedes=supersedes)
    else:
        message = approval_message(key, bundle["policy_hash"], allocation_hash, pool_total)
    signers = []
    for a in bundle["approvals"]:
        try:
            signer = recover_signer(message, a["signature"])
        except SignatureError as exc:
            raise Mismatch(f"approval {str(a['signature'])[:14]}…: {exc}") from None
        expect(report, f"signer of approval {a['signature'][:12]}…", a["signer"], signer)
        if signer not in policy.approvers:
            raise Mismatch(f"approval signer {signer} is not in the pinned approvers {policy.approvers}")
        signers.append(signer)
    expect(report, "at least one valid approval", bool(signers), True)

    body = {k: v for k, v in bundle.items() if k != "statement_hash"}
    expect(report, "statement_hash", bundle.get("statement_hash"), canonical_hash(body))
    report.proved = {
        "epoch": key, "revision": revision, "supersedes": supersedes, "ledger_id": ledger_id,
        "policy_hash": bundle["policy_hash"], "approvers": list(policy.approvers), "signers": sorted(set(signers)),
        "allocation_set_hash": allocation_hash, "pool_total": pool_total, "recipients": len(finals),
        "credited_events": len(events), "statement_hash": bundle["statement_hash"],
    }


def _recipient(value: Any, what: str) -> str:
    try:
        return check_recipient_id(value)
    except RecipientIdError as exc:
        raise Mismatch(f"{what}: {exc}") from None


def _check_event(e: dict[str, Any], start: Any, end: Any, v2: bool) -> None:
    """A credited event names a valid recipient; v2 events lie in the window and name their account."""
    eid = e["event_id"]
    rid = _recipient(e["recipient_id"], f"event {eid}")
    if not eid.startswith(f"{e['source']}:"):
        raise Mismatch(f"event {eid}: its id does not name its source {e['source']!r}")
    if not v2:
        return
    try:
        when = datetime.fromisoformat(str(e["event_time"]).replace("Z", "+00:00"))
    except ValueError:
        raise Mismatch(f"event {eid}: event_time {e['event_time']!r} is not an ISO 8601 timestamp") from None
    if when.tzinfo is None or not (start <= when < end):  # compared as instants, never as strings
        raise Mismatch(f"event {eid}: event_time {e['event_time']} is outside the epoch [{iso_utc(start)}, {iso_utc(end)})")
    if e["resolution"] == "claimant" and rid != f"{e['source']}:{e['platform_user_id']}":
        raise Mismatch(f"event {eid}: a claimant is paid as {e['source']}:{e['platform_user_id']}, not {rid}")
    if e["resolution"] not in ("bound", "claimant"):
        raise Mismatch(f"event {eid}: resolution {e['resolution']!r} credits no one, yet the event is credited")


def _expect_payouts(report: VerificationReport, stored: list[dict[str, Any]], recomputed: list[dict[str, Any]]) -> None:
    """Name the first payout line that differs, then the field."""
    by_id = {line["recipient_id"]: line for line in recomputed}
    for line in stored:
        want = by_id.get(line.get("recipient_id"))
        if want is None:
            raise Mismatch(f"payout line {line.get('recipient_id')!r}: no such recipient in the recomputed payouts")
        for name in ("total_units", "share", "amount_credits"):
            if line.get(name) != want[name]:
                raise Mismatch(f"payout line {line['recipient_id']}: {name} is {line.get(name)!r}, recomputed {want[name]!r}")
    expect(report, "payout lines", stored, recomputed)


def _check_expectations(report: VerificationReport, want: Expectations) -> None:
    proved = report.proved
    if want.ledger_id and proved.get("ledger_id") != want.ledger_id:
        raise Mismatch(f"ledger id: bundle was issued by ledger {proved.get('ledger_id')}, you expect {want.ledger_id}")
    if want.policy_hash and proved.get("policy_hash") != want.policy_hash:
        raise Mismatch(f"policy hash: bundle pins {proved.get('policy_hash')}, you expect {want.policy_hash}")
    if want.approvers:
        strangers = sorted(set(proved.get("signers", [])) - want.approvers)
        if strangers:
            raise Mismatch(f"approvers: signed by {', '.join(strangers)}, which you do not expect (--expect-approver)")
        if not set(proved.get("signers", [])) & want.approvers:
            raise Mismatch("approvers: none of the approvers you expect signed it")
    report.checks += [f"expected {what}" for what, given in (("ledger id", want.ledger_id), ("policy hash", want.policy_hash),
                                                            ("approvers", want.approvers)) if given]


# Rows before the totals and hashes derived from them, so a difference names its cause.
DETAIL_FIRST = ("epoch", "policy", "identity", "events", "corrections", "allocations", "pool", "approvals", "payouts")


def first_difference(stored: Any, rebuilt: Any, path: str = "") -> str | None:
    """The path of the first value that differs between two JSON values (lists of rows keyed by their id)."""
    if isinstance(stored, dict) and isinstance(rebuilt, dict):
        for k in sorted(set(stored) | set(rebuilt), key=lambda k: (k not in DETAIL_FIRST, DETAIL_FIRST.index(k) if k in DETAIL_FIRST else 0, k)):
            if k not in stored or k not in rebuilt:
                return f"{path}.{k}: {'missing from the statement' if k not in stored else 'missing from the ledger'}"
            found = first_difference(stored[k], rebuilt[k], f"{path}.{k}")
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(rebuilt, list):
        key = _row_key(stored, rebuilt)
        if key:
            a, b = {r[key]: r for r in stored}, {r[key]: r for r in rebuilt}
            for k in sorted(set(a) | set(b), key=str):
                if k not in a or k not in b:
                    return f"{path}[{k}]: {'only in the ledger rows' if k not in a else 'only in the statement'}"
                found = first_difference(a[k], b[k], f"{path}[{k}]")
                if found:
                    return found
            return None if stored == rebuilt else f"{path}: order differs"
        if len(stored) != len(rebuilt):
            return f"{path}: statement has {len(stored)} entries, ledger rows give {len(rebuilt)}"
        for i, (x, y) in enumerate(zip(stored, rebuilt)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if stored == rebuilt else f"{path}: statement has {stored!r}, ledger rows give {rebuilt!r}"


def _row_key(stored: list[Any], rebuilt: list[Any]) -> str | None:
    """The id field that names each row uniquely in both lists, if any."""
    for key in ("event_id", "recipient_id", "component_id", "signature"):
        rows = stored + rebuilt
        if rows and all(isinstance(r, dict) and isinstance(r.get(key), str) for r in rows) and \
                len({r[key] for r in stored}) == len(stored) and len({r[key] for r in rebuilt}) == len(rebuilt):
            return key
    return None
