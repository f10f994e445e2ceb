"""An org with accounts, repos and channels but no activity: a test adds exactly the facts it needs.

The accounts are the sample org's (``alice``, ``bob``, ... on GitHub, plus the renamed, deleted and bot
accounts; ``mason``, ``nelly``, ... on Discord, plus its bots), so tests name them by login or
username and add pull requests, reviews, issues and messages with ``SampleOrg.add_*``.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from credit_pipeline.sandbox.model import Repo
from credit_pipeline.sandbox.org import IdCounters, SampleOrg
from credit_pipeline.sandbox.sample_discord import discord_world
from credit_pipeline.sandbox.sample_org import DEFAULT_WEEK_START, REPO_NAMES, _github_users

UTC = timezone.utc


def blank_org(week_start: datetime = DEFAULT_WEEK_START, *, weeks: int = 2, repos: int = 1, channels: int = 1,
              users: int = 8, org: str = "acme", seed: int = 1) -> SampleOrg:
    """``repos`` empty repositories and ``channels`` empty text channels (all allow-listed except the last
    when there are two or more, as in ``generate_org``), plus the channel the bot cannot read."""
    ids = IdCounters(repo=700_000_000, pull=1_800_000_000, issue=2_100_000_000, review=2_000_000_000)
    humans, renamed, deleted, bots = _github_users(users, week_start)
    repo_list = [Repo(org, REPO_NAMES[k] if k < len(REPO_NAMES) else f"repo-{k}", 700_000_000 + 7_919 * (k + 1),
                      datetime(2021, 3, 1, tzinfo=UTC) + timedelta(days=37 * k)) for k in range(repos)]
    guild, discord_users, bot_user, app_id = discord_world(random.Random(seed), channels, week_start)
    return SampleOrg(seed=seed, week_start=week_start, weeks=weeks, org_login=org, org_id=9_919_919, repos=repo_list,
                     github_users=[*humans, renamed, deleted, *bots], viewer=humans[0], guild=guild,
                     discord_users=discord_users, bot_user=bot_user, application_id=app_id, ids=ids)
