"""The policy's rules over an epoch's curated rows: per-event decisions and the proposals they sum to.

The rules themselves are pure (``core.rules``); this module turns stored rows (curation joined with
events and their facts) into the rules' inputs, and keeps the facts table filled: each event's facts
are derived once from its raw payload (``sources.parsing.event_facts``) and kept append-only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, ProposedAllocation
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.rules import (FACTS_VERSION, RULES_ALGORITHM_VERSION, Decision, RuleEvent, credited_account, decide,
                                       decide_recipients, referenced_issues, share_capped, share_cuts, totals)
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


def stream_decisions(store: LedgerStore, key: str, policy: Policy) -> Iterator[tuple[list[dict[str, Any]], dict[str, Decision]]]:
    """Epoch ``key``'s curated rows one recipient at a time (``store.curated_groups``), each with its decisions.

    Exactly ``epoch_decisions`` over all the rows (a property test holds them equal), with memory bounded by the
    largest recipient's rows: every rule but ``caps.pool_share`` compares a recipient's events only with each
    other (``core.rules.decide_recipients``), the issues merged PRs reference are read first from the PRs alone,
    and a policy with share caps takes two more passes when a cap binds: one for the sources' totals, one that
    ranks the remainders of the cut in the database (``store.ranked_remainders``). Read it under the epoch lock
    (or in one transaction that writes nothing) for the passes to see the same rows.
    """
    referenced: frozenset[str] = frozenset()
    if policy.rules is not None:
        referenced = referenced_issues(e for group in store.curated_groups(key, event_type="pr_merged") for e in rule_events(group, policy))

    def decided() -> Iterator[tuple[list[dict[str, Any]], dict[str, Decision]]]:
        for group in store.curated_groups(key):
            yield group, decide_recipients(rule_events(group, policy), policy, referenced)

    if not (policy.rules is not None and policy.rules.caps.pool_share):
        yield from decided()
        return
    source_units: dict[str, int] = defaultdict(int)
    for _, decisions in decided():
        for d in decisions.values():
            source_units[d.source] += d.units
    cuts = share_cuts(source_units, policy)
    if not cuts:
        yield from decided()
        return
    floors: dict[str, int] = defaultdict(int)

    def remainders() -> Iterator[tuple[str, str, int]]:
        for _, decisions in decided():
            for d in decisions.values():
                if d.source in cuts and d.units > 0:
                    floor, remainder = cuts[d.source].floor(d.units)
                    floors[d.source] += floor
                    yield d.source, d.event_id, remainder

    boundaries = store.ranked_remainders(remainders(), lambda: {s: cut.limit - floors[s] for s, cut in cuts.items()})
    for group, decisions in decided():
        for event_id, d in decisions.items():
            if d.source in cuts and d.units > 0:
                floor, remainder = cuts[d.source].floor(d.units)
                last = boundaries.get(d.source)  # the last event (remainder descending, then id) that gets one more unit
                extra = last is not None and (remainder > last[0] or (remainder == last[0] and event_id <= last[1]))
                decisions[event_id] = share_capped(d, floor + extra)
        yield group, decisions


def propose_epoch(store: LedgerStore, key: str, policy: Policy) -> list[ProposedAllocation]:
    """``propose`` over the epoch's curated rows, streamed one recipient at a time (``stream_decisions``)."""
    found: list[ProposedAllocation] = []
    for _, decisions in stream_decisions(store, key, policy):
        found.extend(proposals_of(decisions))
    return sorted(found, key=lambda p: p.recipient_id)
