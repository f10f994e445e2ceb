"""approve_epoch explains itself in the Launchpad: typed, described, defaulted config; the epoch in review, its
message and the command that signs it on the job's page; one-line refusals naming the field. Real PostgreSQL,
real Dagster (execute_in_process on the persistent instance), the real CLI."""

from __future__ import annotations

import re
import time

import dagster as dg
import pytest

from credit_pipeline.cli import main
from credit_pipeline.core.hashing import sign_message
from credit_pipeline.defs.builder import build_defs
from credit_pipeline.defs.resources import LedgerResource

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.defs.conftest import APPROVER_KEY, STRANGER_KEY
from credit_pipeline_tests.defs.test_pipeline import latest_metadata, run_week

FIELDS = ("epoch_key", "allocation_set_hash", "signature")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/credit_pipeline"


def config_fields(defs: dg.Definitions) -> dict[str, dg.Field]:
    """The record_approval config fields as Dagster's run config schema (what the Launchpad reads) has them."""
    schema = defs.get_job_def("approve_epoch").run_config_schema.config_type
    op = schema.fields["ops"].config_type.fields["record_approval"]
    assert not op.is_required, "the Launchpad would show the op's config as missing"
    return dict(op.config_type.fields["config"].config_type.fields)


def launchpad_snapshot_fields(defs: dg.Definitions) -> dict[str, tuple[str | None, str | None, bool]]:
    """The same fields from the job snapshot the webserver serves: (description, default as JSON, required)."""
    from dagster._core.snap import JobSnap

    snap = JobSnap.from_job_def(defs.get_job_def("approve_epoch"))
    [shape] = [c for c in snap.config_schema_snapshot.all_config_snaps_by_key.values()
               if c.fields and {f.name for f in c.fields} == set(FIELDS)]
    return {f.name: (f.description, f.default_value_as_json_str, f.is_required) for f in shape.fields}


def approve(defs, instance, config: dict) -> dg.ExecuteInProcessResult:
    return defs.get_job_def("approve_epoch").execute_in_process(
        instance=instance, raise_on_error=False, run_config={"ops": {"record_approval": {"config": config}}})


