"""Why a recipient gets what it gets: each event, counted or not, the rule that decided it, and the caps.

The decisions are the ones allocation, finalize and verify use (``core.rules`` over the epoch's curated
rows); an open epoch follows the current policy, an epoch in review or finalized its pinned one. The
totals are checked against the stored proposal, so an explanation never disagrees with what is paid
without saying so (``drift``).

``rules_view`` is the same, for every recipient at once, for the ``epoch_allocations`` metadata: per
rule and outcome, per recipient, and what the same policy would pay without its ``rules``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from credit_pipeline.core.epochs import parse_epoch_key
from credit_pipeline.core.policy import Policy, validate_policy
from credit_pipeline.core.policy_yaml import excerpt
from credit_pipeline.core.rules import Decision, TotalsTally
from credit_pipeline.core.statement import iso_utc
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.allocate import last_known_logins
from credit_pipeline.stages.decisions import algorithm_version, stream_decisions
from credit_pipeline.stages.resolve import effective_policy, effective_policy_hash

ADMIN_EXCLUDED = "excluded"  # the "rule" of an event an admin excluded (curate --exclude): no policy rule saw it


@dataclass
class ExplainedEvent:
    event_id: str
    event_type: str
    event_time: str
    counted: bool
    rule: str  # the rule that set its weight or stopped it ("excluded" for an admin's exclusion)
    detail: str
    weight: int  # milli-units before the caps (0 when not counted)
    units: int  # milli-units after the caps
    capped: int  # milli-units the caps took
    caps: dict[str, int]  # cap rule -> milli-units it took


@dataclass
class Explanation:
    epoch: str
    status: str
    recipient_id: str
    policy_hash: str
    algorithm_version: str  # weight-rules-v1 under a policy with rules, else weight-sum-v1
    rules: bool  # whether the policy has a rules section
    events: list[ExplainedEvent]  # every event of the recipient, in (event_time, event_id) order
    counted_events: int
    not_counted_events: int
    units: int  # the sum of the counted events' units: the proposal the rules give
    capped: dict[str, int]  # per cap rule, the milli-units it took in total
    not_counted_by_rule: dict[str, int]  # per stopping rule, the events it stopped
    stored_proposed_units: int | None  # the stored allocation line (None: the set has no line for the recipient)
    stored_activity_count: int | None
    stored_final_units: int | None  # an admin's adjustment (None: the final units are the proposal)
    adjustment_reason: str | None
    drift: list[str] = field(default_factory=list)  # empty when the rules give exactly the stored proposal

    @property
    def counted(self) -> list[ExplainedEvent]:
        return [e for e in self.events if e.counted]

    @property
    def not_counted(self) -> list[ExplainedEvent]:
        return [e for e in self.events if not e.counted]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _explained(row: dict[str, Any], d: Decision | None) -> ExplainedEvent:
    when = iso_utc(row["event_time"]) or ""
    if d is None:  # excluded by curation: no rule decided it
        note = (row.get("note") or "").strip()
        return ExplainedEvent(row["event_id"], row["event_type"], when, False, ADMIN_EXCLUDED,
                              f"excluded by {row.get('curated_by') or 'an admin'}" + (f": {note}" if note else ""), 0, 0, 0, {})
    return ExplainedEvent(row["event_id"], row["event_type"], when, d.counted, d.rule, d.detail, d.weight, d.units, d.capped,
                          dict(d.caps))


def _unknown(key: str, recipient_id: str, rows: Iterable[dict[str, Any]], stored: dict[str, Any]) -> LedgerError:
    """The refusal for a recipient the epoch does not know, with the ids it does know (and a login's id)."""
    wanted = recipient_id.casefold()  # GitHub logins are case-insensitive; a display name is typed as seen
    known_ids, login_ids = set(stored), set()
    for r in rows:  # may be a stream: only recipient ids are kept
        if r["recipient_id"]:
            known_ids.add(r["recipient_id"])
            if (r["platform_login"] or "").casefold() == wanted:
                login_ids.add(r["recipient_id"])
    known, by_login = sorted(known_ids), sorted(login_ids)
    if by_login:
        hint = f"; {excerpt(recipient_id)} is the login of {', '.join(by_login)}: pass that id"
    elif known:
        hint = f"; its {len(known)} recipients include {', '.join(known[:5])}"
    else:
        hint = "; it has no recipients yet (collect and resolve it first)"
    return LedgerError(f"recipient {excerpt(recipient_id)} has no event and no allocation in epoch {key}{hint}; the epoch_allocations "
                       f"table in the Dagster UI, or credit-pipeline simulate --epoch {key} --policy FILE, lists every recipient")


def explain_recipient(store: LedgerStore, key: str, policy: Policy | None, recipient_id: str) -> Explanation:
    """The recipient's events in epoch ``key`` with their decisions; refuses an unknown epoch or recipient.

    ``policy`` is the current policy, needed (and used) only while the epoch is open.
    """
    parse_epoch_key(key)
    epoch = store.get_epoch(key)
    if epoch is None:
        raise LedgerError(f"epoch {key} does not exist yet; collect and resolve it first (credit-pipeline epochs lists the epochs)")
    rules = effective_policy(epoch, policy)
    stored = {a["recipient_id"]: a for a in store.allocations(key)}
    # The epoch a row at a time (``stream_decisions``): only this recipient's rows are kept (they come together, in
    # time order), and the pass stops after them.
    mine, decisions = [], {}
    for row, d in stream_decisions(store, key, rules):
        if row["recipient_id"] == recipient_id:
            mine.append(row)
            if d is not None:
                decisions[d.event_id] = d
        elif mine:
            break
    if not mine and recipient_id not in stored:
        raise _unknown(key, recipient_id, store.curated_rows(key), stored)
    events = [_explained(r, decisions.get(r["event_id"])) for r in mine]
    counted = [e for e in events if e.counted]
    capped: Counter[str] = Counter()
    for e in counted:
        capped.update(e.caps)
    units = sum(e.units for e in counted)
    line = stored.get(recipient_id)
    drift = []
    if line is None and counted:
        drift.append(f"the stored allocation set has no line for {recipient_id}, yet the rules count {len(counted)} of its events "
                     f"({units} milli-units)")
    elif line is not None and (line["proposed_units"], line["activity_count"]) != (units, len(counted)):
        drift.append(f"the stored proposal is {line['proposed_units']} milli-units over {line['activity_count']} events, the rules "
                     f"give {units} over {len(counted)}"
                     + ("" if epoch.status == "finalized" else ": materialize epoch_allocations for this week to re-derive it"))
    return Explanation(
        epoch=key, status=epoch.status, recipient_id=recipient_id, policy_hash=effective_policy_hash(epoch, policy),
        algorithm_version=algorithm_version(rules), rules=rules.rules is not None, events=events,
        counted_events=len(counted), not_counted_events=len(events) - len(counted), units=units,
        capped=dict(sorted(capped.items())),
        not_counted_by_rule=dict(sorted(Counter(e.rule for e in events if not e.counted).items())),
        stored_proposed_units=line["proposed_units"] if line else None,
        stored_activity_count=line["activity_count"] if line else None,
        stored_final_units=line["final_units"] if line else None,
        adjustment_reason=line["reason"] if line else None,
        drift=drift,
    )


def without_rules(policy: Policy) -> Policy:
    """The same policy with its ``rules`` section left out (what it would pay if every event counted)."""
    document = policy.canonical()
    document.pop("rules", None)
    return validate_policy(document, "the policy without its rules")


@dataclass(frozen=True)
class RuleSummary:
    rule: str
    outcome: str  # counted | not counted | capped
    events: int
    units: int  # counted: their units after the caps; not counted: 0; capped: the units the cap took


OUTCOME_ORDER = {"counted": 0, "not counted": 1, "capped": 2}


class RuleTally:
    """``rule_summary`` added up as decisions pass (``add`` them by event id, or any iterable of them), for streamed passes."""

    def __init__(self) -> None:
        self._acc: dict[tuple[str, str], list[int]] = {}

    def add(self, decisions: Mapping[str, Decision] | Iterable[Decision]) -> RuleTally:
        for d in decisions.values() if isinstance(decisions, Mapping) else decisions:
            row = self._acc.setdefault((d.rule, "counted" if d.counted else "not counted"), [0, 0])
            row[0] += 1
            row[1] += d.units
            for cap, taken in d.caps:
                row = self._acc.setdefault((cap, "capped"), [0, 0])
                row[0] += 1
                row[1] += taken
        return self

    def summary(self) -> list[RuleSummary]:
        return [RuleSummary(rule, outcome, *self._acc[(rule, outcome)])
                for rule, outcome in sorted(self._acc, key=lambda k: (OUTCOME_ORDER[k[1]], k[0]))]


def rule_summary(decisions: dict[str, Decision]) -> list[RuleSummary]:
    """Per rule and outcome: the events it decided and their units (for caps: the units it took)."""
    return RuleTally().add(decisions).summary()


@dataclass
class RulesView:
    """What the rules did in an epoch, for the allocation asset's metadata."""

    summary: list[RuleSummary]
    not_counted: dict[str, int]  # per recipient: events a rule stopped
    capped: dict[str, int]  # per recipient: milli-units the caps took
    without_rules: list[Any] | None  # simulate rows (with the rules = current, without = simulated) that differ, most changed first
    logins: dict[str, str] = field(default_factory=dict)  # per recipient: the last-known logins (``last_known_logins``)
    proposed: dict[str, int] = field(default_factory=dict)  # per recipient: the milli-units the decisions sum to

    @property
    def stopped(self) -> list[RuleSummary]:
        """The stopping rules, most events first."""
        return sorted((r for r in self.summary if r.outcome == "not counted"), key=lambda r: (-r.events, r.rule))

    @property
    def caps(self) -> list[RuleSummary]:
        return sorted((r for r in self.summary if r.outcome == "capped"), key=lambda r: (-r.units, r.rule))


def rules_view(store: LedgerStore, key: str, policy: Policy) -> RulesView:
    """Per rule and per recipient, what the epoch's policy decided; with rules, the comparison with none.

    ``policy`` is the policy the epoch follows (``effective_policy``). The curated rows are read a row at a time
    (``stream_decisions``), so the view of a week of millions of events holds only its tallies; the same
    pass gives each recipient's last-known logins and proposed units (for the asset's table and its check).
    """
    from credit_pipeline.stages.simulate import simulate_epoch  # simulate imports RuleTally from here

    tally, not_counted, capped, proposals = RuleTally(), Counter(), Counter(), TotalsTally()

    def rows() -> Iterator[dict[str, Any]]:  # the pass: tallies each row's decision, hands the row on
        for row, d in stream_decisions(store, key, policy):
            if d is not None:
                tally.add((d,))
                not_counted[d.recipient_id] += not d.counted
                capped[d.recipient_id] += d.capped
                proposals.add(d)
            yield row

    logins = last_known_logins(rows())
    proposed = {t.recipient_id: t.units for t in proposals.totals()}
    comparison = None
    if policy.rules is not None:
        epoch = store.get_epoch(key)
        sim = simulate_epoch(store, key, without_rules(policy), None if epoch is not None and epoch.policy_hash else policy,
                             policy_source="the same policy without its rules")
        comparison = sorted((r for r in sim.rows if r.credits_difference or r.units_difference),
                            key=lambda r: (-abs(r.credits_difference), -abs(r.units_difference), r.recipient_id))
    return RulesView(tally.summary(), {r: n for r, n in not_counted.items() if n}, {r: c for r, c in capped.items() if c}, comparison,
                     logins, proposed)
