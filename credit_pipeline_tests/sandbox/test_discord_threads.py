"""Threads and forum posts in the Discord sandbox, through unmodified discord.py's HTTP client."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import discord
import pytest

from credit_pipeline.sandbox import SampleOrg, generate_org, start_sandbox
from credit_pipeline.sandbox.model import GUILD_FORUM, PRIVATE_THREAD, PUBLIC_THREAD

from .conftest import DISCORD_TOKEN, run_discord

UTC = timezone.utc
WEEK1 = (datetime(2026, 2, 16, tzinfo=UTC), datetime(2026, 2, 23, tzinfo=UTC))
THREAD_KEYS = {"id", "guild_id", "parent_id", "owner_id", "name", "type", "last_message_id", "message_count",
               "member_count", "rate_limit_per_user", "flags", "total_message_sent", "thread_metadata"}
METADATA_KEYS = {"archived", "auto_archive_duration", "archive_timestamp", "locked", "create_timestamp"}
# generate_org(seed=7) as it was before threads existed (git HEAD without this change).
DEFAULT_FINGERPRINT = "e32b54c03341e2c3bab667a17acec4af69b2e4854a8a29295725cf766061e6f5"
DEFAULT_GROUND_TRUTH = "fcb966e11ff5cf797b9fcd7906cc6a3c68341b245a84a0685d7f694affc2e5fe"


@pytest.fixture(scope="module")
def org() -> SampleOrg:  # overrides conftest's: this module's sandbox serves the org with threads
    return generate_org(seed=7, threads=True)


def thread_id(org: SampleOrg, scenario: str) -> int:
    return int(org.scenario[scenario].split(":")[3])


def message_id(org: SampleOrg, scenario: str) -> int:
    return int(org.scenario[scenario].split(":")[4])


def by_name(org: SampleOrg, name: str):
    return next(t for t in org.guild.threads if t.name == name)


def forum(org: SampleOrg):
    return next(c for c in org.guild.channels if c.type == GUILD_FORUM)


def http(sandbox, call):
    """Run ``call(client.http)`` with a logged-in discord.py client."""
    async def body(client: discord.Client):
        return await call(client.http)

    return run_discord(sandbox, body)


def gt_digest(org: SampleOrg) -> str:
    """Every window's ground truth, without the new ``parent_channel_id`` field (absent before)."""
    out = hashlib.sha256()
    for start, end in org.windows:
        for key, event in org.ground_truth(start, end).items():
            fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "parent_channel_id"}
            out.update(repr((key, sorted(fields.items()))).encode())
    return out.hexdigest()


def test_default_org_is_unchanged_and_has_no_threads() -> None:
    default, explicit = generate_org(seed=7), generate_org(seed=7, threads=False)
    assert default.guild.threads == [] and explicit.guild.threads == []
    assert all(c.type == 0 for c in default.guild.channels)
    assert default.fingerprint() == explicit.fingerprint() == DEFAULT_FINGERPRINT
    assert gt_digest(default) == gt_digest(explicit) == DEFAULT_GROUND_TRUTH
    assert default.scenario == explicit.scenario
    assert not any("thread" in name or "forum" in name for name in default.scenario)
    assert all(e.parent_channel_id is None for e in default.ground_truth(*WEEK1, "discord").values())
    assert default.policy_sources() == explicit.policy_sources()


def test_threads_leave_the_rest_of_the_org_as_it_is(org) -> None:
    default = generate_org(seed=7)
    channels = {c.id: c.messages for c in default.guild.channels}
    assert {c.id: c.messages for c in org.guild.channels if c.type != GUILD_FORUM} == channels
    assert {k: v for k, v in org.scenario.items() if k in default.scenario} == default.scenario
    assert str(forum(org).id) in org.policy_sources()["discord"]["channels"]
    assert forum(org).messages == []


def test_guild_channels_never_list_threads(sandbox, org) -> None:
    listed = http(sandbox, lambda h: h.get_all_guild_channels(org.guild.id))
    ids = {int(c["id"]) for c in listed}
    assert not ids & {t.id for t in org.guild.threads}
    assert next(c for c in listed if int(c["id"]) == forum(org).id)["type"] == GUILD_FORUM


def test_active_threads_are_the_unarchived_ones_the_bot_can_read(sandbox, org) -> None:
    body = http(sandbox, lambda h: h.get_active_threads(org.guild.id))
    assert set(body) == {"threads", "members"} and body["members"] == []
    expected = {t.id for t in org.guild.threads if not t.archived and t.readable}
    assert {int(t["id"]) for t in body["threads"]} == expected
    assert {"release-planning", "midweek-sync", "memes", "dark mode?", "weekly showcase"} == {
        t["name"] for t in body["threads"]}
    assert thread_id(org, "private_thread_message") not in expected
    for item in body["threads"]:
        assert THREAD_KEYS <= set(item) and set(item["thread_metadata"]) >= METADATA_KEYS
        assert all(isinstance(item[k], str) for k in ("id", "guild_id", "parent_id", "owner_id"))
        assert item["thread_metadata"]["archived"] is False and item["type"] == PUBLIC_THREAD
        created = datetime.fromisoformat(item["thread_metadata"]["create_timestamp"])
        assert discord.utils.snowflake_time(int(item["id"])) == created


