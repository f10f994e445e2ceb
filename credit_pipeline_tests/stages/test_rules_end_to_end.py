"""Each rule of SPEC §6 "Rules" from raw facts to the ledger: a small sandbox org per test, collected by the
real adapters (PyGithub and discord.py over HTTP), resolved and allocated into a real PostgreSQL ledger;
then the per-event decisions of the stored rows (``stages.decisions.epoch_decisions``) say what counted,
what did not and by which rule, and what was capped, at the boundaries.

Where a test shows a second policy, it is applied to the same stored rows (what ``simulate`` does).
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta

import pytest

from credit_pipeline.core.policy import Policy, validate_policy
from credit_pipeline.core.rules import Decision, RuleEvent, decide, totals
from credit_pipeline.sandbox.blank_org import blank_org
from credit_pipeline.sandbox.model import CHANNEL_PINNED_MESSAGE, GUILD_BOOST, GUILD_MEMBER_JOIN, REPLY, Issue, Message, PullRequest, Review
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state, projected_credits
from credit_pipeline.stages.collect import collect_epoch
from credit_pipeline.stages.decisions import epoch_decisions
from credit_pipeline.stages.resolve import resolve_epoch
from credit_pipeline.stages.sources_config import build_source

from credit_pipeline_tests.sources.conftest import DISCORD_TOKEN, FAST, GITHUB_TOKEN

MS = timedelta(milliseconds=1)
S, M, H, D = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
WEIGHTS = {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000, "discord:message_sent": 500}
REVIEW_WEIGHTS = {"APPROVED": 2000, "CHANGES_REQUESTED": 2000, "COMMENTED": 500, "DISMISSED": 2000}


def policy_for(org, rules: dict | None) -> Policy:
    doc = {"version": 1, "epoch": {"anchor": org.week_start.date().isoformat()}, "sources": org.policy_sources(),
           "weights": WEIGHTS, "exclude": org.bot_accounts(), "pool": {"base_issuance": 10000},
           "approvers": ["0x1111111111111111111111111111111111111111"]}
    return validate_policy({**doc, "rules": rules} if rules is not None else doc)


def variant(policy: Policy, **rules: dict) -> Policy:
    """The same policy with some rule sections replaced (``github={...}`` replaces rules.github)."""
    doc = copy.deepcopy(policy.canonical())
    doc["rules"] = {**(doc.get("rules") or {}), **rules}
    return validate_policy(doc)


def run_weeks(store, org, policy: Policy, weeks: tuple[int, ...] = (0,)) -> dict[int, dict[str, Decision]]:
    """Collect both sources for each week after it closed, resolve, allocate (the epoch enters review); the decisions."""
    out = {}
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sandbox:
        for k in weeks:
            key, after = org.windows[k][0].date().isoformat(), org.windows[k][1] + H
            for name in ("github", "discord"):
                collect_epoch(store, build_source(name, policy, sandbox.env(), **FAST[name]), key, now=after)
            resolve_epoch(store, key, policy)
            assert allocate_epoch(store, key, policy, now=after).entered_review
            out[k] = epoch_decisions(store.curated_events(key), policy)
    return out


def rows(store, org, k: int = 0) -> list[dict]:
    return store.curated_events(org.windows[k][0].date().isoformat())


def eid(org, item: PullRequest | Review | Issue | Message) -> str:
    if isinstance(item, PullRequest):
        return f"github:pr:{item.repo}:{item.number}"
    if isinstance(item, Review):
        return f"github:review:{item.repo}:{item.pr_number}:{item.id}"
    if isinstance(item, Issue):
        return f"github:issue:{item.repo}:{item.number}"
    return f"discord:message:{org.guild.id}:{item.channel_id}:{item.id}"


def seen(decisions: dict[str, Decision], org, item) -> tuple:
    """(counted, rule, units, capped) of an item's event."""
    d = decisions[eid(org, item)]
    return d.counted, d.rule, d.units, d.capped


def gh(org, login: str) -> str:
    return f"github:{org.github_user(login).id}"


def dc(org, name: str) -> str:
    return f"discord:{org.discord_user(name).id}"


def units_of(store, org, k: int = 0) -> dict[str, int]:
    return {a["recipient_id"]: a["proposed_units"] for a in store.allocations(org.windows[k][0].date().isoformat())}


# -- GitHub ----------------------------------------------------------------------------------------


