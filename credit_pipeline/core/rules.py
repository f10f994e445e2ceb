"""The policy's rules, applied per event: what counts, what does not, and what is capped (SPEC §6 "Rules").

``decide`` is a pure function of the epoch's candidate events (included by curation and
crediting someone) and the policy. Each event gets a ``Decision``: whether it counted, the
rule that decided its weight or stopped it, its weight, and its units after the caps (with
the amount capped, never dropped silently). Rules that compare events with each other (one
review per PR, dedupe, the daily cap, the caps) walk the events in ``(event_time, event_id)``
order, so the result never depends on the order the events are given in.

A policy without ``rules`` decides as ``weight-sum-v1`` always has: every candidate counts
with its weight (or the admin's override), nothing is capped.

The facts the rules read come from each event's raw payload (``sources.parsing.event_facts``);
statement bundles carry them, so an offline verify re-derives every decision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from credit_pipeline.core.policy import Policy

RULES_ALGORITHM_VERSION = "weight-rules-v1"
FACTS_VERSION = 1  # of sources.parsing.event_facts; a change there that alters facts bumps it
CONVERSATION_TYPES = (0, 19)  # Discord DEFAULT and REPLY


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """A candidate event as the rules see it."""

    event_id: str
    source: str
    event_type: str
    recipient_id: str
    account_id: str | None  # the platform account credited (the reviewer, the message author, ...)
    event_time: datetime
    weight_override: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    event_id: str
    recipient_id: str
    source: str
    counted: bool
    rule: str  # the rule that set the weight ("weights", "review_weights", "pr_labels", ...) or stopped the event
    detail: str
    weight: int  # milli-units before the caps (0 when not counted)
    units: int  # milli-units after the caps
    capped: int = 0
    caps: tuple[tuple[str, int], ...] = ()  # (cap rule, milli-units it took), in the order applied

    def to_dict(self) -> dict[str, Any]:
        return {"counted": self.counted, "rule": self.rule, "detail": self.detail, "weight": self.weight,
                "units": self.units, "capped": self.capped, "caps": {rule: taken for rule, taken in self.caps}}


def _order(e: RuleEvent) -> tuple[datetime, str]:
    return e.event_time, e.event_id


def decide(events: Iterable[RuleEvent], policy: Policy) -> dict[str, Decision]:
    """Every candidate's decision, by event id."""
    ordered = sorted(events, key=_order)
    decisions = decide_recipients(ordered, policy, referenced_issues(ordered))
    _share_caps(decisions, policy)
    return decisions


def referenced_issues(events: Iterable[RuleEvent]) -> frozenset[str]:
    """Issues a merged PR of the epoch says it closes ("Fixes #12"), for ``self_closed_issues: referenced``."""
    return frozenset(ref for e in events if e.event_type == "pr_merged" for ref in e.facts.get("closes") or ())


def decide_recipients(events: Iterable[RuleEvent], policy: Policy, referenced: frozenset[str]) -> dict[str, Decision]:
    """The decisions before ``caps.pool_share``, given the epoch's ``referenced`` issues.

    Every rule but the share cap compares an event only with events of the same recipient, so for any set of
    events that holds all of each of its recipients' candidates this equals ``decide`` before the share caps:
    an epoch can be decided one recipient at a time (``stages.decisions.stream_decisions``).
    """
    ordered = sorted(events, key=_order)
    decisions = {e.event_id: _weigh(e, policy, referenced) for e in ordered}
    if policy.rules is None:
        return decisions
    _group_rules(ordered, decisions, policy)
    _person_caps(ordered, decisions, policy)
    return decisions


def _decision(e: RuleEvent, rule: str, detail: str, weight: int | None) -> Decision:
    counted = weight is not None
    w = weight if counted else 0
    return Decision(e.event_id, e.recipient_id, e.source, counted, rule, detail, w, w)


