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
    """The decisions before ``caps.pool_share``, given the epoch's ``referenced`` issues (in time order).

    Every rule but the share cap compares an event only with events of the same recipient, so for any set of
    events that holds all of each of its recipients' candidates this equals ``decide`` before the share caps.
    It is ``RecipientRules`` fed one recipient at a time, which is how a stored epoch is decided without holding
    it (``stages.decisions.stream_decisions``).
    """
    ordered = sorted(events, key=_order)
    by_recipient = sorted(ordered, key=lambda e: (e.recipient_id, e.event_time, e.event_id))
    rules = RecipientRules(policy, referenced, best_reviews(by_recipient, policy))
    decided = {e.event_id: rules.decide(e) for e in by_recipient}
    return {e.event_id: decided[e.event_id] for e in ordered}


def best_reviews(events: Iterable[RuleEvent], policy: Policy) -> dict[tuple[Any, str], str]:
    """``one_review_per_pr``: per (PR, recipient), the review that is credited: the heaviest that the rules on the
    review alone let count (overrides are exempt), the earliest on a tie. ``events`` are in ``(event_time,
    event_id)`` order within each recipient; only reviews are read, so a stream of the epoch's reviews will do."""
    if policy.rules is None or not policy.rules.github.one_review_per_pr:
        return {}
    best: dict[tuple[Any, str], tuple[str, int]] = {}
    for e in events:
        if e.event_type != "review_submitted":
            continue
        d = _weigh(e, policy)
        if d.counted and d.rule != "override":
            k = (e.facts.get("pr"), e.recipient_id)
            if k not in best or d.weight > best[k][1]:
                best[k] = (e.event_id, d.weight)  # strictly heavier wins; on a tie the earliest stays
    return {k: event_id for k, (event_id, _) in best.items()}


class RecipientRules:
    """Every rule but ``caps.pool_share``, one event at a time: each recipient's events are fed together, in
    ``(event_time, event_id)`` order, and each gets its decision at once.

    The rules that compare an event with others need only what came before it of the same recipient: dedupe the
    contents already counted per channel, the daily cap the day's count per channel, the person caps the units
    so far per source; one review per PR is known beforehand (``best_reviews``). So the state is one recipient's,
    dropped when the next begins, and a recipient of a million messages is decided without holding them. Events
    out of that order are refused (``ValueError``): the decisions would silently differ.
    """

    def __init__(self, policy: Policy, referenced: frozenset[str] = frozenset(),
                 best: Mapping[tuple[Any, str], str] | None = None) -> None:
        self.policy, self.referenced = policy, referenced
        self.best = best if best is not None else {}
        self._recipient: str | None = None
        self._last: tuple[datetime, str] | None = None
        self._done: set[str] = set()
        self._first: dict[tuple[Any, Any], str] = {}  # (channel, content) -> the first counted message with it
        self._today: dict[Any, int] = {}  # channel -> messages counted so far on the day of ``_day``
        self._day: Any = None
        self._used: dict[str, int] = defaultdict(int)  # source -> units counted so far

    def _begin(self, e: RuleEvent) -> None:
        if e.recipient_id != self._recipient:
            if e.recipient_id in self._done:
                raise ValueError(f"the events of recipient {e.recipient_id} were not fed together")
            if self._recipient is not None:
                self._done.add(self._recipient)
            self._recipient, self._last = e.recipient_id, None
            self._first, self._today, self._day, self._used = {}, {}, None, defaultdict(int)
        at = _order(e)
        if self._last is not None and at <= self._last:
            raise ValueError(f"event {e.event_id} of {e.recipient_id} came after {self._last[1]}: "
                             "feed each recipient's events in (event_time, event_id) order")
        self._last = at

    def decide(self, e: RuleEvent) -> Decision:
        self._begin(e)
        d = _weigh(e, self.policy, self.referenced)
        rules = self.policy.rules
        if rules is None:
            return d
        if d.counted and d.rule != "override":
            d = self._compare(e, d, rules)
        cap = rules.caps.units_per_person.get(e.source)
        if cap is not None and d.counted:  # ``caps.units_per_person``: the recipient's units from a source, up to the cap
            units = max(0, min(d.units, cap - self._used[e.source]))
            self._used[e.source] += units
            if units < d.units:
                d = _capped(d, units, "units_per_person")
        return d

    def _compare(self, e: RuleEvent, d: Decision, rules: Any) -> Decision:
        """The rules that compare a live event with others: one review per PR, dedupe, the daily cap."""
        if e.event_type == "review_submitted" and rules.github.one_review_per_pr:
            kept = self.best.get((e.facts.get("pr"), e.recipient_id))
            if kept is None:
                raise ValueError(f"review {e.event_id} is not in best_reviews: read every review of the epoch first")
            if kept != e.event_id:
                return _stopped(d, "one_review_per_pr", f"{kept} is this reviewer's credited review of {e.facts.get('pr')}")
            return d
        if e.event_type != "message_sent":
            return d
        channel = e.facts.get("channel_id")
        discord = rules.discord
        if discord.dedupe and int(e.facts.get("length") or 0) > 0:
            k = (channel, e.facts.get("content_sha256"))
            first = self._first.get(k)
            if first is not None:
                return _stopped(d, "dedupe", f"same content as {first} in this channel")
            self._first[k] = e.event_id
        if discord.daily_cap is not None:
            day = e.event_time.date()
            if day != self._day:  # events come in time order: an earlier day never comes back
                self._day, self._today = day, {}
            seen = self._today[channel] = self._today.get(channel, 0) + 1
            if seen > discord.daily_cap:
                return _stopped(d, "daily_cap", f"message {seen} of the day (UTC {day}) in this channel; the cap is "
                                                f"{discord.daily_cap}")
        return d


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


def _stopped(d: Decision, rule: str, detail: str) -> Decision:
    return Decision(d.event_id, d.recipient_id, d.source, False, rule, detail, 0, 0)


def _capped(d: Decision, units: int, rule: str) -> Decision:
    return Decision(d.event_id, d.recipient_id, d.source, d.counted, d.rule, d.detail, d.weight, units,
                    d.capped + (d.units - units), d.caps + ((rule, d.units - units),))


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


class TotalsTally:
    """``totals`` added up as decisions pass, for streamed passes that hand the rows on to something else."""

    def __init__(self) -> None:
        self._acc: dict[str, list[int]] = {}

    def add(self, d: Decision) -> None:
        if d.counted:
            row = self._acc.setdefault(d.recipient_id, [0, 0, 0])
            row[0] += d.units
            row[1] += 1
            row[2] += d.capped

    def totals(self) -> list[RecipientTotals]:
        return [RecipientTotals(r, *self._acc[r]) for r in sorted(self._acc)]


def totals(decisions: Mapping[str, Decision] | Iterable[Decision]) -> list[RecipientTotals]:
    """Units, counted events and capped units per recipient with at least one counted event; sorted by id.
    ``decisions`` by event id, or a stream of them."""
    tally = TotalsTally()
    for d in decisions.values() if isinstance(decisions, Mapping) else decisions:
        tally.add(d)
    return tally.totals()


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
