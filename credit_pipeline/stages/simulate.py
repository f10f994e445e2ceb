"""What-if: an epoch's allocation and payouts under another policy, written nowhere.

What is compared, plainly:

* **current** is what the epoch pays or would pay now: the latest statement revision of a finalized
  epoch (corrections included), else the stored allocation set (proposals and adjustments) with the
  recorded pool (or, before review, the base issuance of the policy it follows).
* **simulated** re-weighs the same curated events (same recipients, same exclusions and weight
  overrides) with the other policy's weights; admin adjustments, and corrections up to the latest
  revision, are kept as set; the pool is the recorded kpi_bonus/top_up with the other policy's base
  issuance.

The weights, the rules (SPEC §6 "Rules": review states, self-reviews, labels, issue reasons, Discord
types, length, dedupe, daily cap, caps) and the base issuance are applied; ``by_rule`` counts, per rule,
the events each side counted or stopped with it and the units it capped. Every other way the other policy differs from the
pinned one (sources, epoch anchor, excluded accounts, unresolved handling, approvers) is reported as a
warning, since applying it would need a new collection or resolution, not a re-weighing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.rules import TotalsTally
from credit_pipeline.core.statement import effective_corrections, final_units
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.decisions import stream_decisions
from credit_pipeline.stages.explain import RuleSummary, RuleTally
from credit_pipeline.stages.export import recipient_logins
from credit_pipeline.stages.resolve import effective_policy


@dataclass
class SimulationRow:
    recipient_id: str
    login: str
    current_units: int
    simulated_units: int
    units_difference: int
    current_credits: int
    simulated_credits: int
    credits_difference: int


@dataclass
class RuleRow:
    """One rule on both sides: events it decided (counted with it, or stopped by it) and units it capped."""

    rule: str
    outcome: str  # "counted" | "not counted" | "capped"
    current_events: int
    simulated_events: int
    current_units: int
    simulated_units: int


@dataclass
class Side:
    """One column of the comparison: its policy, pool and totals."""

    policy_hash: str
    policy_source: str
    pool_total: int
    total_units: int
    total_credits: int
    recipients: int


@dataclass
class Simulation:
    epoch: str
    status: str
    compared: str  # what "current" and "simulated" are, in words
    current: Side
    simulated: Side
    rows: list[SimulationRow]
    warnings: list[str] = field(default_factory=list)
    by_rule: list[RuleRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulate_epoch(store: LedgerStore, key: str, policy: Policy, baseline: Policy | None = None,
                   policy_source: str = "the other policy") -> Simulation:
    """Compare epoch ``key`` as it stands with the same epoch under ``policy``.

    ``baseline`` is the policy an *open* epoch follows (nothing is pinned on it yet); an epoch in
    review or finalized is compared with its pinned policy and ``baseline`` is not used.
    """
    epoch = store.get_epoch(key)
    if epoch is None:
        raise LedgerError(f"epoch {key} does not exist yet; collect and resolve it first")
    if epoch.policy_hash is None and baseline is None:
        raise LedgerError(f"epoch {key} is open, so no policy is pinned on it yet: it follows the current policy file; "
                          "set CREDIT_PIPELINE_POLICY (or put policy.yaml in the working directory) to compare with it")
    pinned = effective_policy(epoch, baseline)
    pinned_hash = epoch.policy_hash or pinned.policy_hash
    pinned_source = "pinned on the epoch" if epoch.policy_hash else "the current policy file (the epoch is open, nothing is pinned yet)"
    allocations = {a["recipient_id"]: a for a in store.allocations(key)}
    components = store.pool_components(key)
    extra_pool = sum(c["amount"] for c in components if c["component_id"] != "base_issuance")
    statements = store.statement_rows(key) if epoch.status == "finalized" else []

    # One streamed pass under the simulated policy (``stream_decisions``: a row at a time) gives its
    # proposals, its rule tallies, the credited events and their logins; one under the pinned policy its tallies.
    simulated_tally, credited, proposals = RuleTally(), [0], TotalsTally()

    def credited_rows() -> Iterator[dict[str, Any]]:
        for r, d in stream_decisions(store, key, policy):
            if d is not None:
                simulated_tally.add((d,))
                proposals.add(d)
            if r["included"] and r["recipient_id"]:
                credited[0] += 1
                yield r

    logins = recipient_logins(credited_rows())
    simulated = {t.recipient_id: t.units for t in proposals.totals()}
    pinned_tally = RuleTally()
    for _, d in stream_decisions(store, key, pinned):
        if d is not None:
            pinned_tally.add((d,))

    if statements:
        latest = statements[-1]
        bundle = json.loads(latest["bundle"])
        current_units = {p["recipient_id"]: p["total_units"] for p in bundle["payouts"]}
        current_units |= {a["recipient_id"]: a["final_units"] for a in bundle["allocations"] if a["recipient_id"] not in current_units}
        current_credits = {p["recipient_id"]: p["amount_credits"] for p in bundle["payouts"]}
        pool_now = bundle["pool"]["total"]
        corrections = effective_corrections(store.corrections(key), latest["revision"])
        pending = sorted({c["revision"] for c in store.corrections(key) if c["revision"] > latest["revision"]})
        compared = (f"current = statement revision {latest['revision']} of {len(statements)} (what is paid"
                    + (f"; the correction recorded for revision {pending[0]} is not signed yet and is in neither column" if pending else "")
                    + f"); simulated = its {credited[0]} credited events re-weighed, "
                    + "adjustments" + (" and corrections" if corrections else "") + " kept")
    else:
        corrections = {}
        current_units = {r: final_units(a) for r, a in allocations.items()}
        pool_now = sum(c["amount"] for c in components) if components else pinned.pool.base_issuance
        current_credits = {line.recipient_id: line.amount_credits for line in compute_payouts(current_units, pool_now)}
        compared = (f"current = the stored allocation set of the {epoch.status} epoch (not finalized: what it would pay now); "
                    f"simulated = its {credited[0]} counted events re-weighed, adjustments kept")

    for recipient, a in allocations.items():
        if a["final_units"] is not None:
            simulated[recipient] = a["final_units"]
    for recipient, c in corrections.items():
        simulated[recipient] = c["final_units"]
    pool_sim = policy.pool.base_issuance + extra_pool
    credits_sim = {line.recipient_id: line.amount_credits for line in compute_payouts(simulated, pool_sim)}

    table = []
    for r in sorted(set(current_units) | set(simulated)):
        cu, su, cc, sc = current_units.get(r, 0), simulated.get(r, 0), current_credits.get(r, 0), credits_sim.get(r, 0)
        table.append(SimulationRow(r, logins.get(r, ""), cu, su, su - cu, cc, sc, sc - cc))
    table.sort(key=lambda row: (-row.simulated_credits, -row.current_credits, row.recipient_id))
    return Simulation(
        epoch=key, status=epoch.status, compared=compared,
        current=Side(pinned_hash, pinned_source, pool_now, sum(current_units.values()), sum(current_credits.values()),
                     sum(1 for v in current_credits.values() if v)),
        simulated=Side(policy.policy_hash, policy_source, pool_sim, sum(simulated.values()), sum(credits_sim.values()),
                       sum(1 for v in credits_sim.values() if v)),
        rows=table, warnings=policy_warnings(pinned, policy, extra_pool, "pinned" if epoch.policy_hash else "current"),
        by_rule=rule_rows(pinned_tally.summary(), simulated_tally.summary()),
    )


def rule_rows(current: list[RuleSummary], simulated: list[RuleSummary]) -> list[RuleRow]:
    """Per rule: events and units on each side (counted rules: units counted; stopping rules: 0; caps: units capped)."""
    a = {(r.rule, r.outcome): r for r in current}
    b = {(r.rule, r.outcome): r for r in simulated}
    order = {"counted": 0, "not counted": 1, "capped": 2}
    keys = sorted(set(a) | set(b), key=lambda k: (order[k[1]], k[0]))

    def side(rows: dict, k: tuple[str, str]) -> tuple[int, int]:
        return (rows[k].events, rows[k].units) if k in rows else (0, 0)

    return [RuleRow(rule, outcome, side(a, (rule, outcome))[0], side(b, (rule, outcome))[0], side(a, (rule, outcome))[1],
                    side(b, (rule, outcome))[1]) for rule, outcome in keys]


# What simulate does not apply, per policy section, and why it matters.
_NOT_APPLIED = {
    "sources": "simulate re-weighs the events already collected for this epoch and collects nothing, so activity only "
               "the other sources would bring is not counted, and activity they would drop still is",
    "epoch": "the epoch's window stays the pinned one; events are not re-bucketed into other weeks",
    "exclude": "simulate keeps the stored curation: accounts the other policy excludes are still credited here, and "
               "accounts it no longer excludes still get nothing",
    "unresolved": "simulate keeps the stored resolution of every event: claimants stay claimants (or stay excluded)",
    "approvers": "approvers do not change a payout, but a statement under the other policy would need their signatures",
}


def policy_warnings(pinned: Policy, other: Policy, extra_pool: int = 0, label: str = "pinned") -> list[str]:
    """One line for each way ``other`` differs from ``pinned`` in anything but its weights (and version number)."""
    a, b = pinned.canonical(), other.canonical()
    warnings = []
    for path, mine, theirs in _differences(a, b):
        top = path.split(".")[0]
        if top in ("weights", "version", "rules"):  # applied
            continue
        if top == "pool":
            consequence = f"the simulated pool is {theirs + extra_pool}" + (
                f" ({theirs} base issuance + {extra_pool} recorded kpi_bonus/top_up)" if extra_pool else "")
        else:
            consequence = _NOT_APPLIED[top]
        warnings.append(f"{path} differs: {label} {_shown(mine)}, other {_shown(theirs)}"
                        + (f" ({_list_change(mine, theirs)})" if isinstance(mine, list) and isinstance(theirs, list) else "")
                        + f"; {consequence}")
    return warnings


def _differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [(path, a, b)]


def _list_change(mine: list[Any], theirs: list[Any]) -> str:
    added, dropped = [x for x in theirs if x not in mine], [x for x in mine if x not in theirs]
    parts = ([f"adds {', '.join(map(str, added))}"] if added else []) + ([f"drops {', '.join(map(str, dropped))}"] if dropped else [])
    return "; ".join(parts) or "same entries, another order"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:119] + "…"


def rows_as_dicts(rows: list[SimulationRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
