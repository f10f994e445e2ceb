"""One week through the plain-Python stages on a real PostgreSQL: resolve, allocate,
review, approve, finalize, verify, and what each refuses."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from credit_pipeline.core.events import ActivityEvent, discord_message_event_id
from credit_pipeline.core.hashing import address_of, approval_message, sign_message
from credit_pipeline.core.policy import parse_policy
from credit_pipeline.core.statement import statement_bytes, verify_bundle
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
from credit_pipeline.stages.approve import ApprovalRefused, approve_epoch
from credit_pipeline.stages.finalize import FinalizeRefused, finalize_epoch
from credit_pipeline.stages.resolve import resolve_epoch
from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

from credit_pipeline_tests.core.test_policy import SPEC_POLICY
from credit_pipeline_tests.ledger.factories import pr_event

KEY = "2026-02-16"
START = datetime(2026, 2, 16, tzinfo=UTC)
END = START + timedelta(days=7)
AFTER = END + timedelta(hours=6)
APPROVER_KEY = "0x" + "4c" * 32
STRANGER_KEY = "0x" + "5d" * 32
POLICY = parse_policy(SPEC_POLICY.replace("0x1111111111111111111111111111111111111111", address_of(APPROVER_KEY)))


def snowflake(when: datetime, sequence: int) -> int:
    """A real Discord snowflake for ``when`` (ids of 2026 are far above 2^53)."""
    return ((int(when.timestamp() * 1000) - 1420070400000) << 22) | sequence


def message_event(sequence: int, when: datetime, author: str, bot: bool = False) -> ActivityEvent:
    mid = snowflake(when, sequence)
    return ActivityEvent(
        event_id=discord_message_event_id("81384788765712384", "381870553235193857", mid), source="discord",
        event_type="message_sent", platform_user_id=author, platform_login=f"u{author}", is_bot=bot, event_time=when,
        payload={"id": str(mid), "type": 0, "content": "hello", "author": {"id": author, "username": f"u{author}", "bot": bot}}, producer="test", producer_version="1", retrieved_at=AFTER,
    )


@pytest.fixture
def week(store):
    events = [
        pr_event(1, START, user_id="100", login="alice-old"),  # exactly at start: in this epoch
        pr_event(2, START + timedelta(days=3), user_id="100", login="alice"),  # renamed, same numeric id
        pr_event(3, START + timedelta(days=4), user_id="200", login="bob"),
        pr_event(4, START + timedelta(days=5), user_id="49699333", login="dependabot[bot]"),
        pr_event(5, START + timedelta(days=5), user_id=None, login="ghost"),
        pr_event(6, END, user_id="200", login="bob"),  # exactly at end: next epoch
        message_event(1, START + timedelta(days=1), "300"),
        message_event(2, START + timedelta(days=1), "999", bot=True),
    ]
    store.record_page(events, None)
    return events


def ready_for_review(store, shortfall: int = 0):
    """Record a final collection after the window closed for every stream of the policy."""
    from credit_pipeline.stages.sources_config import policy_streams

    store.ensure_epoch(KEY)
    checked = {str(ref): {"stored": 5, "source": 5 + shortfall, "shortfall": shortfall, "checked_at": AFTER.isoformat()}
               for ref in policy_streams(POLICY)}
    store.record_completeness(KEY, checked, AFTER)


def test_resolution_claimants_then_bindings(store, week):
    report = resolve_epoch(store, KEY, POLICY)
    assert report.events_in_window == 7 and report.curated == 7
    assert report.by_resolution["claimant"] == 4 and report.by_resolution["bot"] == 2 and report.by_resolution["unattributable"] == 1
    top = report.unresolved[0]
    assert (top.provider, top.external_id, top.login, top.events, top.weight) == ("github", "100", "alice", 2, 16000)
    store.bind("github", "100", "alice")
    again = resolve_epoch(store, KEY, POLICY)
    assert again.written == 2 and again.resolved == 2
    assert resolve_epoch(store, KEY, POLICY).written == 0  # nothing changed: nothing written


def test_open_epoch_does_not_enter_review_until_closed_and_collected(store, week):
    resolve_epoch(store, KEY, POLICY)
    during = allocate_epoch(store, KEY, POLICY, now=START + timedelta(days=2))
    assert during.state.status == "open" and not during.entered_review
    assert any("window is still open" in b for b in during.review_blocked)
    after = allocate_epoch(store, KEY, POLICY, now=AFTER)
    assert any("final collection" in b and "discord:messages:381870553235193858" in b for b in after.review_blocked)
    partial = {"github:pull_requests:acme/widgets": {"stored": 1, "source": 1, "shortfall": 0, "checked_at": AFTER.isoformat()}}
    store.record_completeness(KEY, partial, AFTER)
    assert not allocate_epoch(store, KEY, POLICY, now=AFTER).entered_review  # one stream is not enough
    ready_for_review(store)
    done = allocate_epoch(store, KEY, POLICY, now=AFTER)
    assert done.entered_review and done.state.status == "review" and done.state.pool_total == 10000
    assert done.state.final_units == {"discord:300": 500, "github:100": 16000, "github:200": 8000}
    epoch = store.get_epoch(KEY)
    assert epoch.policy_hash == POLICY.policy_hash and epoch.approvers == [address_of(APPROVER_KEY)]


def test_completeness_shortfall_blocks_review_until_waived(store, week):
    resolve_epoch(store, KEY, POLICY)
    ready_for_review(store, shortfall=1)
    blocked = allocate_epoch(store, KEY, POLICY, now=AFTER)
    assert not blocked.entered_review and "completeness shortfall" in blocked.review_blocked[0]
    store.waive_completeness(KEY, "admin", "PR 5 was deleted upstream")
    assert allocate_epoch(store, KEY, POLICY, now=AFTER).entered_review


def reviewed_epoch(store):
    resolve_epoch(store, KEY, POLICY)
    ready_for_review(store)
    return allocate_epoch(store, KEY, POLICY, now=AFTER).state


def test_approve_finalize_verify(store, week):
    state = reviewed_epoch(store)
    with pytest.raises(FinalizeRefused, match="no valid approval"):
        finalize_epoch(store, KEY)
    record = approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), POLICY)
    assert record.signer == address_of(APPROVER_KEY)
    result = finalize_epoch(store, KEY)
    assert result.written
    payouts = {p["recipient_id"]: p["amount_credits"] for p in result.bundle["payouts"]}
    assert payouts == {"discord:300": 204, "github:100": 6531, "github:200": 3265} and sum(payouts.values()) == 10000
    assert {e["event_id"] for e in result.bundle["events"]} == {
        "github:pr:acme/widgets:1", "github:pr:acme/widgets:2", "github:pr:acme/widgets:3", discord_message_event_id("81384788765712384", "381870553235193857", snowflake(START + timedelta(days=1), 1))}
    again = finalize_epoch(store, KEY)
    assert not again.written and again.statement_hash == result.statement_hash
    assert verify_stored(store, KEY).ok
    exported = statement_bytes(result.bundle)
    assert verify_file_bytes(exported).ok
    assert store.statement_text(KEY).encode() == exported
    # A binding added after finalization never changes the finalized epoch.
    store.bind("github", "200", "bob")
    report = resolve_epoch(store, KEY, POLICY)
    assert report.written == 0 and report.by_resolution["claimant"] == 4
    assert verify_stored(store, KEY).ok


def test_fixed_times_stamp_the_statement_and_naive_times_are_refused(store, week):
    """approve_epoch(approved_at=) and finalize_epoch(issued_at=) stamp exactly those times (a replayed week writes
    the same bytes); a time without a zone is refused before anything is written."""
    from credit_pipeline.ledger.records import LedgerError

    state = reviewed_epoch(store)
    signature = sign_message(state.approval_message, APPROVER_KEY)
    with pytest.raises(LedgerError, match="approved_at must be a datetime with a time zone"):
        approve_epoch(store, KEY, state.allocation_set_hash, signature, POLICY, approved_at=datetime(2026, 2, 24, 9))
    assert store.approvals(KEY) == []
    approve_epoch(store, KEY, state.allocation_set_hash, signature, POLICY, approved_at=datetime(2026, 2, 24, 9, tzinfo=UTC))
    with pytest.raises(LedgerError, match="issued_at must be a datetime with a time zone"):
        finalize_epoch(store, KEY, issued_at=datetime(2026, 2, 24, 10))
    assert store.statement_text(KEY) is None and store.get_epoch(KEY).status == "review"
    bundle = finalize_epoch(store, KEY, issued_at=datetime(2026, 2, 24, 10, tzinfo=UTC)).bundle
    assert bundle["issued_at"] == bundle["epoch"]["finalized_at"] == "2026-02-24T10:00:00Z"
    assert [a["approved_at"] for a in bundle["approvals"]] == ["2026-02-24T09:00:00Z"]
    assert verify_stored(store, KEY).ok


def test_approval_refusals_write_nothing(store, week):
    state = reviewed_epoch(store)
    good = sign_message(state.approval_message, APPROVER_KEY)
    other_epoch_sig = sign_message(approval_message("2026-02-23", state.policy_hash, state.allocation_set_hash, state.pool_total), APPROVER_KEY)
    cases = [
        (KEY, "0" * 64, good, "current allocation set"),
        (KEY, state.allocation_set_hash, sign_message(state.approval_message, STRANGER_KEY), "not an approver pinned on epoch"),
        (KEY, state.allocation_set_hash, other_epoch_sig, "not an approver pinned on epoch"),
        (KEY, state.allocation_set_hash, "0xdeadbeef", "cannot be recovered"),
        ("2026-02-23", state.allocation_set_hash, good, "does not exist"),
    ]
    for key, ahash, signature, message in cases:
        with pytest.raises(ApprovalRefused, match=message):
            approve_epoch(store, key, ahash, signature, POLICY)
    store.ensure_epoch("2026-02-23")
    with pytest.raises(ApprovalRefused, match="is open, not in review"):
        approve_epoch(store, "2026-02-23", state.allocation_set_hash, good, POLICY)
    assert store.approvals(KEY) == []


def test_an_approver_added_to_the_policy_later_is_not_pinned_on_the_epoch(store, week):
    state = reviewed_epoch(store)
    later = parse_policy(SPEC_POLICY.replace("0x1111111111111111111111111111111111111111", address_of(STRANGER_KEY)))
    with pytest.raises(ApprovalRefused, match="not an approver pinned on epoch"):
        approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, STRANGER_KEY), later)
    assert store.approvals(KEY) == []
    assert approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), later).signer == address_of(APPROVER_KEY)


def test_an_adjustment_after_approval_invalidates_it(store, week):
    state = reviewed_epoch(store)
    approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), POLICY)
    store.adjust_allocation(KEY, "github:200", 9000, "reviewed the release too", actor="admin")
    with pytest.raises(FinalizeRefused, match="no valid approval for revision 1 of its allocation set"):
        finalize_epoch(store, KEY)
    fresh = allocation_state(store, KEY, POLICY)
    approve_epoch(store, KEY, fresh.allocation_set_hash, sign_message(fresh.approval_message, APPROVER_KEY), POLICY)
    bundle = finalize_epoch(store, KEY).bundle
    assert [a for a in bundle["allocations"] if a["recipient_id"] == "github:200"][0]["reason"] == "reviewed the release too"
    assert len(bundle["approvals"]) == 1 and verify_bundle(bundle).ok


def test_late_events_for_a_reviewed_epoch_are_recorded_not_curated(store, week):
    reviewed_epoch(store)
    late = pr_event(99, START + timedelta(days=6), user_id="200", login="bob")
    store.record_page([late], None)
    report = resolve_epoch(store, KEY, POLICY)
    assert report.late_events == [late.event_id] and report.curated == 7


def test_concurrent_finalize_writes_one_statement(store, week):
    state = reviewed_epoch(store)
    approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), POLICY)
    results, barrier = [], threading.Barrier(4)

    def run():
        barrier.wait()
        results.append(finalize_epoch(store, KEY))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.written for r in results) == [False, False, False, True]
    assert len({r.statement_hash for r in results}) == 1
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM payout_statements").scalar() == 1


def test_tampered_stored_statement_fails_verification(store, week):
    state = reviewed_epoch(store)
    approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), POLICY)
    bundle = finalize_epoch(store, KEY).bundle
    tampered = json.loads(statement_bytes(bundle))
    tampered["payouts"][0]["amount_credits"] += 1
    report = verify_file_bytes(json.dumps(tampered).encode())
    assert not report.ok and report.mismatch.startswith("payouts[recipient_id=discord:300].amount_credits: statement says 205, recomputed 204")
