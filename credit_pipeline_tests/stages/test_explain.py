"""stages.explain over a real ledger: a small week of realistic raw payloads (REST pull requests and issues,
GraphQL reviews, Discord messages) parsed by the adapters' own code, recorded, resolved and allocated under a
policy with rules; each recipient's events are explained with the rule that decided them, and the totals
equal the stored proposal, the statement's decisions and what the same policy pays without its rules."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from credit_pipeline.core.hashing import sign_message
from credit_pipeline.core.policy import PolicyError, validate_policy
from credit_pipeline.ledger.store import LedgerError
from credit_pipeline.sources.parsing import (
    discord_message_columns,
    github_issue_columns,
    github_pull_columns,
    github_review_columns,
    github_review_payload,
)
from credit_pipeline.stages.admin import curate_event
from credit_pipeline.stages.allocate import allocate_epoch
from credit_pipeline.stages.approve import approve_epoch
from credit_pipeline.stages.decisions import epoch_decisions
from credit_pipeline.stages.explain import explain_recipient, rules_view, without_rules
from credit_pipeline.stages.finalize import finalize_epoch
from credit_pipeline.stages.resolve import resolve_epoch

from credit_pipeline_tests.stages.test_flow import AFTER, APPROVER_KEY, KEY, POLICY, START, ready_for_review, snowflake

RETRIEVED = AFTER
GUILD, CHANNEL = "81384788765712384", "381870553235193857"
RULES = {
    "github": {"review_weights": {"APPROVED": 2000, "COMMENTED": 500}, "self_review": False, "one_review_per_pr": True,
               "pr_labels": [{"label": "trivial", "weight": 0}], "issue_reasons": ["completed"], "self_closed_issues": "none"},
    "discord": {"message_types": [0, 19], "min_length": 10, "dedupe": True, "daily_cap": 3},
    "caps": {"units_per_person": {"discord": 1200}},
}
RULES_POLICY = validate_policy({**POLICY.canonical(), "rules": RULES})
ALICE, BOB, CAROL = ("100", "alice"), ("200", "bob"), ("300", "carol")


def at(days: float) -> datetime:
    return START + timedelta(days=days)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def rest_user(account: tuple[str, str]) -> dict:
    return {"login": account[1], "id": int(account[0]), "type": "User", "site_admin": False}


def pull(number: int, author, when: datetime, labels=(), body: str | None = None):
    item = {"number": number, "title": f"Change {number}", "body": body, "state": "closed", "user": rest_user(author),
            "labels": [{"id": 9000 + i, "name": name, "color": "ededed"} for i, name in enumerate(labels)],
            "html_url": f"https://github.com/acme/widgets/pull/{number}", "merged_at": iso(when), "closed_at": iso(when)}
    return github_pull_columns("acme/widgets", item, "test").event(item, producer="test", producer_version="1", retrieved_at=RETRIEVED)


def review(review_id: int, pr_number: int, pr_author, reviewer, state: str, when: datetime):
    pr = {"number": pr_number, "state": "MERGED", "author": {"__typename": "User", "login": pr_author[1], "databaseId": int(pr_author[0])}}
    node = {"fullDatabaseId": str(review_id), "state": state, "submittedAt": iso(when),
            "url": f"https://github.com/acme/widgets/pull/{pr_number}#pullrequestreview-{review_id}",
            "author": {"__typename": "User", "login": reviewer[1], "databaseId": int(reviewer[0])}}
    columns = github_review_columns("acme/widgets", pr, node)
    return columns.event(github_review_payload(pr, node), producer="test", producer_version="1", retrieved_at=RETRIEVED)


def issue(number: int, author, closer, when: datetime, reason: str | None = "completed"):
    item = {"number": number, "title": f"Bug {number}", "state": "closed", "state_reason": reason, "user": rest_user(author),
            "closed_by": rest_user(closer), "html_url": f"https://github.com/acme/widgets/issues/{number}", "closed_at": iso(when)}
    return github_issue_columns("acme/widgets", item, "test").event(item, producer="test", producer_version="1", retrieved_at=RETRIEVED)


def message(sequence: int, author, when: datetime, content: str, kind: int = 0):
    mid = snowflake(when, sequence)
    item = {"id": str(mid), "channel_id": CHANNEL, "type": kind, "content": content, "timestamp": iso(when),
            "author": {"id": author[0], "username": author[1], "global_name": author[1].title()}}
    return discord_message_columns(GUILD, CHANNEL, item).event(item, producer="test", producer_version="1", retrieved_at=RETRIEVED)


@pytest.fixture
def events():
    return {
        "pr_plain": pull(1, ALICE, at(0.5)),
        "pr_trivial": pull(2, ALICE, at(1), labels=["trivial", "docs"]),
        "pr_bob": pull(3, BOB, at(1.5)),
        "review_approved": review(501, 3, BOB, ALICE, "APPROVED", at(2)),
        "review_comment_again": review(502, 3, BOB, ALICE, "COMMENTED", at(2.1)),  # one review per PR and reviewer
        "review_self": review(503, 1, ALICE, ALICE, "APPROVED", at(0.6)),  # her own PR
        "review_by_bob": review(504, 1, ALICE, BOB, "COMMENTED", at(0.7)),
        "issue_not_planned": issue(11, ALICE, BOB, at(3), reason="not_planned"),
        "issue_self_closed": issue(12, ALICE, ALICE, at(3.1)),
        "issue_fixed": issue(13, ALICE, BOB, at(3.2), reason=None),  # no reason recorded: taken as completed
        "msg_1": message(1, CAROL, at(1), "the migration plan is ready for review"),
        "msg_dup": message(2, CAROL, at(1.01), "The migration plan is ready  for review"),  # same words, other case/spacing
        "msg_short": message(3, CAROL, at(1.02), "gm <@123456789012345678> 👍"),
        "msg_join": message(4, CAROL, at(1.03), "", kind=7),
        "msg_2": message(5, CAROL, at(1.04), "benchmarks look good on the staging box"),
        "msg_3": message(6, CAROL, at(1.05), "deploying the fix to production now"),
        "msg_over_cap": message(7, CAROL, at(1.06), "and one more long message for the cap"),  # 4th of the day
        "msg_next_day": message(8, CAROL, at(2.5), "a new day, a new message to count"),
    }


@pytest.fixture
def reviewed(store, events):
    """The week in review under the rules policy (pinned); alice's GitHub account bound, carol a claimant."""
    store.record_page(list(events.values()), None)
    store.bind("github", ALICE[0], "alice")
    resolve_epoch(store, KEY, RULES_POLICY)
    ready_for_review(store)
    assert allocate_epoch(store, KEY, RULES_POLICY, now=AFTER).entered_review
    return {name: e.event_id for name, e in events.items()}