def test_archived_public_threads_newest_archive_first_and_before_is_exclusive(sandbox, org) -> None:
    main = org.allow_listed_channels[0]
    body = http(sandbox, lambda h: h.get_public_archived_threads(main.id))
    assert set(body) == {"threads", "members", "has_more"} and body["has_more"] is False
    assert [t["name"] for t in body["threads"]] == ["retro", "bug-triage"]  # the private thread is never here
    stamps = [datetime.fromisoformat(t["thread_metadata"]["archive_timestamp"]) for t in body["threads"]]
    assert stamps == [by_name(org, "retro").archive_timestamp, by_name(org, "bug-triage").archive_timestamp]
    assert all(t["thread_metadata"]["archived"] for t in body["threads"])
    exclusive = http(sandbox, lambda h: h.get_public_archived_threads(main.id, before=stamps[0].isoformat()))
    assert [t["name"] for t in exclusive["threads"]] == ["bug-triage"]
    posts = http(sandbox, lambda h: h.get_public_archived_threads(forum(org).id))
    assert [t["name"] for t in posts["threads"]] == ["plugin api"] and posts["threads"][0]["applied_tags"] == []


def test_archived_limit_is_validated(sandbox, org) -> None:
    main = org.allow_listed_channels[0]
    for bad in (1, 101):
        with pytest.raises(discord.HTTPException) as info:
            http(sandbox, lambda h, bad=bad: h.get_public_archived_threads(main.id, limit=bad))
        assert info.value.status == 400 and info.value.code == 50035
    hidden = next(c for c in org.guild.channels if not c.readable)
    with pytest.raises(discord.Forbidden) as info:
        http(sandbox, lambda h: h.get_public_archived_threads(hidden.id))
    assert info.value.code == 50001


def test_thread_messages_page_like_a_channel_and_carry_the_thread_id(sandbox, org) -> None:
    thread = by_name(org, "release-planning")
    page = http(sandbox, lambda h: h.logs_from(thread.id, 100))
    assert [int(m["id"]) for m in page] == list(reversed(thread.message_ids))
    assert {m["channel_id"] for m in page} == {str(thread.id)}
    after = http(sandbox, lambda h: h.logs_from(thread.id, 2, after=thread.message_ids[1]))
    assert [int(m["id"]) for m in after] == list(reversed(thread.message_ids[2:4]))
    item = http(sandbox, lambda h: h.get_channel(thread.id))
    assert THREAD_KEYS <= set(item) and int(item["parent_id"]) == thread.parent_id
    assert item["message_count"] == len(thread.messages)

    async def fetch(client: discord.Client):
        return await client.fetch_channel(thread.id), await client.fetch_channel(forum(org).id)

    fetched, fetched_forum = run_discord(sandbox, fetch)
    assert isinstance(fetched, discord.Thread) and fetched.parent_id == thread.parent_id and not fetched.archived
    assert isinstance(fetched_forum, discord.ForumChannel)


def test_forum_post_starter_has_the_thread_id_and_the_forum_has_no_messages(sandbox, org) -> None:
    post = thread_id(org, "forum_post_starter")
    assert message_id(org, "forum_post_starter") == post
    page = http(sandbox, lambda h: h.logs_from(post, 50))
    assert int(page[-1]["id"]) == post and page[-1]["channel_id"] == str(post)
    item = http(sandbox, lambda h: h.get_channel(post))
    assert item["message_count"] == len(page) - 1  # Discord does not count a post's starter message
    with pytest.raises(discord.HTTPException) as info:
        http(sandbox, lambda h: h.logs_from(forum(org).id, 50))
    assert info.value.status == 400 and info.value.code == 50024
    assert info.value.text == "Cannot execute action on this channel type"


def test_private_thread_without_the_bot_is_missing_access(sandbox, org) -> None:
    secret = thread_id(org, "private_thread_message")
    assert org.channel(secret).type == PRIVATE_THREAD
    for call in (lambda h: h.logs_from(secret, 50), lambda h: h.get_channel(secret)):
        with pytest.raises(discord.Forbidden) as info:
            http(sandbox, call)
        assert info.value.code == 50001


