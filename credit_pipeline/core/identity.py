"""The identity log as data: replaying it into bindings, and its digest (SPEC §5, §9).

Bindings are the current state of the append-only log of bind / revoke / merge
events. A statement records how far into the log its recipients were resolved
(``through_event_id``) and a hash of that prefix, so verify can replay the same
prefix and catch a log that was edited, truncated or re-pointed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from credit_pipeline.core.canonical import canonical_hash

LOG_FIELDS = ("identity_event_id", "action", "provider", "external_id", "user_id", "previous_user_id", "actor", "evidence", "created_at")


def replay_bindings(log: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Account → person after applying the log in id order (bind and merge bind; revoke unbinds)."""
    bindings: dict[tuple[str, str], str] = {}
    for event in sorted(log, key=lambda e: e["identity_event_id"]):
        account = (event["provider"], event["external_id"])
        if event["action"] == "revoke":
            bindings.pop(account, None)
        else:
            bindings[account] = event["user_id"]
    return bindings


def identity_digest(log: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``through_event_id``, ``events`` and ``log_hash`` of a log prefix (timestamps already ISO UTC strings)."""
    rows = sorted(({f: e.get(f) for f in LOG_FIELDS} for e in log), key=lambda e: e["identity_event_id"])
    return {"through_event_id": rows[-1]["identity_event_id"] if rows else 0, "events": len(rows), "log_hash": canonical_hash(rows)}
