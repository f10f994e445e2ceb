"""A page's bulk write path on a real PostgreSQL: known ids looked up, the rest COPY-ed, a racing writer's rows skipped."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import insert as pg_insert

from credit_pipeline.core.canonical import canonical_json
from credit_pipeline.core.events import ActivityEvent, payload_hash
from credit_pipeline.core.storable import storable_payload
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.records import CursorAdvance
from credit_pipeline_tests.ledger.factories import RETRIEVED, pr_event, week_of_prs

START = datetime(2026, 2, 16, tzinfo=UTC)


def cursor(position: object) -> CursorAdvance:
    return CursorAdvance("github", "pull_requests", "acme/widgets", {"page": position})


def stored_rows(store, prefix: str = "") -> dict[str, dict]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.activity_events).where(t.activity_events.c.event_id.startswith(prefix)))
        return {r.event_id: dict(r._mapping) for r in rows}


def test_reingesting_a_page_is_a_silent_no_op(store):
    events = week_of_prs(250)
    first = store.record_page(events, cursor(1))
    assert first.new_ids == [e.event_id for e in events] and first.seen == 0
    before = stored_rows(store)

    again = store.record_page(events, cursor(2))

    assert again.new_ids == [] and again.seen == 250
    assert stored_rows(store) == before  # not one row touched (ingested_at included)
    assert store.get_cursor("github", "pull_requests", "acme/widgets") == {"page": 2}


def test_a_mixed_page_returns_exactly_the_new_ids_in_page_order(store):
    events = week_of_prs(40)
    store.record_page(events[10:20] + events[30:], cursor(1))
    page = events[::-1] + events[:5]  # reversed, with five ids repeated within the page

    write = store.record_page(page, cursor(2))

    known = {e.event_id for e in events[10:20] + events[30:]}
    assert write.new_ids == [e.event_id for e in events[::-1] if e.event_id not in known]
    assert write.new == 20 and len(stored_rows(store)) == 40


def test_a_row_the_ledger_refuses_mid_page_writes_nothing_of_the_page_nor_its_cursor(store):
    events = week_of_prs(30)
    store.record_page(events[:10], cursor(1))
    bad = events[20].model_copy(update={"platform_user_id": "not-numeric"})  # bypasses validation; CHECK refuses it

    with pytest.raises(sa.exc.IntegrityError, match="platform_user_id"):
        store.record_page(events[5:20] + [bad] + events[21:], cursor(2))

    assert set(stored_rows(store)) == {e.event_id for e in events[:10]}
    assert store.get_cursor("github", "pull_requests", "acme/widgets") == {"page": 1}
    # The next page, on the same pooled connection, finds nothing left staged from the failed one.
    assert store.record_page(events[10:12], cursor(3)).new_ids == [events[10].event_id, events[11].event_id]


def test_a_row_copy_cannot_read_fails_the_page_with_a_sqlalchemy_error(store):
    events = week_of_prs(5)
    bad = events[2].model_copy(update={"payload": {"text": "nul \x00 byte"}})  # jsonb refuses \u0000
    with pytest.raises(sa.exc.DataError):
        store.record_page(events[:2] + [bad] + events[3:], cursor(1))
    assert stored_rows(store) == {} and store.get_cursor("github", "pull_requests", "acme/widgets") is None


def test_pages_in_one_atomic_block_each_report_only_their_own_new_ids(store):
    events = week_of_prs(20)
    with store.atomic():
        first = store.record_page(events[:12], cursor(1))
        second = store.record_page(events[8:], cursor(2))
    assert first.new_ids == [e.event_id for e in events[:12]]
    assert second.new_ids == [e.event_id for e in events[12:]] and second.seen == 4
    assert len(stored_rows(store)) == 20


def test_a_page_racing_another_writer_skips_the_events_it_stored_meanwhile(store, monkeypatch):
    events = week_of_prs(6)
    staged, insert_staged = [], store._insert_staged
    monkeypatch.setattr(store, "_insert_staged", lambda conn, page: staged.append(len(page)) or insert_staged(conn, page))
    other = store.engine.connect()
    racing = other.begin()
    other.execute(pg_insert(t.activity_events), [events[2].model_dump()])  # not committed yet: the page cannot see it
    result = {}
    page = threading.Thread(target=lambda: result.update(write=store.record_page(events, cursor(1))))
    page.start()
    with store.engine.connect() as watch:  # the page's COPY waits on the racing row's key
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        deadline = time.monotonic() + 20
        while not watch.exec_driver_sql(waiting).scalar() and time.monotonic() < deadline:
            time.sleep(0.05)
    racing.commit()
    other.close()
    page.join(20)

    assert staged == [6]  # the COPY was refused (unique violation) and the idempotent insert took the page
    assert result["write"].new_ids == [e.event_id for e in events if e is not events[2]] and result["write"].seen == 1
    assert set(stored_rows(store)) == {e.event_id for e in events}
    assert store.get_cursor("github", "pull_requests", "acme/widgets") == {"page": 1}


AWKWARD = [
    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "\\", "end\\", '"quoted" \'single\'',
    "ünïcödé ✓ 漢字 🎉 👩\u200d💻", "e\u0301 combining", "\u2028line separator\u2029", "\ufeffbom", "\x7f\x1f control",
    "\\u0041 not an escape", "{\"looks\": [\"like json\"]}", "",
]


def awkward_event(number: int) -> ActivityEvent:
    payload = {"number": number, "texts": AWKWARD, "ключ ✓": {"deep": AWKWARD[::-1]}, "big": 2**70, "neg": -(2**63) - 1,
               "float": 0.1, "exp": 1e-7, "none": None, "flags": [True, False], "empty": {}}
    login = "l\\o\tg\ni\rn ✓"
    return ActivityEvent(
        event_id=f"github:pr:acme/widgets:{number}", source="github", event_type="pr_merged", platform_user_id="583231",
        platform_login=login, artifact_url=f"https://github.com/acme/widgets/pull/{number}?q=ü\\t", event_time=START + timedelta(hours=number),
        metadata={"repo": "acme/widgets", "title": "\\ tab\t nl\n ✓"}, payload=payload, producer="test\\producer",
        producer_version="1\t", retrieved_at=RETRIEVED,
    )


def test_awkward_text_round_trips_exactly_and_as_a_parameterized_insert_would_store_it(store):
    escaped = storable_payload({"content": "nul \x00 and a lone surrogate \ud800", "id": "1"})  # what a source stores for these
    events = [awkward_event(1), awkward_event(2).model_copy(update={"payload": escaped, "payload_hash": payload_hash(escaped)})]
    store.record_page(events, cursor(1))
    with store.engine.begin() as conn:  # the same events through SQLAlchemy's parameterized INSERT, under other ids
        conn.execute(pg_insert(t.activity_events), [{**e.model_dump(), "event_id": e.event_id + "0"} for e in events])

    rows = stored_rows(store)
    for event in events:
        row = rows[event.event_id]
        assert canonical_json(row["payload"]) == canonical_json(event.payload)
        assert payload_hash(row["payload"]) == row["payload_hash"] == event.payload_hash
        assert {k: row[k] for k in event.model_dump()} == event.model_dump()
    with store.engine.connect() as conn:
        differing = conn.execute(sa.text(
            "SELECT count(*) FROM activity_events a JOIN activity_events b ON b.event_id = a.event_id || '0' "
            "WHERE (a.payload, a.metadata, a.platform_login, a.artifact_url, a.event_time, a.producer, a.producer_version) IS DISTINCT FROM "
            "(b.payload, b.metadata, b.platform_login, b.artifact_url, b.event_time, b.producer, b.producer_version)")).scalar()
    assert differing == 0


_runs = itertools.count()
pages_of_indices = st.lists(st.lists(st.integers(0, 24), max_size=30), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pages=pages_of_indices)
def test_any_sequence_of_overlapping_pages_stores_exactly_their_union_once(store, pages):
    repo = f"acme/run{next(_runs)}"  # each example in its own id space of the one database
    universe = [pr_event(i + 1, START + timedelta(minutes=i), repo=repo) for i in range(25)]
    seen: list[str] = []
    for number, page in enumerate(pages):
        events = [universe[i] for i in page]
        write = store.record_page(events, CursorAdvance("github", "pull_requests", repo, {"page": number}))
        expected = [e for e in dict.fromkeys(e.event_id for e in events) if e not in seen]
        assert write.new_ids == expected and write.seen == len(events) - len(expected)
        seen += expected
    rows = stored_rows(store, f"github:pr:{repo}:")
    assert sorted(rows) == sorted(seen) and len(seen) == len(set(seen))
    assert all(rows[e.event_id]["payload_hash"] == e.payload_hash for e in universe if e.event_id in rows)
    assert store.get_cursor("github", "pull_requests", repo) == {"page": len(pages) - 1}


# -- the other bulk writes of a week's first resolution: rule facts and curation ---------------------------------


def test_a_large_curation_goes_through_copy_under_the_same_rule_as_a_small_one(store):
    from credit_pipeline.ledger.records import CurationProposal

    events = [pr_event(i, START + timedelta(minutes=i), str(100 + i % 5), f"u{i % 5}") for i in range(1, 801)]
    for i in range(0, len(events), 100):
        store.record_page(events[i:i + 100], None)
    key = "2026-02-16"
    store.ensure_epoch(key)
    proposals = [CurationProposal(e.event_id, f"github:{e.platform_user_id}", "claimant") for e in events]
    assert store.curate(key, proposals) == 800  # COPY path (>= 500 rows)
    store.set_curation(events[0].event_id, actor="admin", included=False, note="spam")
    assert store.curate(key, proposals) == 0  # the same proposals again: nothing written
    changed = [CurationProposal(p.event_id, "alice", "bound") if i % 4 == 0 else p for i, p in enumerate(proposals)]
    assert store.curate(key, changed) == 200
    small = store.curate(key, changed[:10])  # the small path, for comparison: the same rule
    assert small == 0
    rows = {r["event_id"]: r for r in store.curated_events(key)}
    assert len(rows) == 800 and rows[events[0].event_id]["included"] is False and rows[events[0].event_id]["note"] == "spam"
    assert sum(1 for r in rows.values() if r["recipient_id"] == "alice") == 200


def test_rule_facts_go_through_copy_and_facts_already_derived_are_kept(store):
    events = week_of_prs(600)
    for i in range(0, len(events), 100):
        store.record_page(events[i:i + 100], None)
    first = {e.event_id: {"labels": ["a\tb", "back\\slash"], "n": i} for i, e in enumerate(events[:400])}
    assert store.record_facts(first, 1) == 400  # COPY
    again = {e.event_id: {"labels": [], "n": -1} for e in events}  # 400 known (kept as they are), 200 new
    assert store.record_facts(again, 1) == 200  # a unique violation: the idempotent insert instead
    stored = store.facts_of([e.event_id for e in events], 1)
    assert stored[events[0].event_id] == {"labels": ["a\tb", "back\\slash"], "n": 0}
    assert stored[events[599].event_id] == {"labels": [], "n": -1} and len(stored) == 600
