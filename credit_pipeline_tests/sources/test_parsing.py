"""The adapters' pure parsing: a stored payload re-derives every column of its stored event.

``verify`` trusts a stored event only if ``columns_from_payload`` (the code the adapters
build events with) gives back the very columns that were stored. So: real events
collected through PyGithub and discord.py from the sandbox must round-trip exactly;
GitHub's and Discord's own example payloads parse as documented; and a payload or id
changed after the fact is caught, either as different columns or as ``MalformedItem``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from discord.utils import snowflake_time as discord_py_snowflake_time

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.sandbox.github_payloads import DATA_DIR  # verbatim copies of /work/shared/fixtures (SOURCES.md)
from credit_pipeline.sources.base import MalformedItem
from credit_pipeline.sources.parsing import (
    DerivedColumns,
    columns_from_payload,
    discord_message_columns,
    github_issue_columns,
    github_pull_columns,
    github_review_columns,
    github_review_payload,
    issue_closer,
    snowflake_time,
)
from credit_pipeline.stages.sources_config import build_source

from credit_pipeline_tests.sources.conftest import FAST, collect, window_of

COLUMNS = ("source", "event_type", "platform_user_id", "platform_login", "is_bot", "artifact_url", "event_time", "metadata")
REPO = "octocat/Hello-World"


def example(kind: str, name: str) -> Any:
    data = json.loads((DATA_DIR / kind / f"{name}.json").read_text(encoding="utf-8"))
    return data[0] if isinstance(data, list) else data


def columns_of(row: dict[str, Any]) -> tuple:
    return tuple(row[c] for c in COLUMNS)


def derived_of(columns: DerivedColumns) -> tuple:
    return tuple(getattr(columns, c) for c in COLUMNS)


def stored_week(store, org) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    rows = store.events_between(*window_of(org))
    return rows, store.payloads([r["event_id"] for r in rows])


# -- real events, collected through the real clients -------------------------------------------------


def test_every_stored_event_re_derives_from_its_stored_payload(store, sandbox, org, make_source):
    collect(store, make_source("github"), org)
    collect(store, make_source("discord"), org)
    rows, payloads = stored_week(store, org)
    for row in rows:
        derived = columns_from_payload(row["event_id"], payloads[row["event_id"]])
        assert derived.event_id == row["event_id"]
        assert derived_of(derived) == columns_of(row), row["event_id"]
        assert derived.event_time.tzinfo is not None and derived.event_time.utcoffset() == timedelta(0)
    types = Counter(r["event_type"] for r in rows)
    assert set(types) == {"pr_merged", "review_submitted", "issue_closed", "message_sent"} and min(types.values()) > 5
    by_id = {r["event_id"]: r for r in rows}
    s = org.scenario
    # The awkward cases are in the sample and round-trip too: bots, deleted accounts, numbers past 2^53.
    assert by_id[s["bot_pr"]]["is_bot"] and by_id[s["bot_review"]]["is_bot"] and by_id[s["bot_message"]]["is_bot"]
    assert by_id[s["deleted_user_pr"]]["platform_user_id"] is None and by_id[s["deleted_user_review"]]["platform_user_id"] is None
    assert int(s["same_ms_message_a"].rsplit(":", 1)[1]) > 2**53 and s["same_ms_message_a"] in by_id


def test_closer_credit_re_derives_with_the_policy_setting(store, sandbox, org, policy):
    doc = policy.canonical()
    doc["sources"]["github"]["issue_credit"] = "closer"
    collect(store, build_source("github", validate_policy(doc), sandbox.env(), **FAST["github"]), org)
    rows, payloads = stored_week(store, org)
    issues = [r for r in rows if r["event_type"] == "issue_closed"]
    assert issues
    for row in issues:
        derived = columns_from_payload(row["event_id"], payloads[row["event_id"]], issue_credit="closer")
        assert derived_of(derived) == columns_of(row), row["event_id"]
    other = org.scenario["issue_closed_by_other"]
    as_author = columns_from_payload(other, payloads[other])  # the wrong setting gives other columns, so it is caught
    closer_id = issue_closer(payloads[other], other)[0]  # GraphQL's ClosedEvent, stored beside the list item
    assert closer_id is not None and as_author.platform_user_id != closer_id
    assert as_author.platform_user_id == str(payloads[other]["user"]["id"]) and as_author.metadata["credited"] == "author"


def test_changes_to_real_payloads_are_detected(store, sandbox, org, make_source):
    collect(store, make_source("github"), org)
    collect(store, make_source("discord"), org)
    rows, payloads = stored_week(store, org)
    first = {}
    for row in rows:
        first.setdefault(row["event_type"], row)
    edits = {
        "pr_merged": lambda p: p.update(merged_at="2001-01-01T00:00:00Z"),
        "review_submitted": lambda p: p["review"].update(submittedAt="2001-01-01T00:00:00Z"),
        "issue_closed": lambda p: p["user"].update(id=p["user"]["id"] + 1),
        "message_sent": lambda p: p["author"].update(id=str(int(p["author"]["id"]) + 1)),
    }
    for event_type, edit in edits.items():
        row = first[event_type]
        changed = copy.deepcopy(payloads[row["event_id"]])
        edit(changed)
        assert derived_of(columns_from_payload(row["event_id"], changed)) != columns_of(row), event_type
        renumbered = row["event_id"].rsplit(":", 1)[0] + ":" + str(int(row["event_id"].rsplit(":", 1)[1]) + 1)
        names_the_field = rf"{row['event_id'].split(':')[1]}.*field '(number|pull_request.number|id)'.* makes it event"
        with pytest.raises(MalformedItem, match=names_the_field):
            columns_from_payload(renumbered, payloads[row["event_id"]])


# -- GitHub's and Discord's own example payloads -------------------------------------------------------


@pytest.mark.parametrize("name", ["pull-request-simple-items", "pull-request"])
def test_github_example_pull_request(name):
    item = example("github", name)
    columns = github_pull_columns(REPO, item, "example")
    assert columns == DerivedColumns(
        event_id="github:pr:octocat/Hello-World:1347", source="github", event_type="pr_merged", platform_user_id="1",
        platform_login="octocat", is_bot=False, artifact_url="https://github.com/octocat/Hello-World/pull/1347",
        event_time=datetime(2011, 1, 26, 19, 1, 12, tzinfo=UTC),
        metadata={"repo": REPO, "number": 1347, "title": "Amazing new feature"},
    )
    assert columns_from_payload(columns.event_id, item) == columns
    assert github_pull_columns(REPO, {**item, "merged_at": None}, "example") is None  # closed without merging


def closed_issue(closed_by: Any) -> dict[str, Any]:
    """GitHub's issue example, closed, without the ``pull_request`` key that makes it a PR."""
    item = {k: v for k, v in example("github", "issue-items").items() if k != "pull_request"}
    return {**item, "state": "closed", "closed_at": "2011-04-22T13:33:48Z", "closed_by": closed_by}


