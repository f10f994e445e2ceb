"""The policy's rules over an epoch's curated rows: per-event decisions and the proposals they sum to.

The rules themselves are pure (``core.rules``); this module turns stored rows (curation joined with
events and their facts) into the rules' inputs, and keeps the facts table filled: each event's facts
are derived once from its raw payload (``sources.parsing.event_facts``) and kept append-only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, ProposedAllocation
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.rules import FACTS_VERSION, RULES_ALGORITHM_VERSION, Decision, RuleEvent, credited_account, decide, totals
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sources.parsing import event_facts


def algorithm_version(policy: Policy) -> str:
    """``weight-rules-v1`` under a policy with rules, else ``weight-sum-v1`` (what old statements name)."""
    return ALGORITHM_VERSION if policy.rules is None else RULES_ALGORITHM_VERSION


FACTS_BATCH = 5000


def ensure_facts(store: LedgerStore, event_ids: Sequence[str]) -> int:
    """Derive and keep the facts of the events that have none yet; returns how many were derived."""
    missing = store.events_without_facts(list(event_ids), FACTS_VERSION)
    derived = 0
    for i in range(0, len(missing), FACTS_BATCH):  # payloads in batches: a week's payloads are never all in memory
        batch = missing[i:i + FACTS_BATCH]
        payloads = store.payloads(batch)
        derived += store.record_facts({eid: event_facts(eid, payloads[eid]) for eid in batch if eid in payloads}, FACTS_VERSION)
        del payloads
    return derived


def account_of(row: dict[str, Any], policy: Policy) -> tuple[str | None, str | None, bool]:
    """The account a row credits under the policy (a closed issue's author or closer, from its facts)."""
    return credited_account(row["event_type"], (row["platform_user_id"], row["platform_login"], bool(row["is_bot"])),
                            row.get("facts") or {}, policy)


def rule_events(rows: Iterable[dict[str, Any]], policy: Policy) -> list[RuleEvent]:
    """The candidates: rows included by curation that credit someone."""
    return [RuleEvent(r["event_id"], r["source"], r["event_type"], r["recipient_id"], account_of(r, policy)[0], r["event_time"],
                      r.get("weight_override"), r.get("facts") or {})
            for r in rows if r["included"] and r["recipient_id"] is not None]


def epoch_decisions(rows: Iterable[dict[str, Any]], policy: Policy) -> dict[str, Decision]:
    return decide(rule_events(rows, policy), policy)


def proposals_of(decisions: dict[str, Decision]) -> list[ProposedAllocation]:
    return [ProposedAllocation(t.recipient_id, t.units, t.counted) for t in totals(decisions)]


def propose(rows: Iterable[dict[str, Any]], policy: Policy) -> list[ProposedAllocation]:
    """Each recipient's proposed units and counted events under the policy and its rules."""
    return proposals_of(epoch_decisions(rows, policy))
