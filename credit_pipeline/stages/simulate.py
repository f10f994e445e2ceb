"""What-if: an epoch's allocation and payouts under another policy, written nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from credit_pipeline.core.allocation import propose_allocations
from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import Policy
from credit_pipeline.core.statement import final_units
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.allocate import curated_for_allocation


@dataclass
class SimulationRow:
    recipient_id: str
    current_units: int
    simulated_units: int
    current_credits: int
    simulated_credits: int


def simulate_epoch(store: LedgerStore, key: str, policy: Policy) -> list[SimulationRow]:
    """Recompute ``weight-sum-v1`` over the epoch's curated events with ``policy``'s weights and pool.

    Recipients and admin curation stay as they are; admin unit adjustments are kept too.
    """
    if store.get_epoch(key) is None:
        raise LedgerError(f"epoch {key} does not exist yet; collect and resolve it first")
    allocations = {a["recipient_id"]: a for a in store.allocations(key)}
    current = {r: final_units(a) for r, a in allocations.items()}
    simulated = {p.recipient_id: p.proposed_units for p in propose_allocations(curated_for_allocation(store.curated_events(key)), policy.weights)}
    for recipient, a in allocations.items():
        if a["final_units"] is not None:
            simulated[recipient] = a["final_units"]
    pool_now = sum(c["amount"] for c in store.pool_components(key)) or policy.pool.base_issuance
    credits_now = {line.recipient_id: line.amount_credits for line in compute_payouts(current, pool_now)}
    credits_sim = {line.recipient_id: line.amount_credits for line in compute_payouts(simulated, policy.pool.base_issuance)}
    return [
        SimulationRow(r, current.get(r, 0), simulated.get(r, 0), credits_now.get(r, 0), credits_sim.get(r, 0))
        for r in sorted(set(current) | set(simulated))
    ]


def rows_as_dicts(rows: list[SimulationRow]) -> list[dict[str, Any]]:
    return [r.__dict__ for r in rows]
