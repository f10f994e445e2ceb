"""Verify's payload check: every credited event's stored payload hashes as the statement records and parses
into the columns it shows (SPEC §10).

It reads only append-only rows and does not depend on the rebuild of the statement, and it is most of a large
statement's verify time (fetching, hashing and parsing every payload). So for a statement of at least
``PARALLEL_FROM`` credited events it runs in worker processes while the caller rebuilds the statement: each worker
(``python -m credit_pipeline.stages.payload_check``, its own connection, the database URL in its environment,
never on its command line) reads the stored statement itself and checks one contiguous slice of its events.
The first mismatch in event order is reported, the one a check in this process would report. Inside a caller's
open transaction the check runs in this process (a worker would not see uncommitted rows).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from credit_pipeline.core.events import payload_hash
from credit_pipeline.core.policy import validate_policy
from credit_pipeline.core.rules import credited_account
from credit_pipeline.core.statement import iso_utc
from credit_pipeline.core.verification import Mismatch, shown
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.sources.base import MalformedItem
from credit_pipeline.sources.parsing import columns_from_payload, event_facts

PARALLEL_FROM = 20_000  # credited events; below this, starting a process costs more than it saves
CHUNK = 10_000  # payloads in memory at once, per process
_URL_VARIABLE = "CREDIT_PIPELINE_PAYLOAD_CHECK_URL"


def workers() -> int:
    """Worker processes: one fewer than the cores (the caller rebuilds meanwhile), at least one, at most four."""
    return min(4, max(1, (os.cpu_count() or 1) - 1))


class PayloadChecks:
    """The payload check of one stored statement revision, started; ``wait`` raises its first mismatch."""

    def __init__(self, store: LedgerStore, bundle: dict[str, Any], revision: int):
        self._store, self._bundle = store, bundle
        self._procs: list[subprocess.Popen] = []
        # Started before the bundle is checked on its own: a bundle without a list of events is checked here, after.
        listed = isinstance(bundle, dict) and isinstance(bundle.get("events"), list) and isinstance(bundle.get("epoch"), dict)
        events = len(bundle["events"]) if listed else 0
        if events >= PARALLEL_FROM and store._active.get() is None:
            env = {**os.environ, _URL_VARIABLE: store.engine.url.render_as_string(hide_password=False)}
            parts = min(workers(), events)
            self._procs = [subprocess.Popen(
                [sys.executable, "-m", "credit_pipeline.stages.payload_check", bundle["epoch"]["key"], str(revision),
                 str(part), str(parts)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for part in range(parts)]

    def wait(self) -> None:
        if not self._procs:
            found = payload_mismatch(self._store, self._bundle["policy"], self._bundle["events"])
            if found:
                raise Mismatch(found)
            return
        for proc in self._procs:  # in slice order: the first mismatch is the one a check here would report
            out, err = proc.communicate()
            if proc.returncode != 0:
                last = (err.strip().splitlines() or ["no output"])[-1]
                raise LedgerError(f"verify's payload check worker exited with {proc.returncode} ({last}); run verify again")
            found = json.loads(out)["mismatch"]
            if found:
                raise Mismatch(found)

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self._procs = []


@contextlib.contextmanager
def payload_checks(store: LedgerStore, bundle: dict[str, Any], revision: int) -> Iterator[PayloadChecks]:
    """Start the check of ``bundle`` (stored revision ``revision``); whatever is still running is stopped on exit."""
    checks = PayloadChecks(store, bundle, revision)
    try:
        yield checks
    finally:
        checks.close()


def payload_mismatch(store: LedgerStore, policy_document: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    """The first of ``events`` whose stored payload does not hash or parse into what the statement shows, as a line."""
    policy = validate_policy(policy_document, "statement policy")
    issue_credit = policy.sources.github.issue_credit if policy.sources.github else "author"
    for i in range(0, len(events), CHUNK):
        chunk = events[i:i + CHUNK]
        payloads = store.payloads([e["event_id"] for e in chunk])
        for event in chunk:
            found = _event_mismatch(event, payloads.get(event["event_id"]), policy, issue_credit)
            if found:
                return found
    return None


_DERIVED_FIELDS = ("source", "event_type", "platform_user_id", "platform_login")


def _event_mismatch(event: dict[str, Any], stored: dict[str, Any] | None, policy, issue_credit: str) -> str | None:
    eid = event["event_id"]
    if stored is None:
        return f"activity_events: events[event_id={eid}]: credited by the statement but not stored"
    if payload_hash(stored) != event["payload_hash"]:
        return (f"activity_events: events[event_id={eid}].payload_hash: statement says {shown(event['payload_hash'])}, "
                f"the stored payload hashes to {shown(payload_hash(stored))}")
    if "platform_user_id" not in event:
        return None  # a v1 statement does not name the account
    try:
        derived = columns_from_payload(eid, stored, issue_credit=issue_credit)
    except MalformedItem as exc:
        return f"activity_events: events[event_id={eid}]: the stored payload does not yield this event ({exc})"
    want = {name: getattr(derived, name) for name in _DERIVED_FIELDS}
    if policy.rules is not None:
        facts = event_facts(eid, stored)
        if facts != event.get("facts"):
            return (f"activity_events: events[event_id={eid}].facts: statement says {shown(event.get('facts'))}, "
                    f"its stored payload gives {shown(facts)}")
        want["platform_user_id"], want["platform_login"], _ = credited_account(
            derived.event_type, (derived.platform_user_id, derived.platform_login, derived.is_bot), facts, policy)
    for name in _DERIVED_FIELDS:
        if want[name] != event[name]:
            return (f"activity_events: events[event_id={eid}].{name}: statement says {shown(event[name])}, "
                    f"its stored payload gives {shown(want[name])}")
    if iso_utc(derived.event_time) != event["event_time"]:
        return (f"activity_events: events[event_id={eid}].event_time: statement says {shown(event['event_time'])}, "
                f"its stored payload gives {shown(iso_utc(derived.event_time))}")
    return None


def _worker(key: str, revision: int, part: int, parts: int) -> str | None:
    """One worker's slice: the stored revision's events ``part`` of ``parts`` (contiguous, in the statement's order)."""
    engine = sa.create_engine(os.environ[_URL_VARIABLE], poolclass=sa.pool.NullPool)
    try:
        store = LedgerStore(engine)
        rows = [r for r in store.statement_rows(key) if r["revision"] == revision]
        if not rows:
            return f"payout_statements: revision {revision} of epoch {key} is not stored"
        bundle = json.loads(rows[0]["bundle"])
        events = bundle["events"]
        size = -(-len(events) // parts)
        return payload_mismatch(store, bundle["policy"], events[part * size:(part + 1) * size])
    finally:
        engine.dispose()


if __name__ == "__main__":
    print(json.dumps({"mismatch": _worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))}))
