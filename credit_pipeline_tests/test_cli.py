"""The command line: exit codes and messages a user relies on."""

import json
import subprocess
import sys

import pytest

from credit_pipeline.cli import main

from credit_pipeline_tests.core.test_policy import SPEC_POLICY


@pytest.fixture
def ledger_env(monkeypatch, ledger_url):
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    return ledger_url


def test_bad_policy_gives_one_line_per_problem_and_exit_2(tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(SPEC_POLICY.replace("8000", "8.5").replace("2000", "-1").replace("unresolved: claimant", "colour: red"))
    assert main(["policy", "check", "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: 3 problem(s)" in err
    assert "weights.github:pr_merged: must be a whole number of milli-units" in err
    assert "weights.github:review_submitted: must be >= 0" in err
    assert "colour: unknown key" in err


def test_missing_policy_file_names_the_variable(tmp_path, capsys):
    assert main(["policy", "check", "--policy", str(tmp_path / "nope.yaml")]) == 2
    assert "CREDIT_PIPELINE_POLICY" in capsys.readouterr().err


def test_good_policy_prints_its_hash(tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(SPEC_POLICY)
    assert main(["policy", "check", "--policy", str(path)]) == 0
    assert "policy hash: " in capsys.readouterr().out


def test_db_upgrade_and_status(ledger_env, capsys):
    assert main(["db", "upgrade"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert "external PostgreSQL" in out and "0001" in out and "applied" in out


def test_identity_commands(ledger_env, capsys):
    assert main(["identity", "bind", "github", "583231", "alice", "--evidence", "gist"]) == 0
    assert main(["identity", "bind", "github", "583231", "bob"]) == 2
    assert "already bound to alice" in capsys.readouterr().err
    assert main(["identity", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"provider": "github", "external_id": "583231", "user_id": "alice"}]
    assert main(["identity", "revoke", "github", "583231"]) == 0
    assert main(["identity", "revoke", "github", "583231"]) == 2


def test_epochs_lists_nothing_then_an_epoch(ledger_env, capsys):
    assert main(["epochs"]) == 0
    assert "no epochs yet" in capsys.readouterr().out
    from credit_pipeline.ledger.store import LedgerStore

    LedgerStore.open(ledger_env).ensure_epoch("2026-02-16")
    assert main(["epochs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["key"] == "2026-02-16" and rows[0]["status"] == "open"
    assert rows[0]["window"] == "[2026-02-16T00:00:00Z, 2026-02-23T00:00:00Z)"


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "credit_pipeline.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "db" in done.stdout