def test_review_weights_per_state_pending_never_collected_dismissed_counts_as_given(store):
    org = blank_org()
    w, repo = org.week_start, "acme/widgets"
    pr = org.add_pull_request(repo, "bob", w + 12 * H, merged_at=w + 2 * D)
    states = {"carol": "APPROVED", "dave": "CHANGES_REQUESTED", "erin": "COMMENTED", "frank": "DISMISSED"}
    reviews = {who: org.add_review(repo, pr.number, who, state, w + D + i * H) for i, (who, state) in enumerate(states.items())}
    pending = org.add_review(repo, pr.number, "alice", "PENDING", None)  # visible to its author, the token's user
    policy = policy_for(org, {"github": {"review_weights": {**REVIEW_WEIGHTS, "CHANGES_REQUESTED": 1500, "DISMISSED": 1000}}})
    decisions = run_weeks(store, org, policy)[0]
    assert {who: seen(decisions, org, r) for who, r in reviews.items()} == {
        "carol": (True, "review_weights", 2000, 0), "dave": (True, "review_weights", 1500, 0),
        "erin": (True, "review_weights", 500, 0), "frank": (True, "review_weights", 1000, 0)}
    assert decisions[eid(org, reviews["frank"])].detail == "review state DISMISSED"
    stored = {e["event_id"] for e in store.events_between(*org.windows[0])}
    assert eid(org, pending) not in stored and eid(org, reviews["carol"]) in stored  # PENDING is never collected
    assert units_of(store, org)[gh(org, "dave")] == 1500
    # A state the policy does not weigh counts nothing; without review_weights every state weighs github:review_submitted.
    unweighted = variant(policy, github={"review_weights": {"APPROVED": 2000}})
    again = epoch_decisions(rows(store, org), unweighted)
    assert seen(again, org, reviews["frank"]) == (False, "review_weights", 0, 0)
    assert again[eid(org, reviews["frank"])].detail == "review state DISMISSED is not weighted"
    plain = epoch_decisions(rows(store, org), variant(policy, github={}))
    assert {seen(plain, org, r) for r in reviews.values()} == {(True, "weights", 2000, 0)}


def test_self_review_counts_nothing_and_is_decided_from_the_review_payload(store):
    org = blank_org()
    w, repo = org.week_start, "acme/widgets"
    own = org.add_pull_request(repo, "erin", w + 6 * H, merged_at=w + 3 * D)
    # GitHub lets an author only COMMENT on their own PR ("Pull request authors can't approve their own pull request").
    self_reviews = [org.add_review(repo, own.number, "erin", "COMMENTED", w + D + k * H) for k in range(2)]
    other = org.add_review(repo, own.number, "alice", "APPROVED", w + 2 * D)
    ghost_pr = org.add_pull_request(repo, "leaver", w + 6 * H, merged_at=w + 3 * D)  # a deleted author: nobody to compare with
    of_ghost = org.add_review(repo, ghost_pr.number, "bob", "COMMENTED", w + D)
    policy = policy_for(org, {"github": {"self_review": False}})
    decisions = run_weeks(store, org, policy)[0]
    assert [seen(decisions, org, r) for r in self_reviews] == [(False, "self_review", 0, 0)] * 2
    assert seen(decisions, org, other) == (True, "weights", 2000, 0)
    assert seen(decisions, org, of_ghost) == (True, "weights", 2000, 0)
    assert seen(decisions, org, own) == (True, "weights", 8000, 0)  # the PR itself still counts
    facts = {r["event_id"]: r["facts"] for r in rows(store, org)}
    assert facts[eid(org, self_reviews[0])]["pr_author_id"] == str(org.github_user("erin").id)  # from pull_request.author
    assert facts[eid(org, of_ghost)]["pr_author_id"] is None
    assert units_of(store, org)[gh(org, "erin")] == 8000
    allowed = epoch_decisions(rows(store, org), variant(policy, github={"self_review": True}))
    assert [seen(allowed, org, r) for r in self_reviews] == [(True, "weights", 2000, 0)] * 2


