"""The admin's and the auditor's commands: approve, adjust, curate, pool, export, verify, simulate, explain."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
import yaml

from credit_pipeline.cli import main
from credit_pipeline.core.hashing import address_of
from credit_pipeline.stages.resolve import resolve_epoch

from credit_pipeline_tests.stages.test_flow import APPROVER_KEY, KEY, POLICY, ready_for_review, week  # noqa: F401
from credit_pipeline.stages.allocate import allocate_epoch
from credit_pipeline_tests.stages.test_flow import AFTER, message_event


@pytest.fixture
def env(monkeypatch, ledger_url, tmp_path, store, week):  # noqa: F811
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY.canonical()))
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("CREDIT_PIPELINE_POLICY", str(path))
    monkeypatch.setenv("APPROVER_KEY", APPROVER_KEY)
    resolve_epoch(store, KEY, POLICY)
    ready_for_review(store)
    allocate_epoch(store, KEY, POLICY, now=AFTER)
    return path


def current_hash(store) -> str:
    from credit_pipeline.stages.allocate import allocation_state

    return allocation_state(store, KEY, POLICY).allocation_set_hash


def finalize(store):
    from credit_pipeline.stages.finalize import finalize_epoch

    return finalize_epoch(store, KEY)


def test_adjust_then_approve_with_a_key_from_the_environment(env, store, capsys):
    assert main(["adjust", "--epoch", KEY, "--recipient", "github:200", "--units", "9000"]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert main(["adjust", "--epoch", KEY, "--recipient", "github:200", "--units", "9000", "--reason", "release work"]) == 0
    capsys.readouterr()
    assert main(["approve", "--epoch", KEY, "--key-env", "APPROVER_KEY"]) == 2
    assert "give --hash" in capsys.readouterr().err  # the approver states what they reviewed
    reviewed = current_hash(store)
    assert main(["approve", "--epoch", KEY, "--key-env", "NOT_SET_ANYWHERE", "--hash", reviewed]) == 2
    assert "NOT_SET_ANYWHERE is not set" in capsys.readouterr().err
    assert main(["approve", "--epoch", KEY, "--key-env", "APPROVER_KEY", "--hash", "0" * 64]) == 2
    assert "current allocation set (revision 1) is" in capsys.readouterr().err
    assert main(["approve", "--epoch", KEY, "--key-env", "APPROVER_KEY", "--hash", reviewed]) == 0
    out = capsys.readouterr().out
    assert f"approved by {address_of(APPROVER_KEY)}" in out and "Allocation Hash: " in out and "Ledger: " in out
    bundle = finalize(store).bundle
    assert {a["recipient_id"]: a["final_units"] for a in bundle["allocations"]}["github:200"] == 9000


def test_export_and_verify_round_trip_and_tamper(env, store, tmp_path, capsys):
    assert main(["approve", "--epoch", KEY, "--key-env", "APPROVER_KEY", "--hash", current_hash(store)]) == 0
    finalize(store)
    out = tmp_path / "s.json"
    assert main(["export", "--epoch", KEY, "--format", "json", "--output", str(out)]) == 0
    assert out.read_bytes() == store.statement_text(KEY).encode()
    assert main(["verify", str(out)]) == 0
    assert main(["verify", "--epoch", KEY]) == 0
    tampered = json.loads(out.read_bytes())
    tampered["payouts"][0]["amount_credits"] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered))
    capsys.readouterr()
    assert main(["verify", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().err
    assert main(["verify"]) == 2
    assert main(["export", "--epoch", KEY, "--format", "csv", "--output", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert sum(int(r["amount_credits"]) for r in rows) == 10000
    assert main(["export", "--epoch", KEY, "--format", "md", "--output", str(tmp_path / "p.md")]) == 0
    assert "| recipient | login | units | share | credits |" in (tmp_path / "p.md").read_text()


def test_safe_csv_neutralizes_formulas():
    from credit_pipeline.stages.export import export_statement

    bundle = {"epoch": {"key": KEY}, "statement_hash": "h", "payouts": [
        {"recipient_id": "=HYPERLINK(\"http://x\")", "total_units": 1, "share": "1.000000", "amount_credits": 5}]}
    assert b"'=HYPERLINK" in export_statement(bundle, "safe-csv")
    assert b"'=HYPERLINK" not in export_statement(bundle, "csv")


def test_curate_pool_and_simulate(env, store, tmp_path, capsys):
    assert main(["curate", "--event", "github:pr:acme/widgets:3", "--exclude", "--note", "reverted"]) == 0
    assert main(["curate", "--event", "github:pr:acme/widgets:404", "--exclude"]) == 2
    assert main(["pool", "add", "--epoch", KEY, "--component", "top_up", "--amount", "500", "--evidence", "vote 12"]) == 0
    assert main(["pool", "add", "--epoch", KEY, "--component", "top_up", "--amount", "-1"]) == 2
    richer = tmp_path / "richer.yaml"
    doc = POLICY.canonical()
    doc["weights"]["discord:message_sent"] = 5000
    richer.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert main(["simulate", "--epoch", KEY, "--policy", str(richer), "--json"]) == 0
    rows = {r["recipient_id"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["discord:300"]["simulated_units"] == 5000 and rows["discord:300"]["current_units"] == 500
    # github:200's only PR was excluded: the stored allocation was re-derived with it, and so is the simulation.
    assert "github:200" not in rows and all(a["recipient_id"] != "github:200" for a in store.allocations(KEY))
    assert sum(r["simulated_credits"] for r in rows.values()) == 10500  # the other policy's base issuance + the recorded top_up



def rules_policy_file(tmp_path):
    """The env's policy with rules: the week's Discord message ("hello") is under min_length."""
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({**POLICY.canonical(), "rules": {"discord": {"min_length": 10}, "github": {"pr_labels": []}}}))
    return path


def test_simulate_prints_the_per_rule_comparison_as_a_second_table(env, store, tmp_path, capsys):
    other = rules_policy_file(tmp_path)
    capsys.readouterr()
    assert main(["simulate", "--epoch", KEY, "--policy", str(other)]) == 0
    out = capsys.readouterr().out
    per_rule = out[out.index("per rule"):].splitlines()
    assert per_rule[1].split() == ["rule", "outcome", "current_events", "simulated_events", "events_difference", "current_units",
                                   "simulated_units", "units_difference"]
    rows = {tuple(line.split()[:3]) for line in per_rule[2:] if line.strip()}
    assert ("min_length", "not", "counted") in rows and ("weights", "counted", "4") in rows
    assert main(["simulate", "--epoch", KEY, "--policy", str(other), "--json"]) == 0
    by_rule = {(r["rule"], r["outcome"]): r for r in json.loads(capsys.readouterr().out)["by_rule"]}
    assert (by_rule[("min_length", "not counted")]["current_events"], by_rule[("min_length", "not counted")]["simulated_events"]) == (0, 1)
    assert by_rule[("weights", "counted")]["current_units"] == 24500 and by_rule[("weights", "counted")]["simulated_units"] == 24000


def test_explain_lists_a_recipients_events_with_the_rule_and_the_totals(env, store, capsys):
    capsys.readouterr()
    assert main(["explain", "--epoch", KEY, "--recipient", "github:100"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"github:100 in epoch {KEY} (review): policy {POLICY.policy_hash}, weight-sum-v1")
    header = next(i for i, line in enumerate(lines) if line.startswith("event_id"))
    assert lines[header].split() == ["event_id", "event_type", "event_time", "counted", "rule", "detail", "weight", "units", "capped"]
    assert lines[header + 1].split()[:7] == ["github:pr:acme/widgets:1", "pr_merged", "2026-02-16T00:00:00Z", "yes", "weights",
                                             "github:pr_merged", "8000"]
    assert "total        16000 milli-units over 2 counted events; stored proposal 16000 milli-units over 2 events (equal)" in out
    assert err == ""
    assert main(["explain", "--epoch", KEY, "--recipient", "github:100", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["units"], data["counted_events"], data["stored_proposed_units"], data["drift"]) == (16000, 2, 16000, [])
    assert [e["event_id"] for e in data["events"]] == ["github:pr:acme/widgets:1", "github:pr:acme/widgets:2"]


def test_explain_under_rules_names_the_rule_that_stopped_an_event(env, store, tmp_path, capsys, monkeypatch):
    from credit_pipeline.core.policy import validate_policy

    # A later week is open and follows the policy file: point the file at the rules and explain the open week.
    later, when = "2026-02-23", AFTER + timedelta(days=1)
    store.record_page([message_event(40, when, "300")], None)
    rules = rules_policy_file(tmp_path)
    monkeypatch.setenv("CREDIT_PIPELINE_POLICY", str(rules))
    policy = validate_policy(yaml.safe_load(rules.read_text()))
    resolve_epoch(store, later, policy)
    allocate_epoch(store, later, policy, now=when)
    capsys.readouterr()
    assert main(["explain", "--epoch", later, "--recipient", "discord:300"]) == 0
    out = capsys.readouterr().out
    assert "weight-rules-v1" in out.splitlines()[0]
    row = next(line for line in out.splitlines() if line.startswith("discord:message:"))
    assert row.split()[3:5] == ["no", "min_length"] and "5 characters after trimming, under 10" in row
    assert "not counted  1 events (min_length 1)" in out and "the stored allocation set has no line" in out
    # The review week keeps its pinned policy (no rules), whatever the file says now.
    assert main(["explain", "--epoch", KEY, "--recipient", "discord:300", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"][0]["rule"] == "weights"


@pytest.mark.parametrize("argv, named", [
    (["explain", "--epoch", KEY, "--recipient", "mallory"], "recipient 'mallory' has no event and no allocation in epoch"),
    (["explain", "--epoch", KEY, "--recipient", "alice"], "credit-pipeline simulate --epoch 2026-02-16"),
    (["explain", "--epoch", KEY, "--recipient", "BOB"], "'BOB' is the login of github:200: pass that id"),
    (["explain", "--epoch", "2026-03-02", "--recipient", "github:100"], "epoch 2026-03-02 does not exist yet"),
    (["explain", "--epoch", "2026-02-17", "--recipient", "github:100"], "is a Tuesday"),
    (["explain", "--epoch", "2026-W08-1", "--recipient", "github:100"], "YYYY-MM-DD"),
])
def test_explain_refusals_are_one_line_naming_the_fix(env, store, capsys, argv, named):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err


def test_explain_of_an_open_epoch_without_a_policy_file_says_to_name_one(env, store, capsys, monkeypatch, tmp_path):
    later, when = "2026-02-23", AFTER + timedelta(days=1)
    store.record_page([message_event(41, when, "300")], None)
    resolve_epoch(store, later, POLICY)
    monkeypatch.delenv("CREDIT_PIPELINE_POLICY")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no ./policy.yaml either
    capsys.readouterr()
    assert main(["explain", "--epoch", later, "--recipient", "discord:300"]) == 2
    err = capsys.readouterr().err
    assert "is open, so it follows the current policy: pass --policy FILE" in err and err.count("\n") == 1
    assert main(["explain", "--epoch", later, "--recipient", "discord:300", "--policy", str(env)]) == 0


BAD_INPUTS = [
    (["approve", "--epoch", "2026-03-02", "--print-message"], "does not exist"),
    (["approve", "--epoch", "2026-W08-1", "--print-message"], "YYYY-MM-DD"),
    (["approve", "--epoch", "2026-02-17", "--print-message"], "Tuesday"),
    (["approve", "--epoch", KEY, "--hash", "abc", "--signature", "0x" + "ab" * 65], "64 hex digits"),
    (["approve", "--epoch", KEY, "--hash", "0" * 64, "--signature", "0xdead"], "65 bytes"),
    (["identity", "bind", "github", "12a", "alice"], "numeric user id"),
    (["identity", "bind", "github", "", "alice"], "numeric user id"),
    (["identity", "bind", "github", "12", "Alice"], "person id"),
    (["identity", "bind", "github", "12", "alice\nbob:5"], "control character"),
    (["adjust", "--epoch", KEY, "--recipient", "github:200", "--units", "1" + "0" * 20, "--reason", "x"], "2^63-1"),
    (["adjust", "--epoch", KEY, "--recipient", "x\ny:1", "--units", "5", "--reason", "x"], "the value of --recipient"),
    (["curate", "--event", "github:pr:acme/widgets:3", "--weight", "1" + "0" * 20], "10^12"),
    (["pool", "add", "--epoch", KEY, "--component", "top_up", "--amount", "1" + "0" * 81], "10^60"),
    (["pool", "add", "--epoch", "9999-12-27", "--component", "top_up", "--amount", "5"], "does not exist"),
    (["verify", "--epoch", "2026-02-23"], "no statement"),
    (["correct", "--epoch", KEY, "--recipient", "github:200", "--units", "5", "--reason", "x"], "not finalized"),
    (["waive", "--epoch", KEY, "--reason", "x"], "a waiver only matters before"),
    (["export", "--epoch", KEY], "no statement yet"),
]


@pytest.mark.parametrize("argv, named", BAD_INPUTS, ids=[" ".join(a[:3]) + f"-{i}" for i, (a, _) in enumerate(BAD_INPUTS)])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(env, store, capsys, argv, named):
    from credit_pipeline_tests.stages.test_integrity_stateful import ledger_digest

    before = ledger_digest(store)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert named in err, err
    assert ledger_digest(store) == before


def test_a_database_that_does_not_answer_is_one_line_without_the_password(monkeypatch, capsys):
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", "postgresql://auditor:s3cret-pw@127.0.0.1:1/ledger")
    assert main(["epochs"]) == 2
    err = capsys.readouterr().err
    assert "does not answer" in err and "s3cret-pw" not in err and err.count("\n") == 1
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", "postgresql+nope://auditor:s3cret-pw@")
    assert main(["epochs"]) == 2
    assert "s3cret-pw" not in capsys.readouterr().err


def test_a_transaction_the_server_aborts_is_not_called_an_unreachable_database(env, store, monkeypatch, capsys):
    """A lock wait that times out (as a deadlock victim or a serialization failure would) is the server answering."""
    import sqlalchemy as sa

    from credit_pipeline_tests.stages.test_integrity_stateful import ledger_digest

    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=200")  # libpq reads it for every new connection
    before = ledger_digest(store)
    with store.engine.connect() as holder, holder.begin():
        holder.execute(sa.text("SELECT 1 FROM epochs WHERE epoch_key = :k FOR UPDATE"), {"k": KEY})  # an admin write in progress
        assert main(["adjust", "--epoch", KEY, "--recipient", "github:200", "--units", "9000", "--reason", "release work"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the ledger aborted this transaction (PostgreSQL 55P03), nothing was written") and err.count("\n") == 1, err
    assert "does not answer" not in err and "run the command again" in err
    assert ledger_digest(store) == before


# The whole matrix: every command that takes an epoch, a number or an id, with each class of bad value.
EPOCH_BAD = {"unknown epoch": "2026-03-02", "Tuesday": "2026-02-17", "ISO week": "2026-W08-1", "empty": "",
             "control characters": "2026-02-16\n\x00", "huge": "9" * 10_000}
NUMBER_BAD = {"negative": "-5", "float": "1.5", "exponent": "1e3", "huge": "1" + "0" * 90, "too many digits": "9" * 5000,
              "empty": "", "control characters": "5\n"}
ID_BAD = {"empty": "", "control characters": "al\x00ice\n", "huge": "a" * 10_000, "unknown": "nobody-at-all"}
EPOCH_COMMANDS = {
    "approve": ["approve", "--epoch", "{}", "--print-message"],
    "adjust": ["adjust", "--epoch", "{}", "--recipient", "github:200", "--units", "5", "--reason", "x"],
    "pool add": ["pool", "add", "--epoch", "{}", "--component", "top_up", "--amount", "5"],
    "verify": ["verify", "--epoch", "{}"],
    "correct": ["correct", "--epoch", "{}", "--recipient", "github:200", "--units", "5", "--reason", "x"],
    "waive": ["waive", "--epoch", "{}", "--reason", "x"],
    "export": ["export", "--epoch", "{}"],
    "simulate": ["simulate", "--epoch", "{}", "--policy", "POLICY"],
    "explain": ["explain", "--epoch", "{}", "--recipient", "github:100"],
}
NUMBER_COMMANDS = {
    "adjust --units": ["adjust", "--epoch", KEY, "--recipient", "github:200", "--units", "{}", "--reason", "x"],
    "pool add --amount": ["pool", "add", "--epoch", KEY, "--component", "top_up", "--amount", "{}"],
    "curate --weight": ["curate", "--event", "github:pr:acme/widgets:3", "--weight", "{}"],
    "correct --units": ["correct", "--epoch", KEY, "--recipient", "github:200", "--units", "{}", "--reason", "x"],
    "export --revision": ["export", "--epoch", KEY, "--revision", "{}"],
}
ID_COMMANDS = {
    "curate --event": ["curate", "--event", "{}", "--exclude"],
    "adjust --recipient": ["adjust", "--epoch", KEY, "--recipient", "{}", "--units", "5", "--reason", "x"],
    "identity bind (person)": ["identity", "bind", "github", "12", "{}"],
    "identity bind (account)": ["identity", "bind", "github", "{}", "alice"],
    "identity revoke": ["identity", "revoke", "github", "{}"],
    "identity merge": ["identity", "merge", "{}", "alice"],
    "explain --recipient": ["explain", "--epoch", KEY, "--recipient", "{}"],
}
MATRIX = ([(f"{c} / epoch {k}", [a.replace("{}", v) for a in argv]) for c, argv in EPOCH_COMMANDS.items() for k, v in EPOCH_BAD.items()]
          + [(f"{c} / {k}", [a.replace("{}", v) for a in argv]) for c, argv in NUMBER_COMMANDS.items() for k, v in NUMBER_BAD.items()]
          + [(f"{c} / {k}", [a.replace("{}", v) for a in argv]) for c, argv in ID_COMMANDS.items() for k, v in ID_BAD.items()
             # Binding an unknown person is how people are made; adjusting one gives manual credit (proposed 0, with a reason).
             if not (k == "unknown" and (c.startswith("identity bind") or c == "adjust --recipient"))])
# What the one line must name: the value's field, the thing it refers to, or what is wrong with it.
NAMED = re.compile(r"epoch|units|amount|weight|revision|event|recipient|person id|account|control character|whole number|statement|policy")


@pytest.mark.parametrize("argv", [a for _, a in MATRIX], ids=[n for n, _ in MATRIX])
def test_the_bad_input_matrix(env, store, capsys, argv):
    from credit_pipeline_tests.stages.test_integrity_stateful import ledger_digest

    argv = [str(env) if a == "POLICY" else a for a in argv]
    before = ledger_digest(store)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusals (a float for an integer option)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert NAMED.search(err), err
    assert len(err) < 400, err  # an excerpt of the bad value at most
    assert ledger_digest(store) == before
