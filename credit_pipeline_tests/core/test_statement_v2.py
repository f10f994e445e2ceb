"""The v2 statement bundle: built from rows, verified from itself, semantic FAILs first, v1 still verifies."""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.hashing import address_of, allocation_set_hash, approval_message, sign_message
from credit_pipeline.core.policy import parse_policy
from credit_pipeline.core.statement import build_statement, statement_bytes, verify_bundle
from credit_pipeline.core.verification import Expectations, first_difference

from credit_pipeline_tests.core.test_policy import SPEC_POLICY

KEY = "0x" + "4c" * 32
LEDGER = "5b0e8a4c-2f1d-4c3e-9a7b-6d5e4f3a2b1c"
EPOCH = "2026-02-16"
V1 = Path(__file__).parent / "data" / "statement_v1.json"


def policy():
    return parse_policy(SPEC_POLICY.replace("0x1111111111111111111111111111111111111111", address_of(KEY)))


def event(eid, recipient, user, when="2026-02-17T10:00:00Z", resolution="bound", override=None):
    source = eid.split(":")[0]
    return {"event_id": eid, "source": source, "event_type": "pr_merged" if source == "github" else "message_sent",
            "platform_user_id": user, "platform_login": f"u{user}", "event_time": datetime.fromisoformat(when.replace("Z", "+00:00")),
            "recipient_id": recipient, "resolution": resolution, "weight_override": override, "payload_hash": "a" * 64,
            "note": None, "curated_by": None, "curated_at": None}


def make(revision=1, supersedes=None, corrections=(), signing_key=KEY, pool=10000):
    p = policy()
    events = [event("github:pr:acme/widgets:1", "alice", "1"), event("github:pr:acme/widgets:2", "github:2", "2", resolution="claimant"),
              event("discord:message:1:2:3", "alice", "9", override=700)]
    allocations = [{"recipient_id": "alice", "proposed_units": 8700, "activity_count": 2, "final_units": None, "reason": None},
                   {"recipient_id": "github:2", "proposed_units": 8000, "activity_count": 1, "final_units": 6000, "reason": "shared work",
                    "adjusted_by": "admin", "adjusted_at": datetime(2026, 2, 24, tzinfo=UTC)}]
    finals = {"alice": 8700, "github:2": 6000}
    for c in corrections:
        finals[c["recipient_id"]] = c["final_units"]
    ahash = allocation_set_hash(finals)
    message = approval_message(EPOCH, p.policy_hash, ahash, pool, ledger_id=LEDGER, revision=revision, supersedes=supersedes)
    approvals = [{"signer": address_of(signing_key), "signature": sign_message(message, signing_key), "approved_at": datetime(2026, 2, 24, 9, tzinfo=UTC)}]
    return build_statement(
        ledger_id=LEDGER, epoch_key=EPOCH, revision=revision, supersedes=supersedes, policy=p.canonical(), policy_hash=p.policy_hash,
        events=events, allocations=allocations, corrections=list(corrections),
        pool_components=[{"component_id": "base_issuance", "amount": pool, "algorithm_version": "v1"}], approvals=approvals,
        finalized_at=datetime(2026, 2, 24, 10, tzinfo=UTC), issued_at=datetime(2026, 2, 24, 10, tzinfo=UTC),
        identity={"through_event_id": 3, "events": 3, "log_hash": "c" * 64}, completeness=None, completeness_waiver=None, wallets={},
    )


def rehash(bundle):
    bundle["statement_hash"] = canonical_hash({k: v for k, v in bundle.items() if k != "statement_hash"})
    return bundle


def test_a_v2_bundle_verifies_and_says_what_it_proved():
    bundle = make()
    report = verify_bundle(bundle)
    assert report.ok, report.mismatch
    assert report.proved["ledger_id"] == LEDGER and report.proved["signers"] == [address_of(KEY)] and report.proved["revision"] == 1
    assert sum(p["amount_credits"] for p in bundle["payouts"]) == 10000
    assert bundle["events"][0]["event_time"] == "2026-02-17T10:00:00Z"


def test_a_statement_finalized_under_v1_still_verifies():
    report = verify_bundle(json.loads(V1.read_bytes()))
    assert report.ok, report.mismatch
    assert report.proved["ledger_id"] is None and report.proved["revision"] == 1