def test_one_review_per_pr_keeps_the_heaviest_then_the_earliest_per_epoch(store):
    org = blank_org()
    w, repo = org.week_start, "acme/widgets"
    a = org.add_pull_request(repo, "grace", w + H, merged_at=w + 4 * D)
    b = org.add_pull_request(repo, "heidi", w + H, merged_at=w + 4 * D)
    on_a = [org.add_review(repo, a.number, "frank", state, w + D + k * H)
            for k, state in enumerate(["COMMENTED", "COMMENTED", "COMMENTED", "APPROVED", "COMMENTED"])]
    on_b = [org.add_review(repo, b.number, "frank", "COMMENTED", w + D + k * H) for k in range(2)]
    by_carol = org.add_review(repo, a.number, "carol", "COMMENTED", w + D)
    next_week = org.add_review(repo, a.number, "frank", "COMMENTED", w + 8 * D)  # the same PR, the next epoch
    policy = policy_for(org, {"github": {"review_weights": REVIEW_WEIGHTS, "one_review_per_pr": True}})
    weeks = run_weeks(store, org, policy, weeks=(0, 1))
    decisions = weeks[0]
    kept = eid(org, on_a[3])
    assert seen(decisions, org, on_a[3]) == (True, "review_weights", 2000, 0)
    for r in on_a[:3] + on_a[4:]:
        assert seen(decisions, org, r) == (False, "one_review_per_pr", 0, 0)
        assert decisions[eid(org, r)].detail == f"{kept} is this reviewer's credited review of acme/widgets#{a.number}"
    assert [seen(decisions, org, r) for r in on_b] == [(True, "review_weights", 500, 0), (False, "one_review_per_pr", 0, 0)]
    assert seen(decisions, org, by_carol) == (True, "review_weights", 500, 0)  # another reviewer of the same PR
    assert seen(weeks[1], org, next_week) == (True, "review_weights", 500, 0)
    assert units_of(store, org)[gh(org, "frank")] == 2500
    same_weight = epoch_decisions(rows(store, org), variant(policy, github={"one_review_per_pr": True}))
    assert seen(same_weight, org, on_a[0]) == (True, "weights", 2000, 0)  # equal weights: the earliest stays
    assert [seen(same_weight, org, r)[0] for r in on_a] == [True, False, False, False, False]


def test_pr_labels_first_match_in_policy_order(store):
    org = blank_org()
    w, repo = org.week_start, "acme/widgets"
    both = org.add_pull_request(repo, "bob", w + H, merged_at=w + D, labels=["size/XL", "trivial"])
    big = org.add_pull_request(repo, "bob", w + H, merged_at=w + D, labels=["size/XL"])
    other = org.add_pull_request(repo, "bob", w + H, merged_at=w + D, labels=["bug"])
    bare = org.add_pull_request(repo, "bob", w + H, merged_at=w + D)
    policy = policy_for(org, {"github": {"pr_labels": [{"label": "trivial", "weight": 0}, {"label": "size/XL", "weight": 16000}]}})
    decisions = run_weeks(store, org, policy)[0]
    assert [seen(decisions, org, p) for p in (both, big, other, bare)] == [
        (True, "pr_labels", 0, 0), (True, "pr_labels", 16000, 0), (True, "weights", 8000, 0), (True, "weights", 8000, 0)]
    assert decisions[eid(org, both)].detail == "label trivial"
    facts = {r["event_id"]: r["facts"] for r in rows(store, org)}
    assert facts[eid(org, both)]["labels"] == ["size/XL", "trivial"]  # read from the REST list's label objects
    assert units_of(store, org)[gh(org, "bob")] == 32000
    reordered = variant(policy, github={"pr_labels": [{"label": "size/XL", "weight": 16000}, {"label": "trivial", "weight": 0}]})
    assert seen(epoch_decisions(rows(store, org), reordered), org, both) == (True, "pr_labels", 16000, 0)


def test_issue_reasons_only_the_listed_closings_count(store):
    org = blank_org()
    w, repo = org.week_start, "acme/widgets"
    closed = {reason: org.add_issue(repo, "bob", w - D, closed_at=w + D, closed_by="alice", state_reason=reason)
              for reason in ("completed", "not_planned", "duplicate", None)}  # None: closed before GitHub had reasons
    decisions = run_weeks(store, org, policy_for(org, {"github": {"issue_reasons": ["completed"]}}))[0]
    assert {reason: seen(decisions, org, i) for reason, i in closed.items()} == {
        "completed": (True, "weights", 1000, 0), "not_planned": (False, "issue_reasons", 0, 0),
        "duplicate": (False, "issue_reasons", 0, 0), None: (True, "weights", 1000, 0)}
    assert decisions[eid(org, closed["not_planned"])].detail == "closed as not_planned"
    assert units_of(store, org)[gh(org, "bob")] == 2000


