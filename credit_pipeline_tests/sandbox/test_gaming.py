"""The sample week's gaming (``sample_gaming``) and the payload fields the policy's rules read, through
unmodified PyGithub and discord.py and on the wire: labels, additions/deletions, the PR author of a review,
closing references, Discord message types, replies and pins."""

from __future__ import annotations

import re
from collections import Counter
from datetime import time

import discord
import requests

from credit_pipeline.sandbox import generate_org
from credit_pipeline.sandbox.github_payloads import template
from credit_pipeline.sandbox.model import REPLY

from .conftest import DISCORD_TOKEN, GITHUB_TOKEN, run_discord


def _records(org) -> set[str]:
    """Every generated record except its number (numbers follow creation, so later ones shift)."""
    out = set()
    for repo in org.repos:
        out |= {repr(("pr", p.id, p.author.id, p.created_at, p.merged_at, p.updated_at, p.labels,
                      [(r.id, r.author.id, r.state, r.submitted_at) for r in p.reviews])) for p in repo.pulls}
        out |= {repr(("issue", i.id, i.author.id, i.closed_at, i.updated_at, i.state_reason)) for i in repo.issues}
    return out | {repr(("message", m.id, m.author.id, m.content, m.type)) for c in org.guild.channels for m in c.messages}


def test_gaming_only_adds_records_and_leaves_every_other_account_as_it_was() -> None:
    plain, gamed = generate_org(seed=7, gaming=False), generate_org(seed=7)
    assert _records(plain) <= _records(gamed)
    assert len(_records(gamed) - _records(plain)) == 4 + 2 + 207  # PRs (with their reviews), issues, messages
    assert {k: v for k, v in gamed.scenario.items() if k in plain.scenario}.keys() == plain.scenario.keys()
    assert [u.id for u in gamed.discord_users[:len(plain.discord_users)]] == [u.id for u in plain.discord_users]


def _number(event_id: str) -> int:
    return int(event_id.split(":")[3])


def test_the_sample_week_games_every_rule(org) -> None:
    week = org.ground_truth(*org.windows[0])
    pulls = {p.number: p for p in org.repo("acme/widgets").pulls}
    s = org.scenario
    own = pulls[_number(s["self_review"])]
    assert {week[s[n]].platform_user_id for n in ("self_review", "self_review_again")} == {str(own.author.id)}
    assert {week[s[n]].review_state for n in ("self_review", "self_review_again")} == {"COMMENTED"}  # GitHub allows no more
    assert week[s["self_review"]].pr_author_id == str(own.author.id)
    repeated = [week[s[f"repeated_review_{k}"]] for k in range(4)]
    assert len({(e.number, e.platform_user_id, e.review_state) for e in repeated}) == 1
    for name, reason in (("self_closed_not_planned", "not_planned"), ("self_closed_referenced", "completed")):
        issue = week[s[name]]
        assert issue.closer_id == issue.platform_user_id and issue.state_reason == reason
    fixer = pulls[_number(s["pr_fixing_own_issue"])]
    assert fixer.description.startswith(f"Fixes #{_number(s['self_closed_referenced'])}:") and s["pr_fixing_own_issue"] in week
    assert week[s["trivial_pr"]].labels == ("documentation", "trivial")
    spam = [e for e in week.values() if e.platform_login == "airdrop.hunter" and e.message_type == 0]
    by_channel_and_day = Counter((e.channel_id, e.event_time.date()) for e in spam)
    assert len(by_channel_and_day) == 4 and set(by_channel_and_day.values()) == {50}  # two channels, either side of midnight
    assert week[s["spam_first_after_midnight"]].event_time.time() == time(0)
    types = {name: week[s[name]].message_type for name in ("member_join", "spam_join", "pin_notice", "boost", "reply", "pinned_message")}
    assert types == {"member_join": 7, "spam_join": 7, "pin_notice": 6, "boost": 8, "reply": 19, "pinned_message": 0}


def test_rest_pulls_and_issues_carry_label_objects_and_the_single_pr_its_line_counts(sandbox, gh, org) -> None:
    number = _number(org.scenario["trivial_pr"])
    headers = {"Authorization": f"token {GITHUB_TOKEN}"}
    listed = [p for page in range(1, 5) for p in requests.get(
        f"{sandbox.github_url}/repos/acme/widgets/pulls", params={"state": "closed", "per_page": 100, "page": page},
        headers=headers, timeout=10).json()]
    item = next(p for p in listed if p["number"] == number)
    assert [label["name"] for label in item["labels"]] == ["documentation", "trivial"]
    assert set(item["labels"][0]) == set(template("pull-request-simple-items")["labels"][0])
    assert item["labels"][0]["default"] is True and item["labels"][1]["default"] is False
    assert item["labels"][1]["url"] == f"{sandbox.github_url}/repos/acme/widgets/labels/trivial"
    assert "additions" not in item  # GitHub's list form has none
    pull = gh.get_repo("acme/widgets").get_pull(number)
    assert (pull.additions, pull.deletions) == (1, 1) and [label.name for label in pull.labels] == ["documentation", "trivial"]
    assert [label.name for label in gh.get_repo("acme/widgets").get_issue(number).labels] == ["documentation", "trivial"]


