"""Read-only views of the ledger for people: epoch overview."""

from __future__ import annotations

from typing import Any

from credit_pipeline.ledger.store import LedgerStore


def _iso(ts: Any) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _completeness(result: dict[str, Any] | None, waiver: dict[str, Any] | None) -> str:
    """One word per epoch: ``ok``, ``short: STREAMS`` (``waived`` when a waiver covers it), or ``not checked``."""
    from credit_pipeline.core.completeness import short_streams

    if not result:
        return "not checked"
    short = short_streams(result)
    if not short:
        return f"ok ({len(result)} streams)"
    return ("waived: " if waiver else "short: ") + ", ".join(short)


def epoch_overview(store: LedgerStore) -> list[dict[str, Any]]:
    """One row per epoch: key, window, status, events, pool, statement hash, late events, completeness."""
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
            "late_events": int(row["late_events"] or 0),
            "completeness": _completeness(row["completeness"], row["completeness_waiver"]),
        }
        for row in store.epoch_summaries()
    ]


def unresolved_accounts(store: LedgerStore) -> list[dict[str, Any]]:
    """Every account paid as a claimant and not bound to a person now, with what it holds across epochs: the
    credits of the latest statement of finalized epochs (held for it), and the units it has in epochs not
    finalized yet. Biggest holders first; binding the account resolves open and review epochs (finalized
    statements keep their claimant lines: a correction pays them)."""
    from credit_pipeline.core.recipients import is_claimant
    from credit_pipeline.stages.allocate import last_known_logins

    bound = {f"{p}:{e}" for (p, e) in store.bindings()}
    held: dict[str, dict[str, Any]] = {}

    def row(rid: str) -> dict[str, Any]:
        return held.setdefault(rid, {"claimant": rid, "login": None, "epochs": [], "credits_held": 0, "units_pending": 0,
                                     "bind": "credit-pipeline identity bind " + rid.replace(":", " ", 1) + " USER"})

    for epoch in store.epoch_summaries():
        key = epoch["epoch_key"]
        if epoch["status"] == "finalized":
            bundle = store.statement(key) or {"payouts": [], "events": []}
            logins = {e["recipient_id"]: e.get("platform_login") for e in bundle.get("events", []) if e.get("platform_login")}
            for line in bundle["payouts"]:
                if is_claimant(line["recipient_id"]) and line["recipient_id"] not in bound:
                    r = row(line["recipient_id"])
                    r["credits_held"] += int(line["amount_credits"])
                    r["epochs"].append(key)
                    r["login"] = logins.get(line["recipient_id"]) or r["login"]
        else:
            logins = last_known_logins(store.curated_rows(key))  # streamed
            for a in store.allocations(key):
                rid = a["recipient_id"]
                if is_claimant(rid) and rid not in bound:
                    r = row(rid)
                    r["units_pending"] += int(a["final_units"] if a.get("final_units") is not None else a["proposed_units"])
                    r["epochs"].append(key)
                    r["login"] = logins.get(rid) or r["login"]
    rows = sorted(held.values(), key=lambda r: (-r["credits_held"], -r["units_pending"], r["claimant"]))
    for r in rows:
        r["epochs"] = ", ".join(r["epochs"])
    return rows


def report_extras(store: LedgerStore, key: str) -> dict[str, Any]:
    """What the weekly report adds from the ledger: events of the window that arrived after the epoch left
    ``open`` (stored, not credited), and the completeness result per stream; both from the epoch's summary row
    (one query: the late events are counted in SQL, no event is read)."""
    from credit_pipeline.core.completeness import is_short

    row = next((r for r in store.epoch_summaries() if r["epoch_key"] == key), None)
    completeness = [{"stream": stream, "expected": r.get("source"), "collected": r.get("stored"), "ok": not is_short(r)}
                    for stream, r in sorted(((row or {}).get("completeness") or {}).items())]
    return {"late_events": int((row or {}).get("late_events") or 0), "completeness": completeness}


def finalized_bundles(store: LedgerStore) -> list[dict[str, Any]]:
    """Every statement revision of every finalized epoch, oldest first (what the transparency site publishes)."""
    import json

    out = []
    for row in store.epoch_summaries():
        if row["statement_hash"]:
            out += [json.loads(s["bundle"]) for s in store.statement_rows(row["epoch_key"])]
    return out
