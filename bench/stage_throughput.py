"""Benchmark: resolution and allocation of a 60k-event week, first pass beside a no-change rerun.

The same generated week as ``api_requests.py`` is collected into a temporary ledger database, then
``resolve_epoch`` and ``allocate_epoch`` are timed: the first pass, a no-change rerun (a delta pass that
finds the inputs of the last one: issue 13 asks for at most 10% of the first pass, and no writes), and a
resolution pass after 1% more facts arrive (only those are read).

    python bench/stage_throughput.py [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

import sqlalchemy as sa

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.ledger.engine import normalize_url
from credit_pipeline.ledger.migrations import upgrade
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.allocate import allocate_epoch
from credit_pipeline.stages.collect import collect_epoch
from credit_pipeline.stages.resolve import resolve_epoch
from credit_pipeline.stages.sources_config import build_source

sys.path.insert(0, os.path.dirname(__file__))
from api_requests import temp_database  # noqa: E402


def late_facts(store: LedgerStore, key: str, n: int) -> int:
    """``n`` more merged PRs in the week (as a later collection would store them)."""
    from credit_pipeline.core.epochs import window_for_key
    from credit_pipeline.core.events import ActivityEvent, github_pr_event_id

    start, _ = window_for_key(key)
    events = [ActivityEvent(event_id=github_pr_event_id("acme/late", i), source="github", event_type="pr_merged", platform_user_id="583231",
                            platform_login="octocat", event_time=start + timedelta(hours=1, seconds=i), metadata={"repo": "acme/late", "number": i},
                            payload={"number": i, "merged_at": (start + timedelta(hours=1, seconds=i)).isoformat(), "user": {"id": 583231, "login": "octocat"}},
                            producer="bench", producer_version="1", retrieved_at=start + timedelta(days=8))
              for i in range(1, n + 1)]
    for i in range(0, n, 100):
        store.record_page(events[i:i + 100], None)
    return n


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    org = generate_org(seed=2026, weeks=1, repos=10, prs_per_repo=400, reviews_per_pr=3, issues_per_repo=60, channels=11, messages_per_channel=9400)
    window = org.windows[0]
    key = window[0].date().isoformat()
    policy = validate_policy({"version": 1, "epoch": {"anchor": key}, "sources": org.policy_sources(), "exclude": org.bot_accounts(),
                              "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000,
                                          "discord:message_sent": 100}, "pool": {"base_issuance": 10000},
                              "approvers": ["0x1111111111111111111111111111111111111111"]})
    url, drop = temp_database(normalize_url(args.database_url))
    engine = sa.create_engine(url)
    try:
        upgrade(engine)
        store = LedgerStore(engine)
        with start_sandbox(org, github_token="bench", discord_token="bench") as sandbox:
            for name in ("github", "discord"):
                collect_epoch(store, build_source(name, policy, sandbox.env()), key, now=window[1] + timedelta(hours=1))
        first, t_first = timed(lambda: resolve_epoch(store, key, policy))
        again, t_again = timed(lambda: resolve_epoch(store, key, policy))
        # a steady-state pass that finds new facts (1% of the week, collected later): only they are resolved
        extra = late_facts(store, key, max(1, first.curated // 100))
        delta, t_delta = timed(lambda: resolve_epoch(store, key, policy))
        alloc, t_alloc = timed(lambda: allocate_epoch(store, key, policy, now=window[1] + timedelta(hours=2)))
        alloc2, t_alloc2 = timed(lambda: allocate_epoch(store, key, policy, now=window[1] + timedelta(hours=2)))
    finally:
        engine.dispose()
        drop()
    print(f"week {key}: {first.curated} events in the window (+{extra} later), {len(alloc.state.allocations)} recipients\n")
    print(f"{'stage':34} {'first pass s':>13} {'no-change s':>12} {'share':>7} {'rerun mode':>11} {'rows written (rerun)':>21}")
    print(f"{'resolve (curate 1/event)':34} {t_first:>13.2f} {t_again:>12.3f} {t_again / t_first:>7.1%} {again.mode:>11} {again.written:>21}")
    print(f"{'allocate (+ enter review)':34} {t_alloc:>13.2f} {t_alloc2:>12.3f} {t_alloc2 / t_alloc:>7.1%} "
          f"{'unchanged' if alloc2.unchanged else 'full':>11} {'-':>21}")
    print(f"{f'resolve after {extra} new facts':34} {'':>13} {t_delta:>12.3f} {t_delta / t_first:>7.1%} {delta.mode:>11} {delta.written:>21}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