@pytest.mark.parametrize("mode, counted", [
    ("none", {"by_other"}),
    ("referenced", {"by_other", "referenced"}),
    ("all", {"by_other", "referenced", "unreferenced", "referenced_next_week", "referenced_by_unmerged"}),
])
def test_self_closed_issues_none_referenced_all(store, mode, counted):
    org = blank_org()
    w, repo = org.week_start, "acme/widgets"
    issues = {name: org.add_issue(repo, who, w - D, closed_at=w + 2 * D, closed_by=closer) for name, who, closer in [
        ("referenced", "carol", "carol"), ("unreferenced", "dave", "dave"), ("by_other", "erin", "alice"),
        ("referenced_next_week", "frank", "frank"), ("referenced_by_unmerged", "grace", "grace")]}
    org.add_pull_request(repo, "carol", w + D, merged_at=w + 2 * D, body=f"Fixes #{issues['referenced'].number}")
    org.add_pull_request(repo, "frank", w + D, merged_at=w + 8 * D, body=f"Closes #{issues['referenced_next_week'].number}")
    org.add_pull_request(repo, "grace", w + D, closed_at=w + 2 * D, body=f"Resolves #{issues['referenced_by_unmerged'].number}")
    decisions = run_weeks(store, org, policy_for(org, {"github": {"self_closed_issues": mode}}))[0]
    outcome = {name: seen(decisions, org, i) for name, i in issues.items()}
    assert outcome == {name: (True, "weights", 1000, 0) if name in counted else (False, "self_closed_issues", 0, 0)
                       for name in issues}
    if mode == "referenced":
        assert decisions[eid(org, issues["unreferenced"])].detail == ("opened and closed by the same account, and no merged PR "
                                                                      "of the epoch references it")


def test_pr_size_floor_reads_additions_and_deletions_when_the_payload_carries_them():
    """Core level: a PR whose payload has no sizes (collected before they were asked for) is weighed by `weights`."""
    policy = policy_for(blank_org(), {"github": {"pr_labels": [{"label": "trivial", "weight": 0}],
                                                 "pr_size_floor": {"min_lines": 10, "weight": 2000}}})

    def pr(n: int, additions, deletions, labels=()) -> RuleEvent:
        return RuleEvent(f"github:pr:acme/widgets:{n}", "github", "pr_merged", "alice", "1", datetime(2026, 2, 17),
                         facts={"labels": list(labels), "additions": additions, "deletions": deletions, "closes": []})

    decisions = decide([pr(1, 4, 5), pr(2, 5, 5), pr(3, 1, 0, ["trivial"]), pr(4, None, None)], policy)
    assert {k.rsplit(":", 1)[1]: (d.rule, d.weight) for k, d in decisions.items()} == {
        "1": ("pr_size_floor", 2000), "2": ("weights", 8000), "3": ("pr_labels", 0), "4": ("weights", 8000)}
    assert decisions["github:pr:acme/widgets:1"].detail == "9 changed lines, under 10"


def test_pr_size_floor_through_the_adapters_at_its_boundary(store):
    """GitHub's REST pull list carries no additions/deletions; the collector asks GraphQL for them in one query per
    listing page and stores them beside the list item, so the floor fires from the raw fact: 9 changed lines are
    under a floor of 10, exactly 10 are not, and a labelled PR takes its label's weight first."""
    org = blank_org()
    w = org.week_start
    under = org.add_pull_request("acme/widgets", "bob", w + H, merged_at=w + D, additions=4, deletions=5)
    at = org.add_pull_request("acme/widgets", "carol", w + 2 * H, merged_at=w + D + H, additions=10, deletions=0)
    trivial = org.add_pull_request("acme/widgets", "dave", w + 3 * H, merged_at=w + D + 2 * H, additions=1, deletions=0,
                                   labels=["trivial"])
    policy = policy_for(org, {"github": {"pr_labels": [{"label": "trivial", "weight": 0}],
                                         "pr_size_floor": {"min_lines": 10, "weight": 2000}}})
    decisions = run_weeks(store, org, policy)[0]
    assert seen(decisions, org, under) == (True, "pr_size_floor", 2000, 0)
    assert decisions[eid(org, under)].detail == "9 changed lines, under 10"
    assert seen(decisions, org, at) == (True, "weights", 8000, 0)
    assert seen(decisions, org, trivial) == (True, "pr_labels", 0, 0)
    facts = {r["event_id"]: r["facts"] for r in rows(store, org)}
    assert (facts[eid(org, under)]["additions"], facts[eid(org, under)]["deletions"]) == (4, 5)
    payload = store.payloads([eid(org, under)])[eid(org, under)]
    assert "additions" not in payload  # the list item as GitHub sent it, the details beside it
    assert payload["graphql_details"]["additions"] == 4