def test_graphql_pull_requests_carry_author_labels_line_counts_and_closing_references(gh, org) -> None:
    fixer, issue = _number(org.scenario["pr_fixing_own_issue"]), _number(org.scenario["self_closed_referenced"])
    query = """query($n: Int!) { repository(owner: "acme", name: "widgets") { pullRequest(number: $n) {
      author { __typename login ... on User { databaseId } } additions deletions body
      labels(first: 10) { totalCount nodes { name color isDefault } }
      closingIssuesReferences(first: 5) { nodes { number stateReason author { login } } } } } }"""
    _, data = gh.requester.graphql_query(query, {"n": fixer})
    pr = data["data"]["repository"]["pullRequest"]
    author = next(p for p in org.repo("acme/widgets").pulls if p.number == fixer).author
    assert pr["author"] == {"__typename": "User", "login": author.login, "databaseId": author.id}
    assert (pr["additions"], pr["deletions"], pr["labels"]["totalCount"]) == (10, 2, 0)
    assert pr["body"].startswith(f"Fixes #{issue}") and pr["closingIssuesReferences"]["nodes"] == [
        {"number": issue, "stateReason": "COMPLETED", "author": {"login": author.login}}]
    _, data = gh.requester.graphql_query(query, {"n": _number(org.scenario["trivial_pr"])})
    labels = data["data"]["repository"]["pullRequest"]["labels"]
    assert [n["name"] for n in labels["nodes"]] == ["documentation", "trivial"] and labels["nodes"][0]["isDefault"]
    filtered = """{ repository(owner: "acme", name: "widgets") { pullRequests(first: 10, labels: ["trivial"]) { nodes { number } } } }"""
    _, data = gh.requester.graphql_query(filtered, {})
    assert data["data"]["repository"]["pullRequests"]["nodes"] == [{"number": _number(org.scenario["trivial_pr"])}]


def _message_id(event_id: str) -> int:
    return int(event_id.rsplit(":", 1)[1])


def test_discord_replies_pins_joins_and_boosts_on_the_wire_and_through_discord_py(sandbox, org) -> None:
    channel = org.allow_listed_channels[0].id
    s = {name: _message_id(org.scenario[name]) for name in ("reply", "reply_to_reply", "pinned_message", "pin_notice",
                                                            "member_join", "boost")}

    def raw(name: str) -> dict:
        return requests.get(f"{sandbox.discord_api_url}/channels/{channel}/messages/{s[name]}",
                            headers={"Authorization": f"Bot {DISCORD_TOKEN}"}, timeout=10).json()

    reply, deeper, notice = raw("reply"), raw("reply_to_reply"), raw("pin_notice")
    assert reply["type"] == REPLY and reply["message_reference"] == {
        "type": 0, "message_id": str(s["pinned_message"]), "channel_id": str(channel), "guild_id": str(org.guild.id)}
    assert reply["referenced_message"]["id"] == str(s["pinned_message"]) and reply["mentions"][0]["id"] == reply["referenced_message"]["author"]["id"]
    assert deeper["referenced_message"]["id"] == str(s["reply"]) and "referenced_message" not in deeper["referenced_message"]
    assert notice["type"] == 6 and notice["content"] == "" and notice["message_reference"]["message_id"] == str(s["pinned_message"])
    assert raw("pinned_message")["pinned"] is True
    assert (raw("member_join")["type"], raw("member_join")["content"], raw("boost")["type"]) == (7, "", 8)

    async def body(client: discord.Client) -> dict[int, discord.Message]:
        target = await client.fetch_channel(channel)
        return {m.id: m async for m in target.history(limit=None, after=discord.Object(s["pinned_message"] - 1), oldest_first=True)
                if m.id in s.values()}

    parsed = run_discord(sandbox, body)
    assert parsed[s["reply"]].type is discord.MessageType.reply
    assert parsed[s["reply"]].reference.message_id == s["pinned_message"]
    assert parsed[s["reply"]].reference.resolved.id == s["pinned_message"]
    assert parsed[s["pin_notice"]].type is discord.MessageType.pins_add and parsed[s["member_join"]].type is discord.MessageType.new_member
    assert parsed[s["boost"]].type is discord.MessageType.premium_guild_subscription
    assert re.fullmatch(r"\d+", str(parsed[s["member_join"]].author.id))
