"""Local, wire-compatible stand-ins for the GitHub and Discord APIs, plus a seeded sample org.

Unmodified PyGithub and discord.py talk to these servers as they would to api.github.com and
discord.com: same payload shapes (copied from the official examples in ``data/``), pagination,
Link headers, rate-limit headers and error bodies. Runtime dependencies: stdlib and graphql-core.

- ``generate_org(seed, ...)`` -> ``SampleOrg`` with ``ground_truth(start, end)`` and ``policy_sources()``
- ``blank_org(...)`` -> a ``SampleOrg`` with accounts and no activity, for tests that ``add_*`` exactly what they need
- ``start_sandbox(org, ...)`` -> ``Sandbox`` (``github_url``, ``discord_api_url``, ``log``, ``faults``)
- ``serve(...)`` blocks and prints the environment to export (``credit-pipeline sandbox serve``)
- ``Fault`` / ``FaultRule`` / ``FaultPlan``: rate limits, 5xx bursts, malformed items, dropped sockets
"""

from credit_pipeline.sandbox.blank_org import blank_org
from credit_pipeline.sandbox.discord_server import DiscordSandboxServer
from credit_pipeline.sandbox.faults import Fault, FaultKind, FaultPlan, FaultRule
from credit_pipeline.sandbox.github_server import GitHubSandboxServer
from credit_pipeline.sandbox.http_base import RequestLog, RequestRecord
from credit_pipeline.sandbox.ids import DISCORD_EPOCH_MS, make_snowflake, snowflake_time, time_snowflake
from credit_pipeline.sandbox.model import GHOST_ID, GHOST_LOGIN, ExpectedEvent
from credit_pipeline.sandbox.org import SampleOrg
from credit_pipeline.sandbox.runner import Sandbox, serve, start_sandbox
from credit_pipeline.sandbox.sample_org import DEFAULT_WEEK_START, generate_org

__all__ = [
    "DEFAULT_WEEK_START", "DISCORD_EPOCH_MS", "GHOST_ID", "GHOST_LOGIN", "DiscordSandboxServer", "ExpectedEvent",
    "Fault", "FaultKind", "FaultPlan", "FaultRule", "GitHubSandboxServer", "RequestLog", "RequestRecord",
    "SampleOrg", "Sandbox", "blank_org", "generate_org", "make_snowflake", "serve", "snowflake_time", "start_sandbox",
    "time_snowflake",
]
