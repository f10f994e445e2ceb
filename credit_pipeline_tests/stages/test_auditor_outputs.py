"""What the auditor and the admin read: verify's FAIL line, simulate's comparison, the Markdown export.

Every test builds a finalized (or reviewed) epoch on the real PostgreSQL and runs the command line.
"""

import json

import pytest
import yaml

from credit_pipeline.cli import main
from credit_pipeline.stages.admin import bind_account
from credit_pipeline.stages.finalize import finalize_epoch

from credit_pipeline_tests.stages.test_flow import KEY, POLICY, week  # noqa: F401
from credit_pipeline_tests.stages.test_integrity import approve_current, reviewed, tamper


@pytest.fixture
def env(monkeypatch, ledger_url, tmp_path, store, week):  # noqa: F811
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY.canonical()))
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("CREDIT_PIPELINE_POLICY", str(path))
    bind_account(store, "github", "100", "alice", POLICY, actor="admin")  # a person, with a login in the events
    return path


@pytest.fixture
def finalized(env, store):
    reviewed(store)
    approve_current(store)
    return finalize_epoch(store, KEY).bundle


def fail_line(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("FAIL: "), err  # one line
    return err.strip()


def exported(tmp_path, capsys) -> dict:
    out = tmp_path / "s.json"
    assert main(["export", "--epoch", KEY, "--format", "json", "-o", str(out)]) == 0
    return json.loads(out.read_bytes())


def write(tmp_path, bundle, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return str(path)


# -- verify -----------------------------------------------------------------------------


def test_offline_fail_names_the_payout_line_and_field_before_any_hash(finalized, tmp_path, capsys):
    bundle = exported(tmp_path, capsys)
    assert {p["recipient_id"]: p["amount_credits"] for p in bundle["payouts"]} == {"alice": 6531, "discord:300": 204, "github:200": 3265}
    line = next(p for p in bundle["payouts"] if p["recipient_id"] == "github:200")
    line["amount_credits"] = 3266  # the statement_hash is now wrong too, but that is not the first difference
    path = write(tmp_path, bundle)
    assert fail_line(capsys, ["verify", path]) == (
        f"FAIL: {path}: payouts[recipient_id=github:200].amount_credits: statement says 3266, recomputed 3265 "
        "(the pool total split by the allocations' final units)")


def test_offline_fail_walks_events_then_allocations_then_payouts_then_hashes(finalized, tmp_path, capsys):
    bundle = exported(tmp_path, capsys)
    events = {e["event_id"]: e for e in bundle["events"]}
    # Two changes: the event comes first in the walk, whatever the order of the fields in the file.
    next(p for p in bundle["payouts"] if p["recipient_id"] == "alice")["amount_credits"] = 1
    events["github:pr:acme/widgets:3"]["weight"] = 9000
    assert "events[event_id=github:pr:acme/widgets:3].weight: statement says 9000, recomputed 8000 (under the bundle's policy)" \
        in fail_line(capsys, ["verify", write(tmp_path, bundle)])

    bundle = exported(tmp_path, capsys)
    # Moving an event to another recipient: the allocation line that no longer adds up is named.
    next(e for e in bundle["events"] if e["event_id"] == "github:pr:acme/widgets:2")["recipient_id"] = "mallory"  # a bound event
    assert "allocations[recipient_id=alice].proposed_units: statement says 16000, recomputed 8000 (from the statement's events)" \
        in fail_line(capsys, ["verify", write(tmp_path, bundle)])

    bundle = exported(tmp_path, capsys)
    next(a for a in bundle["allocations"] if a["recipient_id"] == "github:200").update(final_units=9000, reason="release work")
    assert "payouts[recipient_id=github:200].total_units: statement says 8000, recomputed 9000" \
        in fail_line(capsys, ["verify", write(tmp_path, bundle)])

    bundle = exported(tmp_path, capsys)
    bundle["pool"]["total"] += 1
    assert "pool.total: statement says 10001, recomputed 10000 (the sum of the pool components)" \
        in fail_line(capsys, ["verify", write(tmp_path, bundle)])

    bundle = exported(tmp_path, capsys)
    bundle["payouts"] = [p for p in bundle["payouts"] if p["recipient_id"] != "discord:300"]
    assert "payouts[recipient_id=discord:300]: statement has no such line; the recomputation has one" \
        in fail_line(capsys, ["verify", write(tmp_path, bundle)])

    bundle = exported(tmp_path, capsys)
    bundle["identity"]["log_hash"] = "d" * 64  # nothing recomputable depends on it: only the hash catches it
    line = fail_line(capsys, ["verify", write(tmp_path, bundle)])
    assert f"statement_hash: statement says \"{bundle['statement_hash']}\", recomputed" in line and "every recomputed value matched" in line


def test_stored_fail_names_the_line_and_the_table(finalized, store, tmp_path, capsys):
    assert main(["verify", "--epoch", KEY]) == 0
    tamper(store, "activity_curation", "UPDATE activity_curation SET note = 'rewritten' WHERE event_id = 'github:pr:acme/widgets:3'")
    assert fail_line(capsys, ["verify", "--epoch", KEY]) == (
        f"FAIL: epoch {KEY} (ledger): revision 1: activity_curation: events[event_id=github:pr:acme/widgets:3].note: "
        "statement says null, ledger rows give \"rewritten\"")
    tamper(store, "activity_curation", "UPDATE activity_curation SET note = NULL WHERE event_id = 'github:pr:acme/widgets:3'")
    assert main(["verify", "--epoch", KEY]) == 0
    tamper(store, "epoch_allocations", "UPDATE epoch_allocations SET proposed_units = 8001 WHERE recipient_id = 'github:200'")
    assert fail_line(capsys, ["verify", "--epoch", KEY]) == (
        f"FAIL: epoch {KEY} (ledger): revision 1: epoch_allocations: allocations[recipient_id=github:200].proposed_units: "
        "statement says 8000, ledger rows give 8001")
    tamper(store, "epoch_allocations", "UPDATE epoch_allocations SET proposed_units = 8000 WHERE recipient_id = 'github:200'")
    tamper(store, "payout_statements",
           "UPDATE payout_statements SET bundle = replace(bundle, '\"amount_credits\":204', '\"amount_credits\":205')")
    assert fail_line(capsys, ["verify", "--epoch", KEY]).startswith(
        f"FAIL: epoch {KEY} (ledger): revision 1: payouts[recipient_id=discord:300].amount_credits: statement says 205, recomputed 204")


def test_verify_bad_input_is_still_exit_2(finalized, tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing.json")]) == 2
    assert main(["verify"]) == 2
    assert main(["verify", "--epoch", "2026-02-23"]) == 2