def test_github_example_issue_is_a_pull_request_until_the_key_is_gone():
    item = example("github", "issue-items")
    assert github_issue_columns(REPO, item, "example") is None
    with pytest.raises(MalformedItem, match=r"github:issue:octocat/Hello-World:1347: field 'pull_request'"):
        columns_from_payload("github:issue:octocat/Hello-World:1347", item)
    with pytest.raises(MalformedItem, match=r"github:issue:octocat/Hello-World:1347: field 'closed_at' is null"):
        columns_from_payload("github:issue:octocat/Hello-World:1347", closed_issue(None) | {"closed_at": None})


def hubot() -> dict[str, Any]:
    return {**example("github", "issue-items")["user"], "login": "hubot", "id": 2}


@pytest.mark.parametrize(("closed_by", "credit", "credited", "closer"), [
    ("hubot", "author", ("1", "octocat"), ("2", "hubot")),
    ("hubot", "closer", ("2", "hubot"), ("2", "hubot")),
    (None, "closer", ("1", "octocat"), (None, None)),  # GitHub names no closer: the author keeps the credit
    ("ghost", "closer", ("1", "octocat"), (None, "ghost")),  # the closer's account is gone: likewise
], ids=["author", "closer", "closer without closed_by", "closer deleted"])
def test_github_example_issue_credit(closed_by, credit, credited, closer):
    who = {"hubot": hubot(), "ghost": {**hubot(), "login": "ghost", "id": 10137}, None: None}[closed_by]
    item = closed_issue(who)
    columns = columns_from_payload("github:issue:octocat/Hello-World:1347", item, issue_credit=credit)
    assert columns == github_issue_columns(REPO, item, "example", credit)
    assert (columns.platform_user_id, columns.platform_login) == credited
    assert columns.event_type == "issue_closed" and columns.event_time == datetime(2011, 4, 22, 13, 33, 48, tzinfo=UTC)
    assert columns.artifact_url == "https://github.com/octocat/Hello-World/issues/1347"
    assert columns.metadata == {"repo": REPO, "number": 1347, "title": "Found a bug", "author_id": "1", "closer_id": closer[0],
                                "closer_login": closer[1], "credited": credit}


