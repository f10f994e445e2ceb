"""Hostile items: values PostgreSQL refuses never wedge a stream (issue 8).

A persistent fault rewrites one field of one item on *every* response, as a real API holding such an
item would. Each must be collected (the stream completes, the ledger equals the ground truth), stored
losslessly (the stored payload unwraps to the exact item), credited, and verified from the ledger.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest

from credit_pipeline.core.hashing import address_of, sign_message
from credit_pipeline.core.policy import validate_policy
from credit_pipeline.core.storable import ESCAPED_KEY, MAX_STRING_CHARS, OMITTED_KEY, unwrap_payload
from credit_pipeline.sandbox.faults import Fault
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
from credit_pipeline.stages.approve import approve_epoch
from credit_pipeline.stages.finalize import finalize_epoch
from credit_pipeline.stages.resolve import resolve_epoch
from credit_pipeline.stages.sources_config import build_source
from credit_pipeline.stages.verify import verify_stored

from credit_pipeline_tests.sources.conftest import FAST, after_window, assert_ground_truth, collect, key_of, org_policy

APPROVER_KEY = "0x" + "6e" * 32
HUGE = "z" * (MAX_STRING_CHARS + 1)

DISCORD_CASES = {
    "NUL in content": ("content", "before\x00after"),
    "NUL in display name": ("author.global_name", "ev\x00il"),
    "lone surrogate in content": ("content", "x\ud800y"),
    "lone surrogate in username": ("author.username", "\udfffname"),
    "NaN": ("flags", math.nan),
    "Infinity": ("nonce", math.inf),
    "oversized content": ("content", HUGE),
}
GITHUB_CASES = {
    "NUL in title": ("title", "fix\x00it"),
    "lone surrogate in login": ("user.login", "octo\ud83dcat"),
    "NaN": ("comments", math.nan),
    "oversized body": ("body", HUGE),
}


def _same(a, b) -> bool:
    """Equality where NaN equals NaN (json round trips keep NaN, and NaN != NaN)."""
    return json.dumps(a, allow_nan=True, sort_keys=True) == json.dumps(b, allow_nan=True, sort_keys=True)


def _hostile_events(store, window, source: str):
    rows = store.events_between(*window, source=source)
    payloads = store.payloads([r["event_id"] for r in rows])
    return {eid: p for eid, p in payloads.items() if ESCAPED_KEY in p or OMITTED_KEY in json.dumps(p)}


def _pay_and_verify(store, org, policy) -> dict:
    key = key_of(org)
    now = after_window(org)
    resolve_epoch(store, key, policy)
    allocate_epoch(store, key, policy, now)
    state = allocation_state(store, key, policy)
    assert state.status == "review", state
    approve_epoch(store, key, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), policy)
    result = finalize_epoch(store, key)
    report = verify_stored(store, key)
    assert report.ok, report
    return result.bundle


@pytest.fixture
def paying_policy(org):
    doc = org_policy(org).model_dump(mode="json", exclude_none=True)
    doc["approvers"] = [address_of(APPROVER_KEY)]
    return validate_policy(doc)


@pytest.mark.parametrize("case", DISCORD_CASES)
def test_a_hostile_discord_message_is_stored_losslessly_and_paid(store, sandbox, org, paying_policy, case):
    field, value = DISCORD_CASES[case]
    rule = sandbox.faults.add(Fault.malformed_item(field, value, index=3), server="discord", path=r"/messages$", times=None)
    source = build_source("discord", paying_policy, sandbox.env(), **FAST["discord"])
    report = collect(store, source, org)
    assert rule.fired >= 1 and report.new > 0
    window = org.windows[0]
    assert_ground_truth(store, sandbox, window, "discord")
    hostile = _hostile_events(store, window, "discord")
    assert hostile, "the hostile value reached no stored payload"
    for payload in hostile.values():
        item = unwrap_payload(payload)
        got = item
        for part in field.split("."):
            got = got[part]
        if value is HUGE:
            assert got[OMITTED_KEY]["chars"] == len(HUGE)
        else:
            assert _same(got, value)  # lossless: the exact value comes back
    # A rerun is a no-op (the same escaped payload, nothing new), then the week pays and verifies.
    again = collect(store, build_source("discord", paying_policy, sandbox.env(), **FAST["discord"]), org)
    assert again.new == 0
    for name in ("github",):
        collect(store, build_source(name, paying_policy, sandbox.env(), **FAST[name]), org)
    bundle = _pay_and_verify(store, org, paying_policy)
    credited = {e["event_id"] for e in bundle["events"]}
    assert set(hostile) & credited, "the hostile item was not credited"


@pytest.mark.parametrize("case", GITHUB_CASES)
def test_a_hostile_github_item_is_stored_losslessly_and_paid(store, sandbox, org, paying_policy, case):
    field, value = GITHUB_CASES[case]
    rule = sandbox.faults.add(Fault.malformed_item(field, value, index=2), server="github", path=r"/pulls$", times=None)
    for name in ("github", "discord"):
        collect(store, build_source(name, paying_policy, sandbox.env(), **FAST[name]), org)
    assert rule.fired >= 1
    window = org.windows[0]
    assert_ground_truth(store, sandbox, window, "github")
    hostile = _hostile_events(store, window, "github")
    assert hostile, "the hostile value reached no stored payload"
    logins = {r["event_id"]: r["platform_login"] for r in store.events_between(*window, source="github")}
    for eid, payload in hostile.items():
        item = unwrap_payload(payload)
        got = item
        for part in field.split("."):
            got = got[part]
        assert got[OMITTED_KEY]["chars"] == len(HUGE) if value is HUGE else _same(got, value)
        if field == "user.login":
            assert logins[eid] == "octo\ufffdcat"  # the column is storable; the payload keeps the original
    _pay_and_verify(store, org, paying_policy)


def test_verify_fails_when_an_escaped_payload_is_altered(store, sandbox, org, paying_policy):
    import sqlalchemy as sa

    sandbox.faults.add(Fault.malformed_item("content", "a\x00b", index=0), server="discord", path=r"/messages$", times=None)
    for name in ("github", "discord"):
        collect(store, build_source(name, paying_policy, sandbox.env(), **FAST[name]), org)
    _pay_and_verify(store, org, paying_policy)
    eid = next(iter(_hostile_events(store, org.windows[0], "discord")))
    with store.engine.begin() as conn:  # the owner role bypasses the app role's grants: a tamperer with DB access
        conn.execute(sa.text("ALTER TABLE activity_events DISABLE TRIGGER USER"))
        conn.execute(sa.text("UPDATE activity_events SET payload = jsonb_set(payload, '{json}', to_jsonb(replace(payload->>'json', 'a', 'c'))) "
                             "WHERE event_id = :e"), {"e": eid})
        conn.execute(sa.text("ALTER TABLE activity_events ENABLE TRIGGER USER"))
    report = verify_stored(store, org.windows[0][0].date().isoformat())
    assert not report.ok
