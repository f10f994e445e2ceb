"""Resources: the ledger, the policy, and the two source APIs (tokens only through ``dg.EnvVar``)."""


import dagster as dg

from credit_pipeline.core.policy import Policy
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sources.discord_source import DEFAULT_API_URL as DISCORD_DEFAULT_URL
from credit_pipeline.sources.discord_source import DiscordSource
from credit_pipeline.sources.github_source import DEFAULT_API_URL as GITHUB_DEFAULT_URL
from credit_pipeline.sources.github_source import GitHubSource
from credit_pipeline.stages.settings import load_policy
from credit_pipeline.stages.sources_config import discord_source, github_source


class LedgerResource(dg.ConfigurableResource):
    """The PostgreSQL ledger: ``database_url`` or ``$CREDIT_PIPELINE_DATABASE_URL``, else the embedded server."""

    database_url: str | None = None

    def store(self) -> LedgerStore:
        return LedgerStore.open(self.database_url)


class PolicyResource(dg.ConfigurableResource):
    """The weight policy file (default ``$CREDIT_PIPELINE_POLICY`` or ``./policy.yaml``)."""

    path: str | None = None

    def load(self) -> Policy:
        return load_policy(self.path)


class GitHubResource(dg.ConfigurableResource):
    """A GitHub API: the token comes from ``GITHUB_TOKEN`` through ``dg.EnvVar``."""

    token: str
    api_url: str = GITHUB_DEFAULT_URL
    max_wait_seconds: float = 900.0

    def source(self, policy: Policy) -> GitHubSource:
        cfg = policy.sources.github
        assert cfg is not None
        return github_source(cfg, self.token, self.api_url, max_wait=self.max_wait_seconds)


class DiscordResource(dg.ConfigurableResource):
    """A Discord API: the bot token comes from ``DISCORD_BOT_TOKEN`` through ``dg.EnvVar``."""

    token: str
    api_url: str = DISCORD_DEFAULT_URL
    max_wait_seconds: float = 900.0

    def source(self, policy: Policy) -> DiscordSource:
        cfg = policy.sources.discord
        assert cfg is not None
        return discord_source(cfg, self.token, self.api_url, max_wait=self.max_wait_seconds)
