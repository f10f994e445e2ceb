"""The cursor sensor, the weekly job and its schedule. Finalize is in none of them."""


import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.epochs import epoch_key
from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
from credit_pipeline.sources.base import SourceError
from credit_pipeline.stages.collect import source_cursors
from credit_pipeline.stages.sources_config import configured_sources


def build_weekly_job(stages: list[dg.AssetsDefinition]) -> "UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        "weekly_epoch_job", selection=dg.AssetSelection.assets(*stages),
        description="Collect, resolve and allocate one week (everything before finalize). Run by the weekly "
                    "schedule for the week that just closed, which moves it to review.",
        tags={"credit_pipeline/stage": "weekly"},
    )


def build_weekly_schedule(job: "UnresolvedAssetJobDefinition") -> dg.ScheduleDefinition:
    # Not build_schedule_from_partitioned_job: with end_offset=1 (the open week is a partition) it would
    # request the week that has just *opened*; the week to close is the one before it.
    @dg.schedule(name="weekly_epoch_schedule", cron_schedule="0 6 * * 1", execution_timezone="UTC", job=job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Mondays 06:00 UTC: the final collection, resolution and allocation of the week that "
                             "just closed, which moves it to review.")
    def weekly_epoch_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        closed_week = epoch_key(context.scheduled_execution_time.astimezone(UTC) - timedelta(days=7))
        return dg.RunRequest(run_key=closed_week, partition_key=closed_week, tags={"credit_pipeline/trigger": "weekly_schedule"})

    return weekly_epoch_schedule


def build_cursor_sensor(raw_assets: dict[str, dg.AssetsDefinition]) -> dg.SensorDefinition:
    @dg.sensor(
        name="source_cursor_sensor", target=list(raw_assets.values()), minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Probes every source stream cheaply with the ledger's cursors and requests a collection of the "
                    "open week only when there is something new. Its own cursor remembers what it already "
                    "requested; the authoritative cursors stay in the ledger.",
    )
    def source_cursor_sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource, policy: PolicyResource,
                             github: GitHubResource, discord: DiscordResource) -> dg.SensorResult | dg.SkipReason:
        rules = policy.load()
        store = ledger.store()
        requested: dict[str, str] = json.loads(context.cursor or "{}")
        fresh: dict[str, str] = {}
        problems, quiet = [], []
        for name in configured_sources(rules):
            try:
                source = github.source(rules) if name == "github" else discord.source(rules)
                probes = source.probe(source_cursors(store, source))
            except SourceError as exc:
                problems.append(f"{name}: {exc}")
                continue
            for probe in probes:
                if probe.has_new and requested.get(str(probe.stream)) != probe.head:
                    fresh[str(probe.stream)] = probe.head or ""
                else:
                    quiet.append(str(probe.stream))
        for problem in problems:
            context.log.error(problem)
        if not fresh:
            why = f"nothing new past the ledger cursors of {len(quiet)} stream(s)"
            return dg.SkipReason(why + (f"; probe failed: {'; '.join(problems)}" if problems else ""))
        key = epoch_key(datetime.now(UTC))
        selection = sorted({stream.split(":", 1)[0] for stream in fresh})
        run_key = f"{key}:{canonical_hash(fresh)[:16]}"
        context.log.info(f"new activity in {', '.join(sorted(fresh))}: requesting {selection} for {key}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=run_key, partition_key=key,
                                        asset_selection=[raw_assets[name].key for name in selection],
                                        tags={"credit_pipeline/trigger": "cursor_sensor"})],
            cursor=json.dumps({**requested, **fresh}, sort_keys=True),
        )

    return source_cursor_sensor