def graphql_review(state: str = "APPROVED") -> dict[str, Any]:
    """GitHub's REST review example, in the GraphQL shape the review stream reads."""
    rest = example("github", "pull-request-review-items")
    return {"fullDatabaseId": str(rest["id"]), "state": state, "submittedAt": rest["submitted_at"], "url": rest["html_url"],
            "author": {"__typename": "User", "login": rest["user"]["login"], "databaseId": rest["user"]["id"]}}


PR_NODE = {"number": 12, "url": "https://github.com/octocat/Hello-World/pull/12", "state": "MERGED",
           "updatedAt": "2019-11-17T17:43:43Z", "mergedAt": "2019-11-17T17:43:43Z", "reviews": {"totalCount": 1}}


def test_github_example_review():
    review = graphql_review()
    columns = github_review_columns(REPO, PR_NODE, review)
    assert columns == DerivedColumns(
        event_id="github:review:octocat/Hello-World:12:80", source="github", event_type="review_submitted", platform_user_id="1",
        platform_login="octocat", is_bot=False, artifact_url="https://github.com/octocat/Hello-World/pull/12#pullrequestreview-80",
        event_time=datetime(2019, 11, 17, 17, 43, 43, tzinfo=UTC),
        metadata={"repo": REPO, "number": 12, "state": "APPROVED", "pr_state": "MERGED"},
    )
    payload = github_review_payload(PR_NODE, review)
    assert "reviews" not in payload["pull_request"]  # the review list changes; the stored payload must not depend on it
    assert columns_from_payload(columns.event_id, payload) == columns
    assert github_review_columns(REPO, PR_NODE, graphql_review("PENDING")) is None
    with pytest.raises(MalformedItem, match=r"github:review:octocat/Hello-World:12:80: field 'review.state' is PENDING"):
        columns_from_payload(columns.event_id, github_review_payload(PR_NODE, graphql_review("PENDING")))


def test_discord_example_message_time_is_its_snowflake():
    message = example("discord", "message-example")
    columns = discord_message_columns("81384788765712384", message["channel_id"], message)
    assert columns == DerivedColumns(
        event_id="discord:message:81384788765712384:290926798999357250:334385199974967042", source="discord",
        event_type="message_sent", platform_user_id="53908099506183680", platform_login="Mason", is_bot=False,
        artifact_url="https://discord.com/channels/81384788765712384/290926798999357250/334385199974967042",
        event_time=datetime(2017, 7, 11, 17, 27, 24, 250000, tzinfo=UTC),
        metadata={"guild_id": "81384788765712384", "channel_id": "290926798999357250"},
    )
    # The docs' hand-written example says "timestamp" 17 s earlier: the id, not a field beside it, is the clock.
    assert datetime.fromisoformat(message["timestamp"]) == columns.event_time - timedelta(seconds=16, milliseconds=951)
    assert columns_from_payload(columns.event_id, message) == columns
    with pytest.raises(MalformedItem, match=r"field 'channel_id' names '290926798999357250', not '290926798999357251'"):
        columns_from_payload("discord:message:81384788765712384:290926798999357251:334385199974967042", message)


def test_discord_example_user_as_author_uses_the_username_when_there_is_no_global_name():
    message = {**example("discord", "message-example"), "author": example("discord", "user-example")}
    columns = discord_message_columns("1", "290926798999357250", message)
    assert (columns.platform_user_id, columns.platform_login, columns.is_bot) == ("80351110224678912", "Nelly", False)
    assert discord_message_columns("1", "290926798999357250", {**message, "author": {**message["author"], "bot": True}}).is_bot


@pytest.mark.parametrize("snowflake", [0, 1, 2**22 - 1, 2**22, 334385199974967042, 1473469061529864426, 1473469061530781931, 2**64 - 1])
def test_snowflake_time_is_discord_py_s(snowflake):
    assert snowflake_time(snowflake) == discord_py_snowflake_time(snowflake)


# -- what a changed payload or id does -----------------------------------------------------------------


def _pull() -> dict[str, Any]:
    return copy.deepcopy(example("github", "pull-request-simple-items"))


def _review() -> dict[str, Any]:
    return github_review_payload(PR_NODE, graphql_review())


def _message() -> dict[str, Any]:
    return copy.deepcopy(example("discord", "message-example"))


PR_ID = "github:pr:octocat/Hello-World:1347"
REVIEW_ID = "github:review:octocat/Hello-World:12:80"
MESSAGE_ID = "discord:message:81384788765712384:290926798999357250:334385199974967042"

