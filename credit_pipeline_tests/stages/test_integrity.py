"""Integrity of the approve → finalize → verify chain under ordinary admin sequences and
against someone with a database login (the issue's reproductions, each a test)."""

import json

import pytest
import sqlalchemy as sa

from credit_pipeline.cli import main
from credit_pipeline.core.hashing import address_of, normalize_signature, sign_message
from credit_pipeline.core.policy import parse_policy
from credit_pipeline.core.statement import statement_bytes
from credit_pipeline.ledger.store import LedgerError
from credit_pipeline.stages.admin import add_pool, adjust_recipient, bind_account, correct_recipient, curate_event, merge_people
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
from credit_pipeline.stages.approve import ApprovalRefused, approve_epoch
from credit_pipeline.stages.finalize import FinalizeRefused, finalize_epoch
from credit_pipeline.stages.resolve import resolve_epoch
from credit_pipeline.stages.verify import verify_file_bytes, verify_stored
from credit_pipeline.core.verification import Expectations

from credit_pipeline_tests.core.test_policy import SPEC_POLICY
from credit_pipeline_tests.stages.test_flow import AFTER, APPROVER_KEY, KEY, POLICY, STRANGER_KEY, ready_for_review, week  # noqa: F401


def reviewed(store):
    resolve_epoch(store, KEY, POLICY)
    ready_for_review(store)
    return allocate_epoch(store, KEY, POLICY, now=AFTER).state


def approve_current(store, key=APPROVER_KEY):
    state = allocation_state(store, KEY, POLICY)
    return approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, key), POLICY)


def finalized(store):
    reviewed(store)
    approve_current(store)
    return finalize_epoch(store, KEY).bundle


def sql(store, text, **params):
    with store.engine.begin() as conn:
        return conn.execute(sa.text(text), params)


