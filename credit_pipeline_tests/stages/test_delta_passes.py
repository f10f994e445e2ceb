"""Delta passes (issue 13): a resolution or allocation pass whose inputs did not change writes nothing and returns
what the last one found; one that finds only new facts resolves only those; anything else is a full pass. In every
case the stored curation and allocations are exactly what a full derivation gives (a stateful property test)."""

from __future__ import annotations

import itertools
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.admin import bind_account, curate_event, revoke_account
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
from credit_pipeline.stages.resolve import ResolveReport, resolve_epoch, summarize_curation

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.ledger.factories import pr_event
from credit_pipeline_tests.stages.test_flow import AFTER, KEY, POLICY, START, message_event

WRITTEN = ("activity_curation", "epoch_allocations", "epoch_pass_marks", "event_facts", "epochs")
OPEN = START + timedelta(days=3)  # a clock inside the week: the epoch stays open


def digest(store: LedgerStore) -> dict[str, str]:
    """Every row of the tables a pass writes, timestamps included (each write stamps now()): equal means unwritten."""
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")).scalar()
                for t in WRITTEN}


def week(store: LedgerStore, n: int = 40) -> None:
    store.record_page([pr_event(i, START + timedelta(hours=3 * i), str(100 + i % 4), f"user{i % 4}") for i in range(1, n + 1)]
                      + [message_event(i, START + timedelta(hours=2 * i), str(300 + i % 3)) for i in range(1, n + 1)], None)


def fresh_summary(store: LedgerStore, report: ResolveReport, policy=POLICY) -> dict:
    again = ResolveReport(epoch_key=KEY, status=report.status, events_in_window=report.events_in_window, late_events=report.late_events)
    summarize_curation(store, KEY, policy, again)
    return again.summary()


def test_a_no_change_pass_writes_nothing_and_returns_the_same_summary(store):
    week(store)
    first = resolve_epoch(store, KEY, POLICY)
    allocated = allocate_epoch(store, KEY, POLICY, now=OPEN)
    assert first.mode == "full" and first.processed == 80 and not allocated.unchanged
    before = digest(store)
    again = resolve_epoch(store, KEY, POLICY)
    reallocated = allocate_epoch(store, KEY, POLICY, now=OPEN)
    assert digest(store) == before, "a no-change pass wrote"
    assert again.mode == "unchanged" and again.processed == 0 and again.summary() == first.summary()
    assert reallocated.unchanged and reallocated.state.allocation_set_hash == allocated.state.allocation_set_hash
    assert reallocated.state.drift == [] == allocation_state(store, KEY, POLICY).drift


def test_new_facts_are_resolved_alone_and_the_result_is_a_full_passs(store):
    week(store)
    resolve_epoch(store, KEY, POLICY)
    allocate_epoch(store, KEY, POLICY, now=OPEN)
    store.record_page([pr_event(500, START + timedelta(days=5), "101", "user1"), message_event(500, START + timedelta(days=5), "999")], None)
    delta = resolve_epoch(store, KEY, POLICY)
    assert delta.mode == "new facts" and delta.processed == 2 and delta.written == 2
    assert delta.summary() == fresh_summary(store, delta)
    assert delta.unresolved and any(u.external_id == "999" for u in delta.unresolved)
    allocated = allocate_epoch(store, KEY, POLICY, now=OPEN)
    assert not allocated.unchanged and allocation_state(store, KEY, POLICY).drift == []


def test_a_binding_a_policy_change_and_an_admin_curation_are_each_seen(store):
    week(store)
    resolve_epoch(store, KEY, POLICY)
    allocate_epoch(store, KEY, POLICY, now=OPEN)
    store.bind("github", "101", "alice")  # a binding written outside the admin stage (no re-derivation): the next pass sees it
    bound = resolve_epoch(store, KEY, POLICY)
    assert bound.mode == "full" and bound.written == 10 and "alice" in {r["recipient_id"] for r in store.curated_events(KEY)}
    assert allocate_epoch(store, KEY, POLICY, now=OPEN).state.drift == []
    richer = validate_policy({**POLICY.canonical(), "weights": {**POLICY.weights, "github:pr_merged": 9000}})
    changed = resolve_epoch(store, KEY, richer)
    assert changed.mode == "full" and changed.written == 0  # the same recipients, counted again under the new policy
    assert not allocate_epoch(store, KEY, richer, now=OPEN).unchanged
    assert allocate_epoch(store, KEY, richer, now=OPEN).unchanged
    curate_event(store, "github:pr:acme/widgets:1", richer, actor="admin", included=False)
    after_admin = resolve_epoch(store, KEY, richer)
    assert after_admin.mode == "unchanged" and after_admin.summary() == fresh_summary(store, after_admin, richer) != changed.summary()