def test_ground_truth_counts_exactly_the_readable_allow_listed_thread_messages(org) -> None:
    events = org.ground_truth(*WEEK1, "discord")
    in_threads = {k for k, e in events.items() if e.parent_channel_id is not None}
    counted = ["thread_message_at_start", "thread_active_message", "thread_message_just_before_end",
               "thread_archived_message", "thread_archived_after_window_message", "thread_created_midweek_message",
               "forum_post_starter", "forum_post_reply", "forum_post_archived_reply"]
    never = ["thread_message_before_window", "thread_message_at_end", "private_thread_message",
             "thread_under_unlisted_channel_message"]
    assert {org.scenario[n] for n in counted} <= in_threads
    assert not {org.scenario[n] for n in never} & set(events)
    allowed = {c.id for c in org.allow_listed_channels}
    start, end = WEEK1
    expected = {f"discord:message:{org.guild.id}:{t.id}:{m.id}" for t in org.guild.threads
                if t.parent_id in allowed and t.readable for m in t.messages if start <= m.created_at < end}
    assert in_threads == expected and len(expected) == 14
    for key in in_threads:
        event = events[key]
        thread = org.channel(int(event.channel_id))
        assert event.parent_channel_id == str(thread.parent_id) and event.channel_id == str(thread.id)
        assert event.artifact_url.endswith(f"/{thread.id}/{event.message_id}")
    assert not any(e.channel_id == str(forum(org).id) for e in events.values())
    week2 = org.ground_truth(WEEK1[1], WEEK1[1] + timedelta(days=7), "discord")
    assert org.scenario["thread_message_at_end"] in week2


def test_now_cut_applies_to_threads() -> None:
    start, _ = WEEK1
    cut = generate_org(seed=7, threads=True, now=start + timedelta(days=2, hours=12))
    assert "retro" not in {t.name for t in cut.guild.threads}  # created later
    assert "thread_active_message" in cut.scenario and "thread_created_midweek_message" not in cut.scenario
    assert by_name(cut, "bug-triage").archived is False  # archived on day 3: not yet
    assert all(m.created_at <= start + timedelta(days=2, hours=12) for t in cut.guild.threads for m in t.messages)


@pytest.fixture(scope="module")
def busy() -> Iterator[tuple[SampleOrg, object]]:
    """A small org with 55 archived threads under one channel and 130 messages in one thread."""
    small = generate_org(seed=3, prs_per_repo=2, reviews_per_pr=1, issues_per_repo=1, messages_per_channel=5,
                         big_pr_reviews=0, gaming=False)
    main = small.allow_listed_channels[0]
    author = small.discord_users[0].id
    start, _ = WEEK1
    for k in range(55):
        at = start + timedelta(hours=k)
        small.add_thread(main.id, author, at, f"old-{k}", archived_at=at + timedelta(days=1, minutes=k % 7))
    long = small.add_thread(main.id, author, start, "long")
    for k in range(130):
        small.add_message(long.id, author, start + timedelta(minutes=k), f"reply {k}")
    with start_sandbox(small, discord_token=DISCORD_TOKEN) as sandbox:
        yield small, sandbox


def test_archived_paging_with_has_more(busy) -> None:
    small, sandbox = busy
    main = small.allow_listed_channels[0]
    first = http(sandbox, lambda h: h.get_public_archived_threads(main.id, limit=50))
    assert len(first["threads"]) == 50 and first["has_more"] is True
    stamps = [t["thread_metadata"]["archive_timestamp"] for t in first["threads"]]
    assert stamps == sorted(stamps, reverse=True)
    rest = http(sandbox, lambda h: h.get_public_archived_threads(main.id, before=stamps[-1], limit=50))
    assert len(rest["threads"]) == 5 and rest["has_more"] is False
    names = [t["name"] for t in first["threads"] + rest["threads"]]
    assert sorted(names) == sorted(f"old-{k}" for k in range(55))  # each exactly once
    default = http(sandbox, lambda h: h.get_public_archived_threads(main.id))
    assert len(default["threads"]) == 50


def test_thread_history_of_more_than_100_messages(busy) -> None:
    small, sandbox = busy
    long = by_name(small, "long")

    async def body(client: discord.Client):
        thread = await client.fetch_channel(long.id)
        return [m async for m in thread.history(limit=None, oldest_first=True)]

    messages = run_discord(sandbox, body)
    assert [m.id for m in messages] == long.message_ids and len(messages) == 130
    assert {m.channel.id for m in messages} == {long.id}
    newest = http(sandbox, lambda h: h.logs_from(long.id, 100))
    older = http(sandbox, lambda h: h.logs_from(long.id, 100, before=newest[-1]["id"]))
    assert len(newest) == 100 and len(older) == 30
    events = small.ground_truth(*WEEK1, "discord")
    assert sum(1 for e in events.values() if e.channel_id == str(long.id)) == 130


def test_discord_py_archived_threads_iterator_gets_each_thread_once(busy) -> None:
    small, sandbox = busy
    main = small.allow_listed_channels[0]

    async def body(client: discord.Client):
        channel = await client.fetch_channel(main.id)
        return [t async for t in channel.archived_threads(limit=None)]

    threads = run_discord(sandbox, body)
    assert sorted(t.name for t in threads) == sorted(f"old-{k}" for k in range(55))
    assert all(t.archived and t.parent_id == main.id for t in threads)
