"""Build source adapters from the policy and the environment (SPEC §12)."""

from __future__ import annotations

import os

from credit_pipeline.core.policy import Policy
from credit_pipeline.sources.base import Source, SourceError, StreamRef
from credit_pipeline.sources.discord_source import DiscordSource
from credit_pipeline.sources.github_source import GitHubSource


def configured_sources(policy: Policy) -> list[str]:
    return [name for name in ("github", "discord") if getattr(policy.sources, name) is not None]


def policy_streams(policy: Policy) -> list[StreamRef]:
    """Every (source, stream, ref) the policy asks to collect."""
    refs = []
    if policy.sources.github:
        refs += [StreamRef("github", s, r) for s in policy.sources.github.streams for r in policy.sources.github.repos]
    if policy.sources.discord:
        refs += [StreamRef("discord", "messages", c) for c in policy.sources.discord.channels]
    return refs


def build_source(name: str, policy: Policy, env: dict[str, str] | None = None, **options) -> Source:
    """A GitHub or Discord adapter for the policy, with tokens and URLs from ``env`` (default os.environ)."""
    env = dict(os.environ if env is None else env)
    if name == "github":
        if policy.sources.github is None:
            raise SourceError("the policy has no sources.github section; add repos to collect")
        cfg = policy.sources.github
        return GitHubSource(env.get("GITHUB_TOKEN"), cfg.repos, api_url=env.get("GITHUB_API_URL"), streams=tuple(cfg.streams),
                            issue_credit=cfg.issue_credit, **options)
    if name == "discord":
        if policy.sources.discord is None:
            raise SourceError("the policy has no sources.discord section; add guild_id and channels to collect")
        cfg = policy.sources.discord
        options.setdefault("threads", cfg.threads is not False)
        return DiscordSource(env.get("DISCORD_BOT_TOKEN"), cfg.guild_id, cfg.channels, api_url=env.get("DISCORD_API_URL"), **options)
    raise SourceError(f"unknown source {name!r}: use github or discord")
