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
from credit_pipeline.core.rules import (FACTS_VERSION, RULES_ALGORITHM_VERSION, Decision, RecipientRules, RuleEvent, best_reviews,
                                       credited_account, decide, referenced_issues, share_capped, share_cuts, totals)
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
    return [e for r in rows if (e := rule_event(r, policy)) is not None]


def epoch_decisions(rows: Iterable[dict[str, Any]], policy: Policy) -> dict[str, Decision]:
    return decide(rule_events(rows, policy), policy)


def proposals_of(decisions: dict[str, Decision] | Iterable[Decision]) -> list[ProposedAllocation]:
    """Each recipient's units and counted events (``totals``), sorted by recipient; ``decisions`` may be a stream."""
    return [ProposedAllocation(t.recipient_id, t.units, t.counted) for t in totals(decisions)]


def propose(rows: Iterable[dict[str, Any]], policy: Policy) -> list[ProposedAllocation]:
    """Each recipient's proposed units and counted events under the policy and its rules."""
    return proposals_of(epoch_decisions(rows, policy))


def rule_event(row: dict[str, Any], policy: Policy) -> RuleEvent | None:
    """The row as the rules see it, or None when it is not a candidate (excluded, or crediting no one)."""
    if not row["included"] or row["recipient_id"] is None:
        return None
    return RuleEvent(row["event_id"], row["source"], row["event_type"], row["recipient_id"], account_of(row, policy)[0],
                     row["event_time"], row.get("weight_override"), row.get("facts") or {})


def stream_decisions(store: LedgerStore, key: str, policy: Policy) -> Iterator[tuple[dict[str, Any], Decision | None]]:
    """Epoch ``key``'s curated rows (``store.curated_rows``: one recipient's together, in time order, the rows
    crediting no one last), each with its decision (None for a row that is not a candidate).

    Exactly ``epoch_decisions`` over all the rows (a property test holds them equal), with memory bounded by the
    cursor's batch and one recipient's rule state, never by the epoch's or a recipient's rows: every rule but
    ``caps.pool_share`` compares a recipient's events only with its earlier ones (``core.rules.RecipientRules``).
    Two facts of the whole epoch are read first, from its merged PRs (the issues they reference) and its reviews
    (each PR's credited review per reviewer). A policy with share caps takes two more passes when a cap binds:
    one for the sources' totals, one that ranks the remainders of the cut in the database
    (``store.ranked_remainders``). Read it under the epoch lock (or in one transaction that writes nothing) for
    the passes to see the same rows.
    """
    referenced: frozenset[str] = frozenset()
    best: dict = {}
    if policy.rules is not None:
        referenced = referenced_issues(e for r in store.curated_rows(key, event_type="pr_merged") if (e := rule_event(r, policy)))
        if policy.rules.github.one_review_per_pr:
            best = best_reviews((e for r in store.curated_rows(key, event_type="review_submitted") if (e := rule_event(r, policy))),
                                policy)

    def decided() -> Iterator[tuple[dict[str, Any], Decision | None]]:
        rules = RecipientRules(policy, referenced, best)
        for row in store.curated_rows(key):
            e = rule_event(row, policy)
            yield row, (rules.decide(e) if e is not None else None)

    if not (policy.rules is not None and policy.rules.caps.pool_share):
        yield from decided()
        return
    source_units: dict[str, int] = defaultdict(int)
    for _, d in decided():
        if d is not None:
            source_units[d.source] += d.units
    cuts = share_cuts(source_units, policy)
    if not cuts:
        yield from decided()
        return
    floors: dict[str, int] = defaultdict(int)

    def remainders() -> Iterator[tuple[str, str, int]]:
        for _, d in decided():
            if d is not None and d.source in cuts and d.units > 0:
                floor, remainder = cuts[d.source].floor(d.units)
                floors[d.source] += floor
                yield d.source, d.event_id, remainder

    boundaries = store.ranked_remainders(remainders(), lambda: {s: cut.limit - floors[s] for s, cut in cuts.items()})
    for row, d in decided():
        if d is not None and d.source in cuts and d.units > 0:
            floor, remainder = cuts[d.source].floor(d.units)
            last = boundaries.get(d.source)  # the last event (remainder descending, then id) that gets one more unit
            extra = last is not None and (remainder > last[0] or (remainder == last[0] and d.event_id <= last[1]))
            d = share_capped(d, floor + extra)
        yield row, d


def propose_epoch(store: LedgerStore, key: str, policy: Policy) -> list[ProposedAllocation]:
    """``propose`` over the epoch's curated rows, streamed (``stream_decisions``); sorted by recipient."""
    return proposals_of(d for _, d in stream_decisions(store, key, policy) if d is not None)