def test_the_first_semantic_difference_is_named_before_the_hash():
    bundle = json.loads(statement_bytes(make()))
    bundle["payouts"][0]["amount_credits"] += 1
    assert "payouts[recipient_id=alice].amount_credits: statement says" in verify_bundle(bundle).mismatch
    bundle = json.loads(statement_bytes(make()))
    bundle["events"][1]["weight"] = 1  # events are sorted by id: discord:…, github:pr:…:1, github:pr:…:2
    assert "events[event_id=github:pr:acme/widgets:1].weight: statement says 1, recomputed 8000" in verify_bundle(bundle).mismatch
    bundle = json.loads(statement_bytes(make()))
    bundle["identity"]["log_hash"] = "d" * 64
    assert "statement_hash" in verify_bundle(bundle).mismatch  # covered by the hash only


@pytest.mark.parametrize("mutate, named", [
    (lambda b: b["events"][0].update(event_time="2026-02-23T00:00:00Z"), "outside the epoch"),
    (lambda b: b["events"][0].update(event_time="2026-02-15T23:59:59.999Z"), "outside the epoch"),
    (lambda b: b["events"][2].update(recipient_id="github:3"), "claimant is paid as github:2"),
    (lambda b: b["events"][0].update(recipient_id="alice\nbob:5"), "recipient"),
    (lambda b: b["allocations"][1].update(reason=None), "without a reason"),
    (lambda b: b.update(ledger_id="not-a-uuid"), "ledger_id"),
    (lambda b: b.update(revision=2), "supersedes"),
    (lambda b: b["policy"].update(unresolved="exclude"), "policy_hash"),
])
def test_inconsistent_bundles_fail_naming_the_part(mutate, named):
    bundle = json.loads(statement_bytes(make()))
    mutate(bundle)
    report = verify_bundle(rehash(bundle))
    assert not report.ok and named in report.mismatch, report.mismatch


def test_a_signature_over_another_ledger_or_revision_fails():
    bundle = make()
    other = approval_message(EPOCH, bundle["policy_hash"], bundle["allocation_set_hash"], 10000,
                             ledger_id="00000000-0000-4000-8000-000000000000", revision=1)
    forged = copy.deepcopy(bundle)
    forged["approvals"][0]["signature"] = sign_message(other, KEY)
    report = verify_bundle(rehash(forged))
    assert not report.ok and "approvals[signature=" in report.mismatch and "recovers to" in report.mismatch


def test_corrections_are_checked_against_the_final_units():
    first = make()
    correction = {"revision": 2, "recipient_id": "github:2", "final_units": 7000, "reason": "missed review", "corrected_by": "admin",
                  "corrected_at": datetime(2026, 3, 1, tzinfo=UTC)}
    second = make(revision=2, supersedes=first["statement_hash"], corrections=[correction])
    assert verify_bundle(second).ok, verify_bundle(second).mismatch
    line = {a["recipient_id"]: a for a in second["allocations"]}["github:2"]
    assert (line["final_units"], line["reason"], line["corrected_in"]) == (7000, "missed review", 2)
    bad = json.loads(statement_bytes(second))
    bad["corrections"][0]["final_units"] = 7001
    assert "correction of revision 2" in verify_bundle(rehash(bad)).mismatch


def test_expectations_are_trust_anchors():
    bundle = make()
    assert verify_bundle(bundle, Expectations.of([address_of(KEY)], bundle["policy_hash"], LEDGER)).ok
    assert "do not expect" in verify_bundle(bundle, Expectations.of(["0x" + "22" * 20])).mismatch
    assert "policy hash" in verify_bundle(bundle, Expectations.of(policy_hash="0" * 64)).mismatch
    assert "ledger id" in verify_bundle(bundle, Expectations.of(ledger_id="00000000-0000-4000-8000-000000000000")).mismatch


def test_first_difference_names_the_row_and_field():
    a = {"events": [{"event_id": "x", "note": "a"}, {"event_id": "y", "note": "b"}], "pool": {"total": 1}}
    b = copy.deepcopy(a)
    b["events"][1]["note"] = "c"
    assert first_difference(a, b) == 'events[event_id=y].note: statement says "b", ledger rows give "c"'
    b = copy.deepcopy(a)
    del b["events"][0]
    assert first_difference(a, b) == "events[event_id=x]: statement has this line; the ledger rows have none"
    assert first_difference(a, copy.deepcopy(a)) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["statement_hash", "policy_hash", "allocation_set_hash", "ledger_id", "revision"]),
                          st.text(min_size=1, max_size=5)), min_size=1, max_size=3))
def test_any_changed_top_level_value_fails(changes):
    bundle = json.loads(statement_bytes(make()))
    original = copy.deepcopy(bundle)
    for key, value in changes:
        bundle[key] = value
    if bundle != original:
        assert not verify_bundle(bundle).ok
