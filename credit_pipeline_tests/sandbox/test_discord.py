"""The Discord sandbox through unmodified discord.py (REST only), plus raw wire checks."""

from __future__ import annotations

from datetime import datetime, timezone

import discord
import pytest
import requests
from discord.utils import time_snowflake

from credit_pipeline.sandbox import Fault, generate_org, start_sandbox

from .conftest import DISCORD_TOKEN, run_discord

UTC = timezone.utc
WEEK1 = (datetime(2026, 2, 16, tzinfo=UTC), datetime(2026, 2, 23, tzinfo=UTC))
BOT = {"Authorization": f"Bot {DISCORD_TOKEN}"}


def get(sandbox, path: str, headers: dict | None = None, **params) -> requests.Response:
    return requests.get(f"{sandbox.discord_api_url}{path}", params=params, headers=headers or BOT, timeout=10)


def history_after(sandbox, channel_id: int, after: int, limit: int | None = None) -> list[discord.Message]:
    async def body(client: discord.Client) -> list[discord.Message]:
        channel = await client.fetch_channel(channel_id)
        return [m async for m in channel.history(limit=limit, after=discord.Object(after), oldest_first=True)]

    return run_discord(sandbox, body)


def test_login_and_fetch_channel(sandbox, org) -> None:
    async def body(client: discord.Client):
        channel = await client.fetch_channel(org.allow_listed_channels[0].id)
        return client.user, client.application_id, channel

    user, app_id, channel = run_discord(sandbox, body)
    assert user.id == org.bot_user.id and user.bot and app_id == org.application_id
    assert channel.id == org.allow_listed_channels[0].id and channel.guild.id == org.guild.id
    assert [r.path for r in sandbox.log.records()][:2] == ["/api/v10/users/@me", "/api/v10/oauth2/applications/@me"]


