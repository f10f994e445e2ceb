"""A stateful property test of the approve → finalize → verify chain on the real database.

Hypothesis drives random sequences of admin operations (curate, include, override,
bind, revoke, merge, payout wallets (bound, forged, revoked), adjust, pool add, re-collect,
resolve, allocate, approve, finalize, correct) on one epoch. After every step: each statement that exists
verifies from the ledger and offline; every refused operation left the ledger as it
was, byte for byte.
"""

import itertools
from collections import Counter
import json
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa
from eth_account import Account
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.core.hashing import sign_message
from credit_pipeline.core.policy import validate_policy
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.core.wallets import binding_message
from credit_pipeline.stages.admin import (add_pool, adjust_recipient, bind_account, bind_wallet, correct_recipient, curate_event,
                                          merge_people, revoke_account)
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
from credit_pipeline.stages.approve import approve_epoch
from credit_pipeline.stages.finalize import finalize_epoch
from credit_pipeline.stages.resolve import resolve_epoch
from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.ledger.factories import pr_event
from credit_pipeline_tests.stages.test_flow import AFTER, APPROVER_KEY, KEY, POLICY, START, message_event, ready_for_review

TABLES = ("epochs", "activity_events", "activity_curation", "epoch_allocations", "epoch_pool_components", "epoch_approvals",
          "payout_statements", "identity_events", "statement_corrections")
EVENTS = [f"github:pr:acme/widgets:{n}" for n in (1, 2, 3, 7)]
ACCOUNTS = [("github", "100"), ("github", "200"), ("github", "300"), ("discord", "300")]
WALLET_KEYS = {Account.from_key("0x" + c * 32).address: "0x" + c * 32 for c in ("a1", "b2")}
PEOPLE = ["alice", "bob", "carol"]
_names = itertools.count()


def ledger_digest(store: LedgerStore) -> dict[str, str]:
    """A digest of every ledger table's rows: equal digests mean nothing was written."""
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")).scalar()
                for t in TABLES}


