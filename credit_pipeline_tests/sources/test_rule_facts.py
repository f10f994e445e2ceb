"""The facts the policy's rules read (``parsing.event_facts``), as the real adapters store them: every event of
the sample week, collected through PyGithub and discord.py, carries exactly the org's labels, review states
and PR authors, issue reasons and accounts, and Discord message types; and the GraphQL documents the
adapter sends are valid against GitHub's published schema."""

from __future__ import annotations

import pytest
from graphql import parse, validate

from credit_pipeline.core.events import GITHUB_GHOST_ID
from credit_pipeline.core.rules import FACTS_VERSION
from credit_pipeline.sandbox.github_graphql import github_schema
from credit_pipeline.sources import github_graphql
from credit_pipeline.stages.decisions import ensure_facts

from .conftest import collect, window_of


@pytest.mark.parametrize("name", ["PULLS_WITH_REVIEWS", "REVIEWS_OF_PULL", "PROBE_PULLS"])
def test_the_adapters_graphql_documents_are_valid_against_githubs_schema(name):
    assert validate(github_schema(), parse(getattr(github_graphql, name))) == []


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
            assert (f["labels"], f["additions"], f["deletions"]) == (sorted(x.labels), None, None), event_id  # REST list form
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
    assert {facts[s[n]]["type"] for n in ("member_join", "pin_notice", "boost", "reply")} == {7, 6, 8, 19}
    assert facts[s["member_join"]]["length"] == 0 and facts[s["spam_first"]]["length"] == 2  # "gm"
