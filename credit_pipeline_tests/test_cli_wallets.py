"""Payout wallets and what a treasury pays: `identity bind wallet` (proof of control by the wallet's own EIP-191
signature), a policy's payout token, the statement's distribution, `export --format safe-airdrop|merkle` and
`proof`. Every refusal exits 2 with one line and writes nothing."""

import csv
import io
import json
from datetime import timedelta

import pytest
import yaml
from eth_account import Account

from credit_pipeline.cli import main
from credit_pipeline.core.hashing import sign_message
from credit_pipeline.core.merkle import load
from credit_pipeline.core.policy import validate_policy
from credit_pipeline.core.wallets import binding_message
from credit_pipeline.stages.allocate import allocate_epoch
from credit_pipeline.stages.resolve import resolve_epoch

from credit_pipeline_tests.core.test_merkle import _indep_verify
from credit_pipeline_tests.stages.test_flow import AFTER, APPROVER_KEY, KEY, POLICY, ready_for_review, week  # noqa: F401

ALICE_KEY, BOB_KEY, OTHER_KEY = ("0x" + c * 32 for c in ("a1", "b2", "c3"))
ALICE, BOB = Account.from_key(ALICE_KEY).address, Account.from_key(BOB_KEY).address
TOKEN = {"token_address": "0x6B175474E89094C44Da98b954EedeAC495271d0F", "decimals": 6, "token_units_per_credit": 1_500_000}
PAYING = validate_policy({**POLICY.canonical(), "payout": TOKEN})


@pytest.fixture
def env(monkeypatch, ledger_url, tmp_path, store, week):  # noqa: F811
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(PAYING.canonical()))
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("CREDIT_PIPELINE_POLICY", str(path))
    monkeypatch.setenv("APPROVER_KEY", APPROVER_KEY)
    monkeypatch.setenv("ALICE_KEY", ALICE_KEY)
    store.bind("github", "100", "alice")
    store.bind("github", "200", "bob")
    return path


def identity_events(store):
    return len(store.identity_log())


def test_a_wallet_is_bound_with_its_own_signature_and_printed_messages_write_nothing(env, store, capsys):
    before = identity_events(store)
    assert main(["identity", "bind", "wallet", ALICE, "alice", "--print-message"]) == 0
    message = capsys.readouterr().out.rstrip("\n")
    assert message == binding_message(store.ledger_id(), "alice", ALICE) and identity_events(store) == before
    assert main(["identity", "bind", "wallet", ALICE, "alice", "--signature", sign_message(message, ALICE_KEY)]) == 0
    assert f"payout wallet of alice: {ALICE}" in capsys.readouterr().out
    assert main(["identity", "bind", "wallet", BOB, "bob", "--key-env", "BOB_KEY_UNSET"]) == 2
    assert "BOB_KEY_UNSET is not set" in capsys.readouterr().err
    log = store.identity_log()
    assert log[-1]["provider"] == "wallet" and log[-1]["external_id"] == ALICE.lower()
    assert log[-1]["evidence"]["message"] == message and log[-1]["evidence"]["scheme"] == "eip191-personal-sign"
    assert main(["identity", "list", "--json"]) == 0
    assert {"provider": "wallet", "external_id": ALICE, "user_id": "alice"} in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, named", [
    (lambda: ["identity", "bind", "wallet", ALICE.lower(), "alice", "--key-env", "ALICE_KEY"], "EIP-55 checksum"),
    (lambda: ["identity", "bind", "wallet", "0x1234", "alice", "--key-env", "ALICE_KEY"], "not an Ethereum address"),
    (lambda: ["identity", "bind", "wallet", BOB, "bob", "--key-env", "ALICE_KEY"], "not by"),  # signed by another key
    (lambda: ["identity", "bind", "wallet", ALICE, "alice", "--signature",
              sign_message("Credit Pipeline Payout Wallet v1\nsomething else", ALICE_KEY)], "not by"),  # over another message
    (lambda: ["identity", "bind", "wallet", ALICE, "alice", "--signature", "0x1234"], "not 65 bytes"),
    (lambda: ["identity", "bind", "wallet", ALICE, "alice"], "give --signature"),
    (lambda: ["identity", "bind", "wallet", ALICE, "Alice!", "--key-env", "ALICE_KEY"], "not a person id"),
    (lambda: ["identity", "bind", "github", "300", "carol", "--key-env", "ALICE_KEY"], "are for wallets"),
])
def test_refused_wallet_bindings_exit_2_with_one_line_and_write_nothing(env, store, capsys, argv, named):
    before = store.identity_log()
    assert main(argv()) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1, err
    assert store.identity_log() == before