class AdminSequences(RuleBasedStateMachine):
    server_url: str = ""
    template: str = ""
    written: Counter = Counter()  # statement revisions written across all examples
    policy = POLICY
    stopped = 0  # events a rule did not count, in the statements checked
    paid_wallets = 0  # payable lines (a bound wallet, a token), in the statements checked

    @initialize()
    def setup(self):
        self._db = scratch_database(self.server_url, f"cp_sm_{os.getpid()}_{next(_names)}", template=self.template)
        self.engine = sa.create_engine(self._db.__enter__())
        self.store = LedgerStore(self.engine)
        self.store.record_page([pr_event(1, START, "100", "alice"), pr_event(2, START + timedelta(days=2), "200", "bob"),
                                pr_event(3, START + timedelta(days=3), "300", "carol"),
                                pr_event(7, START + timedelta(days=4), "100", "alice"),
                                message_event(5, START + timedelta(days=1), "300")], None)
        if self.policy.rules is not None:  # facts the rules decide on: a trivial PR, a duplicate and a short message
            plain = pr_event(8, START + timedelta(days=4, hours=1), "200", "bob")
            trivial = ActivityEvent.model_validate({**plain.model_dump(), "payload": {**plain.payload, "labels": [{"name": "trivial"}]},
                                                    "payload_hash": ""})
            self.store.record_page([trivial,
                                    message_event(6, START + timedelta(days=1, hours=1), "300"),
                                    message_event(9, START + timedelta(days=1, hours=2), "300")], None)
        if self.policy.payout is not None:  # alice starts with a payout wallet (github 100 is hers); sequences move it about
            self.store.bind("github", "100", "alice")
            wallet = sorted(WALLET_KEYS)[0]
            bind_wallet(self.store, wallet, "alice", sign_message(binding_message(self.store.ledger_id(), "alice", wallet),
                                                                  WALLET_KEYS[wallet]), actor="setup")
        resolve_epoch(self.store, KEY, self.policy)
        ready_for_review(self.store)
        allocate_epoch(self.store, KEY, self.policy, now=AFTER)
        self.late = 100

    def teardown(self):
        if hasattr(self, "engine"):
            self.engine.dispose()
            self._db.__exit__(None, None, None)

    def attempt(self, operation, *args, **kwargs):
        """Run an admin operation; a refusal must leave every table exactly as it was."""
        before = ledger_digest(self.store)
        try:
            operation(*args, **kwargs)
        except LedgerError:
            assert ledger_digest(self.store) == before, f"{operation.__name__} was refused but wrote"

    @rule(event=st.sampled_from(EVENTS), included=st.booleans(), weight=st.none() | st.integers(0, 20000))
    def curate(self, event, included, weight):
        self.attempt(curate_event, self.store, event, self.policy, actor="admin", included=included, weight_override=weight)

    @rule(event=st.sampled_from(EVENTS))
    def clear_override(self, event):
        self.attempt(curate_event, self.store, event, self.policy, actor="admin", clear_override=True, note="cleared")

    @rule(account=st.sampled_from(ACCOUNTS), person=st.sampled_from(PEOPLE))
    def bind(self, account, person):
        self.attempt(bind_account, self.store, *account, person, self.policy, actor="admin")

    @rule(account=st.sampled_from(ACCOUNTS))
    def revoke(self, account):
        self.attempt(revoke_account, self.store, *account, self.policy, actor="admin")

    @rule(wallet=st.sampled_from(sorted(WALLET_KEYS)), person=st.sampled_from(PEOPLE), forged=st.booleans())
    def bind_wallet(self, wallet, person, forged):
        """A payout wallet, signed by its own key (or, forged, by another): refused for a second wallet, a wallet
        someone else holds, or a signature by another key."""
        key = WALLET_KEYS[wallet] if not forged else "0x" + "5d" * 32
        message = binding_message(self.store.ledger_id(), person, wallet)
        self.attempt(bind_wallet, self.store, wallet, person, sign_message(message, key), actor="admin")

    @rule(wallet=st.sampled_from(sorted(WALLET_KEYS)))
    def revoke_wallet(self, wallet):
        self.attempt(revoke_account, self.store, "wallet", wallet, self.policy, actor="admin")

    @rule(a=st.sampled_from(PEOPLE), b=st.sampled_from(PEOPLE))
    def merge(self, a, b):
        self.attempt(merge_people, self.store, a, b, self.policy, actor="admin")

    @rule(recipient=st.sampled_from(PEOPLE + ["github:200", "discord:300", "bad id"]), units=st.none() | st.integers(0, 30000))
    def adjust(self, recipient, units):
        self.attempt(adjust_recipient, self.store, KEY, recipient, units, "reviewed" if units is not None else None, self.policy, actor="admin")

    @rule(component=st.sampled_from(["top_up", "kpi_bonus"]), amount=st.integers(0, 5000))
    def pool(self, component, amount):
        self.attempt(add_pool, self.store, KEY, component, amount, actor="admin")

    @rule()
    def recollect_late_event(self):
        self.late += 1
        self.store.record_page([pr_event(self.late, START + timedelta(days=5), "200", "bob")], None)

    @rule()
    def resolve_and_allocate(self):
        resolve_epoch(self.store, KEY, self.policy)
        allocate_epoch(self.store, KEY, self.policy, now=AFTER)

    @rule(signer=st.sampled_from([APPROVER_KEY, "0x" + "5d" * 32]), stale=st.booleans())
    def approve(self, signer, stale):
        try:
            state = allocation_state(self.store, KEY, self.policy)
        except LedgerError:
            return
        ahash = "0" * 64 if stale else state.allocation_set_hash
        self.attempt(approve_epoch, self.store, KEY, ahash, sign_message(state.approval_message, signer), self.policy)

    @rule()
    def approve_then_finalize(self):
        """The admin's usual path: the approver signs what is current, the admin finalizes."""
        self.approve(APPROVER_KEY, stale=False)
        self.finalize()

    @rule()
    def finalize(self):
        revisions = len(self.store.statement_rows(KEY))
        self.attempt(finalize_epoch, self.store, KEY)
        if len(self.store.statement_rows(KEY)) > revisions:
            AdminSequences.written[revisions + 1] += 1

    @rule(recipient=st.sampled_from(PEOPLE + ["github:200", "discord:300"]), units=st.integers(0, 30000))
    def correct(self, recipient, units):
        self.attempt(correct_recipient, self.store, KEY, recipient, units, "correction", actor="admin")

    @invariant()
    def every_statement_verifies(self):
        if not hasattr(self, "store") or not self.store.statement_rows(KEY):
            return
        report = verify_stored(self.store, KEY)
        assert report.ok, report.mismatch
        for row in self.store.statement_rows(KEY):
            offline = verify_file_bytes(row["bundle"].encode())
            assert offline.ok, offline.mismatch
            bundle = json.loads(row["bundle"])
            payouts = bundle["payouts"]
            dist = bundle["distribution"]
            assert dist["payable_credits"] + dist["held_credits"] == sum(p["amount_credits"] for p in payouts)
            AdminSequences.paid_wallets += sum(1 for line in dist["lines"] if line["status"] == "payable")
            AdminSequences.stopped += sum(1 for e in bundle["events"] if not e.get("decision", {}).get("counted", True))
            assert not payouts or sum(p["amount_credits"] for p in payouts) == row["pool_total"]


