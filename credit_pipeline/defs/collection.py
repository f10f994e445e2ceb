"""The two raw-activity assets: each collects its source's window into the ledger."""


from datetime import UTC, datetime

import dagster as dg

from credit_pipeline.core.epochs import window_for_key
from credit_pipeline.defs.checks import partitioned_check
from credit_pipeline.defs.metadata import ints, markdown_table
from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
from credit_pipeline.sources.base import Source
from credit_pipeline.stages.collect import CollectReport, collect_epoch

OWNERS = ["team:credit-pipeline"]


def _check_spec(asset: str, partitions: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return partitioned_check("completeness", asset=asset, partitions=partitions, blocking=True,
                             description="Stored counts per repo/channel equal the source's own totals for a closed window "
                                         "(a shortfall blocks review until collected again or waived)")


def _completeness_result(context: dg.AssetExecutionContext, store, key: str, report: CollectReport) -> dg.AssetCheckResult:
    epoch = store.get_epoch(key)
    if not report.completeness:
        return dg.AssetCheckResult(check_name="completeness", passed=True, metadata={"status": "window still open: checked after it closes"})
    rows = [{"stream": k, **{f: v.get(f) for f in ("stored", "source", "shortfall", "method")}, "quarantined": v.get("quarantined", 0),
             "partial count": "yes" if v.get("incomplete") else ""} for k, v in sorted(report.completeness.items())]
    waived = bool(epoch and epoch.completeness_waiver)
    passed = not report.shortfalls or waived
    return dg.AssetCheckResult(
        check_name="completeness", passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"shortfall_streams": len(report.shortfalls), "waived": waived, "streams": markdown_table(rows, ["stream", "stored", "source", "shortfall", "quarantined", "partial count", "method"])},
    )


def materialize_collection(context: dg.AssetExecutionContext, ledger: LedgerResource, source: Source | None, source_name: str) -> dg.MaterializeResult:
    key = context.partition_key
    store = ledger.store()
    if source is None:
        return dg.MaterializeResult(metadata={"skipped": f"the policy has no sources.{source_name} section"},
                                    check_results=[dg.AssetCheckResult(check_name="completeness", passed=True, metadata={"status": "source not configured"})])
    start, end = window_for_key(key)
    now = datetime.now(UTC)

    def progress(page, write, report) -> None:
        stats = report.streams[str(page.stream)]
        context.log.info(f"{page.stream}: page {stats.pages}, +{write.new} new, {write.seen} already stored")

    report = collect_epoch(store, source, key, now=now, on_page=progress)
    for note in report.notes:
        context.log.warning(note)
    if report.late_events:
        context.log.warning(f"{len(report.late_events)} late event(s) for epochs already in review or finalized")
    streams = [{"stream": k, "pages": v.pages, "new": v.new, "seen": v.seen, "quarantined": len(v.quarantined), "cursor": str(v.cursor)}
               for k, v in sorted(report.streams.items())]
    if report.quarantined:
        context.log.warning(f"{report.quarantined} unreadable item(s) quarantined (not credited; see the quarantined_items metadata)")
    metadata: dict = {
        **ints(new_events=report.new, already_stored=report.seen, api_requests=report.requests,
               rate_limit_waits=len(report.waits), rate_limit_wait_seconds=report.waited_seconds, late_events=len(report.late_events)),
        "mode": "full window" if report.full else "incremental (open window)",
        "window": f"[{start.isoformat()}, {end.isoformat()})",
        "streams": markdown_table(streams, ["stream", "pages", "new", "seen", "quarantined", "cursor"]),
        "quarantined": dg.MetadataValue.int(report.quarantined),
    }
    if report.threads:  # Discord: the conversation under each allow-listed channel, thread by thread
        parents = [{"parent_channel": parent, "threads": r["threads"], "messages": sum(r["messages"].values()),
                    "busiest_thread": max(r["messages"], key=r["messages"].get, default=""),
                    "unreadable_threads": ", ".join(r["unreadable"]) or ""} for parent, r in sorted(report.threads.items())]
        metadata.update(ints(threads_seen=sum(r["threads"] for r in report.threads.values()),
                             thread_messages_read=sum(p["messages"] for p in parents),
                             threads_unreadable=sum(len(r["unreadable"]) for r in report.threads.values())))
        metadata["threads"] = markdown_table(parents, ["parent_channel", "threads", "messages", "busiest_thread", "unreadable_threads"])
        per_thread = sorted(({"thread": t, "parent_channel": parent, "messages": n} for parent, r in report.threads.items()
                             for t, n in r["messages"].items()), key=lambda row: (-row["messages"], row["thread"]))
        metadata["thread_messages"] = markdown_table(per_thread, ["thread", "parent_channel", "messages"], limit=25)
        for r in report.threads.values():
            for thread in r["unreadable"]:
                context.log.warning(f"thread {thread}: the bot may not read it (403); its messages are not collected")
    if report.quarantined:
        shas = [sha for v in report.streams.values() for sha in v.quarantined]
        items = [{"stream": f"{q['source']}:{q['stream']}:{q['source_ref']}", "item": q["item_key"] or "(id unreadable)",
                  "reason": q["reason"][:200], "times seen": q["times_seen"], "sha256": q["raw_sha256"][:16]}
                 for q in store.unresolved_quarantined(shas)]
        metadata["quarantined_items"] = markdown_table(items, ["stream", "item", "reason", "times seen", "sha256"])
    if report.late_events:
        metadata["late_event_ids"] = markdown_table([{"event_id": e} for e in report.late_events], ["event_id"])
    return dg.MaterializeResult(metadata=metadata, check_results=[_completeness_result(context, store, key, report)])


def build_collection_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common = dict(partitions_def=partitions, group_name="collection", owners=OWNERS, code_version="1")

    @dg.asset(kinds={"github", "postgres"}, check_specs=[_check_spec("raw_github_activity", partitions)], **common)
    def raw_github_activity(context: dg.AssetExecutionContext, ledger: LedgerResource, policy: PolicyResource, github: GitHubResource) -> dg.MaterializeResult:
        """Merged PRs, submitted reviews and closed issues of the policy's repos (or its whole organization, through
        GitHub's search) in this week, as raw facts (append-only, with their API payloads), collected with PyGithub. The open week is collected
        incrementally from the stored cursors; a closed week is read in full and checked for completeness."""
        rules = policy.load()
        return materialize_collection(context, ledger, github.source(rules) if rules.sources.github else None, "github")

    @dg.asset(kinds={"discord", "postgres"}, check_specs=[_check_spec("raw_discord_activity", partitions)], **common)
    def raw_discord_activity(context: dg.AssetExecutionContext, ledger: LedgerResource, policy: PolicyResource, discord: DiscordResource) -> dg.MaterializeResult:
        """Messages in the policy's allow-listed Discord channels in this week, as raw facts, collected with
        discord.py's REST client (no gateway); cursors are the last snowflake per channel."""
        rules = policy.load()
        return materialize_collection(context, ledger, discord.source(rules) if rules.sources.discord else None, "discord")

    return [raw_github_activity, raw_discord_activity]
