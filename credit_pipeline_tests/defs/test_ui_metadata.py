"""What the admin sees in the Dagster UI: the epoch_allocations table (logins, credits finalize would pay)
and check results that name their partition, read back from a persistent PostgreSQL instance."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg
from dagster._core.storage.event_log.base import PartitionKeyFilter

from credit_pipeline.core.hashing import sign_message
from credit_pipeline.defs.allocation import ALLOCATION_COLUMNS, _credits_basis
from credit_pipeline.defs.metadata import markdown_table, table
from credit_pipeline.stages.admin import bind_account
from credit_pipeline.stages.allocate import AllocationState, allocation_lines, last_known_logins
from credit_pipeline.stages.settings import load_policy

from credit_pipeline_tests.defs.conftest import APPROVER_KEY
from credit_pipeline_tests.defs.test_pipeline import assets, failure_message, run_week

COLUMNS = ["recipient", "login", "events", "not_counted", "capped", "proposed", "final", "credits", "reason"]
RESOLVE_CHECKS = {("resolved_activity", "one_epoch_per_event"), ("resolved_activity", "unresolved_share"),
                  ("epoch_allocations", "units_match_events")}
WEEKLY_CHECKS = {("raw_github_activity", "completeness"), ("raw_discord_activity", "completeness"),
                 ("resolved_activity", "one_epoch_per_event"), ("resolved_activity", "unresolved_share"),
                 ("epoch_allocations", "units_match_events")}
FINALIZE_CHECKS = {("payout_statements", "credits_sum_to_pool"), ("payout_statements", "statement_verifies")}


def latest_materialization(instance, asset: str, key: str) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1).records
    return records[0].asset_materialization


def latest_login(curated, account) -> str:
    theirs = [e for e in curated if (e["source"], e["platform_user_id"]) == (account["source"], account["platform_user_id"]) and e["platform_login"]]
    return max(theirs, key=lambda e: (e["event_time"], e["event_id"]))["platform_login"]


def check_key(asset: str, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(asset), name)


def latest_checks(instance, keys, partition: str | None = None) -> dict:
    wanted = [check_key(*k) for k in keys]
    found = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        wanted, partition_filter=PartitionKeyFilter(key=partition) if partition else None)
    return {(k.asset_key.to_user_string(), k.name): r for k, r in found.items()}


def test_allocations_table_and_partitioned_checks_read_back_from_the_instance(defs, instance, org, ledger, policy_file):
    key = org.windows[0][0].date().isoformat()
    first = run_week(defs, instance, key)
    assert first.success, failure_message(first)
    # One person with an account on each provider (bound in review: the epoch's rows re-derive).
    counted = [e for e in ledger.curated_events(key) if e["included"] and e["resolution"] == "claimant" and e["platform_login"]]
    accounts = {source: next(e for e in counted if e["source"] == source) for source in ("github", "discord")}
    for source, e in accounts.items():
        bind_account(ledger, source, e["platform_user_id"], "alice", load_policy(policy_file), actor="test")
    result = run_week(defs, instance, key, ["resolved_activity", "epoch_allocations"])
    assert result.success, failure_message(result)

    # Every check result of the run names the week.
    evaluations = first.get_asset_check_evaluations() + result.get_asset_check_evaluations()
    assert {(e.asset_key.to_user_string(), e.check_name) for e in result.get_asset_check_evaluations()} == RESOLVE_CHECKS
    assert {(e.asset_key.to_user_string(), e.check_name) for e in evaluations} == WEEKLY_CHECKS
    assert {e.partition for e in evaluations} == {key}
    # ...and so does what the instance stored (what the UI's check pages read).
    stored = latest_checks(instance, WEEKLY_CHECKS, partition=key)
    assert set(stored) == WEEKLY_CHECKS
    assert {r.partition for r in stored.values()} == {key}
    assert all(r.event.asset_check_evaluation.partition == key for r in stored.values())

    # The allocation table: the schema, typed records, most credits first, credits summing to the pool.
    mat = latest_materialization(instance, "epoch_allocations", key)
    meta = mat.metadata
    allocations = meta["allocations"]
    assert isinstance(allocations, dg.TableMetadataValue)
    assert [c.name for c in allocations.schema.columns] == COLUMNS
    assert all(c.description for c in allocations.schema.columns)
    rows = [r.data for r in allocations.records]
    state_rows = ledger.allocations(key)
    assert len(rows) == len(state_rows) == meta["recipients"].value > 0
    pool = meta["pool_total"].value
    assert ledger.get_epoch(key).status == "review" and pool > 0
    assert sum(r["credits"] for r in rows) == pool == meta["projected_credits_total"].value
    assert "recorded pool" in meta["credits_basis"].value
    assert [r["credits"] for r in rows] == sorted((r["credits"] for r in rows), reverse=True)
    assert all(isinstance(r[c], int) for r in rows for c in ("events", "not_counted", "capped", "proposed", "final", "credits"))
    assert "allocations_preview" in meta and "credits" in meta["allocations_preview"].value
    # A policy without rules: every candidate counted, the rules table says so, and there is nothing to compare.
    assert isinstance(meta["rules"], dg.TableMetadataValue) and {r.data["outcome"] for r in meta["rules"].records} == {"counted"}
    assert meta["rules_summary"].value == "every candidate event counted, nothing capped" and "without_rules" not in meta
    assert all(r["not_counted"] == 0 and r["capped"] == 0 for r in rows)

    # Claimants show their login, the one their latest curated event carries.
    curated = ledger.curated_events(key)
    claimants = [r for r in rows if ":" in r["recipient"]]
    assert claimants, "the sample org has unbound accounts"
    for row in claimants:
        source, external_id = row["recipient"].split(":")
        assert row["login"] == latest_login(curated, {"source": source, "platform_user_id": external_id})
    alice = next(r for r in rows if r["recipient"] == "alice")
    logins = alice["login"].split(", ")
    assert sorted(logins) == sorted(f"{latest_login(curated, e)} ({source})" for source, e in accounts.items())

    # The credits column is what finalize then pays, line for line.
    message = meta["approval_message"].value.strip("`\n")
    approve = defs.get_job_def("approve_epoch").execute_in_process(instance=instance, raise_on_error=False, run_config={
        "ops": {"record_approval": {"config": {"epoch_key": key, "allocation_set_hash": meta["allocation_set_hash"].value,
                                               "signature": sign_message(message, APPROVER_KEY)}}}})
    assert approve.success, failure_message(approve)
    done = dg.materialize(assets(defs, ["payout_statements"]), partition_key=key, instance=instance, resources=defs.resources)
    paid = {p["recipient_id"]: p["amount_credits"] for p in ledger.statement(key)["payouts"]}
    assert {r["recipient"]: r["credits"] for r in rows if r["credits"]} == {r: c for r, c in paid.items() if c}
    assert {e.partition for e in done.get_asset_check_evaluations()} == {key}
    assert {r.partition for r in latest_checks(instance, FINALIZE_CHECKS, partition=key).values()} == {key}
    # The statement's materialization shows the weekly report's chart (a PNG inline in Markdown) and what is paid or held.
    final = latest_materialization(instance, "payout_statements", key).metadata
    chart = final["chart"].value
    assert chart.startswith("![credits per person and per source](data:image/png;base64,")
    assert base64.b64decode(chart.split(",", 1)[1].rstrip(")"))[:8] == b"\x89PNG\r\n\x1a\n"
    statement = ledger.statement(key)
    assert final["held_credits"].value == statement["distribution"]["held_credits"]
    assert final["payable_credits"].value + final["held_credits"].value == statement["pool"]["total"]
    assert "safe-airdrop" in final["pay_it"].value

    # A finalized epoch's table shows what its statement paid.
    again = run_week(defs, instance, key, ["epoch_allocations"])
    assert again.success, failure_message(again)
    after = latest_materialization(instance, "epoch_allocations", key).metadata
    assert {r.data["recipient"]: r.data["credits"] for r in after["allocations"].records} == {r["recipient"]: r["credits"] for r in rows}
    assert "statement paid" in after["credits_basis"].value


def test_each_week_keeps_its_own_check_results(defs, instance, org):
    first, second = (w[0].date().isoformat() for w in org.windows[:2])
    names = ["raw_github_activity", "raw_discord_activity", "resolved_activity"]
    for key in (first, second):
        assert run_week(defs, instance, key, names).success
    checks = {c for c in WEEKLY_CHECKS if c[0] in names}
    for key in (first, second):
        stored = latest_checks(instance, checks, partition=key)
        assert set(stored) == checks and {r.partition for r in stored.values()} == {key}
    # The unfiltered latest is the last week run, not a result without a partition.
    assert {r.partition for r in latest_checks(instance, checks).values()} == {second}


def _state(allocations, pool_total, *, status="review", recorded=True, pending=True) -> AllocationState:
    return AllocationState(epoch_key="2025-01-06", status=status, revision=1, supersedes=None, ledger_id="l", policy_hash="p",
                           allocations=allocations, allocation_set_hash="h", pool_total=pool_total, pool_recorded=recorded,
                           approval_message="m", pending=pending)


def _allocation(recipient, proposed, final=None, events=1, reason=None):
    return {"recipient_id": recipient, "proposed_units": proposed, "final_units": proposed if final is None else final,
            "activity_count": events, "reason": reason}


def _event(recipient, source, user, login, day, event_id):
    return {"recipient_id": recipient, "source": source, "platform_user_id": user, "platform_login": login,
            "event_time": datetime(2025, 1, day, tzinfo=UTC), "event_id": event_id}


def test_last_known_login_is_the_latest_event_of_each_account():
    rows = [
        _event("github:7", "github", "7", "old-name", 6, "a"),
        _event("github:7", "github", "7", "new-name", 8, "b"),
        _event("alice", "github", "1", "alice-gh", 7, "c"),
        _event("alice", "discord", "2", "Alice A.", 9, "d"),
        _event("discord:3", "discord", "3", None, 9, "e"),
    ]
    assert last_known_logins(rows) == {"github:7": "new-name", "alice": "Alice A. (discord), alice-gh (github)"}


def test_credits_are_finalizes_largest_remainder_split_and_a_zero_pool_says_so():
    allocations = [_allocation("a", 1), _allocation("b", 1), _allocation("c", 1, final=2, reason="helped")]
    lines = allocation_lines(_state(allocations, 100), {})
    assert [(line.recipient_id, line.credits) for line in lines] == [("c", 50), ("a", 25), ("b", 25)]
    odd = allocation_lines(_state([_allocation("a", 1), _allocation("b", 1), _allocation("c", 1)], 100), {})
    assert sum(line.credits for line in odd) == 100 and odd[0].recipient_id == "a" and odd[0].credits == 34

    zero = _state(allocations, 0)
    assert all(line.credits == 0 for line in allocation_lines(zero, {}))
    assert _credits_basis(zero, 4) == "the pool is 0: finalize would pay no credits"
    assert "no final units" in _credits_basis(_state([_allocation("a", 0)], 100), 0)
    assert "projection" in _credits_basis(_state(allocations, 100, status="open", recorded=False), 4)
    assert "statement paid" in _credits_basis(replace(_state(allocations, 100, status="finalized"), pending=False), 4)


def test_outside_text_in_cells_stays_on_one_line_and_is_escaped_in_markdown():
    row = {"recipient": "github:9", "login": "evil|name\n[x](http://e)", "events": 1, "proposed": 1, "final": 1, "credits": 1, "reason": None}
    tabled = table([row], ALLOCATION_COLUMNS)
    assert tabled.records[0].data["login"] == "evil|name [x](http://e)"  # the UI shows table cells as plain text
    assert tabled.records[0].data["reason"] is None
    preview = markdown_table([row], COLUMNS).value
    assert "evil\\|name \\[x\\]\\(http://e\\)" in preview


def test_under_a_policy_with_rules_the_ui_shows_what_each_rule_decided(instance, org, ledger, policy_file, resources):
    """The rules table, the per-recipient not_counted and capped columns, the summary and the comparison without rules."""
    import yaml

    from credit_pipeline.defs.builder import build_defs
    from credit_pipeline.stages.decisions import epoch_decisions
    from credit_pipeline.stages.resolve import effective_policy

    doc = yaml.safe_load(open(policy_file).read())
    doc["rules"] = {"github": {"review_weights": {"APPROVED": 2000, "CHANGES_REQUESTED": 2000, "COMMENTED": 500},
                               "issue_reasons": ["completed"]},
                    "discord": {"message_types": [0, 19], "min_length": 10, "dedupe": True},
                    "caps": {"units_per_person": {"discord": 1000}}}
    with open(policy_file, "w") as handle:
        yaml.safe_dump(doc, handle)
    defs = build_defs(policy_file, resources)
    key = org.windows[0][0].date().isoformat()
    result = run_week(defs, instance, key)
    assert result.success, failure_message(result)
    meta = latest_materialization(instance, "epoch_allocations", key).metadata

    rules = meta["rules"]
    assert isinstance(rules, dg.TableMetadataValue) and [c.name for c in rules.schema.columns] == ["rule", "outcome", "events", "units"]
    assert all(c.description for c in rules.schema.columns)
    records = {(r.data["rule"], r.data["outcome"]): r.data for r in rules.records}
    decisions = epoch_decisions(ledger.curated_events(key), effective_policy(ledger.get_epoch(key), None))
    assert sum(r["events"] for (_, outcome), r in records.items() if outcome != "capped") == len(decisions)
    stopped = {rule: r["events"] for (rule, outcome), r in records.items() if outcome == "not counted"}
    assert stopped.get("min_length", 0) > 0 and ("units_per_person", "capped") in records
    assert meta["events_not_counted_by_rules"].value == sum(stopped.values()) == sum(1 for d in decisions.values() if not d.counted)
    assert meta["units_capped_by_rules"].value == records[("units_per_person", "capped")]["units"] == sum(d.capped for d in decisions.values())
    top = max(stopped, key=lambda rule: (stopped[rule], rule))
    assert meta["rules_summary"].value.startswith(f"not counted: {stopped[top]} by `{top}`")
    assert "milli-units by `units_per_person`" in meta["rules_summary"].value

    # Per recipient: events the rules stopped and units the caps took, beside the counted events.
    rows = [r.data for r in meta["allocations"].records]
    assert [c.name for c in meta["allocations"].schema.columns] == COLUMNS
    assert sum(r["capped"] for r in rows) == meta["units_capped_by_rules"].value
    assert 0 < sum(r["not_counted"] for r in rows) <= meta["events_not_counted_by_rules"].value
    capped = next(r for r in rows if r["capped"])
    assert capped["recipient"].startswith("discord:") or capped["login"]
    # Whom the rules left out entirely (the newcomer's only message is its member join, type 7) is listed at zero,
    # after every paid line, and is not part of the allocation set.
    left_out = [r for r in rows if r["events"] == 0]
    assert left_out and all(r["not_counted"] > 0 and r["final"] == r["credits"] == 0 for r in left_out)
    assert "newcomer42" in {r["login"] for r in left_out}
    assert rows[-len(left_out):] == left_out and meta["recipients"].value == len(rows) - len(left_out)

    # The same policy without its rules: the recipients whose credits change most, as Markdown.
    compared = meta["without_rules"].value
    assert "without its `rules` section" in compared and "credits_with_rules" in compared and "credits_without_rules" in compared
    assert compared.count("\n|") >= 2  # a header and at least one recipient the rules changed


def test_raw_discord_activity_shows_the_threads_under_each_allow_listed_channel(defs, instance, org):
    """Threads and forum posts: how many threads each allow-listed channel has and the messages read in them."""
    key = org.windows[0][0].date().isoformat()
    result = run_week(defs, instance, key, ["raw_discord_activity"])
    assert result.success, failure_message(result)
    meta = latest_materialization(instance, "raw_discord_activity", key).metadata
    truth = org.ground_truth(*org.windows[0], source="discord")
    in_threads = [x for x in truth.values() if x.parent_channel_id]
    assert in_threads, "the sample org has thread messages"
    assert meta["thread_messages_read"].value == len(in_threads)
    assert meta["threads_seen"].value >= len({x.channel_id for x in in_threads})
    table = meta["threads"].value
    assert "parent_channel" in table and all(x.parent_channel_id in table for x in in_threads)
    per_thread = meta["thread_messages"].value  # messages per thread, busiest first
    assert all(x.channel_id in per_thread for x in in_threads)
