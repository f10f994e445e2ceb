"""A persistent Dagster instance on PostgreSQL, the sandbox, and Definitions wired to both."""

from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg
import pytest
import yaml

from credit_pipeline.core.hashing import address_of
from credit_pipeline.defs.builder import build_defs
from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.sources.conftest import org_policy

APPROVER_KEY = "0x" + "7a" * 32
STRANGER_KEY = "0x" + "3b" * 32


@pytest.fixture(scope="session")
def dagster_db_url(pg_server_url: str) -> Iterator[str]:
    """Dagster's own storage: a database of its own, never the ledger's."""
    with scratch_database(pg_server_url, f"cp_dagster_{os.getpid()}") as url:
        yield url


@pytest.fixture
def instance(dagster_db_url: str, tmp_path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home),
                              overrides={"storage": {"custom": {"module": "credit_pipeline.dagster_storage", "class": "CreditPipelineStorage",
                                                                   "config": {"postgres_url": dagster_db_url}}}}) as inst:
        yield inst


@pytest.fixture
def org():
    return generate_org(seed=5, prs_per_repo=40, reviews_per_pr=2, issues_per_repo=16, messages_per_channel=150, threads=True)


@pytest.fixture
def sandbox(org):
    with start_sandbox(org, github_token="gh", discord_token="dc") as sb:
        yield sb


@pytest.fixture
def policy_file(org, tmp_path) -> str:
    doc = org_policy(org).canonical()
    doc["approvers"] = [address_of(APPROVER_KEY)]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def resources(ledger_url, policy_file, sandbox) -> dict:
    return {
        "ledger": LedgerResource(database_url=ledger_url),
        "policy": PolicyResource(path=policy_file),
        "github": GitHubResource(token="gh", api_url=sandbox.github_url, max_wait_seconds=30),
        "discord": DiscordResource(token="dc", api_url=sandbox.discord_api_url, max_wait_seconds=30),
    }


@pytest.fixture
def defs(policy_file, resources) -> dg.Definitions:
    return build_defs(policy_file, resources)


@pytest.fixture
def ledger(ledger_url) -> LedgerStore:
    return LedgerStore.open(ledger_url)
