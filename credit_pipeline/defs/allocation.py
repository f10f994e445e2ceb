"""The allocation stage: the policy applied to the curated events; closed epochs move to review."""


from datetime import UTC, datetime

import dagster as dg

from credit_pipeline.core.allocation import event_weight
from credit_pipeline.defs.metadata import ints, markdown_table
from credit_pipeline.defs.resources import LedgerResource, PolicyResource
from credit_pipeline.stages.allocate import allocate_epoch, curated_for_allocation
from credit_pipeline.stages.resolve import effective_policy


def build_allocation_asset(partitions: dg.PartitionsDefinition, upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions, group_name="allocation", owners=["team:credit-pipeline"], code_version="1",
        kinds={"postgres"}, deps=[upstream],
        check_specs=[dg.AssetCheckSpec("units_match_events", asset="epoch_allocations", blocking=True,
                                       description="Each recipient's proposed units equal the sum of its counted events' weights")],
    )
    def epoch_allocations(context: dg.AssetExecutionContext, ledger: LedgerResource, policy: PolicyResource) -> dg.MaterializeResult:
        """Proposed units per person (or claimant): the sum of their counted events' integer weights under the
        policy (``weight-sum-v1``); admin adjustments are kept with their reasons. Once the week has closed
        and its final collection has run without a completeness shortfall, the epoch enters review: the
        policy, its hash and the approver set are pinned and the base issuance is recorded as the pool.
        The metadata carries the allocation set hash and the exact approval message to sign."""
        store = ledger.store()
        rules = policy.load()
        key = context.partition_key
        report = allocate_epoch(store, key, rules, datetime.now(UTC))
        state = report.state
        for reason in report.review_blocked:
            context.log.info(f"epoch {key} stays open: {reason}")
        rows = sorted(({"recipient": a["recipient_id"], "proposed": a["proposed_units"], "final": a["final_units"],
                        "events": a["activity_count"], "reason": a["reason"] or ""} for a in state.allocations),
                      key=lambda r: (-r["final"], r["recipient"]))
        mismatches = _unit_mismatches(store, key, effective_policy(store.get_epoch(key), rules).weights, state.allocations)
        return dg.MaterializeResult(
            metadata={
                **ints(recipients=len(state.allocations), total_final_units=sum(r["final"] for r in rows),
                       pool_total=state.pool_total, adjusted_recipients=sum(1 for a in state.allocations if a["reason"] is not None)),
                "epoch_status": state.status,
                "entered_review": report.entered_review,
                "review_blocked_by": "; ".join(report.review_blocked) or "nothing",
                "allocation_set_hash": state.allocation_set_hash,
                "revision": state.revision,
                "ledger_id": state.ledger_id,
                "completeness_waiver": str((store.get_epoch(key).completeness_waiver or {}).get("reason") or "none"),
                "derivation_drift": "; ".join(state.drift) or "none",
                "policy_hash": state.policy_hash,
                "approval_message": dg.MetadataValue.md(f"```\n{state.approval_message}\n```"),
                "allocations": markdown_table(rows, ["recipient", "proposed", "final", "events", "reason"], limit=25),
            },
            check_results=[dg.AssetCheckResult(check_name="units_match_events", passed=not mismatches,
                                               metadata={"mismatched_recipients": len(mismatches), "examples": str(mismatches[:5])})],
        )

    return epoch_allocations


def _unit_mismatches(store, key: str, weights, allocations) -> list[str]:
    sums: dict[str, int] = {}
    for e in curated_for_allocation(store.curated_events(key)):
        if e.included and e.recipient_id is not None:
            sums[e.recipient_id] = sums.get(e.recipient_id, 0) + event_weight(e, weights)
    stored = {a["recipient_id"]: a["proposed_units"] for a in allocations}
    return sorted(r for r in set(sums) | set(stored) if sums.get(r, 0) != stored.get(r, 0))
