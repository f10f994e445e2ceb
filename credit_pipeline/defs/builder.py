"""Assembling the Definitions: every asset, check, job, sensor and schedule, and their resources."""


import os

import dagster as dg

from credit_pipeline.defs.allocation import build_allocation_asset
from credit_pipeline.defs.approval import build_approval_job
from credit_pipeline.defs.automation import build_cursor_sensor, build_weekly_job, build_weekly_schedule
from credit_pipeline.defs.collection import build_collection_assets
from credit_pipeline.defs.partitions import weekly_epochs
from credit_pipeline.defs.resolution import build_resolution_asset
from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
from credit_pipeline.defs.statements import build_statement_asset
from credit_pipeline.sources.discord_source import DEFAULT_API_URL as DISCORD_DEFAULT_URL
from credit_pipeline.sources.github_source import DEFAULT_API_URL as GITHUB_DEFAULT_URL
from credit_pipeline.stages.settings import load_policy


def default_resources(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources from the environment; tokens and the database URL stay ``EnvVar``s, resolved only when a run needs them."""
    env = dict(os.environ if env is None else env)

    def secret(name: str) -> str:
        # An unset token must not stop the other source (or the UI) from loading: the adapter that
        # needs it says which variable to set when it runs.
        return dg.EnvVar(name) if env.get(name) else ""

    return {
        # An EnvVar too: the URL may hold a password, and resource config is in the snapshot every UI viewer sees.
        "ledger": LedgerResource(database_url=secret("CREDIT_PIPELINE_DATABASE_URL") or None),
        "policy": PolicyResource(path=env.get("CREDIT_PIPELINE_POLICY")),
        "github": GitHubResource(token=secret("GITHUB_TOKEN"), api_url=env.get("GITHUB_API_URL") or GITHUB_DEFAULT_URL),
        "discord": DiscordResource(token=secret("DISCORD_BOT_TOKEN"), api_url=env.get("DISCORD_API_URL") or DISCORD_DEFAULT_URL),
    }


def build_defs(policy_path: str | None = None, resources: dict[str, dg.ConfigurableResource] | None = None) -> dg.Definitions:
    """Every asset, check, job, sensor and schedule, partitioned from the policy's epoch anchor."""
    partitions = weekly_epochs(load_policy(policy_path).epoch.anchor)
    raw_github, raw_discord = build_collection_assets(partitions)
    resolved = build_resolution_asset(partitions, [raw_github, raw_discord])
    allocations = build_allocation_asset(partitions, resolved)
    statements = build_statement_asset(partitions, allocations)
    weekly_job = build_weekly_job([raw_github, raw_discord, resolved, allocations])
    resources = resources or default_resources()
    # The approval job reads the epochs in review now (short timeouts; empty defaults if the ledger does not answer).
    approve_job = build_approval_job(resources.get("ledger"), resources.get("policy"))
    return dg.Definitions(
        assets=[raw_github, raw_discord, resolved, allocations, statements],
        jobs=[weekly_job, approve_job],
        schedules=[build_weekly_schedule(weekly_job)],
        sensors=[build_cursor_sensor({"github": raw_github, "discord": raw_discord})],
        resources=resources,
    )
