"""One source of truth: allocations are a pure function of curation, bindings and the policy.

Every admin write that changes what an epoch pays re-derives the epoch in the same
transaction (``rederive_epoch`` inside ``store.atomic()``), so the stored allocation
set is never stale. Approve and finalize do not trust it either: they re-derive it
from the rows they read and refuse on any difference (``drift``), naming what differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from credit_pipeline.core.allocation import ProposedAllocation, resolve_recipient
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.rules import Decision
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.stages.decisions import account_of, algorithm_version, proposals_of, propose, propose_epoch, stream_decisions
from credit_pipeline.stages.resolve import effective_policy, resolve_epoch


def rederive_epoch(store: LedgerStore, key: str, policy: Policy) -> bool:
    """Re-resolve and re-allocate epoch ``key`` unless it is finalized; True when it was re-derived.

    Call it inside ``store.atomic()`` together with the write that made it necessary.
    """
    epoch = store.get_epoch(key)
    if epoch is None or epoch.status == "finalized":
        return False
    store.lock_epoch(key)  # re-entrant in the caller's transaction; serializes with resolution and allocation passes
    resolve_epoch(store, key, policy, summarize=False)  # its counts are for people; nothing reads them here
    rules = effective_policy(epoch, policy)
    store.upsert_allocations(key, propose_epoch(store, key, rules), algorithm_version(rules))
    return True


def resolution_drift(rows: list[dict[str, Any]], bindings: Mapping[tuple[str, str], str], policy: Policy) -> list[str]:
    """Curated events whose stored recipient is not what the identity log and the policy give."""
    return [line for _, line in _resolution_drift(rows, bindings, policy)]


def _resolution_drift(rows: Iterable[dict[str, Any]], bindings: Mapping[tuple[str, str], str], policy: Policy) -> list[tuple[str, str]]:
    drift = []
    for r in rows:
        user_id, login, is_bot = account_of(r, policy)
        want = resolve_recipient(source=r["source"], platform_user_id=user_id, login=login, is_bot=is_bot, bindings=bindings,
                                 policy=policy)
        if (want.recipient_id, want.resolution) != (r["recipient_id"], r["resolution"]):
            drift.append((r["event_id"], f"event {r['event_id']} is stored for {r['recipient_id'] or 'no one'} ({r['resolution']}), "
                                         f"the identity log gives {want.recipient_id or 'no one'} ({want.resolution})"))
    return drift


def allocation_drift(rows: list[dict[str, Any]], allocations: list[dict[str, Any]], policy: Policy) -> list[str]:
    """Recipients whose stored proposal differs from the one derived from the curated events and the policy's rules."""
    return proposal_drift(propose(rows, policy), allocations)


def epoch_drift(store: LedgerStore, key: str, policy: Policy, allocations: list[dict[str, Any]],
                bindings: Mapping[tuple[str, str], str]) -> list[str]:
    """``resolution_drift`` + ``allocation_drift`` over epoch ``key``'s curated rows, streamed a row at a time
    (``stream_decisions``): the same lines (by event id, then by recipient), never the whole epoch in memory."""
    resolution: list[tuple[str, str]] = []

    def decisions() -> Iterator[Decision]:
        for row, d in stream_decisions(store, key, policy):
            resolution.extend(_resolution_drift((row,), bindings, policy))
            if d is not None:
                yield d

    derived = proposals_of(decisions())
    return [line for _, line in sorted(resolution)] + proposal_drift(derived, allocations)


def proposal_drift(proposals: list[ProposedAllocation], allocations: list[dict[str, Any]]) -> list[str]:
    """Recipients whose stored proposal (``allocations``) differs from ``proposals``."""
    derived = {p.recipient_id: (p.proposed_units, p.activity_count) for p in proposals}
    stored = {a["recipient_id"]: (a["proposed_units"], a["activity_count"]) for a in allocations}
    drift = []
    for rid in sorted(set(derived) | set(stored)):
        want, have = derived.get(rid, (0, 0)), stored.get(rid)
        if have is None or have != want:
            drift.append(f"{rid}: stored {have[0] if have else 'no'} units over {have[1] if have else 0} events, "
                         f"derived {want[0]} over {want[1]}")
    return drift
