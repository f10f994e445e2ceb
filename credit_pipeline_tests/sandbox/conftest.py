"""Fixtures: one sandbox per test module, real PyGithub and discord.py clients pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import discord
import pytest
from github import Auth, Github, GithubRetry

from credit_pipeline.sandbox import Sandbox, SampleOrg, generate_org, start_sandbox

GITHUB_TOKEN = "gh-test-token"
DISCORD_TOKEN = "discord-test-token"
T = TypeVar("T")


@pytest.fixture(scope="module")
def org() -> SampleOrg:
    # 220 merged PRs in acme/widgets -> 250+ closed PRs with the closed-unmerged ones and scenarios.
    return generate_org(seed=7, prs_per_repo=220, reviews_per_pr=2, issues_per_repo=40, messages_per_channel=400)


@pytest.fixture(scope="module")
def module_sandbox(org: SampleOrg) -> Iterator[Sandbox]:
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(module_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The module's sandbox with an empty log and fault plan for each test."""
    module_sandbox.faults.clear()
    module_sandbox.log.reset()
    module_sandbox.discord.message_content = True
    yield module_sandbox
    module_sandbox.faults.clear()


def make_github(sandbox: Sandbox, token: str = GITHUB_TOKEN, **retry: Any) -> Github:
    """PyGithub configured exactly as the collector configures it."""
    return Github(base_url=sandbox.github_url, auth=Auth.Token(token), per_page=100, seconds_between_requests=0,
                  seconds_between_writes=0, lazy=True,
                  retry=GithubRetry(total=retry.pop("total", 3), secondary_rate_wait=1, **retry))


@pytest.fixture
def gh(sandbox: Sandbox) -> Github:
    return make_github(sandbox)


def run_discord(sandbox: Sandbox, body: Callable[[discord.Client], Awaitable[T]], token: str = DISCORD_TOKEN) -> T:
    """Log a REST-only discord.py client in against the sandbox and run ``body(client)``."""
    discord.http.Route.BASE = sandbox.discord_api_url

    async def main() -> T:
        client = discord.Client(intents=discord.Intents.none())
        async with client:
            await client.login(token)
            return await body(client)

    return asyncio.run(main())
