from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from credit_pipeline.core.canonical import canonical_json, sha256_hex
from credit_pipeline.core.allocation import ProposedAllocation
from credit_pipeline.ledger.store import (
    CurationProposal,
    CursorAdvance,
    EpochStateError,
    IdentityConflict,
    LedgerError,
    LedgerStore,
)

from credit_pipeline_tests.ledger.factories import pr_event, week_of_prs

KEY = "2026-02-16"
START = datetime(2026, 2, 16, tzinfo=UTC)
CURSOR = CursorAdvance("github", "pull_requests", "acme/widgets", {"updated_at": "2026-02-20T00:00:00Z"})


def count(store, table):
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def test_page_insert_and_cursor_together_and_reinsert_is_a_no_op(store):
    events = week_of_prs(2500)
    first = store.record_page(events, CURSOR)
    assert (first.new, first.seen) == (2500, 0)
    again = store.record_page(events, CURSOR)
    assert (again.new, again.seen) == (0, 2500)
    assert count(store, "activity_events") == 2500
    assert store.get_cursor("github", "pull_requests", "acme/widgets") == CURSOR.position
    stored = store.get_event(events[0].event_id)
    assert stored["payload"] == events[0].payload and stored["payload_hash"] == events[0].payload_hash


def test_a_failure_between_insert_and_cursor_advance_leaves_nothing(store, monkeypatch):
    def crash(conn, cursor):
        raise RuntimeError("power cut after the insert, before the cursor")

    monkeypatch.setattr(store, "_advance_cursor", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        store.record_page(week_of_prs(300), CURSOR)
    assert count(store, "activity_events") == 0
    assert store.get_cursor("github", "pull_requests", "acme/widgets") is None


def test_a_bad_row_mid_batch_rolls_back_the_whole_page(store):
    events = week_of_prs(10)
    bad = events[5].model_copy(update={"platform_user_id": "not-numeric"})  # bypasses validation
    with pytest.raises(sa.exc.IntegrityError):
        store.record_page(events[:5] + [bad] + events[6:], CURSOR)
    assert count(store, "activity_events") == 0
    assert store.get_cursor("github", "pull_requests", "acme/widgets") is None


@pytest.mark.parametrize("sql", ["UPDATE activity_events SET platform_login = 'mallory'", "DELETE FROM activity_events", "TRUNCATE activity_events CASCADE"])
def test_activity_events_are_append_only(store, sql):
    store.record_page([pr_event(1, START)], None)
    with pytest.raises(sa.exc.DBAPIError, match="activity_events is append-only"):
        with store.transaction() as conn:
            conn.exec_driver_sql(sql)


def test_half_open_windows_in_queries_and_curation(store):
    at_start, at_end = pr_event(1, START), pr_event(2, START + timedelta(days=7))
    store.record_page([at_start, at_end], None)
    assert [e["event_id"] for e in store.events_between(START, START + timedelta(days=7))] == [at_start.event_id]
    store.ensure_epoch(KEY)
    with pytest.raises(sa.exc.DBAPIError, match="outside epoch 2026-02-16"):
        store.curate(KEY, [CurationProposal(at_end.event_id, "alice", "bound")])


def test_curation_never_touches_admin_fields_and_keeps_one_epoch_per_event(store):
    event = pr_event(1, START + timedelta(hours=1))
    store.record_page([event], None)
    store.ensure_epoch(KEY)
    assert store.curate(KEY, [CurationProposal(event.event_id, "github:583231", "claimant")]) == 1
    store.set_curation(event.event_id, actor="admin", included=False, weight_override=123, note="duplicate PR")
    assert store.curate(KEY, [CurationProposal(event.event_id, "alice", "bound")]) == 1
    assert store.curate(KEY, [CurationProposal(event.event_id, "alice", "bound")]) == 0  # unchanged: no write
    row = store.curated_events(KEY)[0]
    assert (row["recipient_id"], row["included"], row["weight_override"], row["note"]) == ("alice", False, 123, "duplicate PR")
    store.ensure_epoch("2026-02-23")
    with pytest.raises(sa.exc.DBAPIError, match="outside epoch"):
        store.curate("2026-02-23", [CurationProposal(event.event_id, "alice", "bound")])
    with pytest.raises(LedgerError, match="must be an integer >= 0"):
        store.set_curation(event.event_id, actor="admin", weight_override=-5)


def test_allocation_upserts_preserve_adjustments(store):
    store.ensure_epoch(KEY)
    store.upsert_allocations(KEY, [ProposedAllocation("alice", 8000, 1), ProposedAllocation("bob", 2000, 1)], "weight-sum-v1")
    store.adjust_allocation(KEY, "bob", 3000, "mentored a newcomer", actor="admin")
    store.upsert_allocations(KEY, [ProposedAllocation("alice", 9000, 2), ProposedAllocation("bob", 2500, 2)], "weight-sum-v1")
    rows = {r["recipient_id"]: r for r in store.allocations(KEY)}
    assert (rows["alice"]["proposed_units"], rows["alice"]["final_units"]) == (9000, None)
    assert (rows["bob"]["proposed_units"], rows["bob"]["final_units"], rows["bob"]["reason"]) == (2500, 3000, "mentored a newcomer")
    # Alice loses her events: her row goes. Bob loses his: his adjustment stays, proposal 0.
    store.upsert_allocations(KEY, [], "weight-sum-v1")
    rows = {r["recipient_id"]: r for r in store.allocations(KEY)}
    assert list(rows) == ["bob"] and (rows["bob"]["proposed_units"], rows["bob"]["final_units"]) == (0, 3000)
    with pytest.raises(LedgerError, match="needs a reason"):
        store.adjust_allocation(KEY, "carol", 10, " ", actor="admin")
    with pytest.raises(sa.exc.IntegrityError):
        with store.transaction() as conn:
            conn.exec_driver_sql("UPDATE epoch_allocations SET final_units = -1, reason = 'x' WHERE recipient_id = 'bob'")


def test_pool_components_are_append_only_and_non_negative(store):
    store.ensure_epoch(KEY)
    assert store.add_pool_component(KEY, "base_issuance", 10**30, algorithm_version="policy-v1", evidence_ref="policy.yaml")
    assert not store.add_pool_component(KEY, "base_issuance", 10**30, algorithm_version="policy-v1")
    with pytest.raises(LedgerError, match="append-only, record the difference as a top_up"):
        store.add_pool_component(KEY, "base_issuance", 5, algorithm_version="policy-v1")
    with pytest.raises(LedgerError, match="not one of"):
        store.add_pool_component(KEY, "bonus", 5, algorithm_version="x")
    assert store.pool_components(KEY)[0]["amount"] == 10**30
    with pytest.raises(sa.exc.DBAPIError, match="epoch_pool_components is append-only"):
        with store.transaction() as conn:
            conn.exec_driver_sql("UPDATE epoch_pool_components SET amount = 1")
    with pytest.raises(sa.exc.IntegrityError):
        with store.transaction() as conn:
            conn.exec_driver_sql(f"INSERT INTO epoch_pool_components (epoch_key, component_id, amount, algorithm_version) VALUES ('{KEY}', 'top_up', -1, 'x')")


POLICY = {"weights": {}}
POLICY_TEXT = canonical_json(POLICY)
PHASH = sha256_hex(POLICY_TEXT)  # the database checks the pinned text hashes to the pinned hash
SIG = "0x" + "ab" * 65


def finalize_ready_epoch(store):
    store.ensure_epoch(KEY)
    store.add_pool_component(KEY, "base_issuance", 100, algorithm_version="policy-v1")
    store.enter_review(KEY, POLICY_TEXT, PHASH, ["0x" + "1" * 40])
    store.record_approval(KEY, allocation_set_hash="e" * 64, policy_hash=PHASH, pool_total=100, message="m", signer="0x" + "1" * 40, signature=SIG)
    bundle = {"statement_hash": "d" * 64, "allocation_set_hash": "e" * 64, "pool": {"total": 100}, "payouts": [],
              "epoch": {"key": KEY}, "revision": 1, "supersedes": None}
    return store.finalize(KEY, lambda conn, epoch, revision, at: bundle)


def test_epoch_status_forward_only_and_pinned_policy(store):
    store.ensure_epoch(KEY)
    with pytest.raises(sa.exc.IntegrityError):  # review without a pinned policy
        with store.transaction() as conn:
            conn.exec_driver_sql(f"UPDATE epochs SET status = 'review' WHERE epoch_key = '{KEY}'")
    epoch = store.enter_review(KEY, POLICY_TEXT, PHASH, ["0x" + "1" * 40])
    assert epoch.status == "review" and epoch.policy_hash == PHASH
    assert store.enter_review(KEY, canonical_json({"other": 1}), "0" * 64, []).policy_hash == PHASH  # idempotent, never re-pinned
    for sql, message in [
        (f"UPDATE epochs SET status = 'open' WHERE epoch_key = '{KEY}'", "cannot move back from review to open"),
        (f"UPDATE epochs SET policy_hash = '{'0' * 64}' WHERE epoch_key = '{KEY}'", "pinned policy"),
        (f"DELETE FROM epochs WHERE epoch_key = '{KEY}'", "cannot be deleted"),
    ]:
        with pytest.raises(sa.exc.DBAPIError, match=message):
            with store.transaction() as conn:
                conn.exec_driver_sql(sql)


def test_finalize_writes_once_and_freezes_the_epoch(store):
    event = pr_event(1, START)
    store.record_page([event], None)
    store.ensure_epoch(KEY)
    store.curate(KEY, [CurationProposal(event.event_id, "alice", "bound")])
    store.upsert_allocations(KEY, [ProposedAllocation("alice", 8000, 1)], "weight-sum-v1")
    bundle, written = finalize_ready_epoch(store)
    assert written and store.get_epoch(KEY).status == "finalized"
    again, written_again = store.finalize(KEY, lambda conn, epoch, revision, at: pytest.fail("must not rebuild") if revision == 1 else None)
    assert not written_again and again == bundle
    assert store.statement(KEY) == bundle
    frozen = [
        lambda: store.curate(KEY, [CurationProposal(event.event_id, "bob", "bound")]),
        lambda: store.upsert_allocations(KEY, [ProposedAllocation("alice", 1, 1)], "weight-sum-v1"),
        lambda: store.add_pool_component(KEY, "top_up", 5, algorithm_version="x"),
    ]
    for attempt in frozen:
        with pytest.raises(sa.exc.DBAPIError, match="is finalized"):
            attempt()
    with pytest.raises(EpochStateError, match="is finalized"):
        store.adjust_allocation(KEY, "alice", 1, "late fix", actor="admin")
    with pytest.raises(EpochStateError, match="revision 1 is approved only while it is review"):
        store.record_approval(KEY, allocation_set_hash="e" * 64, policy_hash=PHASH, pool_total=100, message="m", signer="0x" + "1" * 40, signature="0x" + "cd" * 65)
    for sql in ["UPDATE payout_statements SET pool_total = 1", "DELETE FROM payout_statements"]:
        with pytest.raises(sa.exc.DBAPIError, match="payout_statements is append-only"):
            with store.transaction() as conn:
                conn.exec_driver_sql(sql)
    with pytest.raises(sa.exc.DBAPIError, match="finalized and frozen"):
        with store.transaction() as conn:
            conn.exec_driver_sql(f"UPDATE epochs SET completeness = '{{}}' WHERE epoch_key = '{KEY}'")


def test_finalize_refuses_an_open_epoch(store):
    store.ensure_epoch(KEY)
    with pytest.raises(EpochStateError, match="only an epoch in review can be finalized"):
        store.finalize(KEY, lambda conn, epoch, revision, at: {})


def test_approvals_are_append_only_and_unique(store):
    store.ensure_epoch(KEY)
    store.enter_review(KEY, POLICY_TEXT, PHASH, ["0x" + "1" * 40])
    args = dict(allocation_set_hash="e" * 64, policy_hash=PHASH, pool_total=100, message="m", signer="0x" + "1" * 40, signature=SIG)
    store.record_approval(KEY, **args)
    with pytest.raises(LedgerError, match="already approved"):
        store.record_approval(KEY, **args)
    with pytest.raises(sa.exc.DBAPIError, match="epoch_approvals is append-only"):
        with store.transaction() as conn:
            conn.exec_driver_sql("DELETE FROM epoch_approvals")


def test_identity_bindings_are_logged_and_never_silently_repointed(store):
    assert store.bind("github", "583231", "alice", actor="admin", evidence={"gist": "https://gist.github.com/x"})
    assert not store.bind("github", "583231", "alice", actor="admin")
    with pytest.raises(IdentityConflict, match="already bound to alice; revoke that binding first"):
        store.bind("github", "583231", "bob", actor="admin")
    assert store.bindings() == {("github", "583231"): "alice"}
    assert store.revoke("github", "583231", actor="admin") == "alice"
    assert store.bind("github", "583231", "bob", actor="admin")
    assert [(e["action"], e["user_id"]) for e in store.identity_log()] == [("bind", "alice"), ("revoke", "alice"), ("bind", "bob")]
    with pytest.raises(sa.exc.DBAPIError, match="identity_events is append-only"):
        with store.transaction() as conn:
            conn.exec_driver_sql("DELETE FROM identity_events")
    with pytest.raises(sa.exc.IntegrityError):
        with store.transaction() as conn:
            conn.exec_driver_sql("INSERT INTO identity_events (action, provider, external_id, user_id) VALUES ('bind', 'github', 'octocat', 'x')")


def test_merging_people_moves_every_account_and_logs_it(store):
    store.bind("github", "1", "alice-old")
    store.bind("discord", "99", "alice-old")
    store.bind("github", "2", "alice")
    assert store.merge_users("alice-old", "alice", actor="admin", evidence={"note": "same person"}) == 2
    assert set(store.bindings().values()) == {"alice"}
    merges = [(e["provider"], e["previous_user_id"], e["user_id"]) for e in store.identity_log() if e["action"] == "merge"]
    assert sorted(merges) == [("discord", "alice-old", "alice"), ("github", "alice-old", "alice")]
    with pytest.raises(LedgerError, match="no bound accounts"):
        store.merge_users("alice-old", "alice")


def test_open_runs_migrations_on_a_url(ledger_url):
    store = LedgerStore.open(ledger_url)
    assert store.list_epochs() == []
