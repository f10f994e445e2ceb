"""One source of truth: allocations are a pure function of curation, bindings and the policy.

Every admin write that changes what an epoch pays re-derives the epoch in the same
transaction (``rederive_epoch`` inside ``store.atomic()``), so the stored allocation
set is never stale. Approve and finalize do not trust it either: they re-derive it
from the rows they read and refuse on any difference (``drift``), naming what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from credit_pipeline.core.allocation import resolve_recipient
from credit_pipeline.core.policy import Policy
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.stages.decisions import account_of, algorithm_version, propose
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
    store.upsert_allocations(key, propose(store.curated_events(key), rules), algorithm_version(rules))
    return True


def resolution_drift(rows: list[dict[str, Any]], bindings: Mapping[tuple[str, str], str], policy: Policy) -> list[str]:
    """Curated events whose stored recipient is not what the identity log and the policy give."""
    drift = []
    for r in rows:
        user_id, login, is_bot = account_of(r, policy)
        want = resolve_recipient(source=r["source"], platform_user_id=user_id, login=login, is_bot=is_bot, bindings=bindings,
                                 policy=policy)
        if (want.recipient_id, want.resolution) != (r["recipient_id"], r["resolution"]):
            drift.append(f"event {r['event_id']} is stored for {r['recipient_id'] or 'no one'} ({r['resolution']}), "
                         f"the identity log gives {want.recipient_id or 'no one'} ({want.resolution})")
    return drift


def allocation_drift(rows: list[dict[str, Any]], allocations: list[dict[str, Any]], policy: Policy) -> list[str]:
    """Recipients whose stored proposal differs from the one derived from the curated events and the policy's rules."""
    derived = {p.recipient_id: (p.proposed_units, p.activity_count) for p in propose(rows, policy)}
    stored = {a["recipient_id"]: (a["proposed_units"], a["activity_count"]) for a in allocations}
    drift = []
    for rid in sorted(set(derived) | set(stored)):
        want, have = derived.get(rid, (0, 0)), stored.get(rid)
        if have is None or have != want:
            drift.append(f"{rid}: stored {have[0] if have else 'no'} units over {have[1] if have else 0} events, "
                         f"derived {want[0]} over {want[1]}")
    return drift
