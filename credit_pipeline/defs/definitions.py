"""The ``defs`` object ``workspace.yaml`` and ``dagster definitions validate`` load.

It reads the policy (``$CREDIT_PIPELINE_POLICY`` or ``./policy.yaml``) for the epoch anchor and the
resources from the environment; tokens stay ``dg.EnvVar``s until a run needs them.
"""

from credit_pipeline.defs.builder import build_defs

defs = build_defs()
