from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from credit_pipeline.core.events import (
    ActivityEvent,
    discord_message_event_id,
    github_issue_event_id,
    github_pr_event_id,
    github_review_event_id,
    payload_hash,
)


def test_deterministic_ids():
    assert github_pr_event_id("acme/widgets", 12) == "github:pr:acme/widgets:12"
    assert github_review_event_id("acme/widgets", 12, 80) == "github:review:acme/widgets:12:80"
    assert github_issue_event_id("acme/docs", 3) == "github:issue:acme/docs:3"
    big = 2**60 + 7
    assert discord_message_event_id("81384788765712384", 381870553235193857, str(big)) == f"discord:message:81384788765712384:381870553235193857:{big}"


def test_payload_hash_is_sha256_of_canonical_json():
    # sha256 of '{"a":1,"b":"é"}'
    import hashlib

    assert payload_hash({"b": "é", "a": 1}) == hashlib.sha256('{"a":1,"b":"é"}'.encode()).hexdigest()


def make(**kw):
    base = dict(
        event_id="github:pr:acme/widgets:1",
        source="github",
        event_type="pr_merged",
        platform_user_id="583231",
        platform_login="octocat",
        event_time=datetime(2026, 2, 16, 1, tzinfo=timezone(timedelta(hours=1))),
        payload={"number": 1},
        producer="test",
        producer_version="1",
        retrieved_at=datetime(2026, 2, 17, tzinfo=UTC),
    )
    return ActivityEvent(**{**base, **kw})


def test_event_fills_and_checks_its_hash_and_normalizes_time():
    event = make()
    assert event.payload_hash == payload_hash({"number": 1})
    assert event.event_time == datetime(2026, 2, 16, 0, tzinfo=UTC)
    assert event.account_key == "github:583231"
    with pytest.raises(ValidationError, match="hashes to"):
        make(payload_hash="0" * 64)


def test_event_refuses_bad_ids():
    with pytest.raises(ValidationError, match="numeric id"):
        make(platform_user_id="octocat")
    with pytest.raises(ValidationError, match="does not start with its source"):
        make(event_id="discord:message:1:2:3")
    assert make(platform_user_id=None).account_key is None