def tamper(store, table, statement):
    """As the database superuser: switch the table's triggers off, change it, switch them on."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        conn.exec_driver_sql(statement)
        conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER ALL")


def test_exclusion_after_allocation_is_what_gets_approved_and_paid(store, week):
    reviewed(store)
    assert allocation_state(store, KEY, POLICY).final_units["github:200"] == 8000
    curate_event(store, "github:pr:acme/widgets:3", POLICY, actor="admin", included=False, note="spam")
    state = allocation_state(store, KEY, POLICY)
    assert "github:200" not in state.final_units and not state.drift  # re-derived in the same transaction
    approve_current(store)
    bundle = finalize_epoch(store, KEY).bundle
    assert "github:200" not in {p["recipient_id"] for p in bundle["payouts"]}
    report = verify_stored(store, KEY)
    assert report.ok, report.mismatch
    assert verify_file_bytes(statement_bytes(bundle)).ok


def test_binding_and_merge_after_allocation_re_resolve_before_approval(store, week):
    reviewed(store)
    new, keys = bind_account(store, "github", "100", "alice", POLICY, actor="admin")
    assert new and keys == [KEY]
    assert allocation_state(store, KEY, POLICY).final_units == {"alice": 16000, "discord:300": 500, "github:200": 8000}
    bind_account(store, "github", "200", "bob", POLICY, actor="admin")
    moved, _ = merge_people(store, "bob", "alice", POLICY, actor="admin")
    state = allocation_state(store, KEY, POLICY)
    assert moved == 1 and state.final_units == {"alice": 24000, "discord:300": 500} and not state.drift
    approve_current(store)
    assert finalize_epoch(store, KEY).written and verify_stored(store, KEY).ok


def test_stale_allocations_written_behind_the_stages_back_are_refused(store, week):
    reviewed(store)
    approve_current(store)
    # A plain curation write (no re-derivation) leaves the stored set stale: finalize refuses, naming it.
    store.set_curation("github:pr:acme/widgets:3", actor="admin", included=False)
    with pytest.raises(FinalizeRefused, match="github:200: stored 8000 units"):
        finalize_epoch(store, KEY)
    with pytest.raises(ApprovalRefused, match="github:200"):
        approve_current(store)
    assert store.statement(KEY) is None


@pytest.mark.parametrize("bad", ["x\ny:1", "alice\nbob:5", "", "x:1", "Alice", "github:12a", "a b"])
def test_recipient_ids_have_one_grammar(store, week, bad):
    reviewed(store)
    before = store.allocations(KEY)
    with pytest.raises(LedgerError):
        adjust_recipient(store, KEY, bad, 5, "forged", POLICY, actor="admin")
    with pytest.raises(LedgerError):
        bind_account(store, "github", "12", bad, POLICY, actor="admin")
    assert store.allocations(KEY) == before and store.bindings() == {}


def test_the_same_approver_approves_again_after_a_top_up(store, week):
    reviewed(store)
    approve_current(store)
    add_pool(store, KEY, "top_up", 500, actor="admin")
    approve_current(store)  # a new message (the pool changed): not "already approved"
    bundle = finalize_epoch(store, KEY).bundle
    assert bundle["pool"]["total"] == 10500 and len(bundle["approvals"]) == 1
    with pytest.raises(ApprovalRefused, match="finalized"):
        approve_current(store)


def test_a_malleated_signature_is_a_duplicate(store, week):
    state = reviewed(store)
    signature = sign_message(state.approval_message, APPROVER_KEY)
    raw = bytes.fromhex(signature[2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = (n - int.from_bytes(raw[32:64], "big")).to_bytes(32, "big")
    twin = "0x" + (raw[:32] + high_s + bytes([55 - raw[64]])).hex()  # high-s, v flipped
    assert normalize_signature(twin) == signature
    approve_epoch(store, KEY, state.allocation_set_hash, signature, POLICY)
    with pytest.raises(LedgerError, match="already approved"):
        approve_epoch(store, KEY, state.allocation_set_hash, twin, POLICY)
    assert len(store.approvals(KEY)) == 1


def test_offline_verify_with_trust_anchors_catches_a_self_signed_bundle(store, week, tmp_path, capsys):
    bundle = finalized(store)
    # A forger rewrites the bundle with a policy naming their own key and re-signs it: it is consistent.
    forged_policy = parse_policy(SPEC_POLICY.replace("0x1111111111111111111111111111111111111111", address_of(STRANGER_KEY)))
    forged = json.loads(statement_bytes(bundle))
    forged["policy"] = json.loads(json.dumps(forged_policy.canonical()))
    forged["policy_hash"] = forged_policy.policy_hash
    from credit_pipeline.core.hashing import approval_message
    from credit_pipeline.core.canonical import canonical_hash

    message = approval_message(KEY, forged["policy_hash"], forged["allocation_set_hash"], forged["pool"]["total"],
                               ledger_id=forged["ledger_id"], revision=1)
    forged["approvals"] = [{"signer": address_of(STRANGER_KEY), "signature": sign_message(message, STRANGER_KEY), "approved_at": "2026-02-24T00:00:00Z"}]
    forged["statement_hash"] = canonical_hash({k: v for k, v in forged.items() if k != "statement_hash"})
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    assert verify_file_bytes(path.read_bytes()).ok  # consistent on its own ...
    report = verify_file_bytes(path.read_bytes(), Expectations.of([address_of(APPROVER_KEY)]))
    assert not report.ok and "do not expect" in report.mismatch  # ... but not signed by whom the auditor trusts
    assert main(["verify", str(path), "--expect-approver", address_of(APPROVER_KEY)]) == 1
    assert "FAIL" in capsys.readouterr().err
    genuine = tmp_path / "genuine.json"
    genuine.write_bytes(statement_bytes(bundle))
    assert main(["verify", str(genuine), "--expect-approver", address_of(APPROVER_KEY), "--expect-ledger", bundle["ledger_id"],
                 "--expect-policy-hash", bundle["policy_hash"]]) == 0
    out = capsys.readouterr().out
    assert bundle["ledger_id"] in out and address_of(APPROVER_KEY) in out
    assert main(["verify", str(genuine), "--expect-ledger", "00000000-0000-4000-8000-000000000000"]) == 1


def test_a_forged_revision_insert_is_refused(store, week):
    bundle = finalized(store)
    forged = {**bundle, "revision": 2, "supersedes": "f" * 64, "statement_hash": "e" * 64}
    for supersedes, revision in ((None, 2), ("f" * 64, 2), (bundle["statement_hash"], 2), (bundle["statement_hash"], 3)):
        with pytest.raises(sa.exc.DBAPIError):
            sql(store, "INSERT INTO payout_statements (statement_hash, epoch_key, revision, supersedes, allocation_set_hash, pool_total, bundle) "
                       "VALUES (:h, :k, :r, :s, :a, 10000, :b)", h="e" * 64, k=KEY, r=revision, s=supersedes,
                a=bundle["allocation_set_hash"], b=json.dumps(forged))
    assert [r["revision"] for r in store.statement_rows(KEY)] == [1]


@pytest.mark.parametrize("field, value", [("statement_hash", "c" * 64), ("epoch", {"key": "2026-02-23"}),
                                          ("allocation_set_hash", "b" * 64), ("revision", 1)])
def test_a_statement_whose_bundle_names_another_hash_epoch_set_or_revision_is_refused(store, week, field, value):
    """The database's own check (0008: after the insert, on the one parse of the bundle): the row and its bundle agree."""
    first = finalized(store)
    correct_recipient(store, KEY, "github:200", 12000, "a fix", actor="admin")
    approve_current(store)
    row = {**first, "revision": 2, "supersedes": first["statement_hash"], "statement_hash": "e" * 64}
    row["allocation_set_hash"] = allocation_state(store, KEY, POLICY).allocation_set_hash
    bundle = {**row, field: value}
    with pytest.raises(sa.exc.DBAPIError, match="does not describe itself"):
        sql(store, "INSERT INTO payout_statements (statement_hash, epoch_key, revision, supersedes, allocation_set_hash, pool_total, bundle) "
                   "VALUES (:h, :k, 2, :s, :a, 10000, :b)", h=row["statement_hash"], k=KEY, s=row["supersedes"],
            a=row["allocation_set_hash"], b=json.dumps(bundle))
    assert [r["revision"] for r in store.statement_rows(KEY)] == [1]
    sql(store, "INSERT INTO payout_statements (statement_hash, epoch_key, revision, supersedes, allocation_set_hash, pool_total, bundle) "
               "VALUES (:h, :k, 2, :s, :a, 10000, :b)", h=row["statement_hash"], k=KEY, s=row["supersedes"],
        a=row["allocation_set_hash"], b=json.dumps(row))  # the same row describing itself is accepted (a raw insert, for the check only)
    assert [r["revision"] for r in store.statement_rows(KEY)] == [1, 2]


