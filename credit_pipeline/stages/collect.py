"""Collection: a source's pages into the ledger, each page with its cursor in one transaction.

A closed window is collected in full (cursors ignored, the whole window proven) and
then checked for completeness against the source's own totals; the open window is
collected incrementally from the stored cursors. New facts whose window is already
in review or finalized are recorded and reported as *late*.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from credit_pipeline.core.completeness import is_short
from credit_pipeline.core.epochs import epoch_key, window_for_key
from credit_pipeline.core.statement import iso_utc
from credit_pipeline.ledger.store import CursorAdvance, LedgerStore, PageWrite
from credit_pipeline.sources.base import Page, Source, SourceError, StreamRef

class FutureEpoch(SourceError):
    """Collection of a week that has not begun (refused: nothing is written, no cursor moves)."""


EVENT_TYPE_OF_STREAM = {"pull_requests": "pr_merged", "reviews": "review_submitted", "issues": "issue_closed", "messages": "message_sent"}


@dataclass
class StreamStats:
    pages: int = 0
    new: int = 0
    seen: int = 0
    cursor: dict[str, Any] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)  # raw_sha256 of the items this pass set aside


@dataclass
class CollectReport:
    epoch_key: str
    source: str
    full: bool
    streams: dict[str, StreamStats] = field(default_factory=dict)
    requests: int = 0
    waits: list[tuple[float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    late_events: list[str] = field(default_factory=list)
    completeness: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Discord: per allow-listed parent channel, the threads seen, messages read per thread, and threads it may not read
    threads: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def new(self) -> int:
        return sum(s.new for s in self.streams.values())

    @property
    def seen(self) -> int:
        return sum(s.seen for s in self.streams.values())

    @property
    def quarantined(self) -> int:
        return sum(len(s.quarantined) for s in self.streams.values())

    @property
    def waited_seconds(self) -> float:
        return round(sum(w for w, _ in self.waits), 3)

    @property
    def shortfalls(self) -> dict[str, dict[str, Any]]:
        """Streams whose completeness blocks review (a shortfall, a partial source count, quarantined items)."""
        return {k: v for k, v in self.completeness.items() if is_short(v)}


ProgressCallback = Callable[[Page, PageWrite, CollectReport], None]


def source_cursors(store: LedgerStore, source: Source) -> dict[StreamRef, dict[str, Any] | None]:
    """Every stored cursor of the source (streams found at collection, such as Discord threads, have them too),
    and None for its configured streams that have none yet."""
    stored = {StreamRef(c["source"], c["stream"], c["source_ref"]): c["position"] for c in store.list_cursors(source.name)}
    return {**stored, **{ref: stored.get(ref) for ref in source.streams()}}


def collect_epoch(store: LedgerStore, source: Source, key: str, *, now: datetime, full: bool | None = None,
                  on_page: ProgressCallback | None = None) -> CollectReport:
    """Collect ``source`` for epoch ``key``; ``full`` defaults to whether the window has closed."""
    start, end = window_for_key(key)
    if now < start:
        # Nothing can have happened yet, and a pass would move the stream's cursor to today's newest item,
        # so the open week's next incremental pass would skip what came before it.
        raise FutureEpoch(f"epoch {key} starts {iso_utc(start)}, after now ({iso_utc(now)}); collect it once it has begun")
    closed = now >= end
    full = closed if full is None else full
    store.ensure_epoch(key)
    report = CollectReport(epoch_key=key, source=source.name, full=full)
    cursors = source_cursors(store, source)
    # Epochs already in review or finalized, read once: a new fact of one of them is late. Only those ids are kept
    # (not every new id of the pass: a week's ids would grow the collector's memory with the week).
    closed_epochs = {k for k, status in store.epoch_statuses().items() if status != "open"}
    late: list[str] = []
    try:
        for page in source.collect((start, end), cursors, full=full):
            write = store.record_page(page.events, CursorAdvance(page.stream.source, page.stream.stream, page.stream.ref, page.cursor),
                                      page.quarantined)
            stats = report.streams.setdefault(str(page.stream), StreamStats())
            stats.quarantined += [q.raw_sha256 for q in page.quarantined if q.raw_sha256 not in stats.quarantined]
            stats.pages += 1
            stats.new += write.new
            stats.seen += write.seen
            stats.cursor = page.cursor
            if closed_epochs and write.new_ids:
                fresh = set(write.new_ids)
                late += [e.event_id for e in page.events if e.event_id in fresh and epoch_key(e.event_time) in closed_epochs]
            if on_page:
                on_page(page, write, report)
        report.late_events = sorted(set(late))
        if closed and full:
            report.completeness = check_completeness(store, source, key, now, report)
    finally:
        report.requests = source.telemetry.requests
        report.waits = [(w.seconds, w.reason) for w in source.telemetry.waits]
        report.notes = list(source.telemetry.notes)
        report.threads = dict(getattr(source, "thread_report", None) or {})
    return report


def check_completeness(store: LedgerStore, source: Source, key: str, now: datetime,
                       report: CollectReport | None = None) -> dict[str, dict[str, Any]]:
    """Compare stored counts with the source's totals per stream; record them on the epoch.

    Items the pass quarantined and no later page resolved are counted per stream (``quarantined``):
    they were not credited, so the stream is short until they are read or the shortfall is waived.
    """
    start, end = window_for_key(key)
    totals = source.totals((start, end))
    stored = store.event_counts(start, end, source.name)
    shas = [sha for stats in (report.streams.values() if report else ()) for sha in stats.quarantined]
    unresolved = Counter(f"{q['source']}:{q['stream']}:{q['source_ref']}" for q in store.unresolved_quarantined(shas))
    result: dict[str, dict[str, Any]] = {}
    stored_count = getattr(source, "stored_count", None)  # a stream over many repos (GitHub organization search)
    for ref in source.streams():
        kind = EVENT_TYPE_OF_STREAM[ref.stream]
        count = stored_count(ref, stored, kind) if stored_count else stored.get((kind, ref.ref), 0)
        total = totals.get(ref)
        result[str(ref)] = {"stored": count, "source": total, "shortfall": max(0, total - count) if total is not None else 0,
                            "checked_at": iso_utc(now), "method": "search total" if total is not None else "cursor chain (source has no count)"}
        if unresolved.get(str(ref)):
            result[str(ref)]["quarantined"] = unresolved[str(ref)]
        if ref in source.incomplete_totals:  # the source's own count is partial: nothing is proven either way
            result[str(ref)].update(incomplete=True, method="search total (GitHub: incomplete_results, asked again and still partial)")
    epoch = store.get_epoch(key)
    if epoch is not None and epoch.status != "finalized":  # a finalized epoch is frozen; the result is only reported
        store.record_completeness(key, result, final_collection_at=now)
    return result
