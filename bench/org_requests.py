"""Benchmark 1 of issue 13: a 500-repo organization, 480 repos quiet in the week, 20 busy with the large week.

Collects one closed week (an hour after it closed) twice from the same sandbox org:

- organization-wide search (``sources.github.organization``), under GitHub's own limits (search 30 a minute,
  GraphQL 5,000 points an hour, REST 5,000 an hour): requests per stream beside the issue's bound
  ``ceil(PRs/100) + ceil(issues/100) + one per split the 1,000-result cap forces + review pages beyond a PR's
  first 100 + 5``, then an idle sensor tick (bound: 3 requests) and a no-change incremental pass;
- today's per-repo listing of the same 500 repos (``sources.github.repos``), as the baseline: its collection and
  its sensor tick. Its completeness check (two REST searches per repo) is counted, not run: at GitHub's 30 searches
  a minute it alone would take ``repos * 2 / 30`` minutes. The baseline runs without rate limits so that it ends.

Both collections must store exactly the sandbox's ground truth.

    python bench/org_requests.py [--scale 1.0] [--quiet-repos 480] [--database-url URL]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.ledger.engine import normalize_url
from credit_pipeline.ledger.migrations import upgrade
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.model import Repo
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.collect import collect_epoch, source_cursors
from credit_pipeline.stages.sources_config import build_source

sys.path.insert(0, os.path.dirname(__file__))
from api_requests import temp_database  # noqa: E402

UNLIMITED = {"core": (10**9, 3600.0), "search": (10**9, 60.0), "graphql": (10**9, 3600.0)}


def large_org(scale: float, quiet: int):
    """20 busy repos with the large week (>= 5,000 merged PRs, 15,000 reviews, 3,000 closed issues at scale 1), plus
    ``quiet`` repos with nothing in the week; the clock stands an hour after the week closed."""
    week = datetime(2026, 2, 16, tzinfo=UTC)
    org = generate_org(seed=2026, week_start=week, weeks=1, repos=20, prs_per_repo=int(480 * scale), reviews_per_pr=3,
                       issues_per_repo=int(400 * scale), channels=1, messages_per_channel=1, now=week + timedelta(days=7, hours=1))
    first = org.repos[0]
    for k in range(quiet):
        org.repos.append(Repo(first.owner, f"quiet-{k:03d}", 900_000_000 + k, first.created_at))
    return org


def policy_for(org, github: dict) -> object:
    key = org.windows[0][0].date().isoformat()
    return validate_policy({"version": 1, "epoch": {"anchor": key}, "sources": {"github": github}, "exclude": org.bot_accounts(),
                            "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000},
                            "pool": {"base_issuance": 10000}, "approvers": ["0x1111111111111111111111111111111111111111"]})


def exact(store: LedgerStore, sandbox, window) -> bool:
    stored = {e["event_id"] for e in store.events_between(*window, source="github")}
    return stored == set(sandbox.ground_truth(*window, source="github"))


def run(store, sandbox, policy, key, now, *, full):
    source = build_source("github", policy, sandbox.env(), secondary_wait=1.0, backoff=0.05)
    started = time.perf_counter()
    report = collect_epoch(store, source, key, now=now, full=full)
    return report, time.perf_counter() - started, source


def probe(store, sandbox, policy) -> tuple[int, int]:
    source = build_source("github", policy, sandbox.env())
    probes = source.probe(source_cursors(store, source))
    return source.telemetry.requests, sum(p.has_new for p in probes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the busy repos' activity (1.0 = the issue's large week)")
    parser.add_argument("--quiet-repos", type=int, default=480)
    args = parser.parse_args()

    t0 = time.perf_counter()
    org = large_org(args.scale, args.quiet_repos)
    window = org.windows[0]
    key, now = window[0].date().isoformat(), window[1] + timedelta(hours=1)
    start = window[0]
    merged = sum(1 for r in org.repos for p in r.pulls if p.merged_at and window[0] <= p.merged_at < window[1])
    reviews = sum(1 for r in org.repos for p in r.pulls for v in p.reviews if v.submitted_at and window[0] <= v.submitted_at < window[1])
    closed = sum(1 for r in org.repos for i in r.issues if i.closed_at and window[0] <= i.closed_at < window[1])
    read_prs = sum(1 for r in org.repos for p in r.pulls if p.updated_at >= start)
    read_issues = sum(1 for r in org.repos for i in r.issues if i.closed_at and i.closed_at >= start and i.updated_at >= start)
    extra_reviews = sum(math.ceil(len(p.reviews) / 100) - 1 for r in org.repos for p in r.pulls if p.updated_at >= start and len(p.reviews) > 100)
    print(f"org: {len(org.repos)} repos ({args.quiet_repos} quiet); week {key}: {merged:,} merged PRs, {reviews:,} reviews, "
          f"{closed:,} closed issues; the search reads {read_prs:,} PRs updated in it and {read_issues:,} closed issues "
          f"(generated in {time.perf_counter() - t0:.0f} s)")

    repos = [r.full_name for r in org.repos]
    searched = policy_for(org, {"organization": org.repos[0].owner})
    listed = policy_for(org, {"repos": repos})
    rows = []
    url, drop = temp_database(normalize_url(args.database_url), "_org")
    url2, drop2 = temp_database(normalize_url(args.database_url), "_repos")
    engines = [sa.create_engine(url), sa.create_engine(url2)]
    try:
        for engine in engines:
            upgrade(engine)
        org_store, repo_store = (LedgerStore(e) for e in engines)
        with start_sandbox(org, github_token="bench") as sandbox:  # GitHub's own limits
            report, seconds, source = run(org_store, sandbox, searched, key, now, full=True)
            splits = sum("result cap" in n for n in report.notes)
            bound = math.ceil(read_prs / 100) + math.ceil(read_issues / 100) + splits + extra_reviews + 5
            points = sandbox.github.app.limits.snapshot("graphql")
            ok = exact(org_store, sandbox, window) and not report.shortfalls
            rows.append(("organization search: closed week (full)", report.requests, bound, f"{seconds:.1f} s",
                         f"exact={ok}; {splits} cap splits; waits {report.waited_seconds} s; GraphQL points used {points.get('used')}"))
            for stream, n in sorted(source.telemetry.by_stream.items()):
                rows.append((f"  {stream}", n, "", "", ""))
            ticks, fresh = probe(org_store, sandbox, searched)
            rows.append(("organization search: idle sensor tick", ticks, 3, "", f"streams with news: {fresh}"))
            report2, seconds2, _ = run(org_store, sandbox, searched, key, window[1] - timedelta(seconds=1), full=False)
            rows.append(("organization search: no-change incremental pass", report2.requests, "", f"{seconds2:.1f} s",
                         f"new events {report2.new}"))
        with start_sandbox(org, github_token="bench", github_rate_limits=UNLIMITED) as sandbox:
            report, seconds, source = run(repo_store, sandbox, listed, key, window[1] - timedelta(seconds=1), full=False)
            ok = exact(repo_store, sandbox, window)
            searches = 2 * len(repos)
            rows.append(("per-repo listing (baseline): the week, without completeness", report.requests, "", f"{seconds:.1f} s",
                         f"exact={ok}"))
            rows.append(("per-repo listing (baseline): its completeness searches", searches, "", f"{searches / 30:.0f} min at 30/min",
                         "counted, not run"))
            ticks, _ = probe(repo_store, sandbox, listed)
            rows.append(("per-repo listing (baseline): idle sensor tick", ticks, 3, "", f"5,000/h last {5000 // max(ticks, 1)} ticks"))
    finally:
        for engine in engines:
            engine.dispose()
        drop()
        drop2()

    width = max(len(r[0]) for r in rows)
    print(f"\n{'what':<{width}}  {'requests':>9}  {'bound':>6}  {'time':>16}  notes")
    for name, n, bound, took, note in rows:
        print(f"{name:<{width}}  {n:>9,}  {bound!s:>6}  {took:>16}  {note}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
