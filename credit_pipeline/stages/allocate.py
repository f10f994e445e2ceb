"""Allocation: apply the policy to the curated events, and move closed epochs to review (SPEC §2, §6, §7).

Proposals are recomputed on every pass; admin adjustments are kept. An epoch whose
window has closed and whose final collection has run enters ``review``: the policy,
its hash and the approver set are pinned on it and its base issuance is recorded as
a pool component. A completeness shortfall blocks review until it is collected or
waived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, CuratedEvent, propose_allocations
from credit_pipeline.core.hashing import allocation_set_hash, approval_message
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.statement import final_units
from credit_pipeline.ledger.store import EpochRecord, LedgerStore
from credit_pipeline.stages.resolve import curated_event, effective_policy
from credit_pipeline.stages.sources_config import policy_streams

POOL_ALGORITHM = "policy-base-issuance-v1"


@dataclass
class AllocationState:
    """What an approver reviews: the final units, their hash, the pool and the message to sign."""

    epoch_key: str
    status: str
    policy_hash: str
    allocations: list[dict[str, Any]]
    allocation_set_hash: str
    pool_total: int
    pool_recorded: bool
    approval_message: str

    @property
    def final_units(self) -> dict[str, int]:
        return {a["recipient_id"]: final_units(a) for a in self.allocations}


@dataclass
class AllocateReport:
    state: AllocationState
    entered_review: bool = False
    review_blocked: list[str] = field(default_factory=list)


def curated_for_allocation(rows: list[dict[str, Any]]) -> list[CuratedEvent]:
    return [curated_event(r) for r in rows]


def allocation_state(store: LedgerStore, key: str, policy: Policy, conn: Any = None) -> AllocationState:
    """The epoch's current allocation set as stored (read on ``conn`` when given)."""
    epoch = store.get_epoch(key)
    if epoch is None:
        raise ValueError(f"epoch {key} does not exist yet")
    rules = effective_policy(epoch, policy)
    allocations = store.allocations(key, conn)
    components = store.pool_components(key, conn)
    recorded = bool(components)
    pool_total = sum(c["amount"] for c in components) if recorded else rules.pool.base_issuance
    finals = {a["recipient_id"]: final_units(a) for a in allocations}
    ahash = allocation_set_hash(finals)
    return AllocationState(
        epoch_key=key, status=epoch.status, policy_hash=rules.policy_hash, allocations=allocations,
        allocation_set_hash=ahash, pool_total=pool_total, pool_recorded=recorded,
        approval_message=approval_message(key, rules.policy_hash, ahash, pool_total),
    )


def review_blockers(epoch: EpochRecord, now: datetime, expected_streams: list[str]) -> list[str]:
    """Why an open epoch cannot enter review yet (empty when it can)."""
    blockers = []
    if now < epoch.end:
        blockers.append(f"its window is still open until {epoch.end.isoformat()}")
    checked = epoch.completeness or {}
    missing = [s for s in expected_streams if s not in checked or str(checked[s].get("checked_at", "")) < epoch.end.isoformat()]
    if missing:
        blockers.append(f"the final collection after the window closed has not run for {', '.join(missing)} "
                        "(materialize the raw activity assets for this partition)")
    shortfalls = [k for k, v in checked.items() if isinstance(v, dict) and v.get("shortfall")]
    if shortfalls and not epoch.completeness_waiver:
        blockers.append(f"completeness shortfall in {', '.join(sorted(shortfalls))}: collect again or waive it with a reason")
    return blockers


def allocate_epoch(store: LedgerStore, key: str, policy: Policy, now: datetime) -> AllocateReport:
    """Recompute proposals from curation; enter review when the epoch is ready."""
    epoch = store.ensure_epoch(key)
    rules = effective_policy(epoch, policy)
    entered = False
    blockers: list[str] = []
    if epoch.status != "finalized":
        proposals = propose_allocations(curated_for_allocation(store.curated_events(key)), rules.weights)
        store.upsert_allocations(key, proposals, ALGORITHM_VERSION)
    if epoch.status == "open":
        blockers = review_blockers(epoch, now, [str(ref) for ref in policy_streams(rules)])
        if not blockers:
            store.enter_review(key, rules.canonical(), rules.policy_hash, list(rules.approvers))
            entered = True
    if entered or (epoch.status == "review" and not store.pool_components(key)):
        store.add_pool_component(key, "base_issuance", rules.pool.base_issuance, algorithm_version=POOL_ALGORITHM,
                                 inputs={"policy_hash": rules.policy_hash, "policy_version": rules.version},
                                 evidence_ref=f"policy:{rules.policy_hash}")
    return AllocateReport(state=allocation_state(store, key, policy), entered_review=entered, review_blocked=blockers)