def _weigh(e: RuleEvent, policy: Policy, referenced: frozenset[str] = frozenset()) -> Decision:
    """The rules that look at one event alone."""
    if e.weight_override is not None:
        if e.weight_override < 0:
            raise ValueError(f"weight override of {e.event_id} is negative ({e.weight_override})")
        return _decision(e, "override", "weight set by an admin", e.weight_override)
    default = policy.weight(e.source, e.event_type)
    rules = policy.rules
    if rules is None:
        return _decision(e, "weights", f"{e.source}:{e.event_type}", default)
    f = e.facts
    if e.event_type == "review_submitted":
        g = rules.github
        state = f.get("state")
        if g.review_weights is not None:
            if state not in g.review_weights:
                return _decision(e, "review_weights", f"review state {state} is not weighted", None)
            default, rule = g.review_weights[state], "review_weights"
        else:
            rule = "weights"
        if not g.self_review and f.get("pr_author_id") is not None and f.get("pr_author_id") == e.account_id:
            return _decision(e, "self_review", f"a review of the reviewer's own PR {f.get('pr')}", None)
        return _decision(e, rule, f"review state {state}" if rule == "review_weights" else "github:review_submitted", default)
    if e.event_type == "pr_merged":
        g = rules.github
        labels = set(f.get("labels") or ())
        for r in g.pr_labels:
            if r.label in labels:
                return _decision(e, "pr_labels", f"label {r.label}", r.weight)
        floor = g.pr_size_floor
        lines = _lines(f)
        if floor is not None and lines is not None and lines < floor.min_lines:
            return _decision(e, "pr_size_floor", f"{lines} changed lines, under {floor.min_lines}", floor.weight)
        return _decision(e, "weights", "github:pr_merged", default)
    if e.event_type == "issue_closed":
        g = rules.github
        reason = f.get("state_reason") or "completed"  # GitHub's default; issues closed before 2022 carry none
        if g.issue_reasons is not None and reason not in g.issue_reasons:
            return _decision(e, "issue_reasons", f"closed as {reason}", None)
        author, closer = (f.get("author") or [None])[0], (f.get("closer") or [None])[0]
        if author is not None and author == closer and g.self_closed_issues != "all":
            if g.self_closed_issues == "none":
                return _decision(e, "self_closed_issues", "opened and closed by the same account", None)
            if f.get("issue") not in referenced:
                return _decision(e, "self_closed_issues", "opened and closed by the same account, and no merged PR of "
                                 "the epoch references it", None)
        return _decision(e, "weights", "github:issue_closed", default)
    if e.event_type == "message_sent":
        d = rules.discord
        kind = f.get("type")
        if d.message_types is not None and kind not in d.message_types:
            return _decision(e, "message_types", f"message type {kind} is not conversation", None)
        length = int(f.get("length") or 0)
        if length < d.min_length:
            return _decision(e, "min_length", f"{length} characters after trimming, under {d.min_length}", None)
        return _decision(e, "weights", "discord:message_sent", default)
    return _decision(e, "weights", f"{e.source}:{e.event_type}", default)


def _lines(facts: Mapping[str, Any]) -> int | None:
    additions, deletions = facts.get("additions"), facts.get("deletions")
    if isinstance(additions, int) and isinstance(deletions, int):
        return additions + deletions
    return None


def _stop(decisions: dict[str, Decision], e: RuleEvent, rule: str, detail: str) -> None:
    d = decisions[e.event_id]
    decisions[e.event_id] = Decision(d.event_id, d.recipient_id, d.source, False, rule, detail, 0, 0)


def _group_rules(ordered: list[RuleEvent], decisions: dict[str, Decision], policy: Policy) -> None:
    """Rules that compare an event with others: one review per PR, dedupe, the daily cap (overrides are exempt)."""
    rules = policy.rules
    assert rules is not None

    def live(e: RuleEvent, event_type: str) -> bool:
        d = decisions[e.event_id]
        return e.event_type == event_type and d.counted and d.rule != "override"

    if rules.github.one_review_per_pr:
        best: dict[tuple[Any, str], RuleEvent] = {}
        for e in ordered:
            if live(e, "review_submitted"):
                k = (e.facts.get("pr"), e.recipient_id)
                if k not in best or decisions[e.event_id].weight > decisions[best[k].event_id].weight:
                    best[k] = e  # strictly heavier wins; on a tie the earliest stays
        for e in ordered:
            if live(e, "review_submitted") and best[(e.facts.get("pr"), e.recipient_id)] is not e:
                kept = best[(e.facts.get("pr"), e.recipient_id)]
                _stop(decisions, e, "one_review_per_pr", f"{kept.event_id} is this reviewer's credited review of {e.facts.get('pr')}")
    d = rules.discord
    if d.dedupe:
        first: dict[tuple[Any, ...], str] = {}
        for e in ordered:
            if live(e, "message_sent") and int(e.facts.get("length") or 0) > 0:
                k = (e.recipient_id, e.facts.get("channel_id"), e.facts.get("content_sha256"))
                if k in first:
                    _stop(decisions, e, "dedupe", f"same content as {first[k]} in this channel")
                else:
                    first[k] = e.event_id
    if d.daily_cap is not None:
        seen: dict[tuple[Any, ...], int] = defaultdict(int)
        for e in ordered:
            if live(e, "message_sent"):
                k = (e.recipient_id, e.facts.get("channel_id"), e.event_time.date())
                seen[k] += 1
                if seen[k] > d.daily_cap:
                    _stop(decisions, e, "daily_cap", f"message {seen[k]} of the day (UTC {e.event_time.date()}) in this "
                                                     f"channel; the cap is {d.daily_cap}")


