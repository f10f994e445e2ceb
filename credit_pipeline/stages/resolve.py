"""Identity resolution: curate every event of a window into its epoch (SPEC §5).

Runs on every pass for epochs that are not finalized, so a binding added later
resolves earlier activity of open and review epochs. An open epoch takes every
event of its window; an epoch in review only re-resolves the events it already
holds, and new facts for its window are reported as *late*. Admin curation
(exclusions, weight overrides, notes) is never touched.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from credit_pipeline.core.allocation import CLAIMANT, CuratedEvent, resolve_recipient
from credit_pipeline.core.policy import Policy, PolicyError, validate_policy
from credit_pipeline.core.rules import FACTS_VERSION
from credit_pipeline.ledger.store import CurationProposal, EpochRecord, LedgerStore
from credit_pipeline.stages.decisions import account_of, ensure_facts, stream_decisions
from credit_pipeline.stages.settings import ENV_POLICY


@dataclass(frozen=True)
class UnresolvedAccount:
    provider: str
    external_id: str
    login: str | None
    events: int
    weight: int


@dataclass
class ResolveReport:
    epoch_key: str
    status: str
    events_in_window: int = 0
    curated: int = 0
    written: int = 0
    late_events: list[str] = field(default_factory=list)
    by_resolution: dict[str, int] = field(default_factory=dict)
    unresolved: list[UnresolvedAccount] = field(default_factory=list)
    resolved_weight: int = 0
    outside_window: int = 0
    mode: str = "full"  # "unchanged" (nothing read or written), "new facts" (only those resolved) or "full"
    processed: int = 0  # events resolved by this pass

    def summary(self) -> dict:
        """What a later pass with the same inputs returns without reading the epoch again (``from_summary``)."""
        return {"events_in_window": self.events_in_window, "curated": self.curated, "late_events": self.late_events,
                "by_resolution": self.by_resolution, "unresolved": [vars(u) for u in self.unresolved],
                "resolved_weight": self.resolved_weight, "outside_window": self.outside_window}

    @classmethod
    def from_summary(cls, key: str, status: str, summary: dict) -> ResolveReport:
        return cls(epoch_key=key, status=status, events_in_window=summary["events_in_window"], curated=summary["curated"],
                   late_events=list(summary["late_events"]), by_resolution=dict(summary["by_resolution"]),
                   unresolved=[UnresolvedAccount(**u) for u in summary["unresolved"]], resolved_weight=summary["resolved_weight"],
                   outside_window=summary["outside_window"], mode="unchanged")

    @property
    def resolved(self) -> int:
        return self.by_resolution.get("bound", 0)

    @property
    def unresolved_weight(self) -> int:
        return sum(u.weight for u in self.unresolved)

    @property
    def unresolved_share(self) -> float:
        total = self.resolved_weight + self.unresolved_weight
        return self.unresolved_weight / total if total else 0.0

    @property
    def unresolved_events(self) -> int:
        return self.by_resolution.get(CLAIMANT, 0) + self.by_resolution.get("unresolved_excluded", 0)


def curated_event(row: dict) -> CuratedEvent:
    """A stored curation row (joined with its event) as the allocation sees it."""
    return CuratedEvent(row["event_id"], row["source"], row["event_type"], row["recipient_id"], row["included"], row["weight_override"])


def pinned_document(epoch: EpochRecord) -> dict | None:
    """The pinned policy exactly as it was hashed (never re-serialized through today's model)."""
    if epoch.policy_text is not None:
        return json.loads(epoch.policy_text)
    return epoch.policy  # epochs pinned before the text was kept (jsonb round-trips these exactly)


def effective_policy(epoch: EpochRecord, current: Policy | None) -> Policy:
    """The epoch's pinned policy once it is in review; the current one while open."""
    document = pinned_document(epoch)
    if document is not None:
        return validate_policy(document, f"pinned policy of epoch {epoch.key}")
    if current is None:
        raise PolicyError([f"epoch {epoch.key} is open, so it follows the current policy: pass --policy FILE or set "
                           f"{ENV_POLICY}"], "policy")
    return current


def effective_policy_hash(epoch: EpochRecord, current: Policy | None) -> str:
    """The pinned hash as stored once pinned; the current policy's while open."""
    return epoch.policy_hash if epoch.policy_hash else effective_policy(epoch, current).policy_hash


# Bump when a pass gives other outputs for the same inputs: every stored mark is then unequal, and the next
# pass of each epoch is a full one.
MARK_VERSION = 1


def resolve_epoch(store: LedgerStore, key: str, policy: Policy, *, summarize: bool = True) -> ResolveReport:
    """Curate the window's events into epoch ``key`` with their current resolution.

    A delta pass (``ledger.pass_marks``): when the window's facts, the identity log, the policy, the epoch's status
    and the curation are what the last pass left, nothing is read or written and its summary is returned
    (``mode`` "unchanged"); when only new facts came, only those are resolved ("new facts"); otherwise every event
    of the window is ("full"). ``summarize=False`` skips the counts for people (re-derivation after an admin write
    needs none).
    """
    with store.atomic():
        store.ensure_epoch(key)
        # The epoch lock first, as every writer of the epoch's curation and allocation rows takes it: a pass
        # and an admin write (or two passes) serialize instead of deadlocking, and the pass reads the
        # status, curation and bindings it writes against.
        epoch = store.lock_epoch(key)
        report = ResolveReport(epoch_key=key, status=epoch.status)
        if epoch.status == "finalized":
            report.events_in_window = store.window_fact_count(epoch.start, epoch.end)
            report.late_events = sorted(e["event_id"] for e in store.uncurated_events_between(epoch.start, epoch.end, key))
            return _summarized(store, key, policy, epoch, report, summarize)
        rules = effective_policy(epoch, policy)
        # Read before the facts and the bindings: a fact or a binding written meanwhile makes the next pass look again.
        inputs = {"v": MARK_VERSION, "facts": store.window_fact_count(epoch.start, epoch.end), "identity": store.identity_head(),
                  "policy": rules.policy_hash, "status": epoch.status, "facts_version": FACTS_VERSION}
        before = store.curation_digest(key)
        mark, summary = store.pass_mark(key, "resolve") or ({}, None)
        last_inputs, last_curation = mark.get("inputs") or {}, mark.get("curation") or {}
        resolved_since = any(last_curation.get(k) != before[k] for k in ("rows", "resolved_at"))
        report.events_in_window = inputs["facts"]
        if last_inputs == inputs and not resolved_since:
            report.mode = "unchanged"
            if summary is not None and last_curation == before:
                return ResolveReport.from_summary(key, epoch.status, summary) if summarize else report
        else:
            only_new = (not resolved_since and {k: v for k, v in last_inputs.items() if k != "facts"}
                        == {k: v for k, v in inputs.items() if k != "facts"} and inputs["facts"] > last_inputs.get("facts", 0))
            report.mode = "new facts" if only_new else "full"
            if epoch.status == "open":  # every event of the window (only the uncurated ones when only new facts came)
                batches = store.window_event_batches(epoch.start, epoch.end, key, curated=False) if only_new \
                    else store.window_event_batches(epoch.start, epoch.end)
            else:  # in review: the events it holds are re-resolved; the window's others are late and stay facts only
                report.late_events = sorted(e["event_id"] for e in store.uncurated_events_between(epoch.start, epoch.end, key))
                batches = iter(()) if only_new else store.window_event_batches(epoch.start, epoch.end, key, curated=True)
            bindings = store.bindings()
            for chosen in batches:  # a batch at a time: a week of millions of events is never in memory at once
                report.processed += len(chosen)
                report.written += _resolve_batch(store, key, chosen, rules, bindings)
        if report.mode == "unchanged" and epoch.status != "open":  # the summary that listed them is stale
            report.late_events = [e["event_id"] for e in store.uncurated_events_between(epoch.start, epoch.end, key)]
        mark = {"inputs": inputs, "curation": store.curation_digest(key)}
        store.record_pass_mark(key, "resolve", mark, None)
    # The curation commits first (with its mark); the summary, for people, is read after and kept with the mark
    # unless another pass or an admin write replaced the mark meanwhile.
    if summarize:
        summarize_curation(store, key, rules, report)
        store.record_pass_summary(key, "resolve", mark, report.summary())
    return report


def _summarized(store: LedgerStore, key: str, policy: Policy, epoch: EpochRecord, report: ResolveReport, summarize: bool) -> ResolveReport:
    if summarize:
        summarize_curation(store, key, effective_policy(epoch, policy), report)
    return report


def _resolve_batch(store: LedgerStore, key: str, chosen: list[dict], rules: Policy, bindings: dict) -> int:
    """Derive the batch's missing facts and curate its events with their current resolution; rows written."""
    ensure_facts(store, [e["event_id"] for e in chosen])
    facts = store.facts_of([e["event_id"] for e in chosen if e["event_type"] == "issue_closed"], FACTS_VERSION) \
        if rules.rules is not None else {}
    proposals = []
    for e in chosen:
        user_id, login, is_bot = account_of({**e, "facts": facts.get(e["event_id"])}, rules)
        r = resolve_recipient(source=e["source"], platform_user_id=user_id, login=login, is_bot=is_bot, bindings=bindings,
                              policy=rules)
        proposals.append(CurationProposal(e["event_id"], r.recipient_id, r.resolution))
    return store.curate(key, proposals)


def summarize_curation(store: LedgerStore, key: str, policy: Policy, report: ResolveReport) -> None:
    """Fill counts by resolution and the unresolved accounts (login, events, weight), a row at a time."""
    report.outside_window = store.count_curated_outside_window(key)
    by_resolution: Counter = Counter()
    curated = resolved_weight = 0
    accounts: dict[tuple[str, str], list] = {}  # (provider, external_id) -> [latest event_time, its login, events, weight]
    for r, d in stream_decisions(store, key, policy):
        curated += 1
        by_resolution[r["resolution"]] += 1
        units = d.units if d is not None else 0
        if r["included"] and r["resolution"] == "bound":
            resolved_weight += units
        if r["resolution"] in (CLAIMANT, "unresolved_excluded"):
            a = accounts.setdefault((r["source"], r["platform_user_id"]), [r["event_time"], r["platform_login"], 0, 0])
            if r["event_time"] > a[0]:
                a[0], a[1] = r["event_time"], r["platform_login"]
            if r["included"]:
                a[2] += 1
                a[3] += units
    report.curated, report.resolved_weight, report.by_resolution = curated, resolved_weight, dict(by_resolution)
    report.unresolved = sorted(
        (UnresolvedAccount(provider=provider, external_id=external_id, login=login, events=events, weight=weight)
         for (provider, external_id), (_, login, events, weight) in accounts.items()),
        key=lambda a: (-a.weight, a.provider, a.external_id),
    )
