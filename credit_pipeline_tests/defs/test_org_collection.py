"""The Dagster path with an organization-wide policy (``sources.github.organization``), and the policy's Discord
``threads`` switch honoured by the Dagster resource: the real Definitions, a persistent instance, the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import yaml

from credit_pipeline.defs.builder import build_defs
from credit_pipeline.defs.resources import PolicyResource

from credit_pipeline_tests.defs.test_pipeline import latest_metadata, run_week


def _defs_with(policy_file, resources, tmp_path, change) -> dg.Definitions:
    doc = yaml.safe_load(open(policy_file).read())
    change(doc)
    path = tmp_path / "policy-changed.yaml"
    path.write_text(yaml.safe_dump(doc))
    return build_defs(str(path), {**resources, "policy": PolicyResource(path=str(path))})


def _org_wide(doc) -> None:
    doc["sources"]["github"].update({"organization": "acme", "repos": []})


def test_an_organization_is_collected_checked_and_probed_in_one_request(policy_file, resources, tmp_path, instance, sandbox, org, ledger):
    defs = _defs_with(policy_file, resources, tmp_path, _org_wide)
    key = org.windows[0][0].date().isoformat()
    result = run_week(defs, instance, key, ["raw_github_activity"])
    assert result.success
    checks = [e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey("raw_github_activity")]
    assert checks and all(c.passed for c in checks)
    meta = latest_metadata(instance, "raw_github_activity", key)
    assert meta["new_events"] > 0 and "github:pull_requests:acme/*" in str(meta["streams"]).replace("\\", "")  # Markdown escapes _ and *
    epoch = ledger.get_epoch(key)
    assert set(epoch.completeness) == {"github:pull_requests:acme/*", "github:issues:acme/*"}
    assert all(v["stored"] == v["source"] for v in epoch.completeness.values())

    # The sensor's GitHub probe: one request for the whole organization.
    last = org.windows[-1][1].date().isoformat()
    assert run_week(defs, instance, last, ["raw_github_activity", "raw_discord_activity"]).success
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("source_cursor_sensor")
    sandbox.log.reset()
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo, resources=defs.resources))
    assert quiet.run_requests == []
    assert len(sandbox.log.records("github")) == 1
    late = datetime.now(UTC) - timedelta(minutes=1)
    org.add_pull_request("acme/docs", org.github_users[0].login, late - timedelta(hours=1), merged_at=late)
    tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo, resources=defs.resources, cursor=quiet.cursor))
    assert [r.asset_selection for r in tick.run_requests] == [[dg.AssetKey("raw_github_activity")]]


def test_the_dagster_resource_honours_threads_false(policy_file, resources, tmp_path, instance, sandbox, org, ledger):
    def no_threads(doc) -> None:
        doc["sources"]["discord"]["threads"] = False

    defs = _defs_with(policy_file, resources, tmp_path, no_threads)
    key = org.windows[0][0].date().isoformat()
    assert run_week(defs, instance, key, ["raw_discord_activity"]).success
    stored = ledger.events_between(*org.windows[0], source="discord")
    assert stored and not any(e["metadata"].get("parent_channel_id") for e in stored)
    assert any(org.threads_of(c.id) for c in org.allow_listed_channels), "the org has threads that were not collected"
