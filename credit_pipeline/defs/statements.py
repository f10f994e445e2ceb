"""The finalize asset: the approved allocation set split over the pool into an immutable statement."""

import base64

import dagster as dg

from credit_pipeline.core.statement import counted_events
from credit_pipeline.defs.checks import partitioned_check
from credit_pipeline.defs.metadata import ints, markdown_table
from credit_pipeline.defs.resources import LedgerResource
from credit_pipeline.ledger.store import LedgerError
from credit_pipeline.stages.finalize import finalize_epoch
from credit_pipeline.stages.verify import verify_stored
from credit_pipeline.stages.weekly_report import report_chart_png

FINALIZE_POOL = "credit_pipeline_finalize"


def build_statement_asset(partitions: dg.PartitionsDefinition, upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions, group_name="payouts", owners=["team:credit-pipeline"], code_version="1",
        kinds={"postgres"}, deps=[upstream], pool=FINALIZE_POOL,
        tags={"credit_pipeline/stage": "finalize"},
        check_specs=[
            partitioned_check("credits_sum_to_pool", asset="payout_statements", partitions=partitions, description="Σ amount_credits equals the pool total exactly"),
            partitioned_check("statement_verifies", asset="payout_statements", partitions=partitions,
                              description="The stored statement recomputes byte for byte from the ledger rows"),
        ],
    )
    def payout_statements(context: dg.AssetExecutionContext, ledger: LedgerResource) -> dg.MaterializeResult:
        """The finalize step, materialized by an admin (never by a schedule, sensor or automation): re-derives
        the epoch's allocation set from its rows and refuses on any difference, or unless a valid approval
        of exactly that set exists; then splits the pool over the final units with integer largest-remainder
        rounding, verifies the bundle it built, writes it and moves the epoch to finalized, in one
        transaction. Materializing it again changes nothing, unless a correction was recorded and approved:
        then it writes the next revision, superseding the last (`credit-pipeline correct`)."""
        store = ledger.store()
        key = context.partition_key
        try:
            result = finalize_epoch(store, key)
        except LedgerError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        bundle = result.bundle
        payouts = bundle["payouts"]
        verified = verify_stored(store, key)
        top = sorted(payouts, key=lambda p: (-p["amount_credits"], p["recipient_id"]))
        counted, not_counted, capped = counted_events(bundle)
        chart = base64.b64encode(report_chart_png(bundle)).decode("ascii")
        return dg.MaterializeResult(
            metadata={
                **ints(recipients=len(payouts), pool_total=bundle["pool"]["total"], credited_events=counted,
                       events_not_counted_by_rules=not_counted, units_capped_by_rules=capped,
                       total_credits=sum(p["amount_credits"] for p in payouts), approvals=len(bundle["approvals"])),
                "statement_hash": bundle["statement_hash"],
                "revision": bundle.get("revision", 1),
                "supersedes": bundle.get("supersedes") or "nothing (first revision)",
                "revision_chain": " <- ".join(r["statement_hash"] for r in reversed(store.statement_rows(key))),
                "ledger_id": bundle.get("ledger_id") or "not named (v1 statement)",
                "allocation_set_hash": bundle["allocation_set_hash"],
                "policy_hash": bundle["policy_hash"],
                "written_now": result.written,
                "payouts": markdown_table(top, ["recipient_id", "total_units", "share", "amount_credits"], limit=25),
                "chart": dg.MetadataValue.md(f"![credits per person and per source](data:image/png;base64,{chart})"),
                **distribution_metadata(bundle),
                "verify": dg.MetadataValue.md(f"`credit-pipeline verify --epoch {key}`, or offline: "
                                              f"`credit-pipeline export --epoch {key} --format json > s.json && credit-pipeline verify s.json`"),
            },
            check_results=[
                dg.AssetCheckResult(check_name="credits_sum_to_pool", passed=sum(p["amount_credits"] for p in payouts) == bundle["pool"]["total"] or not payouts,
                                    metadata={"credits": sum(p["amount_credits"] for p in payouts), "pool": bundle["pool"]["total"]}),
                dg.AssetCheckResult(check_name="statement_verifies", passed=verified.ok, metadata={"mismatch": verified.mismatch or "none"}),
            ],
        )

    return payout_statements


def distribution_metadata(bundle: dict) -> dict:
    """What the treasury pays (statement v3): payable and held credit, the token, the Merkle root, the exports."""
    dist = bundle.get("distribution")
    if dist is None:
        return {"distribution": "none (a statement written before payout wallets)"}
    key, token, merkle = bundle["epoch"]["key"], dist["token"], dist["merkle"]
    return {
        **ints(payable_credits=dist["payable_credits"], held_credits=dist["held_credits"],
               wallets_paid=sum(1 for line in dist["lines"] if line["status"] == "payable")),
        "payout_token": f"{token['token_address']} ({token['decimals']} decimals, {token['token_units_per_credit']} base units per credit)"
                        if token else "none (the policy names no payout token)",
        "merkle_root": merkle["root"] if merkle else "none",
        "pay_it": dg.MetadataValue.md(
            f"`credit-pipeline export --epoch {key} --format safe-airdrop -o airdrop.csv` (the Safe CSV Airdrop file; held lines "
            f"in airdrop.held.csv), `--format merkle` (OpenZeppelin StandardMerkleTree JSON), "
            f"`credit-pipeline proof --epoch {key} --recipient R`, `--format report -o report.md`"),
    }
