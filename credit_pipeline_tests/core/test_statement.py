import copy
import json
from pathlib import Path
from datetime import UTC, datetime

import pytest

from credit_pipeline.core.canonical import canonical_json
from credit_pipeline.core.hashing import address_of, approval_message, sign_message
from credit_pipeline.core.policy import parse_policy
from credit_pipeline.core.statement import build_statement, statement_bytes, verify_bundle

from credit_pipeline_tests.core.test_policy import SPEC_POLICY

KEY = "0x" + "4c" * 32
OTHER_KEY = "0x" + "5d" * 32


V1_BUNDLE = Path(__file__).parent / "data" / "statement_v1.json"


def make_bundle(signing_key=KEY, approvers=None):
    """A statement finalized under bundle format v1 (written by the v1 code, kept as bytes); or, to
    sign with another key, a v2 bundle built now."""
    if signing_key == KEY and approvers is None:
        return json.loads(V1_BUNDLE.read_bytes())
    from credit_pipeline_tests.core.test_statement_v2 import make

    return make(signing_key=signing_key)


def test_bundle_recomputes_and_verifies():
    bundle = make_bundle()
    report = verify_bundle(bundle)
    assert report.ok, report.mismatch
    assert [(p["recipient_id"], p["amount_credits"]) for p in bundle["payouts"]] == [("alice", 6838), ("bob", 2564), ("discord:3", 598)]
    assert sum(p["amount_credits"] for p in bundle["payouts"]) == 10000
    assert bundle["epoch"] == {"key": "2026-02-16", "start": "2026-02-16T00:00:00Z", "end": "2026-02-23T00:00:00Z", "finalized_at": "2026-02-23T10:00:00Z"}


def test_bundle_survives_a_json_round_trip_byte_for_byte():
    bundle = make_bundle()
    again = json.loads(statement_bytes(bundle))
    assert statement_bytes(again) == statement_bytes(bundle)
    assert verify_bundle(again).ok


def test_every_single_byte_change_is_caught():
    raw = statement_bytes(make_bundle())
    caught = 0
    # Flip each digit of the serialized bundle in turn (a representative sample of positions).
    positions = [i for i, ch in enumerate(raw.decode()) if ch.isdigit()][::7]
    for i in positions:
        text = raw.decode()
        flipped = text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :]
        try:
            tampered = json.loads(flipped)
        except json.JSONDecodeError:
            caught += 1
            continue
        assert not verify_bundle(tampered).ok, f"change at byte {i} not caught: {text[max(0, i - 30):i + 10]}"
        caught += 1
    assert caught == len(positions) > 50


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda b: b["payouts"][0].__setitem__("amount_credits", 6837), "payouts[recipient_id=alice].amount_credits: statement says 6837"),
        (lambda b: b["events"][1].__setitem__("weight", 9000), "events[event_id=github:pr:acme/widgets:1].weight: statement says 9000"),
        (lambda b: b["allocations"][1].__setitem__("reason", None), "without a reason"),
        (lambda b: b["pool"]["components"][0].__setitem__("amount", 20000), "pool.total: statement says 10000, recomputed 20000"),
        (lambda b: b["policy"]["weights"].__setitem__("github:pr_merged", 9000), "policy_hash"),
    ],
)
def test_mismatch_names_what_differs_even_with_a_fresh_statement_hash(mutate, expected):
    from credit_pipeline.core.canonical import canonical_hash

    bundle = copy.deepcopy(make_bundle())
    mutate(bundle)
    bundle["statement_hash"] = canonical_hash({k: v for k, v in bundle.items() if k != "statement_hash"})
    report = verify_bundle(bundle)
    assert not report.ok and expected in report.mismatch


def test_signer_outside_the_pinned_approvers_fails():
    report = verify_bundle(make_bundle(signing_key=OTHER_KEY, approvers=address_of(KEY)))
    assert not report.ok and "not in the pinned approvers" in report.mismatch


def test_malformed_bundle_is_reported_not_raised():
    report = verify_bundle({"format": "credit_pipeline.statement.v1"})
    assert not report.ok and report.mismatch


def test_canonical_json_rules():
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == '{"a":{"c":"é","d":[1,2]},"b":1}'
    assert canonical_json({"big": 2**64 + 1}) == '{"big":18446744073709551617}'
