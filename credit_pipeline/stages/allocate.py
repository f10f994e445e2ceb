"""Allocation: apply the policy to the curated events, and move closed epochs to review (SPEC §2, §6, §7).

Proposals are recomputed on every pass; admin adjustments are kept. An epoch whose
window has closed and whose final collection has run enters ``review``: the policy,
its hash and the approver set are pinned on it and its base issuance is recorded as
a pool component. A completeness shortfall blocks review until it is collected or
waived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from credit_pipeline.core.allocation import CuratedEvent
from credit_pipeline.core.canonical import canonical_json
from credit_pipeline.core.completeness import short_streams
from credit_pipeline.core.hashing import allocation_set_hash, approval_message
from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.statement import corrected_allocations
from credit_pipeline.ledger.store import EpochRecord, EpochStateError, LedgerStore
from credit_pipeline.stages.decisions import algorithm_version, propose_epoch
from credit_pipeline.stages.derive import epoch_drift
from credit_pipeline.core.rules import FACTS_VERSION
from credit_pipeline.stages.resolve import MARK_VERSION, curated_event, effective_policy, effective_policy_hash
from credit_pipeline.stages.sources_config import policy_streams

POOL_ALGORITHM = "policy-base-issuance-v1"


@dataclass
class AllocationState:
    """What an approver reviews: the next revision's final units, their hash, the pool and the message to sign.

    ``drift`` lists every way the stored allocation set differs from the one derived
    from curation, bindings and the policy; approve and finalize refuse while it is
    not empty. ``pending`` is False for a finalized epoch with no correction to issue.
    """

    epoch_key: str
    status: str
    revision: int
    supersedes: str | None
    ledger_id: str
    policy_hash: str
    allocations: list[dict[str, Any]]
    allocation_set_hash: str
    pool_total: int
    pool_recorded: bool
    approval_message: str
    drift: list[str] = field(default_factory=list)
    pending: bool = True

    @property
    def final_units(self) -> dict[str, int]:
        return {a["recipient_id"]: a["final_units"] for a in self.allocations}


@dataclass
class AllocateReport:
    state: AllocationState
    entered_review: bool = False
    review_blocked: list[str] = field(default_factory=list)
    unchanged: bool = False  # a delta pass that found the inputs of the last one: nothing recomputed or written


@dataclass(frozen=True)
class AllocationLine:
    """One recipient as the admin reviews it: who, how much activity, units, and what finalize would pay now."""

    recipient_id: str
    login: str | None
    events: int
    proposed_units: int
    final_units: int
    credits: int
    reason: str | None


def last_known_logins(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Each recipient's login or display name, from the latest curated event of each of its accounts.

    A claimant has one account (``github:12345`` -> ``octocat``); a person with accounts on several
    providers gets them all, most recent first (``alice-gh (github), Alice (discord)``). Events carry
    the login the source reported when they happened, so the latest one is the last known. ``rows`` may be a
    stream (``store.curated_rows``): only each account's latest row is kept.
    """
    latest: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for r in rows:
        if r["recipient_id"] is None or not r["platform_login"]:
            continue
        accounts = latest.setdefault(r["recipient_id"], {})
        account = (r["source"], r["platform_user_id"])
        if account not in accounts or (r["event_time"], r["event_id"]) > (accounts[account]["event_time"], accounts[account]["event_id"]):
            accounts[account] = r
    logins: dict[str, str] = {}
    for recipient, accounts in latest.items():
        newest = sorted(accounts.values(), key=lambda r: (r["event_time"], r["event_id"]), reverse=True)
        if len(newest) == 1:
            logins[recipient] = newest[0]["platform_login"]
        else:
            logins[recipient] = ", ".join(f"{r['platform_login']} ({r['source']})" for r in newest)
    return logins


def projected_credits(state: AllocationState) -> dict[str, int]:
    """What finalize would pay each recipient now: ``compute_payouts`` (finalize's own largest-remainder split)
    over the next revision's final units and the pool. Empty when the pool or the units total 0."""
    return {line.recipient_id: line.amount_credits for line in compute_payouts(state.final_units, state.pool_total)}


def allocation_lines(state: AllocationState, logins: Mapping[str, str]) -> list[AllocationLine]:
    """Every recipient of the allocation set, most credits first (then final units, then id).

    ``logins`` are the recipients' last-known logins (``last_known_logins`` of the epoch's curated rows).
    """
    credits = projected_credits(state)
    lines = [AllocationLine(recipient_id=a["recipient_id"], login=logins.get(a["recipient_id"]), events=a["activity_count"],
                            proposed_units=a["proposed_units"], final_units=a["final_units"],
                            credits=credits.get(a["recipient_id"], 0), reason=a["reason"])
             for a in state.allocations]
    return sorted(lines, key=lambda line: (-line.credits, -line.final_units, line.recipient_id))


def curated_for_allocation(rows: list[dict[str, Any]]) -> list[CuratedEvent]:
    return [curated_event(r) for r in rows]