def by_name(explanation, ids):
    names = {v: k for k, v in ids.items()}
    return {names[e.event_id]: e for e in explanation.events}


def test_a_person_sees_each_event_with_the_rule_that_decided_it(store, reviewed):
    ex = explain_recipient(store, KEY, None, "alice")  # in review: the pinned policy, no file needed
    assert (ex.status, ex.policy_hash, ex.algorithm_version, ex.rules) == ("review", RULES_POLICY.policy_hash, "weight-rules-v1", True)
    events = by_name(ex, reviewed)
    decided = {name: (e.counted, e.rule, e.weight, e.units) for name, e in events.items()}
    assert decided == {
        "pr_plain": (True, "weights", 8000, 8000),
        "pr_trivial": (True, "pr_labels", 0, 0),
        "review_approved": (True, "review_weights", 2000, 2000),
        "review_comment_again": (False, "one_review_per_pr", 0, 0),
        "review_self": (False, "self_review", 0, 0),
        "issue_not_planned": (False, "issue_reasons", 0, 0),
        "issue_self_closed": (False, "self_closed_issues", 0, 0),
        "issue_fixed": (True, "weights", 1000, 1000),
    }
    assert events["pr_trivial"].detail == "label trivial"
    assert events["review_comment_again"].detail.startswith(reviewed["review_approved"])
    assert events["issue_not_planned"].detail == "closed as not_planned"
    assert [e.event_time for e in ex.events] == sorted(e.event_time for e in ex.events)  # in (event_time, event_id) order
    assert (ex.counted_events, ex.not_counted_events, ex.units) == (4, 4, 11000)
    assert ex.not_counted_by_rule == {"issue_reasons": 1, "one_review_per_pr": 1, "self_closed_issues": 1, "self_review": 1}
    assert ex.capped == {} and ex.drift == []
    assert (ex.stored_proposed_units, ex.stored_activity_count, ex.stored_final_units) == (11000, 4, None)
    as_json = ex.as_dict()
    assert as_json["events"][0]["event_time"].endswith("Z") and as_json["units"] == 11000


def test_a_claimant_sees_the_discord_rules_and_the_units_a_cap_took(store, reviewed):
    ex = explain_recipient(store, KEY, None, "discord:300")
    events = by_name(ex, reviewed)
    decided = {name: (e.counted, e.rule, e.units, e.capped) for name, e in events.items()}
    assert decided == {
        "msg_1": (True, "weights", 500, 0),
        "msg_dup": (False, "dedupe", 0, 0),
        "msg_short": (False, "min_length", 0, 0),  # "gm" once the mention and emoji are trimmed
        "msg_join": (False, "message_types", 0, 0),
        "msg_2": (True, "weights", 500, 0),
        "msg_3": (True, "weights", 200, 300),  # crosses units_per_person: 1200
        "msg_over_cap": (False, "daily_cap", 0, 0),  # the 4th counted message of the UTC day in this channel
        "msg_next_day": (True, "weights", 0, 500),  # counted, all of it capped
    }
    assert events["msg_3"].caps == {"units_per_person": 300}
    assert events["msg_dup"].detail == f"same content as {reviewed['msg_1']} in this channel"
    assert ex.capped == {"units_per_person": 800} and ex.units == 1200 and ex.counted_events == 4
    assert ex.drift == [] and ex.stored_proposed_units == 1200


