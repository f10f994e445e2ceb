"""Asset check specs that carry the asset's partitions, so every check result names its week.

Dagster 1.13 records a check evaluation's partition only when the check's own spec has a
``partitions_def`` (``AssetCheckResult.to_asset_check_evaluation`` sets ``partition`` from the
step's partition key exactly then). Without it, a check emitted inside a partitioned asset is an
unpartitioned check: the UI shows "Partition —" and keeps one latest result for all weeks. The spec's
``partitions_def`` must be the asset's own. Dagster marks it a preview feature and warns on every
spec built with one; the warning is silenced here, where that choice is made once, and
docs/dagster-ui.md says why.
"""


import warnings

import dagster as dg


def partitioned_check(name: str, *, asset: str, partitions: dg.PartitionsDefinition, description: str,
                      blocking: bool = False) -> dg.AssetCheckSpec:
    """An ``AssetCheckSpec`` partitioned like its asset (``asset``'s partitions definition, passed in)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec")
        return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description, partitions_def=partitions)