def test_a_late_fact_of_an_epoch_in_review_is_reported_by_every_pass(store):
    from credit_pipeline_tests.stages.test_flow import ready_for_review

    week(store, 8)
    resolve_epoch(store, KEY, POLICY)
    ready_for_review(store)
    assert allocate_epoch(store, KEY, POLICY, now=AFTER).entered_review
    resolve_epoch(store, KEY, POLICY)
    store.record_page([pr_event(900, START + timedelta(days=6), "102", "user2")], None)
    first = resolve_epoch(store, KEY, POLICY)
    again = resolve_epoch(store, KEY, POLICY)
    assert first.late_events == again.late_events == ["github:pr:acme/widgets:900"]
    assert first.mode == "new facts" and again.mode == "unchanged" and first.written == 0


_names = itertools.count()
ACCOUNTS = [("github", "100"), ("github", "101"), ("discord", "300"), ("discord", "301")]


class DeltaSequences(RuleBasedStateMachine):
    """Random facts, bindings, revocations, curation and passes: after every pass the stored curation and allocations
    equal a full derivation, and a second pass changes nothing."""

    server_url = ""
    template = ""
    passes: dict[str, int] = {}

    @initialize()
    def setup(self):
        self._db = scratch_database(self.server_url, f"cp_delta_{os.getpid()}_{next(_names)}", template=self.template)
        self.engine = sa.create_engine(self._db.__enter__())
        self.store = LedgerStore(self.engine)
        week(self.store, 6)
        self.next = 1000
        self.clean = False  # True while nothing but facts outside the week was written since the last pass

    def teardown(self):
        if hasattr(self, "engine"):
            self.engine.dispose()
            self._db.__exit__(None, None, None)

    @rule(account=st.sampled_from(ACCOUNTS), hours=st.integers(0, 7 * 24 - 1), inside=st.booleans())
    def new_fact(self, account, hours, inside):
        self.next += 1
        when = START + timedelta(hours=hours) if inside else START - timedelta(hours=hours + 1)
        source, user = account
        event = pr_event(self.next, when, user, f"login{user}") if source == "github" else message_event(self.next, when, user)
        self.store.record_page([event], None)
        self.clean = self.clean and not inside

    @rule(account=st.sampled_from(ACCOUNTS), person=st.sampled_from(["alice", "bob"]), through_admin=st.booleans())
    def bind(self, account, person, through_admin):
        try:
            if through_admin:
                bind_account(self.store, *account, person, POLICY, actor="admin")
            else:
                self.store.bind(*account, person)
            self.clean = False
        except LedgerError:
            pass

    @rule(account=st.sampled_from(ACCOUNTS))
    def revoke(self, account):
        try:
            revoke_account(self.store, *account, POLICY, actor="admin")
            self.clean = False
        except LedgerError:
            pass

    @rule(number=st.integers(1, 6), included=st.booleans())
    def curate(self, number, included):
        try:
            curate_event(self.store, f"github:pr:acme/widgets:{number}", POLICY, actor="admin", included=included)
            self.clean = False
        except LedgerError:
            pass

    @rule(account=st.sampled_from(ACCOUNTS), hours=st.integers(0, 7 * 24 - 1))
    def new_fact_then_pass(self, account, hours):
        """A fact inside the week and nothing else since the last pass: that pass resolves only the new fact."""
        clean = self.clean
        self.new_fact(account, hours, True)
        report = self._pass()
        if clean:
            assert report.mode == "new facts", report.mode

    @rule()
    def delta_pass(self):
        self._pass()

    def _pass(self):
        self.clean = True
        report = resolve_epoch(self.store, KEY, POLICY)
        DeltaSequences.passes[report.mode] = DeltaSequences.passes.get(report.mode, 0) + 1
        allocate_epoch(self.store, KEY, POLICY, now=OPEN)
        assert report.summary() == fresh_summary(self.store, report)
        window = {e["event_id"] for e in self.store.events_between(START, START + timedelta(days=7))}
        assert {r["event_id"] for r in self.store.curated_events(KEY)} == window
        assert allocation_state(self.store, KEY, POLICY).drift == []  # recipients and units as a full derivation gives
        before = digest(self.store)
        again = resolve_epoch(self.store, KEY, POLICY)
        allocate_epoch(self.store, KEY, POLICY, now=OPEN)
        assert again.mode == "unchanged" and digest(self.store) == before and again.summary() == report.summary()
        return report

    @invariant()
    def marks_never_claim_more_than_was_read(self):
        if not hasattr(self, "store"):
            return
        mark = self.store.pass_mark(KEY, "resolve")
        if mark is not None:
            assert mark[0]["inputs"]["facts"] <= self.store.window_fact_count(START, START + timedelta(days=7))


@pytest.mark.slow
def test_random_sequences_of_facts_bindings_curation_and_delta_passes(pg_server_url, template_db):
    DeltaSequences.server_url, DeltaSequences.template = pg_server_url, template_db
    DeltaSequences.passes = {}
    run_state_machine_as_test(DeltaSequences, settings=settings(max_examples=int(os.environ.get("CP_STATEFUL_EXAMPLES", 30)),
                                                                stateful_step_count=20, deadline=None,
                                                                suppress_health_check=list(HealthCheck)))
    print(f"passes by mode: {DeltaSequences.passes}")
    assert DeltaSequences.passes.get("new facts") and DeltaSequences.passes.get("full"), DeltaSequences.passes
