"""The real Dagster machinery end to end: materialize on a persistent PostgreSQL instance, the approval
job, finalize, sensor and schedule evaluation, against the sandbox and a real ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from credit_pipeline.core.epochs import epoch_key
from credit_pipeline.core.hashing import sign_message
from credit_pipeline.core.statement import statement_bytes
from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

from credit_pipeline_tests.defs.conftest import APPROVER_KEY, STRANGER_KEY

STAGES = ["raw_github_activity", "raw_discord_activity", "resolved_activity", "epoch_allocations"]


def assets(defs, names):
    wanted = {dg.AssetKey(n) for n in names}
    return [a for a in defs.assets if a.key in wanted]


def run_week(defs, instance, key, names=STAGES) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets(defs, names), partition_key=key, instance=instance, resources=defs.resources, raise_on_error=False)


def latest_metadata(instance, asset: str, key: str) -> dict:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def approve(defs, instance, key, allocation_hash, signature) -> dg.ExecuteInProcessResult:
    job = defs.get_job_def("approve_epoch")
    return job.execute_in_process(instance=instance, raise_on_error=False, run_config={
        "ops": {"record_approval": {"config": {"epoch_key": key, "allocation_set_hash": allocation_hash, "signature": signature}}}})


def failure_message(result) -> str:
    return " ".join(str(e.event_specific_data.error.message if hasattr(e.event_specific_data, "error") and e.event_specific_data.error else e.message)
                    for e in result.all_events if e.is_failure)


def test_definitions_load_and_name_everything(defs):
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {str(k.to_user_string()) for k in repo.asset_graph.get_all_asset_keys()} == {*STAGES, "payout_statements"}
    assert {"weekly_epoch_job", "approve_epoch"} <= set(repo.job_names)
    assert [s.name for s in repo.schedule_defs] == ["weekly_epoch_schedule"]
    assert [s.name for s in repo.sensor_defs] == ["source_cursor_sensor"]
    checks = {(c.asset_key.to_user_string(), c.name) for c in repo.asset_graph.asset_check_keys}
    assert checks == {("raw_github_activity", "completeness"), ("raw_discord_activity", "completeness"),
                      ("resolved_activity", "one_epoch_per_event"), ("resolved_activity", "unresolved_share"),
                      ("epoch_allocations", "units_match_events"), ("payout_statements", "credits_sum_to_pool"),
                      ("payout_statements", "statement_verifies")}
    finalize = dg.AssetKey("payout_statements")
    weekly = repo.get_job("weekly_epoch_job")
    assert finalize not in weekly.asset_layer.selected_asset_keys
    sensor = repo.get_sensor_def("source_cursor_sensor")
    assert finalize not in {k for t in sensor.targets for k in (t.assets_defs and [a.key for a in t.assets_defs] or [])}
    assert all(a.automation_conditions_by_key.get(a.key) is None for a in defs.assets)
    descriptions = {a.key.to_user_string(): a.descriptions_by_key[a.key] for a in defs.assets}
    assert all(len(d) > 80 for d in descriptions.values())


def test_a_full_week_end_to_end(defs, instance, sandbox, org, ledger):
    key = org.windows[0][0].date().isoformat()
    window = org.windows[0]
    result = run_week(defs, instance, key)
    assert result.success, failure_message(result)
    stored = {e["event_id"] for e in ledger.events_between(*window)}
    assert stored == set(sandbox.ground_truth(*window)), "collected events differ from the sandbox ground truth"
    curated = {e["event_id"] for e in ledger.curated_events(key)}
    assert curated == stored
    # The event exactly at the next Monday 00:00 is in the next epoch only.
    boundary = org.scenario["pr_merged_at_boundary_1"]
    assert boundary not in curated and ledger.get_event(boundary) is not None
    meta = latest_metadata(instance, "epoch_allocations", key)
    assert meta["epoch_status"] == "review" and meta["entered_review"] is True
    assert ledger.get_epoch(key).status == "review"
    raw = latest_metadata(instance, "raw_github_activity", key)
    assert raw["new_events"] > 0 and raw["api_requests"] > 0 and raw["mode"] == "full window"

    # Finalize is refused before an approval.
    refused = dg.materialize(assets(defs, ["payout_statements"]), partition_key=key, instance=instance, resources=defs.resources, raise_on_error=False)
    assert not refused.success and "no valid approval" in failure_message(refused)

    message = meta["approval_message"].strip("`\n")
    signed = approve(defs, instance, key, meta["allocation_set_hash"], sign_message(message, APPROVER_KEY))
    assert signed.success, failure_message(signed)
    done = dg.materialize(assets(defs, ["payout_statements"]), partition_key=key, instance=instance, resources=defs.resources)
    statement = latest_metadata(instance, "payout_statements", key)
    assert ledger.get_epoch(key).status == "finalized"
    assert statement["statement_hash"] == ledger.statement(key)["statement_hash"]
    assert verify_stored(ledger, key).ok
    assert verify_file_bytes(statement_bytes(ledger.statement(key))).ok
    checks = {e.check_name: e.passed for e in done.get_asset_check_evaluations()}
    assert checks == {"credits_sum_to_pool": True, "statement_verifies": True}

    # Rerunning every stage, and finalize, changes nothing.
    events_before = len(ledger.events_between(*window))
    again = run_week(defs, instance, key)
    assert again.success, failure_message(again)
    dg.materialize(assets(defs, ["payout_statements"]), partition_key=key, instance=instance, resources=defs.resources)
    assert len(ledger.events_between(*window)) == events_before
    assert latest_metadata(instance, "payout_statements", key)["statement_hash"] == statement["statement_hash"]
    assert latest_metadata(instance, "payout_statements", key)["written_now"] is False


def test_a_week_on_a_server_in_tokyo_verifies_from_los_angeles(defs, instance, org, ledger, ledger_url):
    """Sessions default to the database's TimeZone; nothing hashed or compared may depend on it."""
    import sqlalchemy as sa

    from credit_pipeline.ledger.store import LedgerStore

    admin = sa.create_engine(ledger_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)  # a new session each time
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{admin.url.database}" SET timezone TO \'Asia/Tokyo\'')
    with admin.connect() as conn:
        assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Tokyo"  # a plain session really is in Tokyo
    admin.dispose()
    key = org.windows[0][0].date().isoformat()
    assert run_week(defs, instance, key).success
    meta = latest_metadata(instance, "epoch_allocations", key)
    assert meta["epoch_status"] == "review"
    assert approve(defs, instance, key, meta["allocation_set_hash"], sign_message(meta["approval_message"].strip("`\n"), APPROVER_KEY)).success
    assert dg.materialize(assets(defs, ["payout_statements"]), partition_key=key, instance=instance, resources=defs.resources).success
    bundle = ledger.statement(key)
    assert bundle["epoch"]["finalized_at"].endswith("Z") and all(e["event_time"].endswith("Z") for e in bundle["events"])
    los_angeles = sa.create_engine(ledger_url, connect_args={"options": "-c timezone=America/Los_Angeles"})
    report = verify_stored(LedgerStore(los_angeles), key)
    los_angeles.dispose()
    assert report.ok, report.mismatch


