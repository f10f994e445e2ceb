"""The identity-resolved stage: every event of the window curated into its epoch, with its recipient."""


import dagster as dg

from credit_pipeline.defs.checks import partitioned_check
from credit_pipeline.defs.metadata import ints, markdown_table
from credit_pipeline.defs.resources import LedgerResource, PolicyResource
from credit_pipeline.stages.resolve import resolve_epoch

UNRESOLVED_WARN_SHARE = 0.25


def build_resolution_asset(partitions: dg.PartitionsDefinition, upstream: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions, group_name="identity", owners=["team:credit-pipeline"], code_version="1",
        kinds={"postgres"}, deps=upstream,
        check_specs=[
            partitioned_check("one_epoch_per_event", asset="resolved_activity", partitions=partitions, blocking=True,
                              description="Every curated event lies in this epoch's half-open window and in no other epoch"),
            partitioned_check("unresolved_share", asset="resolved_activity", partitions=partitions,
                              description=f"Warns when more than {UNRESOLVED_WARN_SHARE:.0%} of the week's weight goes to unbound accounts"),
        ],
    )
    def resolved_activity(context: dg.AssetExecutionContext, ledger: LedgerResource, policy: PolicyResource) -> dg.MaterializeResult:
        """The week's events curated into this epoch (one epoch per event), each resolved to a person through
        the identity bindings, or kept as a claimant ``provider:external_id`` when unbound. Admin curation
        (exclusions, weight overrides, notes) is never touched. Runs again on every pass while the epoch is
        not finalized, so a binding added later resolves earlier activity; new facts for an epoch already in
        review are reported as late, not curated. A pass whose inputs (facts, identity log, policy, curation)
        are those of the last one writes nothing (``pass_mode`` unchanged); one that finds only new facts
        resolves only those."""
        store = ledger.store()
        rules = policy.load()
        key = context.partition_key
        report = resolve_epoch(store, key, rules)
        unresolved = [{"provider": u.provider, "external_id": u.external_id, "login": u.login, "events": u.events, "weight": u.weight}
                      for u in report.unresolved]
        share, outside = report.unresolved_share, report.outside_window
        return dg.MaterializeResult(
            metadata={
                **ints(events_in_window=report.events_in_window, curated_events=report.curated, rows_written=report.written,
                       resolved_events=report.resolved, unresolved_events=report.unresolved_events,
                       unresolved_accounts=len(report.unresolved), late_events=len(report.late_events)),
                "epoch_status": report.status,
                # a delta pass: "unchanged" (the inputs of the last pass: nothing read again or written), "new facts"
                # (only those resolved) or "full"
                "pass_mode": report.mode,
                **ints(events_resolved_this_pass=report.processed),
                "by_resolution": dg.MetadataValue.json(report.by_resolution),
                "unresolved_accounts_preview": markdown_table(unresolved, ["provider", "external_id", "login", "events", "weight"]),
            },
            check_results=[
                dg.AssetCheckResult(check_name="one_epoch_per_event", passed=outside == 0, metadata={"events_outside_window": outside}),
                dg.AssetCheckResult(check_name="unresolved_share", passed=share <= UNRESOLVED_WARN_SHARE, severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"unresolved_weight_share": round(share, 4)}),
            ],
        )

    return resolved_activity