# -- Discord ---------------------------------------------------------------------------------------


def test_message_types_only_conversation_counts(store):
    org = blank_org()
    w, channel = org.week_start, org.allow_listed_channels[0].id
    said = org.add_message(channel, "mason", w + D, "the release is out, notes in the docs")
    reply = org.add_message(channel, "nelly", w + D + M, "thanks, reading them now", type=REPLY, reference=said)
    system = {7: org.add_message(channel, "kai", w + D + 2 * M, "", type=GUILD_MEMBER_JOIN),
              6: org.add_message(channel, "lena", w + D + 3 * M, "", type=CHANNEL_PINNED_MESSAGE, reference=said),
              8: org.add_message(channel, "omar", w + D + 4 * M, "", type=GUILD_BOOST)}
    policy = policy_for(org, {"discord": {"message_types": [0, 19]}})
    decisions = run_weeks(store, org, policy)[0]
    assert seen(decisions, org, said) == seen(decisions, org, reply) == (True, "weights", 500, 0)
    assert {kind: seen(decisions, org, m) for kind, m in system.items()} == {k: (False, "message_types", 0, 0) for k in system}
    assert decisions[eid(org, system[7])].detail == "message type 7 is not conversation"
    payload = store.payloads([eid(org, reply)])[eid(org, reply)]
    assert payload["type"] == 19 and payload["message_reference"]["message_id"] == str(said.id)
    assert payload["referenced_message"]["id"] == str(said.id)
    assert set(units_of(store, org)) == {dc(org, "mason"), dc(org, "nelly")}
    without = epoch_decisions(rows(store, org), policy_for(org, None))  # no rules: system messages were credited
    assert all(d.counted for d in without.values()) and len(without) == 5


def test_min_length_counts_exactly_at_the_threshold_after_trimming(store):
    org = blank_org()
    w, channel = org.week_start, org.allow_listed_channels[0].id
    texts = {"ten": "abcdefghij", "nine": "abcdefghi", "padded ten": "   abcdefghij \n ",
             "nine after markup": "<@81384788765712384> abcdefghi https://example.com/x 🚀",
             "ten after emoji": "<:party:81384788765712384> hello worl", "one word": "gm"}
    sent = {name: org.add_message(channel, "mason", w + D + k * M, text) for k, (name, text) in enumerate(texts.items())}
    decisions = run_weeks(store, org, policy_for(org, {"discord": {"min_length": 10}}))[0]
    assert {name: seen(decisions, org, m)[:2] for name, m in sent.items()} == {
        "ten": (True, "weights"), "nine": (False, "min_length"), "padded ten": (True, "weights"),
        "nine after markup": (False, "min_length"), "ten after emoji": (True, "weights"), "one word": (False, "min_length")}
    assert decisions[eid(org, sent["nine after markup"])].detail == "9 characters after trimming, under 10"
    assert units_of(store, org)[dc(org, "mason")] == 1500


def test_dedupe_same_author_channel_and_content_counts_once_per_epoch(store):
    org = blank_org(channels=3)  # two allow-listed channels and off-topic
    w = org.week_start
    first, second = (c.id for c in org.allow_listed_channels)
    post = lambda ch, who, at, text: org.add_message(ch, who, at, text)  # noqa: E731
    original = post(first, "mason", w + D, "Hello World, shipping today!")
    repeats = [post(first, "mason", w + D + M, "hello world, shipping today!"),  # case does not matter
               post(first, "mason", w + 3 * D, "Hello World, shipping today! https://example.com")]  # nor a URL
    elsewhere = post(second, "mason", w + D + 2 * M, "Hello World, shipping today!")
    someone_else = post(first, "nelly", w + D + 3 * M, "Hello World, shipping today!")
    different = post(first, "mason", w + D + 4 * M, "Hello World, shipped yesterday!")
    next_week = post(first, "mason", w + 8 * D, "Hello World, shipping today!")
    weeks = run_weeks(store, org, policy_for(org, {"discord": {"dedupe": True}}), weeks=(0, 1))
    decisions = weeks[0]
    assert seen(decisions, org, original) == (True, "weights", 500, 0)
    assert [seen(decisions, org, m) for m in repeats] == [(False, "dedupe", 0, 0)] * 2
    assert decisions[eid(org, repeats[1])].detail == f"same content as {eid(org, original)} in this channel"
    assert {seen(decisions, org, m) for m in (elsewhere, someone_else, different)} == {(True, "weights", 500, 0)}
    assert seen(weeks[1], org, next_week) == (True, "weights", 500, 0)
    assert units_of(store, org)[dc(org, "mason")] == 1500