def test_a_wallet_bound_to_someone_else_or_a_second_wallet_is_refused(env, store, capsys, monkeypatch):
    assert main(["identity", "bind", "wallet", ALICE, "alice", "--key-env", "ALICE_KEY"]) == 0
    before = store.identity_log()
    signed_for_bob = sign_message(binding_message(store.ledger_id(), "bob", ALICE), ALICE_KEY)
    assert main(["identity", "bind", "wallet", ALICE, "bob", "--signature", signed_for_bob]) == 2
    assert "already bound to alice" in capsys.readouterr().err
    monkeypatch.setenv("BOB_KEY", BOB_KEY)
    second = sign_message(binding_message(store.ledger_id(), "alice", BOB), BOB_KEY)
    assert main(["identity", "bind", "wallet", BOB, "alice", "--signature", second]) == 2
    assert "already has payout wallet" in capsys.readouterr().err
    assert store.identity_log() == before
    # the database refuses it too, whatever the application checks (one wallet per person, sql/0006)
    from credit_pipeline.ledger.records import LedgerError

    with pytest.raises(LedgerError, match="already has payout wallet"):
        store.bind("wallet", BOB.lower(), "alice", evidence={"note": "straight to the store"})
    assert store.identity_log() == before
    assert main(["identity", "revoke", "wallet", ALICE]) == 0
    assert main(["identity", "bind", "wallet", BOB, "alice", "--signature", second]) == 0


def finalized(store, env, policy=PAYING):
    from credit_pipeline.stages.allocate import allocation_state
    from credit_pipeline.stages.finalize import finalize_epoch

    env.write_text(yaml.safe_dump(policy.canonical()))
    resolve_epoch(store, KEY, policy)
    ready_for_review(store)
    allocate_epoch(store, KEY, policy, now=AFTER)
    state = allocation_state(store, KEY, policy)
    assert main(["approve", "--epoch", KEY, "--key-env", "APPROVER_KEY", "--hash", state.allocation_set_hash]) == 0
    return finalize_epoch(store, KEY).bundle