def test_approval_refusals_through_the_job(defs, instance, org, ledger):
    key = org.windows[0][0].date().isoformat()
    open_key = epoch_key(datetime.now(UTC))
    assert run_week(defs, instance, key).success
    meta = latest_metadata(instance, "epoch_allocations", key)
    message, ahash = meta["approval_message"].strip("`\n"), meta["allocation_set_hash"]
    good = sign_message(message, APPROVER_KEY)
    other_epoch = sign_message(message.replace(f"Epoch: {key}", "Epoch: 2026-02-23"), APPROVER_KEY)
    ledger.ensure_epoch(open_key)
    cases = [
        (key, "0" * 64, good, "current allocation set"),
        (key, ahash, sign_message(message, STRANGER_KEY), "not an approver pinned on epoch"),
        (key, ahash, other_epoch, "not an approver pinned on epoch"),
        (key, ahash, "0x1234", "cannot be recovered"),
        (open_key, ahash, good, "not in review"),
    ]
    tuesday = (datetime.fromisoformat(key) + timedelta(days=1)).date().isoformat()
    # Each class of bad Launchpad value: refused before the ledger is touched, the failure naming the field.
    cases += [
        ("2026-W08-1", ahash, good, "config field epoch_key: epoch key '2026-W08-1' is not a date written YYYY-MM-DD"),
        (tuesday, ahash, good, f"config field epoch_key: epoch key '{tuesday}' is a Tuesday"),
        ("", ahash, good, "config field epoch_key"),
        (key + "\n\x00", ahash, good, "config field epoch_key"),
        ("9" * 100_000, ahash, good, "config field epoch_key"),
        (key, ahash[:63], good, "config field allocation_set_hash: "),
        (key, "g" * 64, good, "config field allocation_set_hash: "),
        (key, "", good, "config field allocation_set_hash: '' (0 characters)"),
        (key, "f" * 1_000_000, good, "(1000000 characters) is not 64 hex digits"),
        (key, ahash, "", "config field signature: "),
        (key, ahash, "0x" + "zz" * 65, "config field signature: "),
        (key, ahash, good[:-2], "config field signature: "),
    ]
    for epoch, hash_, signature, expected in cases:
        result = approve(defs, instance, epoch, hash_, signature)
        message = failure_message(result)
        assert not result.success and expected in message, (expected, message)
        assert len(message) < 2000  # never echoes a huge value back
    assert ledger.approvals(key) == [] and ledger.approvals(open_key) == []


