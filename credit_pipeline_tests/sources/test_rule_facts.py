"""The facts the policy's rules read (``parsing.event_facts``), as the real adapters store them: every event of
the sample week, collected through PyGithub and discord.py, carries exactly the org's labels, review states
and PR authors, issue reasons and accounts, and Discord message types; and the GraphQL documents the
adapter sends are valid against GitHub's published schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from graphql import parse, validate

from credit_pipeline.core.events import GITHUB_GHOST_ID
from credit_pipeline.core.rules import FACTS_VERSION
from credit_pipeline.sandbox.blank_org import blank_org
from credit_pipeline.sandbox.github_graphql import github_schema
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sources import github_graphql
from credit_pipeline.sources.parsing import DETAILS, issue_closer
from credit_pipeline.stages.decisions import ensure_facts
from credit_pipeline.stages.sources_config import build_source

from .conftest import DISCORD_TOKEN, FAST, GITHUB_TOKEN, collect, org_policy, window_of


@pytest.mark.parametrize("name", ["PULLS_WITH_REVIEWS", "REVIEWS_OF_PULL", "PROBE_PULLS"])
def test_the_adapters_graphql_documents_are_valid_against_githubs_schema(name):
    assert validate(github_schema(), parse(getattr(github_graphql, name))) == []


@pytest.mark.parametrize("stream", ["pull_requests", "issues"])
def test_the_details_query_for_a_page_is_valid_against_githubs_schema(stream):
    assert validate(github_schema(), parse(github_graphql.details_query(stream, [1, 7, 100]))) == []


def _account(user_id, login, is_bot):
    return None if user_id in (None, GITHUB_GHOST_ID) else [user_id, login, is_bot]


def test_stored_facts_are_exactly_the_orgs(store, sandbox, org, make_source):
    collect(store, make_source("github"), org)
    collect(store, make_source("discord"), org)
    window = window_of(org)
    events = {e["event_id"]: e for e in store.events_between(*window)}
    assert ensure_facts(store, list(events)) == len(events)
    facts = store.facts_of(list(events), FACTS_VERSION)
    truth = sandbox.ground_truth(*window)
    assert set(facts) == set(truth)
    for event_id, x in truth.items():
        f = facts[event_id]
        if x.event_type == "pr_merged":
            # labels from the REST list item, changed lines from the GraphQL details asked for beside it
            assert (f["labels"], f["additions"], f["deletions"]) == (sorted(x.labels), x.additions, x.deletions), event_id
        elif x.event_type == "review_submitted":
            assert (f["state"], f["pr"], f["pr_author_id"]) == (x.review_state, f"{x.repo}#{x.number}", x.pr_author_id), event_id
        elif x.event_type == "issue_closed":
            expected = {"state_reason": x.state_reason, "issue": f"{x.repo}#{x.number}",
                        "author": _account(x.platform_user_id, x.platform_login, x.is_bot),
                        "closer": _account(x.closer_id, x.closer_login, x.closer_is_bot)}
            assert f == expected, event_id
        else:
            assert (f["type"], f["channel_id"]) == (x.message_type, x.channel_id), event_id
    s = org.scenario
    assert facts[s["self_review"]]["pr_author_id"] == events[s["self_review"]]["platform_user_id"]  # a review of one's own PR
    assert f"acme/widgets#{s['self_closed_referenced'].rsplit(':', 1)[1]}" in facts[s["pr_fixing_own_issue"]]["closes"]
    assert facts[s["trivial_pr"]]["labels"] == ["documentation", "trivial"]
    assert (facts[s["trivial_pr"]]["additions"], facts[s["trivial_pr"]]["deletions"]) == (1, 1)  # under any size floor
    closer = facts[s["self_closed_not_planned"]]["closer"]  # the list item names no closer: GraphQL's ClosedEvent does
    assert closer is not None and closer == facts[s["self_closed_not_planned"]]["author"]
    assert {facts[s[n]]["type"] for n in ("member_join", "pin_notice", "boost", "reply")} == {7, 6, 8, 19}
    assert facts[s["member_join"]]["length"] == 0 and facts[s["spam_first"]]["length"] == 2  # "gm"


def test_an_item_gone_before_its_details_are_asked_is_stored_with_what_the_list_said(store):
    """Between the REST listing and the GraphQL details query an issue can be deleted or moved: GitHub answers
    that alias with null and a NOT_FOUND error. The page is not refused; the issue keeps the listing's facts (no
    closer), and the pass says which numbers it could not complete."""
    org = blank_org()
    w = org.week_start
    closed = org.add_issue("acme/widgets", "alice", w + timedelta(hours=1), closed_at=w + timedelta(hours=2), closed_by="bob")
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sandbox:
        source = build_source("github", org_policy(org), sandbox.env(), **FAST["github"])
        ref = next(r for r in source.streams() if r.stream == "issues")
        listed = [{"number": closed.number, "closed_at": "2026-02-16T02:00:00Z", "closed_by": None, "html_url": "x/issues/1"},
                  {"number": 9999, "closed_at": "2026-02-16T02:00:00Z", "closed_by": None, "html_url": "x/issues/9999"}]
        found = source._details(ref, [(item["number"], item) for item in listed])
    assert found[9999] is None
    bob = org.github_user("bob")
    assert issue_closer({**listed[0], DETAILS: found[closed.number]}, "t") == (str(bob.id), "bob", False)
    assert any("#9999" in note and "no longer knows" in note for note in source.telemetry.notes)