def test_the_statement_pays_bound_wallets_holds_the_rest_and_exports_what_the_safe_app_and_a_distributor_read(env, store, capsys, tmp_path):
    assert main(["identity", "bind", "wallet", ALICE, "alice", "--key-env", "ALICE_KEY"]) == 0
    bundle = finalized(store, env)
    capsys.readouterr()
    dist = bundle["distribution"]
    lines = {line["recipient_id"]: line for line in dist["lines"]}
    assert lines["alice"]["status"] == "payable" and lines["bob"]["held_reason"].startswith("no payout wallet")
    assert main(["verify", "--epoch", KEY]) == 0

    out = tmp_path / "airdrop.csv"
    assert main(["export", "--epoch", KEY, "--format", "safe-airdrop", "-o", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["token_type", "token_address", "receiver", "amount", "id"]  # the Safe CSV Airdrop app's columns
    assert rows == [{"token_type": "erc20", "token_address": TOKEN["token_address"], "receiver": ALICE,
                     "amount": str(lines["alice"]["amount_credits"] * 3 // 2) + (".5" if lines["alice"]["amount_credits"] % 2 else ""),
                     "id": ""}]
    held = list(csv.DictReader(io.StringIO((tmp_path / "airdrop.held.csv").read_text())))
    assert {r["recipient_id"] for r in held} == {r for r, line in lines.items() if line["status"] == "held"}
    paid = sum(int(line["amount_credits"]) for line in dist["lines"])
    assert paid == bundle["pool"]["total"] == dist["payable_credits"] + dist["held_credits"]

    assert main(["export", "--epoch", KEY, "--format", "merkle", "-o", str(tmp_path / "tree.json")]) == 0
    tree = load(json.loads((tmp_path / "tree.json").read_text()))  # what StandardMerkleTree.load reads
    capsys.readouterr()
    assert tree.root == dist["merkle"]["root"]
    assert main(["proof", "--epoch", KEY, "--recipient", "alice"]) == 0
    claim = json.loads(capsys.readouterr().out)
    assert claim["wallet"] == ALICE and _indep_verify(claim["root"], claim["wallet"], int(claim["amount"]), claim["proof"])
    assert not _indep_verify(claim["root"], BOB, int(claim["amount"]), claim["proof"])
    assert main(["proof", "--epoch", KEY, "--recipient", "bob"]) == 2
    assert "no payout wallet bound" in capsys.readouterr().err

    # a wallet revoked after finalize changes nothing the statement says; verify from the ledger still passes
    assert main(["identity", "revoke", "wallet", ALICE]) == 0
    assert main(["verify", "--epoch", KEY]) == 0


def test_identity_list_unresolved_shows_the_credit_each_unbound_account_holds(env, store, capsys):
    assert main(["identity", "revoke", "github", "200"]) == 0  # bob's account becomes a claimant again
    capsys.readouterr()
    resolve_epoch(store, KEY, PAYING)
    allocate_epoch(store, KEY, PAYING, now=AFTER - timedelta(days=30))  # still open: units, not credits yet
    assert main(["identity", "list", "--unresolved", "--json"]) == 0
    pending = {r["claimant"]: r for r in json.loads(capsys.readouterr().out)}
    assert "github:200" in pending and pending["github:200"]["units_pending"] > 0 and pending["github:200"]["credits_held"] == 0
    bundle = finalized(store, env)
    capsys.readouterr()
    claimants = {line["recipient_id"]: line["amount_credits"] for line in bundle["payouts"] if ":" in line["recipient_id"]}
    assert claimants
    assert main(["identity", "list", "--unresolved", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["claimant"]: r["credits_held"] for r in rows} == claimants
    assert all(r["epochs"] == KEY and r["bind"].startswith("credit-pipeline identity bind ") for r in rows)
    assert main(["identity", "list", "--unresolved"]) == 0
    assert "credits_held" in capsys.readouterr().out


def test_identity_sync_shows_the_diff_first_records_with_apply_and_removes_nothing_silently(env, store, capsys, tmp_path):
    path = tmp_path / "identities.yaml"
    signature = sign_message(binding_message(store.ledger_id(), "alice", ALICE), ALICE_KEY)
    path.write_text(yaml.safe_dump({"people": {"alice": {"github": [100], "wallet": {"address": ALICE, "signature": signature}},
                                               "carol": {"github": [200], "discord": ["900"]}}}))
    before = store.identity_log()
    assert main(["identity", "sync", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"+ bind   wallet:{ALICE} -> alice" in out and "+ bind   discord:900 -> carol" in out
    assert "~ move   github:200: bob -> carol" in out and "nothing written" in out
    assert store.identity_log() == before
    assert main(["identity", "sync", "--file", str(path), "--apply"]) == 0
    assert "recorded 3 identity change(s)" in capsys.readouterr().out
    bindings = store.bindings()
    assert bindings[("github", "200")] == "carol" and bindings[("discord", "900")] == "carol"
    assert bindings[("wallet", ALICE.lower())] == "alice"
    assert main(["identity", "sync", "--file", str(path), "--apply"]) == 0
    assert "nothing to change" in capsys.readouterr().out
    # a binding the file does not list is kept and shown, unless --prune
    store.bind("github", "300", "dave")
    assert main(["identity", "sync", "--file", str(path), "--apply"]) == 0
    assert "keep   github:300 -> dave (not in the file; --prune revokes it)" in capsys.readouterr().out
    assert ("github", "300") in store.bindings()
    assert main(["identity", "sync", "--file", str(path), "--apply", "--prune"]) == 0
    assert "- revoke github:300 -> dave" in capsys.readouterr().out and ("github", "300") not in store.bindings()


@pytest.mark.parametrize("doc, named", [
    ({"people": {"Alice": {"github": [1]}}}, "not a person id"),
    ({"people": {"alice": {"github": ["alice-login"]}}}, "github"),
    ({"people": {"alice": {"github": [1]}, "bob": {"github": [1]}}}, "listed for both alice and bob"),
    ({"people": {"alice": {"wallet": {"address": ALICE.lower(), "signature": "0x00"}}}}, "EIP-55 checksum"),
    ({"people": {"alice": {"gitlab": [1]}}}, "gitlab"),
    ({"people": {"alice": {"wallet": {"address": ALICE, "signature": "0x" + "11" * 65}}}}, "signature"),
])
def test_a_bad_identities_file_is_refused_whole_with_one_line(env, store, capsys, tmp_path, doc, named):
    path = tmp_path / "identities.yaml"
    path.write_text(yaml.safe_dump(doc))
    before = store.identity_log()
    assert main(["identity", "sync", "--file", str(path), "--apply"]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1, err
    assert store.identity_log() == before


def test_epochs_shows_late_events_and_completeness_and_the_report_carries_them(env, store, capsys, tmp_path):
    from credit_pipeline_tests.ledger.factories import pr_event
    from credit_pipeline_tests.stages.test_flow import START
    from credit_pipeline_tests.stages.test_weekly_report import png_size

    finalized(store, env)
    store.record_page([pr_event(99, START + timedelta(days=3), "100", "alice")], None)  # arrives after the week was approved
    capsys.readouterr()
    assert main(["epochs", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["key"] == KEY)
    assert row["late_events"] == 1 and row["status"] == "finalized"
    assert row["completeness"].startswith(("ok", "waived", "short", "not checked"))
    out = tmp_path / "report.md"
    assert main(["export", "--epoch", KEY, "--format", "report", "-o", str(out)]) == 0
    text = out.read_text()
    assert "Late events (arrived after the window closed): 1." in text and "(report.png)" in text
    assert png_size((tmp_path / "report.png").read_bytes()) == (1200, 600)
    site = tmp_path / "site"
    assert main(["site", "-o", str(site)]) == 0
    assert (site / "index.html").is_file() and (site / "epochs" / f"{KEY}.html").is_file()


def test_a_wallet_moved_by_a_merge_is_held_until_bound_again_for_its_new_person(env, store, capsys):
    assert main(["identity", "bind", "wallet", ALICE, "alice", "--key-env", "ALICE_KEY"]) == 0
    assert main(["identity", "merge", "alice", "carol"]) == 0  # alice's accounts, her wallet too, are carol's now
    bundle = finalized(store, env)
    lines = {line["recipient_id"]: line for line in bundle["distribution"]["lines"]}
    assert lines["carol"]["status"] == "held" and lines["carol"]["wallet"] is None  # the signature names alice, not carol
    assert main(["verify", "--epoch", KEY]) == 0


def test_a_v2_statement_written_before_payout_wallets_still_verifies_from_the_ledger(env, store, capsys, monkeypatch):
    import functools

    import sqlalchemy as sa

    from credit_pipeline.core.statement import BUNDLE_FORMAT_V2
    from credit_pipeline.stages import finalize as finalize_module

    with monkeypatch.context() as patched:  # the code before v3
        patched.setattr(finalize_module, "ledger_statement",
                        functools.partial(finalize_module.ledger_statement, bundle_format=BUNDLE_FORMAT_V2))
        bundle = finalized(store, env, POLICY)  # a policy without a payout token: v2 could not pay one
    assert bundle["format"] == BUNDLE_FORMAT_V2 and "distribution" not in bundle
    capsys.readouterr()
    assert main(["verify", "--epoch", KEY]) == 0  # rebuilt from the rows as v2, byte for byte
    assert main(["export", "--epoch", KEY, "--format", "safe-airdrop"]) == 2
    assert "written before payout wallets" in capsys.readouterr().err
    with store.engine.begin() as conn:  # a tamper of a v2 statement's rows is still caught by the rebuild
        conn.execute(sa.text("ALTER TABLE epoch_pool_components DISABLE TRIGGER USER"))
        conn.execute(sa.text("UPDATE epoch_pool_components SET amount = amount + 1 WHERE component_id = 'base_issuance'"))
        conn.execute(sa.text("ALTER TABLE epoch_pool_components ENABLE TRIGGER USER"))
    assert main(["verify", "--epoch", KEY]) == 1
    assert "epoch_pool_components" in capsys.readouterr().err