def _capped(d: Decision, units: int, rule: str) -> Decision:
    return Decision(d.event_id, d.recipient_id, d.source, d.counted, d.rule, d.detail, d.weight, units,
                    d.capped + (d.units - units), d.caps + ((rule, d.units - units),))


def _person_caps(ordered: list[RuleEvent], decisions: dict[str, Decision], policy: Policy) -> None:
    """``caps.units_per_person``: each person's units from a source, in event order, up to the cap."""
    caps = policy.rules.caps.units_per_person if policy.rules else {}
    used: dict[tuple[str, str], int] = defaultdict(int)
    for e in ordered:
        d = decisions[e.event_id]
        cap = caps.get(e.source)
        if cap is None or not d.counted:
            continue
        k = (e.recipient_id, e.source)
        units = max(0, min(d.units, cap - used[k]))
        used[k] += units
        if units < d.units:
            decisions[e.event_id] = _capped(d, units, "units_per_person")


@dataclass(frozen=True, slots=True)
class ShareCut:
    """A binding ``caps.pool_share`` of one source: its units ``have`` are cut to ``limit``."""

    source: str
    limit: int
    have: int

    def floor(self, units: int) -> tuple[int, int]:
        """An event's share of the limit, rounded down, and the remainder that ranks it for the leftover units."""
        return units * self.limit // self.have, units * self.limit % self.have


def share_cuts(source_units: Mapping[str, int], policy: Policy) -> dict[str, ShareCut]:
    """``caps.pool_share``: a source capped at c% earns at most c/(100-c) times the units of the other sources.

    ``source_units`` are the units per source after the person caps and before any share cap, so the caps of two
    sources never depend on each other's order. A source alone in an epoch is not capped (there is nothing to
    balance it against). Returns the sources whose cap binds.
    """
    shares = policy.rules.caps.pool_share if policy.rules else {}
    cuts = {}
    for source, percent in sorted(shares.items()):
        others = sum(u for s, u in source_units.items() if s != source)
        have = source_units.get(source, 0)
        limit = percent * others // (100 - percent)
        if others and have > limit:
            cuts[source] = ShareCut(source, limit, have)
    return cuts


def share_capped(d: Decision, units: int) -> Decision:
    """``d`` cut to ``units`` by its source's share cap (unchanged when nothing is cut)."""
    return _capped(d, units, "pool_share") if units < d.units else d


def _share_caps(decisions: dict[str, Decision], policy: Policy) -> None:
    """The share caps (``share_cuts``). The cut is split over the source's events by largest remainder (ties by
    event id), so units stay integers and the capped total is exact."""
    totals: dict[str, int] = defaultdict(int)
    for d in decisions.values():
        totals[d.source] += d.units
    for cut in share_cuts(totals, policy).values():
        members = sorted((d for d in decisions.values() if d.source == cut.source and d.units > 0), key=lambda d: d.event_id)
        shares = {d.event_id: cut.floor(d.units) for d in members}
        floors = {eid: f for eid, (f, _) in shares.items()}
        rems = sorted(members, key=lambda d: (-shares[d.event_id][1], d.event_id))
        for d in rems[:cut.limit - sum(floors.values())]:
            floors[d.event_id] += 1
        for d in members:
            decisions[d.event_id] = share_capped(d, floors[d.event_id])


@dataclass(frozen=True, slots=True)
class RecipientTotals:
    recipient_id: str
    units: int
    counted: int
    capped: int


def totals(decisions: Mapping[str, Decision]) -> list[RecipientTotals]:
    """Units, counted events and capped units per recipient with at least one counted event; sorted by id."""
    acc: dict[str, list[int]] = {}
    for d in decisions.values():
        if d.counted:
            row = acc.setdefault(d.recipient_id, [0, 0, 0])
            row[0] += d.units
            row[1] += 1
            row[2] += d.capped
    return [RecipientTotals(r, *acc[r]) for r in sorted(acc)]


def credited_account(event_type: str, columns: tuple[str | None, str | None, bool], facts: Mapping[str, Any],
                     policy: Policy) -> tuple[str | None, str | None, bool]:
    """The account an event credits: its own, except a closed issue under ``issue_credit`` with rules.

    With ``rules`` the author or closer comes from the raw fact at resolution, and a deleted closer
    credits no one. Without them the column decided at collection stands (a deleted closer fell back
    to the author), so old policies resolve as they always have.
    """
    if policy.rules is None or event_type != "issue_closed" or "author" not in facts:
        return columns
    github = policy.sources.github
    chosen = facts.get("closer") if github is not None and github.issue_credit == "closer" else facts.get("author")
    if not chosen:
        return None, None, False
    return chosen[0], chosen[1], bool(chosen[2])