def test_a_correction_supersedes_and_both_revisions_verify(store, week, capsys, monkeypatch, ledger_url, tmp_path):
    first = finalized(store)
    store.ensure_epoch("2026-02-23")
    with pytest.raises(LedgerError, match="not finalized: adjust it instead"):
        correct_recipient(store, "2026-02-23", "github:200", 1, "x", actor="admin")
    assert correct_recipient(store, KEY, "github:200", 12000, "the release review was left out", actor="admin") == 2
    with pytest.raises(FinalizeRefused, match="revision 2"):
        finalize_epoch(store, KEY)  # not approved yet
    state = allocation_state(store, KEY, POLICY)
    assert state.revision == 2 and state.supersedes == first["statement_hash"]
    assert "Revision: 2" in state.approval_message and f"Supersedes: {first['statement_hash']}" in state.approval_message
    approve_current(store)
    second = finalize_epoch(store, KEY)
    assert second.written and second.bundle["revision"] == 2 and second.bundle["supersedes"] == first["statement_hash"]
    corrected = {a["recipient_id"]: a for a in second.bundle["allocations"]}["github:200"]
    assert corrected["final_units"] == 12000 and corrected["corrected_in"] == 2
    assert sum(p["amount_credits"] for p in second.bundle["payouts"]) == 10000
    assert not finalize_epoch(store, KEY).written  # nothing new: the latest is returned
    assert store.statement(KEY)["statement_hash"] == second.statement_hash
    report = verify_stored(store, KEY)
    assert report.ok and report.proved["revision"] == 2, report.mismatch
    assert verify_file_bytes(statement_bytes(first)).ok and verify_file_bytes(statement_bytes(second.bundle)).ok
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    assert main(["epochs"]) == 0
    out = capsys.readouterr().out
    assert f"{second.statement_hash} <- {first['statement_hash']}" in out
    assert main(["verify", "--epoch", KEY]) == 0
    old = tmp_path / "r1.json"
    assert main(["export", "--epoch", KEY, "--revision", "1", "-o", str(old)]) == 0
    assert old.read_bytes() == statement_bytes(first)
    assert main(["export", "--epoch", KEY, "--revision", "3"]) == 2


