"""Build source adapters from the policy and the environment (SPEC §12)."""

from __future__ import annotations

import os

from typing import Any

from credit_pipeline.core.policy import DiscordSection, GithubSection, Policy
from credit_pipeline.sources.base import Source, SourceError, StreamRef
from credit_pipeline.sources.discord_source import DiscordSource
from credit_pipeline.sources.github_org import GitHubOrgSource, org_streams
from credit_pipeline.sources.github_source import GitHubSource


def configured_sources(policy: Policy) -> list[str]:
    return [name for name in ("github", "discord") if getattr(policy.sources, name) is not None]


def policy_streams(policy: Policy) -> list[StreamRef]:
    """Every (source, stream, ref) the policy asks to collect."""
    refs = []
    github = policy.sources.github
    if github and github.organization:
        refs += org_streams(github.organization, github.streams)
    elif github:
        refs += [StreamRef("github", s, r) for s in github.streams for r in github.repos]
    if policy.sources.discord:
        refs += [StreamRef("discord", "messages", c) for c in policy.sources.discord.channels]
    return refs


def build_source(name: str, policy: Policy, env: dict[str, str] | None = None, **options) -> Source:
    """A GitHub or Discord adapter for the policy, with tokens and URLs from ``env`` (default os.environ)."""
    env = dict(os.environ if env is None else env)
    if name == "github":
        if policy.sources.github is None:
            raise SourceError("the policy has no sources.github section; add repos or an organization to collect")
        return github_source(policy.sources.github, env.get("GITHUB_TOKEN"), env.get("GITHUB_API_URL"), **options)
    if name == "discord":
        if policy.sources.discord is None:
            raise SourceError("the policy has no sources.discord section; add guild_id and channels to collect")
        return discord_source(policy.sources.discord, env.get("DISCORD_BOT_TOKEN"), env.get("DISCORD_API_URL"), **options)
    raise SourceError(f"unknown source {name!r}: use github or discord")


def github_source(cfg: GithubSection, token: str | None, api_url: str | None, **options: Any) -> GitHubSource:
    """The GitHub adapter a policy section asks for: organization-wide search, or the listed repos one by one."""
    if cfg.organization:
        return GitHubOrgSource(token, cfg.organization, repos=cfg.repos, exclude_repos=cfg.exclude_repos, api_url=api_url,
                               streams=tuple(cfg.streams), issue_credit=cfg.issue_credit, **options)
    return GitHubSource(token, cfg.repos, api_url=api_url, streams=tuple(cfg.streams), issue_credit=cfg.issue_credit, **options)


def discord_source(cfg: DiscordSection, token: str | None, api_url: str | None, **options: Any) -> DiscordSource:
    options.setdefault("threads", cfg.threads is not False)
    return DiscordSource(token, cfg.guild_id, cfg.channels, api_url=api_url, **options)
