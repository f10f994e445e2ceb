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


# -- simulate ---------------------------------------------------------------------------


def other_policy(tmp_path, **changes):
    doc = POLICY.canonical()
    for path, value in changes.items():
        where = doc
        *parents, leaf = path.split("__")
        for p in parents:
            where = where[p]
        where[leaf] = value
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def simulated(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr()
    return out.out, out.err


def table(text: str, first: str) -> dict[str, dict[str, str]]:
    """The rows of a printed table whose header starts with ``first``, by their first cell (which may be several words)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    header = lines[start].split()
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = line.split()
        named = len(cells) - len(header)  # words of a first column with no header
        rows[" ".join(cells[:named]) if named else cells[0]] = dict(zip(header, cells[named:]))
    return rows


def test_simulate_prints_both_hashes_totals_differences_and_what_it_compares(env, store, tmp_path, capsys):
    reviewed(store)
    assert main(["pool", "add", "--epoch", KEY, "--component", "top_up", "--amount", "500"]) == 0
    other = other_policy(tmp_path, **{"weights__discord:message_sent": 5000})
    out, err = simulated(capsys, ["simulate", "--epoch", KEY, "--policy", other])
    assert err == ""  # weights only: no warning
    lines = out.splitlines()
    assert lines[0].startswith(f"epoch {KEY} (review): current = the stored allocation set of the review epoch")
    assert lines[1].split() == ["current", "policy", POLICY.policy_hash, "pinned", "on", "the", "epoch"]
    from credit_pipeline.stages.settings import load_policy

    assert lines[2].split()[:3] == ["simulated", "policy", load_policy(other).policy_hash] and other in lines[2]
    assert "differs from the current one in its weights or rules only" in out
    totals = table(out, " ")
    assert totals["pool"] == {"current": "10500", "simulated": "10500", "difference": "0"}
    assert totals["units"] == {"current": "24500", "simulated": "29000", "difference": "+4500"}
    assert totals["credits paid"] == {"current": "10500", "simulated": "10500", "difference": "0"}
    rows = table(out, "recipient_id")
    assert list(rows) == ["alice", "github:200", "discord:300"]  # by simulated credits
    assert rows["discord:300"] == {"recipient_id": "discord:300", "login": "u300", "current_units": "500", "simulated_units": "5000",
                                   "units_difference": "+4500", "current_credits": "214", "simulated_credits": "1810",
                                   "credits_difference": "+1596"}
    assert rows["alice"]["login"] == "alice" and rows["github:200"]["login"] == "bob"  # the latest login of the account
    assert sum(int(r["credits_difference"]) for r in rows.values()) == 0
    assert sum(int(r["simulated_credits"]) for r in rows.values()) == 10500


def test_simulate_warns_for_every_difference_a_re_weighing_does_not_apply(env, store, tmp_path, capsys):
    reviewed(store)
    other = other_policy(tmp_path, **{
        "sources__github__repos": ["acme/widgets", "acme/gadgets"], "epoch__anchor": "2026-01-12", "exclude__github": ["200"],
        "unresolved": "exclude", "pool__base_issuance": 20000, "approvers": ["0x" + "22" * 20]})
    out, err = simulated(capsys, ["simulate", "--epoch", KEY, "--policy", other])
    warnings = err.splitlines()
    assert all(w.startswith("warning: ") for w in warnings)
    named = [w.removeprefix("warning: ").split(" differs:")[0] for w in warnings]
    assert named == ["approvers", "epoch.anchor", "exclude.github", "pool.base_issuance", "sources.github.repos", "unresolved"]
    by = dict(zip(named, warnings))
    assert "(adds acme/gadgets; drops acme/docs)" in by["sources.github.repos"] and "collects nothing" in by["sources.github.repos"]
    assert "adds 200" in by["exclude.github"] and "still credited here" in by["exclude.github"]
    assert 'pinned "2026-01-05", other "2026-01-12"' in by["epoch.anchor"] and "not re-bucketed" in by["epoch.anchor"]
    assert "the simulated pool is 20000" in by["pool.base_issuance"]
    rows = table(out, "recipient_id")
    assert rows["github:200"]["simulated_units"] == "8000"  # the exclusion is warned about, not applied
    assert table(out, " ")["pool"] == {"current": "10000", "simulated": "20000", "difference": "+10000"}
    # --json carries the same.
    capsys.readouterr()
    assert main(["simulate", "--epoch", KEY, "--policy", other, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [w.split(" differs:")[0] for w in doc["warnings"]] == named
    assert doc["current"]["policy_hash"] == POLICY.policy_hash and doc["simulated"]["pool_total"] == 20000


def test_simulate_a_corrected_epoch_compares_the_revision_that_pays(finalized, store, tmp_path, capsys):
    from credit_pipeline.stages.admin import correct_recipient

    assert correct_recipient(store, KEY, "github:200", 12000, "the release review was left out", actor="admin") == 2
    other = other_policy(tmp_path, **{"weights__discord:message_sent": 5000})
    out, _ = simulated(capsys, ["simulate", "--epoch", KEY, "--policy", other])
    assert "current = statement revision 1 of 1 (what is paid; the correction recorded for revision 2 is not signed yet" in out
    approve_current(store)
    second = finalize_epoch(store, KEY).bundle
    out, _ = simulated(capsys, ["simulate", "--epoch", KEY, "--policy", other])
    assert out.splitlines()[0].startswith(f"epoch {KEY} (finalized): current = statement revision 2 of 2 (what is paid); "
                                          "simulated = its 4 credited events re-weighed, adjustments and corrections kept")
    rows = table(out, "recipient_id")
    paid = {p["recipient_id"]: p for p in second["payouts"]}
    assert rows["github:200"]["current_units"] == rows["github:200"]["simulated_units"] == "12000"  # the correction holds
    assert {r: int(v["current_credits"]) for r, v in rows.items()} == {r: p["amount_credits"] for r, p in paid.items()}
    assert rows["discord:300"]["simulated_units"] == "5000"
    assert table(out, " ")["units"]["current"] == str(sum(p["total_units"] for p in second["payouts"]))


def test_simulate_with_the_pinned_policy_changes_nothing(finalized, tmp_path, capsys):
    out, err = simulated(capsys, ["simulate", "--epoch", KEY, "--policy", other_policy(tmp_path)])
    assert err == "" and "the other policy is the current one" in out
    assert all(r["units_difference"] == r["credits_difference"] == "0" for r in table(out, "recipient_id").values())
    assert main(["simulate", "--epoch", "2026-03-02", "--policy", other_policy(tmp_path)]) == 2


def test_simulate_an_open_epoch_compares_with_the_policy_file(env, store, tmp_path, capsys, monkeypatch):
    from datetime import timedelta

    from credit_pipeline.stages.allocate import allocate_epoch
    from credit_pipeline.stages.resolve import resolve_epoch
    from credit_pipeline_tests.stages.test_flow import START

    resolve_epoch(store, KEY, POLICY)
    assert allocate_epoch(store, KEY, POLICY, now=START + timedelta(days=2)).state.status == "open"
    other = other_policy(tmp_path, **{"pool__base_issuance": 5000})
    out, err = simulated(capsys, ["simulate", "--epoch", KEY, "--policy", other])
    assert "current = the stored allocation set of the open epoch (not finalized: what it would pay now)" in out
    assert f"current policy    {POLICY.policy_hash}  the current policy file (the epoch is open, nothing is pinned yet)" in out
    assert err.startswith("warning: pool.base_issuance differs: current 10000, other 5000; the simulated pool is 5000")
    monkeypatch.setenv("CREDIT_PIPELINE_POLICY", str(tmp_path / "nowhere.yaml"))
    assert main(["simulate", "--epoch", KEY, "--policy", other]) == 2
    assert "policy file not found" in capsys.readouterr().err


# -- export --format md -----------------------------------------------------------------


def test_md_export_sorts_by_credits_shows_logins_and_prints_real_commands(finalized, store, tmp_path, capsys):
    from credit_pipeline.stages.admin import correct_recipient

    path = tmp_path / "s.md"
    assert main(["export", "--epoch", KEY, "--format", "md", "-o", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}: epoch {KEY} revision 1 of 1 (md), statement {finalized['statement_hash']}")
    text = path.read_text()
    body = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| recipient")]
    assert body == ["| alice | alice | 16000 | 0.653061 | 6531 |", "| github:200 | bob | 8000 | 0.326530 | 3265 |",
                    "| discord:300 | u300 | 500 | 0.020408 | 204 |", "| **total** | | 24500 | | **10000** |"]
    assert "KEY" not in text and f"--epoch {KEY} --revision 1 --format json" in text
    assert f"--expect-approver {finalized['approvals'][0]['signer']}" in text and f"--expect-ledger {finalized['ledger_id']}" in text
    # The printed command works as printed.
    command = text.split("Recompute it: `", 1)[1].split("`", 1)[0]
    export_argv, verify_argv = (part.split()[1:] for part in command.split(" && "))
    monkey_dir = tmp_path / "run"
    monkey_dir.mkdir()
    import os

    cwd = os.getcwd()
    os.chdir(monkey_dir)
    try:
        assert main(export_argv) == 0 and main(verify_argv) == 0
    finally:
        os.chdir(cwd)
    # A revision of the statement: the command names it; ties of credits sort by recipient id.
    correct_recipient(store, KEY, "github:200", 16000, "equal share", actor="admin")
    approve_current(store)
    finalize_epoch(store, KEY)
    assert main(["export", "--epoch", KEY, "--format", "md", "-o", str(path)]) == 0
    text = path.read_text()
    body = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| recipient")]
    assert [line.split(" | ")[0] for line in body[:2]] == ["| alice", "| github:200"]
    assert body[0].endswith(" | 4923 |") and body[1].endswith(" | 4923 |")
    assert f"--epoch {KEY} --revision 2 --format json" in text
    assert main(["export", "--epoch", KEY, "--format", "md", "--revision", "1", "-o", str(path)]) == 0
    assert f"--epoch {KEY} --revision 1 --format json" in path.read_text()


def test_md_logins_are_escaped_and_a_person_with_several_accounts_shows_each():
    from credit_pipeline.stages.export import markdown_report, recipient_logins

    events = [
        {"event_id": "github:pr:a/b:1", "source": "github", "recipient_id": "carol", "platform_login": "carol-old", "event_time": "2026-02-16T10:00:00Z"},
        {"event_id": "github:pr:a/b:2", "source": "github", "recipient_id": "carol", "platform_login": "carol", "event_time": "2026-02-16T10:00:00.5Z"},
        {"event_id": "discord:message:1:2:3", "source": "discord", "recipient_id": "carol", "platform_login": "c|<b>", "event_time": "2026-02-17T00:00:00Z"},
        {"event_id": "github:pr:a/b:3", "source": "github", "recipient_id": "github:9", "platform_login": None, "event_time": "2026-02-18T00:00:00Z"},
    ]
    assert recipient_logins(events) == {"carol": "c|<b> (discord), carol (github)"}
    bundle = {"epoch": {"key": "2026-02-16", "start": "s", "end": "e", "finalized_at": "f"}, "pool": {"total": 10, "components": []},
              "events": events, "algorithm": "weight-sum-v1", "policy_hash": "p", "statement_hash": "h", "allocation_set_hash": "a",
              "payouts": [{"recipient_id": "github:9", "total_units": 1, "share": "0.500000", "amount_credits": 5},
                          {"recipient_id": "carol", "total_units": 1, "share": "0.500000", "amount_credits": 5}],
              "allocations": [], "approvals": [{"signer": "0xabc", "approved_at": "t"}]}
    text = markdown_report(bundle)
    assert "| carol | c\\|\\<b\\> \\(discord\\), carol \\(github\\) | 1 | 0.500000 | 5 |\n| github:9 |  | 1 | 0.500000 | 5 |" in text