def test_a_shortfall_is_waived_from_the_command_line_and_carried_in_the_statement(store, week, monkeypatch, ledger_url, capsys):
    resolve_epoch(store, KEY, POLICY)
    ready_for_review(store, shortfall=2)
    assert not allocate_epoch(store, KEY, POLICY, now=AFTER).entered_review
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    monkeypatch.setenv("CREDIT_PIPELINE_ACTOR", "treasurer")
    assert main(["waive", "--epoch", KEY, "--reason", " "]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert main(["waive", "--epoch", KEY, "--reason", "PR 5 was deleted upstream"]) == 0
    assert allocate_epoch(store, KEY, POLICY, now=AFTER).entered_review
    assert main(["waive", "--epoch", KEY, "--reason", "again"]) == 2  # only an open epoch's shortfall is waived
    approve_current(store)
    waiver = finalize_epoch(store, KEY).bundle["completeness_waiver"]
    assert waiver["by"] == "treasurer" and waiver["reason"] == "PR 5 was deleted upstream" and waiver["shortfall"]
    assert verify_stored(store, KEY).ok


def test_statements_do_not_depend_on_the_session_time_zone(store, week, ledger_url):
    with store.engine.connect() as conn:
        conn.execute(sa.text(f"ALTER DATABASE \"{store.engine.url.database}\" SET timezone TO 'Asia/Tokyo'"))
        conn.commit()
    store.engine.dispose()
    bundle = finalized(store)
    assert bundle["epoch"]["finalized_at"].endswith("Z")
    los_angeles = sa.create_engine(ledger_url, connect_args={"options": "-c timezone=America/Los_Angeles"})
    from credit_pipeline.ledger.store import LedgerStore

    assert verify_stored(LedgerStore(los_angeles), KEY).ok
    los_angeles.dispose()


# Each tamper, made as the database superuser on a finalized epoch, is a FAIL naming the table (exit 1).
TAMPERS = [
    ("activity_events", "UPDATE activity_events SET event_time = event_time + interval '30 days' WHERE event_id = 'github:pr:acme/widgets:2'", "activity_events"),
    ("activity_events", "UPDATE activity_events SET platform_user_id = '201' WHERE event_id = 'github:pr:acme/widgets:3'", "activity_events"),
    ("activity_events", "UPDATE activity_events SET platform_login = 'mallory' WHERE event_id = 'github:pr:acme/widgets:3'", "activity_events"),
    ("activity_events", "UPDATE activity_events SET payload = jsonb_set(payload, '{title}', '\"x\"') WHERE event_id = 'github:pr:acme/widgets:3'", "activity_events"),
    ("activity_curation", "UPDATE activity_curation SET note = 'rewritten' WHERE event_id = 'github:pr:acme/widgets:3'", "activity_curation"),
    ("activity_curation", "UPDATE activity_curation SET curated_by = 'mallory' WHERE event_id = 'github:pr:acme/widgets:3'", "activity_curation"),
    ("activity_curation", "UPDATE activity_curation SET recipient_id = 'github:100' WHERE event_id = 'github:pr:acme/widgets:3'", "activity_curation"),
    ("epoch_allocations", "UPDATE epoch_allocations SET adjusted_by = 'mallory'", "epoch_allocations"),
    ("epoch_allocations", "UPDATE epoch_allocations SET proposed_units = proposed_units + 1 WHERE recipient_id = 'github:200'", "epoch_allocations"),
    ("epoch_approvals", "DELETE FROM epoch_approvals", "epoch_approvals"),
    ("epoch_pool_components", "UPDATE epoch_pool_components SET recorded_by = 'mallory'", "epoch_pool_components"),
    ("epochs", "UPDATE epochs SET approvers = '[\"0x2222222222222222222222222222222222222222\"]'", "epochs"),
    ("identity_events", "DELETE FROM identity_events", "identity_events"),
    ("identity_events", "UPDATE identity_events SET user_id = 'mallory'", "identity_events"),
    ("identity_events", "UPDATE identity_events SET actor = 'mallory'", "identity_events"),
    ("payout_statements", "UPDATE payout_statements SET bundle = replace(bundle, '\"amount_credits\":204', '\"amount_credits\":205')", "payouts[recipient_id=discord:300].amount_credits: statement says 205, recomputed 204"),
]


@pytest.mark.parametrize("table, statement, named", TAMPERS, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(TAMPERS)])
def test_every_tamper_is_a_failed_verification(store, week, monkeypatch, ledger_url, capsys, table, statement, named):
    bind_account(store, "github", "100", "alice", POLICY, actor="admin")
    first = finalized(store)
    assert verify_stored(store, KEY).ok
    tamper(store, table, statement)
    report = verify_stored(store, KEY)
    assert not report.ok
    assert named in report.mismatch, report.mismatch
    monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", ledger_url)
    assert main(["verify", "--epoch", KEY]) == 1
    assert "FAIL" in capsys.readouterr().err
    assert first["statement_hash"]
