"""Start both sandbox servers together (tests, benchmarks, demo) or serve them until Ctrl-C (CLI).

    with start_sandbox(generate_org(seed=7), github_token="t", discord_token="d") as sandbox:
        gh = Github(base_url=sandbox.github_url, auth=Auth.Token("t"), ...)
        discord.http.Route.BASE = sandbox.discord_api_url
        sandbox.faults.add(Fault.github_secondary_limit(retry_after=1), path=r"/pulls$", nth=2)
        sandbox.log.records()

Both servers share one ``RequestLog`` (records say which server) and one ``FaultPlan``
(rules may target ``server="github"`` / ``"discord"``).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from credit_pipeline.sandbox.discord_server import DiscordSandboxServer
from credit_pipeline.sandbox.faults import FaultPlan
from credit_pipeline.sandbox.github_server import GitHubSandboxServer
from credit_pipeline.sandbox.http_base import RequestLog
from credit_pipeline.sandbox.model import ExpectedEvent
from credit_pipeline.sandbox.org import SampleOrg
from credit_pipeline.sandbox.sample_org import DEFAULT_WEEK_START, generate_org

DEMO_GITHUB_TOKEN = "sandbox-github-token"
DEMO_DISCORD_TOKEN = "sandbox-discord-token"


@dataclass
class Sandbox:
    org: SampleOrg
    github: GitHubSandboxServer
    discord: DiscordSandboxServer
    log: RequestLog
    faults: FaultPlan
    github_token: str | None
    discord_token: str | None

    @property
    def github_url(self) -> str:
        """PyGithub ``base_url`` / ``GITHUB_API_URL`` (no trailing slash)."""
        return self.github.url

    @property
    def discord_api_url(self) -> str:
        """``discord.http.Route.BASE`` / ``DISCORD_API_URL``, including ``/api/v10``."""
        return self.discord.api_url

    def env(self) -> dict[str, str]:
        """Environment variables a collector reads (SPEC §12)."""
        env = {"GITHUB_API_URL": self.github_url, "DISCORD_API_URL": self.discord_api_url}
        if self.github_token:
            env["GITHUB_TOKEN"] = self.github_token
        if self.discord_token:
            env["DISCORD_BOT_TOKEN"] = self.discord_token
        return env

    def ground_truth(self, start: datetime, end: datetime, source: str | None = None,
                     channels: list[int | str] | None = None) -> dict[str, ExpectedEvent]:
        """``org.ground_truth`` with artifact URLs on this sandbox's GitHub host."""
        return self.org.ground_truth(start, end, source, channels=channels, html_base=self.github_url)

    def stop(self) -> None:
        self.github.stop()
        self.discord.stop()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    org: SampleOrg,
    host: str = "127.0.0.1",
    github_port: int = 0,
    discord_port: int = 0,
    github_token: str | None = None,
    discord_token: str | None = None,
    *,
    message_content: bool = True,
    github_rate_limits: dict[str, tuple[int, float]] | None = None,
    discord_bucket_limit: int = 50,
    discord_bucket_window: float = 1.0,
) -> Sandbox:
    """Start GitHub and Discord servers for ``org`` on ``host`` (port 0 = ephemeral).

    A token of None accepts any credentials; a set token makes wrong ones fail with 401."""
    log, faults = RequestLog(), FaultPlan()
    github = GitHubSandboxServer(org, host, github_port, github_token, log, faults, github_rate_limits)
    try:
        discord = DiscordSandboxServer(org, host, discord_port, discord_token, log, faults, message_content,
                                       discord_bucket_limit, discord_bucket_window)
    except BaseException:
        github.stop()
        raise
    return Sandbox(org, github, discord, log, faults, github_token, discord_token)


def serve(
    host: str = "127.0.0.1",
    github_port: int = 8765,
    discord_port: int = 8766,
    seed: int = 7,
    *,
    week_start: datetime = DEFAULT_WEEK_START,
    weeks: int = 2,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
) -> None:
    """Serve a generated org until Ctrl-C (or ``stop`` is set), printing URLs and env vars to export."""
    org = generate_org(seed=seed, week_start=week_start, weeks=weeks)
    with start_sandbox(org, host, github_port, discord_port, DEMO_GITHUB_TOKEN, DEMO_DISCORD_TOKEN) as sandbox:
        sources = org.policy_sources()
        print(f"GitHub sandbox:  {sandbox.github_url}  (repos: {', '.join(sources['github']['repos'])})", file=out)
        print(f"Discord sandbox: {sandbox.discord_api_url}  (guild {sources['discord']['guild_id']}, "
              f"allow-listed channels {', '.join(sources['discord']['channels'])})", file=out)
        print(f"Activity: {org.stats()}; weeks starting {org.week_start.date().isoformat()}", file=out)
        print("Export these to point the pipeline at the sandbox:", file=out)
        for name, value in sandbox.env().items():
            print(f"export {name}={value}", file=out)
        print("Press Ctrl-C to stop.", file=out, flush=True)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            print("Stopping sandbox.", file=out)
