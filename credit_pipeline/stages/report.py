"""Read-only views of the ledger for people: epoch overview."""

from __future__ import annotations

from typing import Any

from credit_pipeline.ledger.store import LedgerStore


def _iso(ts: Any) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def epoch_overview(store: LedgerStore) -> list[dict[str, Any]]:
    """One row per epoch: key, window, status, events, pool, statement hash."""
    return [
        {
            "key": row["epoch_key"],
            "window": f"[{_iso(row['window_start'])}, {_iso(row['window_end'])})",
            "status": row["status"],
            "events": row["events"],
            "counted_events": row["counted_events"],
            "pool": row["pool"],
            "statement_hash": row["statement_hash"] or "",
            "revision": row["revision"] or "",
            "chain": row["chain"] or "",
        }
        for row in store.epoch_summaries()
    ]
