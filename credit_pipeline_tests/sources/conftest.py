"""Fixtures for adapter tests: the real PyGithub and discord.py clients against the sandbox servers."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from credit_pipeline.core.events import GITHUB_GHOST_ID
from credit_pipeline.core.policy import Policy, validate_policy
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import Sandbox, start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.collect import collect_epoch
from credit_pipeline.stages.sources_config import build_source

GITHUB_TOKEN, DISCORD_TOKEN = "gh-test-token", "dc-test-token"
FAST = {"github": dict(secondary_wait=1.0, backoff=0.05, max_wait=30.0, graphql_rate_wait=1.0), "discord": dict(max_wait=30.0)}


def org_policy(org) -> Policy:
    return validate_policy({
        "version": 1, "epoch": {"anchor": org.week_start.date().isoformat()}, "sources": org.policy_sources(),
        "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000, "discord:message_sent": 500},
        "exclude": org.bot_accounts(), "pool": {"base_issuance": 10000},
        "approvers": ["0x1111111111111111111111111111111111111111"],
    })


@pytest.fixture
def org():
    return generate_org(seed=11, prs_per_repo=130, reviews_per_pr=2, issues_per_repo=30, messages_per_channel=700)


@pytest.fixture
def sandbox(org) -> Iterator[Sandbox]:
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sb:
        yield sb


@pytest.fixture
def policy(org) -> Policy:
    return org_policy(org)


@pytest.fixture
def make_source(sandbox, policy):
    def make(name: str, env: dict[str, str] | None = None, **options):
        return build_source(name, policy, {**sandbox.env(), **(env or {})}, **{**FAST[name], **options})

    return make


def window_of(org, k: int = 0) -> tuple[datetime, datetime]:
    return org.windows[k]


def key_of(org, k: int = 0) -> str:
    return org.windows[k][0].date().isoformat()


def after_window(org, k: int = 0) -> datetime:
    return org.windows[k][1] + timedelta(days=1)


def stored_view(store: LedgerStore, window, source: str) -> dict[str, tuple]:
    return {
        e["event_id"]: (e["event_type"], e["platform_user_id"], e["is_bot"], e["event_time"])
        for e in store.events_between(*window, source=source)
    }


def expected_view(sandbox: Sandbox, window, source: str) -> dict[str, tuple]:
    view = {}
    for event_id, x in sandbox.ground_truth(*window, source=source).items():
        user = None if x.platform_user_id in (None, GITHUB_GHOST_ID) else x.platform_user_id  # SPEC: deleted = unattributable
        if x.event_type == "issue_closed":
            pass  # policy issue_credit: author
        view[event_id] = (x.event_type, user, x.is_bot, x.event_time)
    return view


def assert_ground_truth(store: LedgerStore, sandbox: Sandbox, window, source: str) -> None:
    stored, expected = stored_view(store, window, source), expected_view(sandbox, window, source)
    assert sorted(set(expected) - set(stored)) == [], "missing events"
    assert sorted(set(stored) - set(expected)) == [], "unexpected events"
    diffs = {k: (stored[k], expected[k]) for k in expected if stored[k] != expected[k]}
    assert diffs == {}


def collect(store, source, org, k: int = 0, **kw):
    kw.setdefault("now", after_window(org, k))
    return collect_epoch(store, source, key_of(org, k), **kw)


def pages(n: int) -> int:
    return math.ceil(n / 100)
