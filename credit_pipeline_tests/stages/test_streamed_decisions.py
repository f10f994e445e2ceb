"""The epoch decided one recipient at a time (``stream_decisions``) is the epoch decided at once (``epoch_decisions``).

Resolution, allocation and their drift checks stream an epoch's curated rows per recipient through a server-side
cursor so that a week of millions of events is never in memory (issue 13). That is only sound if the streamed
decisions are exactly the whole-epoch ones: Hypothesis writes arbitrary epochs into the real ledger (events, their
rule facts, curation with exclusions, overrides and unattributed rows) under arbitrary rules, with daily caps,
dedupe, person caps and share caps that bind, and compares every decision, every proposal and the drift lines.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credit_pipeline.core.allocation import BOUND, CLAIMANT, UNRESOLVED_EXCLUDED
from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.core.policy import validate_policy
from credit_pipeline.core.rules import FACTS_VERSION
from credit_pipeline.ledger.migrations import upgrade
from credit_pipeline.ledger.records import CurationProposal
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.stages.allocate import last_known_logins
from credit_pipeline.stages.decisions import epoch_decisions, propose, propose_epoch, stream_decisions
from credit_pipeline.stages.derive import allocation_drift, epoch_drift, resolution_drift
from credit_pipeline.stages.explain import rule_summary, rules_view
from credit_pipeline_tests.conftest import scratch_database

ANCHOR = datetime(2026, 1, 5, tzinfo=UTC)
_weeks = itertools.count(1)
_ids = itertools.count(1)

RECIPIENTS = ["alice", "bob", "carol", "github:77", "discord:88", None]
# Id prefixes whose order by code point differs from a linguistic collation's (case, punctuation): events at the same
# instant are decided in id order by code point, and the database must hand them over in that order.
TAGS = ["", "A", "a", "B", "b", "-", "_", "Z~", "é"]
KINDS = [("github", "pr_merged"), ("github", "review_submitted"), ("github", "issue_closed"), ("discord", "message_sent")]


def facts_for(kind: str, draw) -> dict:
    if kind == "pr_merged":
        return {"pr": f"acme/w#{draw(st.integers(1, 3))}", "labels": draw(st.lists(st.sampled_from(["trivial", "docs"]), max_size=1)),
                "additions": draw(st.integers(0, 30)), "deletions": draw(st.integers(0, 5)),
                "closes": draw(st.lists(st.sampled_from(["acme/w#10", "acme/w#11"]), max_size=2))}
    if kind == "review_submitted":
        return {"pr": f"acme/w#{draw(st.integers(1, 3))}", "state": draw(st.sampled_from(["APPROVED", "COMMENTED", "DISMISSED"])),
                "pr_author_id": draw(st.sampled_from(["1", "2", None]))}
    if kind == "issue_closed":
        author = draw(st.sampled_from(["1", "2"]))
        return {"issue": draw(st.sampled_from(["acme/w#10", "acme/w#11", "acme/w#12"])),
                "state_reason": draw(st.sampled_from(["completed", "not_planned", None])),
                "author": [author, f"login{author}", False], "closer": [draw(st.sampled_from(["1", "2"])), "x", False]}
    return {"type": draw(st.sampled_from([0, 19, 7])), "length": draw(st.sampled_from([0, 5, 12, 40])),
            "channel_id": draw(st.sampled_from(["c1", "c2"])), "content_sha256": draw(st.sampled_from(["h1", "h2", "h3"]))}


@st.composite
def epochs(draw):
    rows = []
    for _ in range(draw(st.integers(0, 40))):
        source, kind = draw(st.sampled_from(KINDS))
        recipient = draw(st.sampled_from(RECIPIENTS))
        rows.append({"source": source, "kind": kind, "recipient": recipient,
                     "at": timedelta(hours=draw(st.integers(0, 7 * 24 - 1)), minutes=draw(st.sampled_from([0, 0, 30]))),
                     "user": draw(st.sampled_from(["1", "2", "3"])), "facts": facts_for(kind, draw),
                     "tag": draw(st.sampled_from(TAGS)),
                     "included": draw(st.booleans() | st.just(True)),
                     "override": draw(st.none() | st.none() | st.integers(0, 3000))})
    rules = {"github": {"review_weights": {"APPROVED": 2000, "COMMENTED": 500, "DISMISSED": 1500},
                        "self_review": draw(st.booleans()), "one_review_per_pr": draw(st.booleans()),
                        "pr_labels": [{"label": "trivial", "weight": 0}], "issue_reasons": ["completed"],
                        "self_closed_issues": draw(st.sampled_from(["all", "none", "referenced"]))},
             "discord": {"message_types": [0, 19], "min_length": draw(st.sampled_from([0, 10])), "dedupe": draw(st.booleans()),
                         "daily_cap": draw(st.none() | st.integers(1, 3))},
             "caps": {"units_per_person": draw(st.sampled_from([{}, {"discord": 1000}, {"github": 9000}])),
                      "pool_share": draw(st.sampled_from([{}, {"discord": 20}, {"github": 30}, {"discord": 10, "github": 60}]))}}
    return rows, (rules if draw(st.booleans() | st.just(True)) else None)


def policy_with(rules: dict | None):
    doc = {"version": 1, "epoch": {"anchor": ANCHOR.date().isoformat()},
           "sources": {"github": {"repos": ["acme/w"]}, "discord": {"guild_id": "1", "channels": ["11", "12"]}},
           "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000,
                       "discord:message_sent": 700},
           "pool": {"base_issuance": 10000}, "approvers": ["0x1111111111111111111111111111111111111111"]}
    return validate_policy({**doc, "rules": rules} if rules is not None else doc)


def write_epoch(store, rows: list[dict]) -> str:
    start = ANCHOR + timedelta(weeks=next(_weeks))
    key = start.date().isoformat()
    store.ensure_epoch(key)
    events, facts, proposals = [], {}, []
    for r in rows:
        eid = f"{r['source']}:{r['kind']}:{r.get('tag', '')}{next(_ids):06d}"
        events.append(ActivityEvent(event_id=eid, source=r["source"], event_type=r["kind"], platform_user_id=r["user"],
                                    platform_login=f"login{r['user']}", event_time=start + r["at"], payload={"n": eid},
                                    producer="test", producer_version="1", retrieved_at=start))
        facts[eid] = r["facts"]
        resolution = UNRESOLVED_EXCLUDED if r["recipient"] is None else (BOUND if ":" not in r["recipient"] else CLAIMANT)
        proposals.append(CurationProposal(eid, r["recipient"], resolution))
    if events:
        store.record_page(events, None)
        store.record_facts(facts, FACTS_VERSION)
        store.curate(key, proposals)
        for e, r in zip(events, rows):
            if not r["included"] or r["override"] is not None:
                store.set_curation(e.event_id, actor="test", included=r["included"], weight_override=r["override"])
    return key


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(epoch=epochs(), batch=st.sampled_from([1, 3, 5000]))
def test_an_epoch_decided_one_recipient_at_a_time_is_the_epoch_decided_at_once(store, epoch, batch, monkeypatch):
    rows, rules = epoch
    policy = policy_with(rules)
    key = write_epoch(store, rows)
    rows_of = store.curated_rows
    monkeypatch.setattr(store, "curated_rows", lambda k, **kw: rows_of(k, **{**kw, "batch": batch}))  # cursor pages of 1 and 3 rows too
    whole = store.curated_events(key)
    with store.atomic():
        streamed, runs = {}, []
        for row, d in stream_decisions(store, key, policy):
            if not runs or runs[-1] != row["recipient_id"]:
                runs.append(row["recipient_id"])
            if d is not None:
                assert d.event_id == row["event_id"]
                streamed[d.event_id] = d
            else:
                assert not row["included"] or row["recipient_id"] is None
        assert len(runs) == len(set(runs))  # each recipient's rows together
        assert None not in runs[:-1]  # the rows crediting no one last
        assert streamed == epoch_decisions(whole, policy)
        assert propose_epoch(store, key, policy) == propose(whole, policy)
        stored = [{"recipient_id": "alice", "proposed_units": 1, "activity_count": 1}]
        bindings = {("github", "1"): "bob"}
        assert epoch_drift(store, key, policy, stored, bindings) == sorted(resolution_drift(whole, bindings, policy)) \
            + allocation_drift(whole, stored, policy)
        # The allocation asset's view (rule tallies, per-recipient stops and caps, logins, units) is the whole week's.
        view, decided = rules_view(store, key, policy), epoch_decisions(whole, policy)
        assert view.summary == rule_summary(decided)
        assert view.not_counted == dict(Counter(d.recipient_id for d in decided.values() if not d.counted))
        capped: Counter[str] = Counter()
        for d in decided.values():
            capped[d.recipient_id] += d.capped
        assert view.capped == {r: c for r, c in capped.items() if c}
        assert view.logins == last_known_logins(whole)
        assert view.proposed == {p.recipient_id: p.proposed_units for p in propose(whole, policy)}


def test_a_share_cap_that_binds_splits_its_cut_by_largest_remainder_across_recipients(store):
    """Three recipients' messages against one PR: the cut of Discord's units crosses recipients, and the streamed
    split (remainders ranked in the database) gives each event exactly what the whole-epoch split gives it."""
    rows = [{"source": "github", "kind": "pr_merged", "recipient": "alice", "at": timedelta(hours=1), "user": "1",
             "facts": {"pr": "acme/w#1"}, "included": True, "override": None}]
    rows += [{"source": "discord", "kind": "message_sent", "recipient": r, "at": timedelta(hours=2 + i), "user": "2",
              "facts": {"type": 0, "length": 40, "channel_id": "c1", "content_sha256": f"h{i}"}, "included": True, "override": None}
             for i, r in enumerate(["bob", "carol", "discord:88"] * 3)]
    policy = policy_with({"caps": {"pool_share": {"discord": 25}}})
    key = write_epoch(store, rows)
    whole = epoch_decisions(store.curated_events(key), policy)
    streamed = {d.event_id: d for _, d in stream_decisions(store, key, policy) if d is not None}
    discord = [d for d in whole.values() if d.source == "discord"]
    assert sum(d.units for d in discord) == 25 * 8000 // 75  # the cap binds: 2666 of 9 x 700
    assert len({d.units for d in discord}) == 2  # floors and floors + 1: the remainder was split
    assert streamed == whole


def test_rows_come_in_code_point_order_in_a_database_with_a_linguistic_collation(pg_server_url):
    """The rules walk a recipient's events by ``(event_time, event_id)`` as Python compares them (code points). A
    server whose default collation is linguistic (ICU ``en``: case and punctuation second) would hand events at the
    same instant over in another order, and the decider refuses out-of-order input rather than decide differently:
    ``curated_rows`` sorts by ``COLLATE "C"`` so the stream is the same on any server."""
    options = "TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en'"
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(pg_server_url, f"cp_icu_{os.getpid()}", options=options))
        except sa.exc.DBAPIError as e:  # a server built without ICU (the embedded one may be)
            pytest.skip(f"this PostgreSQL cannot create an ICU database: {e.orig}")
        engine = sa.create_engine(url)
        upgrade(engine)
        store = LedgerStore(engine)
        with engine.connect() as conn:
            linguistic = [r[0] for r in conn.exec_driver_sql("SELECT x FROM unnest(ARRAY['b1', 'B2', 'a3', '_4']) AS x ORDER BY x")]
        assert linguistic != sorted(linguistic)  # the database does sort otherwise (or this test shows nothing)
        rows = [{"source": "discord", "kind": "message_sent", "recipient": r, "at": timedelta(hours=3), "user": "2", "tag": tag,
                 "facts": {"type": 0, "length": 40, "channel_id": "c1", "content_sha256": "same"}, "included": True, "override": None}
                for r in ("a1", "a_1", "a.1") for tag in ("b", "B", "a", "_")]
        policy = policy_with({"discord": {"dedupe": True, "daily_cap": 1}})
        key = write_epoch(store, rows)
        streamed = [(row["recipient_id"], row["event_id"]) for row, _ in stream_decisions(store, key, policy)]
        assert streamed == sorted(streamed)  # by code point: "a.1" < "a1" < "a_1", "...:B" < "...:_" < "...:a" < "...:b"
        assert {d.event_id: d for _, d in stream_decisions(store, key, policy) if d} == epoch_decisions(store.curated_events(key), policy)
        engine.dispose()