def run_sequences(server_url: str, template: str, policy, *, share: int = 1) -> None:
    """Run the machine under ``policy`` for CP_STATEFUL_EXAMPLES // share examples (30 by default)."""
    AdminSequences.server_url, AdminSequences.template = server_url, template
    AdminSequences.written.clear()
    AdminSequences.policy = policy
    try:
        run_state_machine_as_test(AdminSequences, settings=settings(max_examples=int(os.environ.get("CP_STATEFUL_EXAMPLES", 30)) // share,
                                                                    stateful_step_count=25, deadline=None,
                                                                    suppress_health_check=list(HealthCheck)))
    finally:
        AdminSequences.policy = POLICY


@pytest.mark.slow
def test_random_admin_sequences_keep_the_chain_verifiable(pg_server_url, template_db):
    run_sequences(pg_server_url, template_db, POLICY)
    print(f"statement revisions written: {dict(AdminSequences.written)}")
    assert AdminSequences.written[1] > 0, "no sequence reached a finalized statement: the property was never exercised"


RULES_POLICY = validate_policy({**POLICY.canonical(), "rules": {
    "github": {"pr_labels": [{"label": "trivial", "weight": 0}], "self_review": False},
    "discord": {"message_types": [0, 19], "min_length": 3, "dedupe": True, "daily_cap": 2},
    "caps": {"units_per_person": {"github": 12000}, "pool_share": {"discord": 10}}}})


@pytest.mark.slow
def test_random_admin_sequences_under_a_policy_with_rules_keep_the_chain_verifiable(pg_server_url, template_db):
    """The same chain when the policy's rules decide events (labels, dedupe, caps): decisions re-derive everywhere."""
    AdminSequences.stopped = 0
    run_sequences(pg_server_url, template_db, RULES_POLICY, share=2)
    assert AdminSequences.written[1] > 0, "no sequence reached a finalized statement: the property was never exercised"
    assert AdminSequences.stopped > 0, "no statement carried an event a rule stopped: the rules were never exercised"


PAYING_POLICY = validate_policy({**POLICY.canonical(), "payout": {
    "token_address": "0x6B175474E89094C44Da98b954EedeAC495271d0F", "decimals": 18, "token_units_per_credit": 10**18}})


@pytest.mark.slow
def test_random_admin_sequences_with_payout_wallets_keep_the_chain_verifiable(pg_server_url, template_db):
    """With a payout token, wallets bound, forged, revoked and merged between finalizations: every revision pays the
    wallets its identity log prefix proves, and verifies (Merkle root and proofs included) from the ledger and offline."""
    AdminSequences.paid_wallets = 0
    run_sequences(pg_server_url, template_db, PAYING_POLICY, share=2)
    assert AdminSequences.written[1] > 0, "no sequence reached a finalized statement: the property was never exercised"
    assert AdminSequences.paid_wallets > 0, "no statement paid a wallet: the distribution was never exercised"