def test_daily_cap_exactly_at_the_cap_and_at_the_utc_day_boundary(store):
    org = blank_org(channels=3)
    w = org.week_start
    first, second = (c.id for c in org.allow_listed_channels)
    midnight = w + 2 * D  # Wednesday 00:00 UTC
    post = lambda ch, who, at, n: org.add_message(ch, who, at, f"status update number {n}")  # noqa: E731
    within = [post(first, "mason", midnight - 3 * S + k * S, k) for k in range(3)]  # 23:59:57, :58, :59
    short = org.add_message(first, "mason", midnight - 1500 * MS, "gm")  # stopped by min_length: uses no cap
    over = post(first, "mason", midnight - MS, 3)  # 23:59:59.999: the fourth of Tuesday
    new_day = post(first, "mason", midnight, 4)  # 00:00:00.000: the first of Wednesday
    other_channel = post(second, "mason", midnight - MS, 5)
    other_person = post(first, "nelly", midnight - MS, 6)
    decisions = run_weeks(store, org, policy_for(org, {"discord": {"min_length": 10, "daily_cap": 3}}))[0]
    assert [seen(decisions, org, m) for m in within] == [(True, "weights", 500, 0)] * 3
    assert seen(decisions, org, short)[:2] == (False, "min_length")
    assert seen(decisions, org, over) == (False, "daily_cap", 0, 0)
    day = midnight.date() - timedelta(days=1)
    assert decisions[eid(org, over)].detail == f"message 4 of the day (UTC {day}) in this channel; the cap is 3"
    assert {seen(decisions, org, m) for m in (new_day, other_channel, other_person)} == {(True, "weights", 500, 0)}
    assert units_of(store, org)[dc(org, "mason")] == 2500


# -- caps ------------------------------------------------------------------------------------------


def test_units_per_person_cap_exactly_at_the_cap_and_the_excess_shown(store):
    org = blank_org()
    w, channel = org.week_start, org.allow_listed_channels[0].id
    sent = {who: [org.add_message(channel, who, w + D + k * M, f"{who} says something useful {k}") for k in range(n)]
            for who, n in (("mason", 3), ("nelly", 4))}
    prs = [org.add_pull_request("acme/widgets", "bob", w + H, merged_at=w + D) for _ in range(2)]  # GitHub is not capped
    policy = policy_for(org, {"caps": {"units_per_person": {"discord": 1500}}})
    decisions = run_weeks(store, org, policy)[0]
    assert [seen(decisions, org, m) for m in sent["mason"]] == [(True, "weights", 500, 0)] * 3  # 1500: exactly the cap
    assert [seen(decisions, org, m) for m in sent["nelly"]] == [(True, "weights", 500, 0)] * 3 + [(True, "weights", 0, 500)]
    assert decisions[eid(org, sent["nelly"][3])].caps == (("units_per_person", 500),)
    assert {seen(decisions, org, p) for p in prs} == {(True, "weights", 8000, 0)}
    assert units_of(store, org) == {dc(org, "mason"): 1500, dc(org, "nelly"): 1500, gh(org, "bob"): 16000}
    capped = {t.recipient_id: (t.units, t.counted, t.capped) for t in totals(decisions)}
    assert capped[dc(org, "nelly")] == (1500, 4, 500)  # the capped message still counts as activity
    partial = epoch_decisions(rows(store, org), variant(policy, caps={"units_per_person": {"discord": 1250}}))
    assert [seen(partial, org, m)[2:] for m in sent["nelly"]] == [(500, 0), (500, 0), (250, 250), (0, 500)]