def test_unknown_recipients_and_epochs_are_refused_with_how_to_list_them(store, reviewed):
    with pytest.raises(LedgerError) as refused:
        explain_recipient(store, KEY, None, "mallory")
    text = str(refused.value)
    assert "'mallory'" in text and "alice" in text and "epoch_allocations" in text and f"simulate --epoch {KEY}" in text
    with pytest.raises(LedgerError, match="'carol' is the login of discord:300: pass that id"):
        explain_recipient(store, KEY, None, "carol")
    with pytest.raises(LedgerError, match="epoch 2026-03-02 does not exist yet"):
        explain_recipient(store, "2026-03-02", None, "alice")


def test_an_open_epoch_follows_the_current_policy_and_says_when_the_stored_proposal_differs(store, events):
    store.record_page(list(events.values()), None)
    resolve_epoch(store, KEY, POLICY)
    allocate_epoch(store, KEY, POLICY, now=START + timedelta(days=2))  # open, allocated without rules
    with pytest.raises(PolicyError, match="pass --policy FILE"):
        explain_recipient(store, KEY, None, "discord:300")
    plain = explain_recipient(store, KEY, POLICY, "discord:300")
    assert (plain.status, plain.algorithm_version, plain.rules, plain.drift) == ("open", "weight-sum-v1", False, [])
    assert plain.counted_events == 8 and plain.units == 4000 and {e.rule for e in plain.events} == {"weights"}
    # The current file now has rules, the stored set was derived before: the explanation says they disagree.
    ruled = explain_recipient(store, KEY, RULES_POLICY, "discord:300")
    assert ruled.units == 1200 and ruled.policy_hash == RULES_POLICY.policy_hash
    assert ruled.drift == ["the stored proposal is 4000 milli-units over 8 events, the rules give 1200 over 4: "
                           "materialize epoch_allocations for this week to re-derive it"]
    allocate_epoch(store, KEY, RULES_POLICY, now=START + timedelta(days=2))
    assert explain_recipient(store, KEY, RULES_POLICY, "discord:300").drift == []


def test_an_admins_exclusion_and_adjustment_are_shown(store, reviewed):
    curate_event(store, reviewed["pr_plain"], RULES_POLICY, actor="admin", included=False, note="reverted the next day")
    store.adjust_allocation(KEY, "alice", 5000, "pairing credit", actor="admin")
    ex = explain_recipient(store, KEY, None, "alice")
    excluded = by_name(ex, reviewed)["pr_plain"]
    assert (excluded.counted, excluded.rule, excluded.detail) == (False, "excluded", "excluded by admin: reverted the next day")
    assert ex.units == 3000 and ex.stored_proposed_units == 3000 and ex.drift == []
    assert (ex.stored_final_units, ex.adjustment_reason) == (5000, "pairing credit")


def test_a_finalized_epoch_is_explained_as_its_statement_decided(store, reviewed):
    from credit_pipeline.stages.allocate import allocation_state

    state = allocation_state(store, KEY, RULES_POLICY)
    approve_epoch(store, KEY, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), RULES_POLICY)
    bundle = finalize_epoch(store, KEY).bundle
    decisions = {e["event_id"]: e["decision"] for e in bundle["events"]}
    for recipient in ("alice", "discord:300", "github:200"):
        ex = explain_recipient(store, KEY, None, recipient)
        assert ex.status == "finalized" and ex.drift == []
        for e in ex.events:
            stated = decisions[e.event_id]
            assert (stated["counted"], stated["rule"], stated["units"], stated["capped"]) == (e.counted, e.rule, e.units, e.capped)
        paid = {a["recipient_id"]: a["proposed_units"] for a in bundle["allocations"]}
        assert paid[recipient] == ex.units


def test_the_rules_view_counts_every_rule_and_compares_with_no_rules(store, reviewed):
    rows = store.curated_events(KEY)
    view = rules_view(store, KEY, RULES_POLICY)
    summary = {(r.rule, r.outcome): (r.events, r.units) for r in view.summary}
    assert summary[("dedupe", "not counted")] == (1, 0) and summary[("units_per_person", "capped")] == (2, 800)
    assert summary[("self_review", "not counted")] == (1, 0) and summary[("pr_labels", "counted")] == (1, 0)
    candidates = epoch_decisions(rows, RULES_POLICY)
    assert sum(r.events for r in view.summary if r.outcome != "capped") == len(candidates)
    assert view.not_counted == {"alice": 4, "discord:300": 4}
    assert view.capped == {"discord:300": 800}
    # Without its rules the same policy pays carol (the spammy claimant) more and alice less of the same pool.
    assert without_rules(RULES_POLICY).policy_hash == validate_policy(POLICY.canonical()).policy_hash
    changed = {r.recipient_id: r for r in view.without_rules}
    assert changed["discord:300"].current_credits < changed["discord:300"].simulated_credits
    assert changed["discord:300"].current_units == 1200 and changed["discord:300"].simulated_units == 4000
    assert sum(r.current_credits for r in view.without_rules) == sum(r.simulated_credits for r in view.without_rules)
    # A policy without rules has nothing to compare.
    assert rules_view(store, KEY, POLICY).without_rules is None