def refusal(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> tuple[str, str, dict]:
    """The stored STEP_FAILURE of a refused run: (error message, Failure description, metadata)."""
    assert not result.success
    records = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    assert len(records) == 1
    data = records[0].event_log_entry.dagster_event.event_specific_data
    assert data.error.cls_name == "Failure"
    user = data.user_failure_data
    # The same line, alone, as an ERROR log row just before the failure (the run page's row without a traceback).
    logged = [r.event_log_entry.user_message for r in instance.get_records_for_run(result.run_id).records
              if r.event_log_entry.dagster_event is None and r.event_log_entry.level >= 40]
    assert logged == [user.description]
    return data.error.message, user.description, {k: v.value for k, v in user.metadata.items()}


def assert_one_line_naming(result, instance, field: str, *words: str) -> str:
    message, description, metadata = refusal(result, instance)
    assert "\n" not in message.rstrip("\n") and "\n" not in description, message
    assert message.rstrip("\n").endswith(description)
    assert description.startswith(f"approval refused, nothing recorded: config field {field}: "), description
    assert metadata["config_field"] == field
    for word in words:
        assert word in description, (word, description)
    return description


def test_config_is_typed_described_and_defaulted_with_nothing_in_review(defs):
    fields = config_fields(defs)
    assert set(fields) == set(FIELDS)
    for name, field in fields.items():
        assert field.description and len(field.description) > 60, name
        assert field.default_provided and field.default_value == "" and not field.is_required, name
    assert "credit-pipeline epochs" in fields["epoch_key"].description
    assert "no epoch was in review" in fields["epoch_key"].description
    assert "--sign-only --key-env" in fields["signature"].description
    snapshot = launchpad_snapshot_fields(defs)
    assert {name: (d, default, req) for name, (d, default, req) in snapshot.items()} == {
        name: (fields[name].description, '""', False) for name in FIELDS}
    description = defs.get_job_def("approve_epoch").description
    assert "no epoch was in review" in description
    assert "credit-pipeline approve --epoch KEY --print-message" in description
    assert "credit-pipeline approve --epoch KEY --sign-only --key-env APPROVER_KEY" in description


def test_definitions_load_fast_with_an_unreachable_or_empty_ledger(policy_file, resources, pg_server_url):
    started = time.monotonic()
    defs = build_defs(policy_file, {**resources, "ledger": LedgerResource(database_url=UNREACHABLE)})
    dg.Definitions.validate_loadable(defs)
    assert time.monotonic() - started < 5
    fields = config_fields(defs)
    assert all(fields[name].default_value == "" for name in FIELDS)
    assert "the ledger did not answer" in fields["epoch_key"].description
    assert "the ledger did not answer" in defs.get_job_def("approve_epoch").description
    assert "127.0.0.1:1" not in defs.get_job_def("approve_epoch").description  # no URL (it may hold a password)

    with scratch_database(pg_server_url, "cp_approval_empty") as empty_url:  # a database with no tables at all
        started = time.monotonic()
        defs = build_defs(policy_file, {**resources, "ledger": LedgerResource(database_url=empty_url)})
        assert time.monotonic() - started < 5
        assert "no tables yet" in config_fields(defs)["epoch_key"].description


def test_malformed_values_are_one_line_refusals_naming_the_field(defs, instance, ledger):
    empty = approve(defs, instance, {})
    assert_one_line_naming(empty, instance, "epoch_key", "empty", "credit-pipeline epochs")
    # Scaffolded empty strings and explicit nulls (the schema lets a defaulted field be null) are the same refusal.
    assert_one_line_naming(approve(defs, instance, {n: "" for n in FIELDS}), instance, "epoch_key", "empty")
    assert_one_line_naming(approve(defs, instance, {n: None for n in FIELDS}), instance, "epoch_key", "empty")
    assert_one_line_naming(approve(defs, instance, {"epoch_key": "2026-02-17"}), instance, "epoch_key", "Tuesday", "2026-02-16")
    assert_one_line_naming(approve(defs, instance, {"epoch_key": "16/02/2026"}), instance, "epoch_key", "YYYY-MM-DD")
    monday = "2026-02-16"
    assert_one_line_naming(approve(defs, instance, {"epoch_key": monday}), instance, "allocation_set_hash", "empty")
    long_bad = "zz" * 40
    text = assert_one_line_naming(approve(defs, instance, {"epoch_key": monday, "allocation_set_hash": long_bad}), instance,
                                  "allocation_set_hash", "not 64 hex digits", "80 characters")
    assert long_bad not in text  # an excerpt only
    digest = "ab" * 32
    assert_one_line_naming(approve(defs, instance, {"epoch_key": monday, "allocation_set_hash": digest}), instance,
                           "signature", "empty", f"credit-pipeline approve --epoch {monday} --sign-only")
    assert_one_line_naming(approve(defs, instance, {"epoch_key": monday, "allocation_set_hash": digest, "signature": "0x1234"}),
                           instance, "signature", "EIP-191")
    # Well-formed, but a Monday the ledger has no epoch for.
    signature = sign_message("anything", APPROVER_KEY)
    assert_one_line_naming(approve(defs, instance, {"epoch_key": monday, "allocation_set_hash": digest, "signature": signature}),
                           instance, "epoch_key", f"epoch {monday} does not exist")
    assert ledger.approvals(monday) == []


def test_the_epoch_in_review_is_the_default_and_sign_only_approves_it(defs, instance, org, ledger, ledger_url, policy_file,
                                                                        resources, monkeypatch, capsys):
    key = org.windows[0][0].date().isoformat()
    assert run_week(defs, instance, key).success
    meta = latest_metadata(instance, "epoch_allocations", key)
    assert meta["epoch_status"] == "review"

    reloaded = build_defs(policy_file, resources)  # what a code-location reload shows
    fields = config_fields(reloaded)
    assert fields["epoch_key"].default_value == key
    assert fields["allocation_set_hash"].default_value == meta["allocation_set_hash"]
    assert fields["signature"].default_value == ""
    assert all(fields[n].description for n in FIELDS) and key in fields["epoch_key"].description
    description = reloaded.get_job_def("approve_epoch").description
    message = meta["approval_message"].strip("`\n")
    assert message in description
    assert f"allocation_set_hash: {meta['allocation_set_hash']}" in description
    command = f"credit-pipeline approve --epoch {key} --sign-only --key-env APPROVER_KEY"
    assert command in description

    # Defaults for epoch and hash; a missing signature names its field and the command.
    assert_one_line_naming(approve(reloaded, instance, {}), instance, "signature", "empty", command)
    # A stale hash and a stranger's signature are refused naming their fields.
    stale = approve(reloaded, instance, {"allocation_set_hash": "0" * 64, "signature": sign_message(message, APPROVER_KEY)})
    assert_one_line_naming(stale, instance, "allocation_set_hash", "changed since")
    stranger = approve(reloaded, instance, {"signature": sign_message(message, STRANGER_KEY)})
    assert_one_line_naming(stranger, instance, "signature", "not an approver pinned")

    # --sign-only prints only the signature and records nothing.
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("APPROVER_KEY", APPROVER_KEY)
    capsys.readouterr()
    assert main(["approve", "--epoch", key, "--sign-only", "--key-env", "APPROVER_KEY", "--policy", policy_file]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"0x[0-9a-f]{130}\n", out), out
    assert ledger.approvals(key) == []
    # ... refused against a hash that is not the current one, and without a key.
    assert main(["approve", "--epoch", key, "--sign-only", "--key-env", "APPROVER_KEY", "--hash", "0" * 64, "--policy", policy_file]) == 2
    assert main(["approve", "--epoch", key, "--sign-only", "--print-message", "--policy", policy_file]) == 2
    capsys.readouterr()

    # Pasted into the Launchpad with the defaults, it approves.
    done = approve(reloaded, instance, {"signature": out.strip()})
    assert done.success
    [approval] = ledger.approvals(key)
    assert approval["allocation_set_hash"] == meta["allocation_set_hash"]
    assert approval["signature"] == out.strip()

    # --print-message still works and names the Launchpad path.
    assert main(["approve", "--epoch", key, "--print-message", "--policy", policy_file]) == 0
    assert command.replace("APPROVER_KEY", "VAR") in capsys.readouterr().out


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's refusals
        return int(exc.code)


@pytest.mark.parametrize("argv", [["--sign-only"], ["--sign-only", "--signature", "0x" + "ab" * 65],
                                  ["--sign-only", "--print-message"]])
def test_sign_only_needs_a_key(argv, capsys):
    assert exit_code(["approve", "--epoch", "2026-02-16", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "key-env" in err, err