CHANGED_COLUMNS = {  # (event id, original payload, edit, the column it moves)
    "merged_at": (PR_ID, _pull, lambda p: p.update(merged_at="2011-01-26T19:01:13Z"), "event_time"),
    "user.id": (PR_ID, _pull, lambda p: p["user"].update(id=2), "platform_user_id"),
    "user.type Bot": (PR_ID, _pull, lambda p: p["user"].update(type="Bot"), "is_bot"),
    "review submittedAt": (REVIEW_ID, _review, lambda p: p["review"].update(submittedAt="2019-11-17T17:43:44Z"), "event_time"),
    "review author": (REVIEW_ID, _review, lambda p: p["review"]["author"].update(databaseId=2), "platform_user_id"),
    "review state": (REVIEW_ID, _review, lambda p: p["review"].update(state="DISMISSED"), "metadata"),
    "author.id": (MESSAGE_ID, _message, lambda p: p["author"].update(id="53908099506183681"), "platform_user_id"),
    "author.bot": (MESSAGE_ID, _message, lambda p: p["author"].update(bot=True), "is_bot"),
}


@pytest.mark.parametrize("name", list(CHANGED_COLUMNS))
def test_a_changed_field_changes_the_derived_columns(name):
    event_id, original, edit, column = CHANGED_COLUMNS[name]
    payload = original()
    edit(payload)
    before, after = columns_from_payload(event_id, original()), columns_from_payload(event_id, payload)
    assert getattr(before, column) != getattr(after, column)


REFUSED = {  # (event id, payload, what the message names)
    "merged_at null": (PR_ID, lambda: _pull() | {"merged_at": None}, r"github:pr:octocat/Hello-World:1347: field 'merged_at' is null"),
    "merged_at not a time": (PR_ID, lambda: _pull() | {"merged_at": "yesterday"},
                             r"1347: field 'merged_at' is not an ISO 8601"),
    "user.id not a number": (PR_ID, lambda: _pull() | {"user": {"login": "x", "id": "x1"}},
                             r"1347.user: field 'id' is not a whole number"),
    "another PR number": ("github:pr:octocat/Hello-World:1348", _pull,
                          r"1348: the payload's field 'number' makes it event github:pr:octocat/Hello-World:1347"),
    "another repo": ("github:pr:acme/widgets:1347", _pull, r"acme/widgets:1347: field 'base.repo.full_name' names 'octocat/Hello-World'"),
    "a PR as an issue": ("github:issue:octocat/Hello-World:1347", _pull, r"field 'pull_request' \(or a /pull/ html_url\)"),
    "another review id": ("github:review:octocat/Hello-World:12:81", _review,
                          r":12:81: .*'review.fullDatabaseId' makes it event github:review:octocat/Hello-World:12:80"),
    "another PR of the review": ("github:review:octocat/Hello-World:13:80", _review,
                                 r":13:80: .*'pull_request.number'.* makes it event github:review:octocat/Hello-World:12:80"),
    "review submittedAt missing": (REVIEW_ID, lambda: {**_review(), "review": {k: v for k, v in graphql_review().items()
                                                                               if k != "submittedAt"}},
                                   r"stored event github:review:octocat/Hello-World:12:80: .*review 80: field 'submittedAt' is missing"),
    "review payload without the review": (REVIEW_ID, lambda: {"pull_request": PR_NODE},
                                          r"12:80: field 'review' is missing"),
    "another message id": (MESSAGE_ID[:-1] + "3", _message, r"334385199974967043: the payload's field 'id' makes it event"),
    "author.id not a snowflake": (MESSAGE_ID, lambda: _message() | {"author": {"id": "²"}},
                                  r"field 'author.id' is not a snowflake"),
    "message id not a snowflake": (MESSAGE_ID, lambda: _message() | {"id": "3343851999749670421" * 2}, r"field 'id'"),
    "unknown id form": ("github:commit:octocat/Hello-World:1", _pull, r"not an event id of a known form"),
    "id part not a number": ("github:pr:octocat/Hello-World:x", _pull, r"an id part that must be a number is not one"),
    "payload not an object": (PR_ID, lambda: [_pull()], r"github:pr:octocat/Hello-World:1347: the payload is a list"),
    "user not an object": (PR_ID, lambda: _pull() | {"user": "octocat"}, r"field 'login' is missing"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_payload_that_does_not_yield_the_event_is_refused_naming_event_and_field(name):
    event_id, payload, message = REFUSED[name]
    with pytest.raises(MalformedItem, match=message):
        columns_from_payload(event_id, payload())


def test_parsing_is_pure_it_loads_no_client_library():
    code = ("import sys, credit_pipeline.sources.parsing; "
            "print(sorted(m for m in ('github', 'discord', 'requests', 'aiohttp', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
