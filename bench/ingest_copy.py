"""Benchmark: a million events through the real insert path beside PostgreSQL ``COPY`` of the same rows.

Events are built the way the sources build them: sandbox payloads (Discord messages, GitHub REST pull
requests and closed issues, rendered by the sandbox servers' own renderers from a generated org) turned
into ``ActivityEvent`` rows by ``sources.parsing``, each template re-numbered so every event id is new.
About nine pages in ten are Discord messages, as in the issue's large week.

1. The real path: ``LedgerStore.record_page`` in pages of the collector's size (100 events and their
   cursor, one transaction a page) into a fresh, migrated temporary database.
2. ``COPY`` of the same rows (serialized in COPY text format by the same code) into a bare table of the same
   columns, no indexes, no triggers, no constraints, in one transaction.
3. The real path again over the same events: every page is already stored (a no-op).

The events are built once, untimed; each side's time is its writes from those ``ActivityEvent`` objects, so
COPY's includes serializing the rows to COPY text (the real path pays the same serialization). Rows/s of
each side, side by side, and the ratios the issue sets (real path >= 0.5x COPY; re-ingest no costlier).

    python bench/ingest_copy.py [--database-url URL] [--events 1000000]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa

from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.ledger.engine import normalize_url
from credit_pipeline.ledger.copy_rows import EVENT_COLUMNS, copy_text
from credit_pipeline.ledger.migrations import upgrade
from credit_pipeline.ledger.records import CursorAdvance
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox import discord_payloads
from credit_pipeline.sandbox.github_payloads import GitHubRenderer
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.sources.parsing import discord_message_columns, github_issue_columns, github_pull_columns

sys.path.insert(0, os.path.dirname(__file__))
from api_requests import temp_database  # noqa: E402

PAGE = 100  # the collectors' page size (GitHub per_page, Discord limit)
RETRIEVED = datetime(2026, 3, 2, 6, tzinfo=UTC)
DISCORD_EPOCH_MS = 1420070400000


class Templates:
    """Rendered payloads of a small generated org, re-numbered into as many distinct events as asked for."""

    def __init__(self, seed: int = 2026) -> None:
        org = generate_org(seed=seed, weeks=1, repos=3, prs_per_repo=60, reviews_per_pr=1, issues_per_repo=30, channels=4,
                           messages_per_channel=400)
        self.week_ms = int(org.windows[0][0].timestamp() * 1000) - DISCORD_EPOCH_MS
        self.guild_id = str(org.guild.id)
        self.messages = [(str(c.id), discord_payloads.message(m, True)) for c in org.allow_listed_channels for m in c.messages]
        render = GitHubRenderer("https://api.github.com", org.org_login, org.org_id)
        self.pulls = [(r.full_name, render.pull(p, r)) for r in org.repos for p in r.pulls if p.merged_at]
        self.issues = [(r.full_name, render.issue(i, listed=True)) for r in org.repos for i in r.issues if i.closed_at]

    def page(self, number: int, total_pages: int) -> tuple[list[ActivityEvent], CursorAdvance]:
        """Page ``number``: 100 events of one stream (Discord for 9 pages in 10), and the cursor after it."""
        first = number * PAGE
        if number % 10:
            channel, _ = self.messages[number % len(self.messages)]
            events = [self._message(first + k, total_pages * PAGE) for k in range(PAGE)]
            return events, CursorAdvance("discord", "messages", channel, {"after": events[-1].payload["id"]})
        kind = "pull_requests" if number % 20 else "issues"
        events = [self._github(kind, first + k) for k in range(PAGE)]
        return events, CursorAdvance("github", kind, "acme/bench", {"page": number, "head": events[0].event_time.isoformat()})

    def _message(self, i: int, total: int) -> ActivityEvent:
        channel, template = self.messages[i % len(self.messages)]
        ms = self.week_ms + i * (7 * 86_400_000 // max(total, 1))  # spread over the week, in order
        message = {**template, "id": str((ms << 22) | (i & 0x3FFFFF)), "channel_id": channel}
        return discord_message_columns(self.guild_id, channel, message).event(
            message, producer="credit_pipeline.sources.discord", producer_version="1", retrieved_at=RETRIEVED)

    def _github(self, kind: str, i: int) -> ActivityEvent:
        pool = self.pulls if kind == "pull_requests" else self.issues
        repo, template = pool[i % len(pool)]
        number = 1_000_000 + i
        path = "pull" if kind == "pull_requests" else "issues"
        item = {**template, "number": number, "html_url": f"https://github.com/{repo}/{path}/{number}"}
        parse = github_pull_columns if kind == "pull_requests" else github_issue_columns
        return parse(repo, item, f"github:{kind}:{repo}#{number}").event(
            item, producer="credit_pipeline.sources.github", producer_version="1", retrieved_at=RETRIEVED)


def pages(templates: Templates, count: int) -> Iterator[tuple[list[ActivityEvent], CursorAdvance]]:
    total = -(-count // PAGE)
    for number in range(total):
        events, cursor = templates.page(number, total)
        yield events[: count - number * PAGE], cursor


Pages = list[tuple[list[ActivityEvent], CursorAdvance]]


def real_path(store: LedgerStore, page_list: Pages) -> tuple[float, int]:
    """Seconds spent in ``record_page`` over every page, and the new events it reported."""
    spent, new = 0.0, 0
    for events, cursor in page_list:
        started = time.perf_counter()
        new += store.record_page(events, cursor).new
        spent += time.perf_counter() - started
    return spent, new


def copy_path(engine: sa.Engine, page_list: Pages) -> tuple[float, int]:
    """Seconds spent serializing and ``COPY``-ing every row into the bare table (10,000 rows a COPY, one transaction)."""
    columns = ", ".join(EVENT_COLUMNS)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bare_events AS SELECT * FROM activity_events WITH NO DATA")
    spent, batch = 0.0, []
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()

        def flush() -> None:
            nonlocal spent
            started = time.perf_counter()
            cursor.copy_expert(f"COPY bare_events ({columns}) FROM STDIN", io.StringIO(copy_text(batch)))
            spent += time.perf_counter() - started
            batch.clear()

        for events, _ in page_list:
            batch.extend(events)
            if len(batch) >= 10_000:
                flush()
        if batch:
            flush()
        stored = conn.exec_driver_sql("SELECT count(*) FROM bare_events").scalar()
    return spent, stored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    templates = Templates()
    started = time.perf_counter()
    page_list = list(pages(templates, args.events))  # built once, untimed: every pass writes the same rows
    size = sum(len(copy_text(events).encode()) for events, _ in page_list[:100]) / sum(len(events) for events, _ in page_list[:100])
    print(f"{args.events} events in {len(page_list)} pages of {PAGE} ({len(templates.messages)} message, {len(templates.pulls)} PR, "
          f"{len(templates.issues)} issue templates; about {size:.0f} bytes a row in COPY text; built in "
          f"{time.perf_counter() - started:.0f} s)", flush=True)

    url, drop = temp_database(normalize_url(args.database_url))
    engine = sa.create_engine(url)
    try:
        upgrade(engine)
        store = LedgerStore(engine)
        t_real, new = real_path(store, page_list)
        print(f"record_page: {t_real:.1f} s", flush=True)
        t_copy, copied = copy_path(engine, page_list)
        print(f"COPY: {t_copy:.1f} s", flush=True)
        t_again, new_again = real_path(store, page_list)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM activity_events").scalar()
            size_real = conn.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('activity_events'))").scalar()
            size_bare = conn.exec_driver_sql("SELECT pg_size_pretty(pg_total_relation_size('bare_events'))").scalar()
    finally:
        engine.dispose()
        drop()

    rate_real, rate_copy, rate_again = args.events / t_real, args.events / t_copy, args.events / t_again
    print(f"\n{'path':44} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'vs COPY':>8}")
    print(f"{'record_page, 100 a page + cursor (new)':44} {new:>9} {t_real:>8.1f} {rate_real:>9.0f} {rate_real / rate_copy:>7.2f}x")
    print(f"{'COPY into a bare table (text, 10k a COPY)':44} {copied:>9} {t_copy:>8.1f} {rate_copy:>9.0f} {1:>7.2f}x")
    print(f"{'record_page again (all known: no-op)':44} {new_again:>9} {t_again:>8.1f} {rate_again:>9.0f} {rate_again / rate_copy:>7.2f}x")
    print(f"\nreal path / COPY: {rate_real / rate_copy:.2f}x (target >= 0.50x); re-ingest / first ingest time: "
          f"{t_again / t_real:.2f} (target <= 1.00); activity_events {size_real}, bare table {size_bare}")
    ok = stored == copied == new == args.events and new_again == 0
    if not ok:
        print(f"MISMATCH: stored {stored}, copied {copied}, new {new}, new on re-ingest {new_again}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
