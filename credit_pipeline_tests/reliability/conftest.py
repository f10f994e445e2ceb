"""Shared settings for the reliability suite (kills, faults, restarts, concurrency, secrets).

Every test here runs at one of two scales:

- ``fast`` (the default, what CI runs): a generated week of a few thousand events, so the whole
  suite stays inside CI's budget while every kill point, fault class and race is still exercised;
- ``full`` (``CREDIT_PIPELINE_RELIABILITY=full``): a week of at least 50,000 events, the scale the
  guarantees are stated at. ``docs/reliability.md`` records what the full run measured.

    CREDIT_PIPELINE_RELIABILITY=full pytest credit_pipeline_tests/reliability
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from credit_pipeline.sandbox.sample_org import generate_org

SCALE = os.environ.get("CREDIT_PIPELINE_RELIABILITY", "fast").strip().lower()
if SCALE not in ("fast", "full"):
    raise pytest.UsageError(f"CREDIT_PIPELINE_RELIABILITY={SCALE!r}: use 'fast' (the default) or 'full'")

# generate_org arguments per scale. full: 10 repos x (400 PRs + 1,200 reviews + ~42 closed issues)
# plus 10 allow-listed channels x ~5,000 messages inside the week = ~60,000 facts in the week (>= 50,000 as stated).
ORG_ARGS: dict[str, dict[str, Any]] = {
    "fast": dict(seed=2027, weeks=1, repos=3, prs_per_repo=120, reviews_per_pr=2, issues_per_repo=30, channels=4, messages_per_channel=1000),
    "full": dict(seed=2027, weeks=1, repos=10, prs_per_repo=400, reviews_per_pr=3, issues_per_repo=60, channels=11, messages_per_channel=9400),
}
MIN_EVENTS = {"fast": 2_000, "full": 50_000}


def reliability_org():
    """The generated org of the current scale (deterministic: the same seed every run)."""
    return generate_org(**ORG_ARGS[SCALE])


@pytest.fixture(scope="module")
def scale() -> str:
    return SCALE


@pytest.fixture(scope="module")
def big_org():
    """One week of activity at the current scale; asserts it holds at least ``MIN_EVENTS`` facts."""
    org = reliability_org()
    start, end = org.windows[0]
    count = len(org.ground_truth(start, end))
    assert count >= MIN_EVENTS[SCALE], f"the {SCALE} org holds {count} facts, fewer than {MIN_EVENTS[SCALE]}"
    return org