def test_pool_share_caps_a_source_against_the_others_and_splits_the_cut_exactly(store):
    org = blank_org()
    w, channel = org.week_start, org.allow_listed_channels[0].id
    pr = org.add_pull_request("acme/widgets", "bob", w + H, merged_at=w + D)
    sent = [org.add_message(channel, who, w + D + k * M, f"{who} posts message {k}")
            for k, who in enumerate(["mason"] * 30 + ["nelly"] * 10)]
    policy = policy_for(org, {"caps": {"pool_share": {"discord": 50}}})
    decisions = run_weeks(store, org, policy)[0]
    # Discord earns 40 x 500 = 20000 against GitHub's 8000: at 50 % it may earn 8000, 200 of each message's 500.
    assert seen(decisions, org, pr) == (True, "weights", 8000, 0)
    assert {seen(decisions, org, m) for m in sent} == {(True, "weights", 200, 300)}
    assert decisions[eid(org, sent[0])].caps == (("pool_share", 300),)
    state = allocation_state(store, org.windows[0][0].date().isoformat(), policy)
    assert state.final_units == {gh(org, "bob"): 8000, dc(org, "mason"): 6000, dc(org, "nelly"): 2000}
    assert projected_credits(state) == {gh(org, "bob"): 5000, dc(org, "mason"): 3750, dc(org, "nelly"): 1250}
    # 30 %: 30 x 8000 // 70 = 3428 for Discord, split by largest remainder (ties by event id) to the milli-unit.
    thirty = epoch_decisions(rows(store, org), variant(policy, caps={"pool_share": {"discord": 30}}))
    shares = [thirty[eid(org, m)].units for m in sent]
    assert sum(shares) == 3428 and set(shares) == {85, 86} and sum(thirty[eid(org, m)].capped for m in sent) == 20000 - 3428


# -- the demo's week -------------------------------------------------------------------------------


def test_the_demo_week_trips_every_rule_and_the_spammer_falls(store, tmp_path):
    """The demo's own policy on the sample org's week: each gaming case of ``sample_gaming`` is stopped or capped."""
    from credit_pipeline.demo import write_demo_policy
    from credit_pipeline.stages.settings import load_policy

    org = generate_org(seed=7, weeks=1)
    write_demo_policy(tmp_path / "policy.yaml", org, org.week_start)
    policy = load_policy(tmp_path / "policy.yaml")
    decisions = run_weeks(store, org, policy)[0]
    s = org.scenario
    stopped = Counter(d.rule for d in decisions.values() if not d.counted)
    assert {"self_review", "one_review_per_pr", "issue_reasons", "self_closed_issues", "message_types", "min_length", "dedupe",
            "daily_cap"} <= set(stopped), stopped
    assert {d.weight for d in decisions.values() if d.counted and d.rule == "review_weights"} == {500, 2000}  # COMMENTED weighs less
    assert [decisions[s[n]].rule for n in ("self_review", "self_review_again")] == ["self_review"] * 2
    assert sum(decisions[s[f"repeated_review_{k}"]].counted for k in range(4)) == 1
    assert decisions[s["self_closed_not_planned"]].rule == "issue_reasons"
    assert decisions[s["self_closed_referenced"]].counted  # its own merged PR says "Fixes #N"
    assert (decisions[s["trivial_pr"]].rule, decisions[s["trivial_pr"]].units) == ("pr_labels", 0)
    assert {decisions[s[n]].rule for n in ("member_join", "spam_join", "pin_notice", "boost")} == {"message_types"}
    assert decisions[s["reply"]].counted and decisions[s["reply_to_reply"]].counted
    spammer = dc(org, "airdrop.hunter")
    capped = {t.recipient_id: t for t in totals(decisions)}[spammer]
    assert capped.units == 5000 and capped.capped > 0  # 4 x 20 a day and channel counted, then units_per_person
    plain = validate_policy({k: v for k, v in policy.canonical().items() if k != "rules"})  # what simulate compares with
    without = {t.recipient_id: t.units for t in totals(epoch_decisions(rows(store, org), plain))}
    with_rules = units_of(store, org)
    assert without[spammer] == (1 + 200) * 100 and with_rules[spammer] == 5000  # a join and 200 messages at 100 each
    share = lambda units: units[spammer] / sum(units.values())  # noqa: E731
    assert share(with_rules) < share(without) / 2  # 3.5 % of the week's units without the rules, 1.5 % with them
