"""GraphQL through PyGithub's ``requester.graphql_query``, validated against GitHub's real schema."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import github
import pytest
import requests

from credit_pipeline.sandbox import generate_org, start_sandbox
from credit_pipeline.sandbox.github_graphql import SCHEMA_PATH

from .conftest import GITHUB_TOKEN

UTC = timezone.utc
PULLS = """
query($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequests(first: 100, after: $after, orderBy: {field: UPDATED_AT, direction: DESC}, states: [MERGED]) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        number fullDatabaseId databaseId url title state updatedAt mergedAt createdAt
        author { __typename login ... on User { databaseId } ... on Bot { databaseId } }
        reviews(first: 100) {
          totalCount
          pageInfo { hasNextPage endCursor }
          nodes { fullDatabaseId databaseId state submittedAt url author { __typename login ... on User { databaseId } } }
        }
      }
    }
  }
  rateLimit { cost remaining resetAt limit used }
}
"""
REVIEWS = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviews(first: 100, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } nodes { fullDatabaseId state submittedAt }
      }
    }
  }
}
"""


def all_merged(gh) -> list[dict]:
    nodes, after = [], None
    while True:
        _, data = gh.requester.graphql_query(PULLS, {"owner": "acme", "name": "widgets", "after": after})
        page = data["data"]["repository"]["pullRequests"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


def test_schema_file_is_githubs_published_schema() -> None:
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest == "3c62d0526d133cee53221c89de9b455ade24db78b9e7ad56d642c4c15bce2654"


def test_prs_with_nested_reviews_page_through_everything(sandbox, gh, org) -> None:
    nodes = all_merged(gh)
    merged = sorted((p for p in org.repo("acme/widgets").pulls if p.merged_at),
                    key=lambda p: (p.updated_at, p.number), reverse=True)
    assert [n["number"] for n in nodes] == [p.number for p in merged]
    assert sandbox.log.count(path_contains="/graphql") == -(-len(merged) // 100)
    by_number = {p.number: p for p in merged}
    for node in nodes:
        record = by_number[node["number"]]
        assert node["fullDatabaseId"] == str(record.id) and node["databaseId"] == record.id
        assert node["state"] == "MERGED" and node["url"].startswith(sandbox.github_url + "/acme/widgets/pull/")
        visible = [r for r in record.reviews if r.state != "PENDING" or r.author.id == org.viewer.id]
        assert node["reviews"]["totalCount"] == len(visible)
        if len(visible) <= 100:
            assert [r["fullDatabaseId"] for r in node["reviews"]["nodes"]] == [str(r.id) for r in visible]


def test_reviews_beyond_100_are_paged_on_the_pull_request(gh, org) -> None:
    number = int(org.scenario["big_pr"].rsplit(":", 1)[1])
    seen, after = [], None
    while True:
        _, data = gh.requester.graphql_query(REVIEWS, {"owner": "acme", "name": "widgets", "number": number,
                                                       "after": after})
        page = data["data"]["repository"]["pullRequest"]["reviews"]
        seen += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    record = next(p for p in org.repo("acme/widgets").pulls if p.number == number)
    assert [r["fullDatabaseId"] for r in seen] == [str(r.id) for r in record.reviews] and len(seen) > 100


def test_actors_ghost_bot_and_pending(gh, org) -> None:
    nodes = {n["number"]: n for n in all_merged(gh)}
    ghost_pr = int(org.scenario["deleted_user_pr"].rsplit(":", 1)[1])
    assert nodes[ghost_pr]["author"] is None
    bot_pr = int(org.scenario["bot_pr"].rsplit(":", 1)[1])
    assert nodes[bot_pr]["author"] == {"__typename": "Bot", "login": "dependabot", "databaseId": 49699333}
    _, repo, pr_number, review_id = org.scenario["deleted_user_review"].rsplit(":", 3)
    reviews = {r["fullDatabaseId"]: r for r in nodes[int(pr_number)]["reviews"]["nodes"]}
    assert reviews[review_id]["author"] is None and reviews[review_id]["submittedAt"]
    pending = org.scenario["pending_review"].split(":")
    _, data = gh.requester.graphql_query(REVIEWS, {"owner": "acme", "name": "widgets", "number": int(pending[3]),
                                                   "after": None})
    states = {r["fullDatabaseId"]: r for r in data["data"]["repository"]["pullRequest"]["reviews"]["nodes"]}
    assert states[pending[4]]["state"] == "PENDING" and states[pending[4]]["submittedAt"] is None


def test_rate_limit_cost_is_reported_and_charged(sandbox, gh) -> None:
    headers, data = gh.requester.graphql_query(PULLS, {"owner": "acme", "name": "widgets", "after": None})
    rate = data["data"]["rateLimit"]
    assert rate["cost"] == 1 and rate["limit"] == 5000  # 1 + 100 requests -> 1.01 -> 1
    assert headers["x-ratelimit-resource"] == "graphql"
    assert int(headers["x-ratelimit-remaining"]) == rate["remaining"]
    assert rate["resetAt"].endswith("Z")


@pytest.mark.parametrize(("query", "fragment"), [
    ('{ repository(owner: "acme", name: "widgets") { pullRequests(first: 5) { nodes { bogusField } } } }',
     "Field 'bogusField' doesn't exist on type 'PullRequest'"),
    ('{ repository(owner: "acme", name: "widgets") { pullRequests(first: 101) { nodes { number } } } }',
     "Requesting 101 records on the `pullRequests` connection exceeds the `first` limit of 100 records."),
    ('{ repository(owner: "acme", name: "widgets") { pullRequests { nodes { number } } } }',
     "You must provide a `first` or `last` value"),
    ('{ repository(owner: "acme", name: "widgets") { pullRequests(first: 1, orderBy: {field: NAME}) { totalCount } } }',
     "NAME"),
    ("{ repository(owner: ", "Syntax Error"),
])
def test_invalid_queries_are_rejected_before_execution(gh, query, fragment) -> None:
    with pytest.raises(github.GithubException) as caught:
        gh.requester.graphql_query(query, {})
    assert fragment in str(caught.value.data)


def test_invalid_query_shape_on_the_wire(sandbox) -> None:
    response = requests.post(sandbox.github_url + "/graphql", json={"query": "{ viewer { nope } }"},
                             headers={"Authorization": f"bearer {GITHUB_TOKEN}"}, timeout=10)
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["message"] == "Field 'nope' doesn't exist on type 'User'" and error["locations"]
    assert "data" not in response.json()


def test_unknown_repository_is_not_found(gh) -> None:
    with pytest.raises(github.UnknownObjectException):
        gh.requester.graphql_query('{ repository(owner: "acme", name: "nope") { name } }', {})


def test_issues_connection_filters_by_since(gh, org) -> None:
    query = """query($since: DateTime) { repository(owner: "acme", name: "widgets") {
      issues(first: 100, states: [CLOSED], filterBy: {since: $since}, orderBy: {field: UPDATED_AT, direction: ASC}) {
        totalCount nodes { number closedAt author { login } } } } }"""
    _, data = gh.requester.graphql_query(query, {"since": "2026-02-16T00:00:00Z"})
    since = datetime(2026, 2, 16, tzinfo=UTC)
    expected = [i for i in org.repo("acme/widgets").issues if i.closed_at and i.updated_at >= since]
    assert data["data"]["repository"]["issues"]["totalCount"] == len(expected)


def test_large_ids_need_full_database_id() -> None:
    org = generate_org(seed=1, repos=1, prs_per_repo=2, channels=1, messages_per_channel=1, big_pr_reviews=0,
                       large_ids=True)
    with start_sandbox(org) as sandbox:
        def ask(field: str) -> dict:
            query = f'{{ repository(owner: "acme", name: "widgets") {{ pullRequests(first: 1) {{ nodes {{ {field} }} }} }} }}'
            return requests.post(sandbox.github_url + "/graphql", json={"query": query}, timeout=10).json()

        node = ask("fullDatabaseId")["data"]["repository"]["pullRequests"]["nodes"][0]
        assert int(node["fullDatabaseId"]) > 2**31 and isinstance(node["fullDatabaseId"], str)
        assert "non 32-bit" in ask("databaseId")["errors"][0]["message"]
