"""Benchmark: API requests, time and throughput of collecting one large week through both adapters.

A generated week with >= 2,000 merged PRs and >= 6,000 reviews over 10 repos and >= 50,000 Discord
messages over 10 allow-listed channels (with the sample's threads and forum posts) is served by the sandbox; the real PyGithub and discord.py
clients collect it into a real PostgreSQL ledger. For every stream and ref the table shows the requests
used beside the floor, ``ceil(items / 100)``, where items are the facts in the window, doubled for PRs and
issues (each listing page of them is followed by one GraphQL query for what the REST list form lacks: sizes,
linked issues, closers). The budget the issue set is ``ceil(K / 100) + 3`` per listing, with K the items the
API must list to prove the window complete.

    python bench/api_requests.py [--database-url URL] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from datetime import timedelta

import sqlalchemy as sa

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.ledger.engine import normalize_url, with_database
from credit_pipeline.ledger.migrations import upgrade
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.collect import EVENT_TYPE_OF_STREAM, collect_epoch
from credit_pipeline.stages.sources_config import build_source


def temp_database(server_url: str, suffix: str = "") -> tuple[str, callable]:
    name = f"cp_bench_{os.getpid()}{suffix}"
    admin = sa.create_engine(with_database(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return with_database(server_url, name), drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the sample size (1.0 = the issue's size)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    org = generate_org(seed=2026, weeks=1, repos=10, prs_per_repo=int(400 * args.scale), reviews_per_pr=3,
                       issues_per_repo=int(60 * args.scale), channels=11, messages_per_channel=int(9400 * args.scale), threads=True)
    window = org.windows[0]
    key = window[0].date().isoformat()
    truth = org.ground_truth(*window)
    kinds = Counter(x.event_type for x in truth.values())
    print(f"sample week {key}: {kinds['pr_merged']} merged PRs, {kinds['review_submitted']} reviews, "
          f"{kinds['issue_closed']} closed issues over {len(org.repos)} repos; {kinds['message_sent']} messages over "
          f"{len(org.allow_listed_channels)} channels (generated in {time.perf_counter() - t0:.1f} s)")

    url, drop = temp_database(normalize_url(args.database_url))
    engine = sa.create_engine(url)
    upgrade(engine)
    store = LedgerStore(engine)
    policy = validate_policy({"version": 1, "epoch": {"anchor": key}, "sources": org.policy_sources(), "weights": {}, "pool": {"base_issuance": 1},
                               "approvers": ["0x1111111111111111111111111111111111111111"]})
    rows, totals = [], Counter()
    try:
        with start_sandbox(org, github_token="bench", discord_token="bench") as sandbox:
            for name in ("github", "discord"):
                source = build_source(name, policy, sandbox.env())
                sandbox.log.reset()
                started = time.perf_counter()
                report = collect_epoch(store, source, key, now=window[1] + timedelta(hours=6))
                elapsed = time.perf_counter() - started
                log = sandbox.log.records(name)
                for ref in source.streams():
                    items = sum(1 for x in truth.values() if x.event_type == EVENT_TYPE_OF_STREAM[ref.stream]
                                and (x.repo == ref.ref or x.channel_id == ref.ref))
                    used = source.telemetry.by_stream.get(str(ref), 0)
                    # PRs and issues: a listing page and the GraphQL details query of that page per 100 items
                    per_page = 2 if ref.stream in ("pull_requests", "issues") else 1
                    rows.append((str(ref), items, used, per_page * math.ceil(items / 100)))
                for parent, seen in sorted(getattr(source, "thread_report", {}).items()):
                    # a thread: one request per 100 of its messages, the page that proves it ends; its parent's listings
                    for thread, count in sorted(seen["messages"].items()):
                        used = source.telemetry.by_stream.get(f"discord:messages:{thread}", 0)
                        rows.append((f"discord:messages:{thread} (thread of {parent})", count, used, max(1, math.ceil(count / 100))))
                listings = {k: v for k, v in source.telemetry.by_stream.items() if k.startswith("discord:threads:")}
                for ref, used in sorted(listings.items()):
                    rows.append((f"{ref} (thread listings)", 0, used, 1))
                assert len(log) >= source.telemetry.requests, "the sandbox saw fewer requests than the adapter counted"
                totals[name] = (report.new, report.requests, len(log), elapsed, report.waited_seconds)
            missing = set(truth) - {e["event_id"] for e in store.events_between(*window)}
    finally:
        engine.dispose()
        drop()

    print(f"\n{'stream':48} {'items':>7} {'requests':>9} {'floor':>6}")
    for stream, items, used, floor in rows:
        print(f"{stream:48} {items:>7} {used:>9} {floor:>6}")
    print(f"\n{'source':8} {'events':>8} {'requests':>9} {'floor':>6} {'seconds':>8} {'events/s':>9} {'waits s':>8}")
    for name, (events, _, http, elapsed, waited) in totals.items():
        floor = sum(r[3] for r in rows if r[0].startswith(name))
        print(f"{name:8} {events:>8} {http:>9} {floor:>6} {elapsed:>8.1f} {events / elapsed:>9.0f} {waited:>8.1f}")
    print(f"\nground truth: {len(truth)} events, {len(missing)} missing after collection")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