def allocation_state(store: LedgerStore, key: str, policy: Policy, *, known_drift: list[str] | None = None) -> AllocationState:
    """The epoch's next allocation set as stored, checked against the one derived from its rows.

    ``known_drift`` is the drift an allocation pass found for the same inputs (its mark); approve and finalize
    never pass it: they derive the allocation set again from the rows they read."""
    epoch = store.get_epoch(key)
    if epoch is None:
        raise EpochStateError(f"epoch {key} does not exist yet; collect and resolve its activity first")
    rules = effective_policy(epoch, policy)
    policy_hash = effective_policy_hash(epoch, policy)
    stored = store.allocations(key)
    components = store.pool_components(key)
    pool_total = sum(c["amount"] for c in components) if components else rules.pool.base_issuance
    statements = store.statement_rows(key) if epoch.status == "finalized" else []
    corrections = store.corrections(key) if statements else []
    latest = statements[-1]["revision"] if statements else 0
    pending = not statements or any(c["revision"] == latest + 1 for c in corrections)
    revision = latest + 1 if pending else latest
    supersedes = None if revision == 1 else statements[revision - 2]["statement_hash"]
    allocations = corrected_allocations(stored, corrections, revision)
    drift: list[str] = list(known_drift or [])
    if epoch.status != "finalized" and known_drift is None:
        drift = epoch_drift(store, key, rules, stored, store.bindings())
    ahash = allocation_set_hash({a["recipient_id"]: a["final_units"] for a in allocations})
    ledger_id = store.ledger_id()
    return AllocationState(
        epoch_key=key, status=epoch.status, revision=revision, supersedes=supersedes, ledger_id=ledger_id,
        policy_hash=policy_hash, allocations=allocations, allocation_set_hash=ahash, pool_total=pool_total,
        pool_recorded=bool(components), drift=drift, pending=pending,
        approval_message=approval_message(key, policy_hash, ahash, pool_total, ledger_id=ledger_id, revision=revision,
                                          supersedes=supersedes),
    )


def _checked_after(result: Any, end: datetime) -> bool:
    """Whether a completeness result was recorded at or after ``end`` (compared as instants, never as strings)."""
    try:
        at = datetime.fromisoformat(str(result.get("checked_at", "")).replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return False
    return at.tzinfo is not None and at >= end


def review_blockers(epoch: EpochRecord, now: datetime, expected_streams: list[str]) -> list[str]:
    """Why an open epoch cannot enter review yet (empty when it can)."""
    blockers = []
    if now < epoch.end:
        blockers.append(f"its window is still open until {epoch.end.isoformat()}")
    checked = epoch.completeness or {}
    missing = [s for s in expected_streams if s not in checked or not _checked_after(checked[s], epoch.end)]
    if missing:
        blockers.append(f"the final collection after the window closed has not run for {', '.join(missing)} "
                        "(materialize the raw activity assets for this partition)")
    shortfalls = short_streams(checked)
    if shortfalls and not epoch.completeness_waiver:
        blockers.append(f"completeness shortfall in {', '.join(sorted(shortfalls))}: collect again, or waive it with "
                        f"credit-pipeline waive --epoch {epoch.key} --reason TEXT")
    return blockers


def allocate_epoch(store: LedgerStore, key: str, policy: Policy, now: datetime) -> AllocateReport:
    """Recompute proposals from curation; enter review when the epoch is ready.

    Entering review pins the policy (its exact canonical JSON), its hash and the
    approvers, and records the base issuance, all in one transaction.
    """
    entered = False
    blockers: list[str] = []
    known_drift: list[str] | None = None
    with store.atomic():
        store.ensure_epoch(key)
        epoch = store.lock_epoch(key)  # every writer of the epoch's rows takes this first: no deadlock, no lost update
        rules = effective_policy(epoch, policy)
        mark = None
        if epoch.status != "finalized":
            # A delta pass: proposals are a function of the curation and the policy (under rules, of the whole
            # epoch at once: daily caps, dedupe and caps span it), and the drift also of the identity log. When
            # none of them changed since the last pass (its mark), nothing is written and its drift is reused.
            mark = {"v": MARK_VERSION, "policy": rules.policy_hash, "algorithm": algorithm_version(rules), "facts_version": FACTS_VERSION,
                    "identity": store.identity_head(), "curation": store.curation_digest(key)}
            last, summary = store.pass_mark(key, "allocate") or ({}, None)
            if last == mark and summary is not None:
                known_drift = list(summary.get("drift", []))
            else:
                store.upsert_allocations(key, propose_epoch(store, key, rules), algorithm_version(rules))
        if epoch.status == "open":
            blockers = review_blockers(epoch, now, [str(ref) for ref in policy_streams(rules)])
            if not blockers:
                epoch = store.enter_review(key, canonical_json(rules.canonical()), rules.policy_hash, list(rules.approvers))
                entered = True
        if epoch.status == "review" and not store.pool_components(key):
            pinned_hash = epoch.policy_hash or rules.policy_hash
            store.add_pool_component(key, "base_issuance", rules.pool.base_issuance, algorithm_version=POOL_ALGORITHM,
                                     inputs={"policy_hash": pinned_hash, "policy_version": rules.version},
                                     evidence_ref=f"policy:{pinned_hash}")
        state = allocation_state(store, key, policy, known_drift=known_drift)
        if mark is not None and known_drift is None:
            store.record_pass_mark(key, "allocate", mark, {"drift": state.drift})
    return AllocateReport(state=state, entered_review=entered, review_blocked=blockers, unchanged=known_drift is not None)