def test_a_binding_added_in_review_resolves_on_the_next_run(defs, instance, org, ledger):
    key = org.windows[0][0].date().isoformat()
    assert run_week(defs, instance, key).success
    claimants = {a["recipient_id"] for a in ledger.allocations(key) if a["recipient_id"].startswith("github:")}
    claimant = sorted(claimants)[0]
    ledger.bind("github", claimant.split(":")[1], "alice")
    assert run_week(defs, instance, key, ["resolved_activity", "epoch_allocations"]).success
    recipients = {a["recipient_id"] for a in ledger.allocations(key)}
    assert "alice" in recipients and claimant not in recipients


def test_schedule_requests_the_week_that_just_closed(defs, instance):
    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("weekly_epoch_schedule")
    assert schedule.cron_schedule == "0 6 * * 1" and schedule.execution_timezone == "UTC"
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 3, 2, 6, tzinfo=UTC), repository_def=repo)
    requests = schedule.evaluate_tick(context).run_requests
    assert [(r.partition_key, r.job_name or "weekly_epoch_job") for r in requests] == [("2026-02-23", "weekly_epoch_job")]


def test_sensor_skips_when_nothing_is_new_and_requests_once_when_something_is(defs, instance, sandbox, org, ledger):
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("source_cursor_sensor")
    # Bring every cursor to the head: collect the last week that has activity.
    last = (org.windows[-1][1]).date().isoformat()
    assert run_week(defs, instance, last, ["raw_github_activity", "raw_discord_activity"]).success
    sandbox.log.reset()
    context = dg.build_sensor_context(instance=instance, repository_def=repo, resources=defs.resources)
    quiet = sensor.evaluate_tick(context)
    assert quiet.run_requests == [] and "nothing new" in quiet.skip_message
    streams = len(org.policy_sources()["github"]["repos"]) * 3 + len(org.policy_sources()["discord"]["channels"])
    probes = [r for r in sandbox.log.records() if not r.path.endswith("/users/@me")]
    # one request per stream (plus Discord's login), and one for the guild's active threads, whatever their number
    assert len(probes) == streams + 1 and sum(1 for r in probes if r.path.endswith("/threads/active")) == 1
    channel = org.allow_listed_channels[0]
    org.add_message(channel.id, org.discord_users[0].id, datetime.now(UTC) - timedelta(minutes=1))
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo, resources=defs.resources, cursor=quiet.cursor))
    assert len(tick.run_requests) == 1
    request = tick.run_requests[0]
    assert request.partition_key == epoch_key(datetime.now(UTC))
    assert request.asset_selection == [dg.AssetKey("raw_discord_activity")]
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo, resources=defs.resources, cursor=tick.cursor))
    assert again.run_requests == []
    assert json.loads(tick.cursor)[f"discord:messages:{channel.id}"]


def test_dagster_cli_validates_the_workspace(dagster_db_url, policy_file, tmp_path):
    """`dagster definitions validate` on the shipped workspace.yaml and dagster.yaml (PostgreSQL storage)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "CREDIT_PIPELINE_DAGSTER_DATABASE_URL": dagster_db_url, "CREDIT_PIPELINE_POLICY": policy_file,
           "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((root / "dagster.yaml").read_text())
    done = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(root / "workspace.yaml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Validation successful" in done.stdout + done.stderr



def test_a_quarantined_item_is_shown_on_the_raw_asset_and_its_check_fails(defs, instance, sandbox, org, ledger):
    from credit_pipeline.sandbox.faults import Fault

    key = org.windows[0][0].date().isoformat()
    sandbox.faults.add(Fault.malformed_item("merged_at", "yesterday-ish", index=1), server="github", path=r"/pulls$", times=None)
    result = run_week(defs, instance, key, ["raw_github_activity"])
    meta = latest_metadata(instance, "raw_github_activity", key)
    assert meta["quarantined"] >= 1
    assert "field 'merged\\_at' is not an ISO 8601 timestamp" in meta["quarantined_items"] and "quarantined" in meta["streams"]  # escaped
    [check] = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    evaluation = check.event_specific_data
    assert not evaluation.passed and "quarantined" in evaluation.metadata["streams"].value
    sandbox.faults.clear()
    assert run_week(defs, instance, key, ["raw_github_activity"]).success  # read on the next pass: the check passes
    assert latest_metadata(instance, "raw_github_activity", key)["quarantined"] == 0