def test_history_after_returns_everything_in_order_and_snowflakes_exact(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    after = channel.message_ids[len(channel.message_ids) // 3]
    messages = history_after(sandbox, channel.id, after)
    expected = [m for m in channel.messages if m.id > after]
    assert [m.id for m in messages] == [m.id for m in expected]
    assert all(m.id > 2**53 for m in messages)
    assert [m.created_at for m in messages] == [m.created_at for m in expected]
    assert [m.author.id for m in messages] == [m.author.id for m in expected]
    pages = sandbox.log.count(path_contains="/messages")
    assert pages == len(expected) // 100 + 1  # discord.py stops on the first short page


def test_history_from_a_boundary_includes_the_message_exactly_at_start(sandbox, org) -> None:
    start, end = WEEK1
    channel = org.allow_listed_channels[0]
    messages = history_after(sandbox, channel.id, time_snowflake(start) - 1)
    in_window = [m for m in messages if m.created_at < end]
    expected = [k.split(":")[-1] for k, e in org.ground_truth(start, end, "discord").items() if e.channel_id == str(channel.id)]
    assert sorted(str(m.id) for m in in_window) == sorted(expected)
    boundary = int(org.scenario["message_at_boundary_0"].rsplit(":", 1)[1])
    assert boundary in {m.id for m in in_window}
    after_datetime = history_after(sandbox, channel.id, time_snowflake(start, high=True))
    assert boundary not in {m.id for m in after_datetime}  # what history(after=<datetime>) would miss


def test_messages_are_newest_first_even_with_after(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    after = channel.message_ids[10]
    body = get(sandbox, f"/channels/{channel.id}/messages", after=after, limit=5).json()
    assert [int(m["id"]) for m in body] == list(reversed(channel.message_ids[11:16]))
    assert all(isinstance(m["id"], str) and isinstance(m["author"]["id"], str) for m in body)
    before = get(sandbox, f"/channels/{channel.id}/messages", before=channel.message_ids[10], limit=3).json()
    assert [int(m["id"]) for m in before] == list(reversed(channel.message_ids[7:10]))
    latest = get(sandbox, f"/channels/{channel.id}/messages").json()
    assert len(latest) == 50 and int(latest[0]["id"]) == channel.message_ids[-1]
    around = get(sandbox, f"/channels/{channel.id}/messages", around=channel.message_ids[20], limit=4).json()
    assert [int(m["id"]) for m in around] == list(reversed(channel.message_ids[18:22]))


def test_message_timestamp_matches_the_snowflake(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    boundary = int(org.scenario["message_at_boundary_0"].rsplit(":", 1)[1])
    body = get(sandbox, f"/channels/{channel.id}/messages", after=boundary - 1, limit=1).json()
    assert body[0]["id"] == str(boundary) and body[0]["timestamp"] == "2026-02-16T00:00:00+00:00"


def test_limit_is_validated(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    for bad in ("0", "101", "x"):
        response = get(sandbox, f"/channels/{channel.id}/messages", limit=bad)
        assert response.status_code == 400 and response.json()["code"] == 50035


def test_rate_limit_headers_always_come_with_a_reset(sandbox, org) -> None:
    response = get(sandbox, f"/channels/{org.allow_listed_channels[0].id}/messages", limit=1)
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After",
                 "X-RateLimit-Bucket"):
        assert name in response.headers
    assert response.headers["Content-Type"] == "application/json"  # discord.py compares it exactly


def test_bucket_exhaustion_is_a_discord_429() -> None:
    org = generate_org(seed=3, repos=1, prs_per_repo=1, channels=1, messages_per_channel=5)
    with start_sandbox(org, discord_token="t", discord_bucket_limit=2, discord_bucket_window=30) as sandbox:
        path = f"{sandbox.discord_api_url}/channels/{org.guild.channels[0].id}/messages"
        seen = [requests.get(path, headers={"Authorization": "Bot t"}, timeout=10) for _ in range(3)]
        assert [r.status_code for r in seen] == [200, 200, 429]
        assert seen[1].headers["X-RateLimit-Remaining"] == "0"
        limited = seen[2]
        assert limited.headers["Via"] == "1.1 google" and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["message"] == "You are being rate limited." and limited.json()["global"] is False
        assert 0 < limited.json()["retry_after"] <= 30


def test_discord_py_retries_a_429_with_via(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    sandbox.faults.add(Fault.discord_429(retry_after=0.2), path=r"/messages$", server="discord")
    messages = history_after(sandbox, channel.id, channel.message_ids[-5])
    assert len(messages) == 4
    assert [r.status for r in sandbox.log.records() if "/messages" in r.path] == [429, 200]


def test_discord_py_raises_on_a_429_without_via(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    sandbox.faults.add(Fault.discord_cloudflare_ban(), path=r"/messages$")
    with pytest.raises(discord.HTTPException) as caught:
        history_after(sandbox, channel.id, channel.message_ids[-5])
    assert caught.value.status == 429


def test_wrong_token_is_unauthorized(sandbox) -> None:
    response = get(sandbox, "/users/@me", headers={"Authorization": "Bot wrong"})
    assert response.status_code == 401 and response.json() == {"message": "401: Unauthorized", "code": 0}
    for answer in (response, get(sandbox, "/nowhere")):
        assert "X-RateLimit-Remaining" in answer.headers and "X-RateLimit-Reset" in answer.headers
    with pytest.raises(discord.LoginFailure):
        run_discord(sandbox, lambda client: client.fetch_channel(1), token="wrong")


def test_unreadable_channel_is_missing_access(sandbox, org) -> None:
    hidden = next(c for c in org.guild.channels if not c.readable)
    assert get(sandbox, f"/channels/{hidden.id}/messages").json() == {"message": "Missing Access", "code": 50001}

    async def body(client: discord.Client):
        return await client.fetch_channel(hidden.id)

    with pytest.raises(discord.Forbidden) as caught:
        run_discord(sandbox, body)
    assert caught.value.code == 50001
    assert get(sandbox, "/channels/123/messages").json()["code"] == 10003


def test_guild_and_its_channels(sandbox, org) -> None:
    async def body(client: discord.Client):
        guild = await client.fetch_guild(org.guild.id)
        return guild, await guild.fetch_channels()

    guild, channels = run_discord(sandbox, body)
    assert guild.id == org.guild.id and guild.name == org.guild.name
    assert {c.id for c in channels} >= {c.id for c in org.guild.channels}


def test_message_content_off_blanks_content(sandbox, org) -> None:
    channel = org.allow_listed_channels[0]
    sandbox.discord.message_content = False
    messages = history_after(sandbox, channel.id, channel.message_ids[-3])
    assert [m.content for m in messages] == ["", ""]
    sandbox.discord.message_content = True
    assert all(m.content for m in history_after(sandbox, channel.id, channel.message_ids[-3]))
