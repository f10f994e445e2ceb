"""The generator: determinism, the named edge cases, and what the ground truth counts."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credit_pipeline.sandbox import GHOST_ID, generate_org
from credit_pipeline.sandbox.ids import DISCORD_EPOCH_MS, snowflake_ms, time_snowflake, to_ms

UTC = timezone.utc
WEEK1 = (datetime(2026, 2, 16, tzinfo=UTC), datetime(2026, 2, 23, tzinfo=UTC))
WEEK2 = (datetime(2026, 2, 23, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


@pytest.fixture(scope="module")
def org():
    return generate_org(seed=7)


def test_generation_is_deterministic_for_a_seed() -> None:
    assert generate_org(seed=3).fingerprint() == generate_org(seed=3).fingerprint()
    assert generate_org(seed=3).fingerprint() != generate_org(seed=4).fingerprint()
    assert generate_org(seed=3).scenario == generate_org(seed=3).scenario


def test_week_start_must_be_a_monday_midnight() -> None:
    with pytest.raises(ValueError, match="Monday"):
        generate_org(week_start=datetime(2026, 2, 17, tzinfo=UTC))


def test_benchmark_scale_builds_in_seconds() -> None:
    started = time.perf_counter()
    big = generate_org(repos=10, prs_per_repo=200, reviews_per_pr=3, channels=10, messages_per_channel=5000)
    elapsed = time.perf_counter() - started
    stats = big.stats()
    assert stats["merged_pulls"] >= 2000 and stats["reviews"] >= 6000 and stats["messages"] >= 50_000
    assert elapsed < 5


@pytest.mark.parametrize("kind", ["pr_merged", "review", "issue_closed", "message"])
def test_items_on_a_boundary_belong_to_the_window_that_starts_there(org, kind: str) -> None:
    name = {"pr_merged": "pr_merged_at_boundary", "review": "review_at_boundary",
            "issue_closed": "issue_closed_at_boundary", "message": "message_at_boundary"}[kind]
    week1, week2 = org.ground_truth(*WEEK1), org.ground_truth(*WEEK2)
    at_start, at_middle = org.scenario[f"{name}_0"], org.scenario[f"{name}_1"]
    assert at_start in week1 and at_start not in week2
    assert at_middle in week2 and at_middle not in week1
    assert week1[at_start].event_time == WEEK1[0]
    assert week2[at_middle].event_time == WEEK2[0]


def test_just_before_a_boundary_stays_in_the_earlier_window(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    assert org.scenario["pr_merged_just_before_start"] not in week1
    assert org.scenario["pr_merged_just_before_end"] in week1
    assert org.scenario["message_just_before_start"] not in week1
    assert org.scenario["message_just_before_end"] in week1


def test_windows_partition_the_events(org) -> None:
    first, second = org.ground_truth(*WEEK1), org.ground_truth(*WEEK2)
    both = org.ground_truth(WEEK1[0], WEEK2[1])
    assert not set(first) & set(second)
    assert set(first) | set(second) == set(both)


def test_reviews_count_whatever_the_pr_state_but_pending_never(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    for name in ("review_on_pr_merged_earlier", "review_on_pr_merged_later", "review_on_open_pr",
                 "review_on_closed_unmerged_pr", "dismissed_review"):
        assert org.scenario[name] in week1, name
    assert week1[org.scenario["dismissed_review"]].review_state == "DISMISSED"
    assert org.scenario["pending_review"] not in week1
    pending = [r for repo in org.repos for p in repo.pulls for r in p.reviews if r.state == "PENDING"]
    assert pending and all(r.submitted_at is None for r in pending)
    everything = org.ground_truth(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    assert {e.review_state for e in everything.values() if e.event_type == "review_submitted"} == {
        "APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"}


def test_only_merged_prs_and_real_issues_count(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    assert org.scenario["pr_closed_unmerged"] not in week1
    assert org.scenario["open_issue"] not in week1
    issue_numbers = {(i.repo, i.number) for r in org.repos for i in r.issues}
    for event in week1.values():
        if event.event_type == "issue_closed":
            assert (event.repo, event.number) in issue_numbers  # never a PR listed by /issues
            assert "/issues/" in event.artifact_url


def test_big_pr_has_more_than_100_reviews(org) -> None:
    number = int(org.scenario["big_pr"].rsplit(":", 1)[1])
    big = next(p for p in org.repo("acme/widgets").pulls if p.number == number)
    assert len(big.reviews) > 100


def test_deleted_user_is_ghost_on_rest_items_and_none_on_reviews(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    pr = week1[org.scenario["deleted_user_pr"]]
    assert (pr.platform_user_id, pr.platform_login) == (str(GHOST_ID), "ghost")
    issue = week1[org.scenario["deleted_user_issue"]]
    assert (issue.platform_user_id, issue.platform_login) == ("10137", "ghost")
    closed = week1[org.scenario["deleted_user_closed_issue"]]
    assert (closed.closer_id, closed.closer_login) == ("10137", "ghost")
    review = week1[org.scenario["deleted_user_review"]]
    assert review.platform_user_id is None and review.platform_login is None


def test_renamed_user_keeps_id_and_changes_login_mid_week(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    before, after = week1[org.scenario["renamed_user_pr_before"]], week1[org.scenario["renamed_user_pr_after"]]
    assert before.platform_user_id == after.platform_user_id
    assert (before.platform_login, after.platform_login) == ("kfrost", "kat-frost")
    m_before = week1[org.scenario["renamed_user_message_before"]]
    m_after = week1[org.scenario["renamed_user_message_after"]]
    assert m_before.platform_user_id == m_after.platform_user_id
    assert m_before.platform_login != m_after.platform_login


def test_bots_are_flagged(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    assert week1[org.scenario["bot_pr"]].is_bot and week1[org.scenario["bot_pr"]].platform_login == "dependabot[bot]"
    bot_review = week1[org.scenario["bot_review"]]
    assert bot_review.is_bot and bot_review.platform_login == "copilot-pull-request-reviewer"  # GraphQL login
    assert week1[org.scenario["bot_message"]].is_bot
    assert "dependabot[bot]" in org.bot_accounts()["github"]


def test_issue_closed_by_someone_else_records_the_closer(org) -> None:
    event = org.ground_truth(*WEEK1)[org.scenario["issue_closed_by_other"]]
    assert event.closer_id != event.platform_user_id and event.closer_login == "alice"


def test_snowflakes_are_real_and_above_2_pow_53(org) -> None:
    for channel in org.guild.channels:
        assert channel.message_ids == sorted(channel.message_ids)
        assert len(set(channel.message_ids)) == len(channel.message_ids)
        for message in channel.messages:
            assert message.id > 2**53
            assert snowflake_ms(message.id) == to_ms(message.created_at) and snowflake_ms(message.id) > DISCORD_EPOCH_MS
    boundary = org.ground_truth(*WEEK1)[org.scenario["message_at_boundary_0"]]
    assert int(boundary.message_id) >> 22 == time_snowflake(WEEK1[0]) >> 22


def test_messages_only_from_allow_listed_channels(org) -> None:
    week1 = org.ground_truth(*WEEK1, source="discord")
    allowed = {str(c.id) for c in org.allow_listed_channels}
    assert {e.channel_id for e in week1.values()} == allowed
    assert org.scenario["non_allow_listed_message"] not in week1
    assert org.scenario["hidden_channel_message"] not in week1
    hidden = next(c for c in org.guild.channels if not c.readable)
    assert org.scenario["hidden_channel_message"] in org.ground_truth(*WEEK1, "discord", channels=[hidden.id])


def test_same_millisecond_messages_are_both_present(org) -> None:
    week1 = org.ground_truth(*WEEK1)
    a, b = week1[org.scenario["same_ms_message_a"]], week1[org.scenario["same_ms_message_b"]]
    assert a.event_time == b.event_time and a.message_id != b.message_id


def test_event_ids_follow_the_spec(org) -> None:
    guild = org.guild.id
    for event_id, event in org.ground_truth(*WEEK1).items():
        assert event.event_id == event_id
        if event.event_type == "pr_merged":
            assert event_id == f"github:pr:{event.repo}:{event.number}"
        elif event.event_type == "review_submitted":
            assert event_id == f"github:review:{event.repo}:{event.number}:{event.review_id}"
        elif event.event_type == "issue_closed":
            assert event_id == f"github:issue:{event.repo}:{event.number}"
        else:
            assert event_id == f"discord:message:{guild}:{event.channel_id}:{event.message_id}"
        assert WEEK1[0] <= event.event_time < WEEK1[1]


def test_policy_sources_cover_the_org(org) -> None:
    sources = org.policy_sources()
    assert sources["github"]["repos"] == ["acme/widgets", "acme/docs"]
    assert sources["discord"]["guild_id"] == str(org.guild.id)
    assert sources["discord"]["channels"] == [str(c.id) for c in org.guild.channels if c.allow_listed]
    assert all(isinstance(c, str) for c in sources["discord"]["channels"])


def test_live_activity_is_added_in_order(org) -> None:
    live = generate_org(seed=11)
    at = WEEK1[0] + timedelta(days=6)
    pr = live.add_pull_request("acme/docs", "bob", at - timedelta(hours=3), merged_at=at)
    review = live.add_review("acme/docs", pr.number, "carol", "APPROVED", at - timedelta(hours=1))
    message = live.add_message(live.allow_listed_channels[0].id, "nelly", at)
    truth = live.ground_truth(*WEEK1)
    assert f"github:pr:acme/docs:{pr.number}" in truth
    assert f"github:review:acme/docs:{pr.number}:{review.id}" in truth
    assert truth[f"discord:message:{live.guild.id}:{message.channel_id}:{message.id}"].event_time == at


def _all_times(org) -> list:
    times = []
    for repo in org.repos:
        for pr in repo.pulls:
            times += [t for t in (pr.created_at, pr.updated_at, pr.merged_at, pr.closed_at) if t]
            times += [r.submitted_at or r.created_at for r in pr.reviews]
        times += [t for i in repo.issues for t in (i.created_at, i.updated_at, i.closed_at) if t]
    for channel in org.guild.channels:
        times += [m.created_at for m in channel.messages] + [m.edited_at for m in channel.messages if m.edited_at]
    return times


@settings(max_examples=12, deadline=None)
@given(offset_minutes=st.integers(min_value=0, max_value=5 * 24 * 60))
def test_nothing_happens_after_the_clock_and_the_closed_week_is_the_same(offset_minutes):
    """With ``now`` in the days after a week closed, the org has nothing later than ``now`` (no future
    events or cursors in the demo), and the week itself is exactly what it is without a clock."""
    week = datetime(2026, 11, 23, tzinfo=UTC)
    now = week + timedelta(days=7, minutes=offset_minutes)
    free = generate_org(seed=7, week_start=week, weeks=1)
    clocked = generate_org(seed=7, week_start=week, weeks=1, now=now)
    assert all(t <= now for t in _all_times(clocked))
    assert clocked.ground_truth(week, week + timedelta(days=7)) == free.ground_truth(week, week + timedelta(days=7))
    numbers = sorted(n for repo in clocked.repos for n in [p.number for p in repo.pulls] + [i.number for i in repo.issues])
    per_repo = [sorted([p.number for p in r.pulls] + [i.number for i in r.issues]) for r in clocked.repos]
    assert all(ns == list(range(1, len(ns) + 1)) for ns in per_repo), "numbers stay gapless"
    assert numbers
