"""The sandbox's GraphQL ``search(type: ISSUE)``, through PyGithub, with GitHub's semantics: qualifiers, the
``sort:`` qualifier, ``-repo:`` exclusion, ``issueCount`` of the whole result, and only the first 1,000 results
reachable by paging."""

from __future__ import annotations

import base64

import github
import pytest

from credit_pipeline.sandbox import generate_org, start_sandbox
from credit_pipeline.sources.github_graphql import search_counts_query, search_page_query

from .conftest import GITHUB_TOKEN, make_github

PAGE = """
query($q: String!, $after: String) {
  search(query: $q, type: ISSUE, first: 100, after: $after) {
    issueCount
    pageInfo { hasNextPage endCursor }
    nodes { ... on PullRequest { number updatedAt repository { nameWithOwner } } ... on Issue { number updatedAt repository { nameWithOwner } } }
  }
}
"""


def everything(gh, q: str) -> tuple[int, list[dict]]:
    nodes, after, count = [], None, None
    while True:
        _, data = gh.requester.graphql_query(PAGE, {"q": q, "after": after})
        result = data["data"]["search"]
        count = result["issueCount"] if count is None else count
        nodes += result["nodes"]
        if not result["pageInfo"]["hasNextPage"]:
            return count, nodes
        after = result["pageInfo"]["endCursor"]


def test_search_matches_the_rest_search_and_sorts_by_the_sort_qualifier(gh, org):
    q = "org:acme is:pr updated:>=2026-02-16T00:00:00Z sort:updated-desc"
    count, nodes = everything(gh, q)
    expected = [p for r in org.repos for p in r.pulls if p.updated_at.isoformat() >= "2026-02-16T00:00:00+00:00"]
    assert count == len(nodes) == len(expected) and count > 100  # several pages
    times = [n["updatedAt"] for n in nodes]
    assert times == sorted(times, reverse=True)
    assert {(n["repository"]["nameWithOwner"], n["number"]) for n in nodes} == {(p.repo, p.number) for p in expected}
    _, asc = everything(gh, q.replace("updated-desc", "updated-asc"))
    assert [n["updatedAt"] for n in asc] == sorted(times)


def test_minus_repo_excludes_and_several_repo_qualifiers_are_any_of(gh, org):
    both, _ = everything(gh, "org:acme is:issue is:closed")
    widgets, nodes = everything(gh, "org:acme -repo:acme/docs is:issue is:closed")
    docs, _ = everything(gh, "repo:acme/docs is:issue is:closed")
    either, _ = everything(gh, "repo:acme/docs repo:acme/widgets is:issue is:closed")
    assert widgets and docs and widgets + docs == both == either
    assert {n["repository"]["nameWithOwner"] for n in nodes} == {"acme/widgets"}


def test_a_bad_qualifier_is_an_error_that_names_it(gh):
    with pytest.raises(github.GithubException) as raised:
        gh.requester.graphql_query(PAGE, {"q": "org:acme sort:stars-desc", "after": None})
    assert raised.value.data["data"] is None and "sort:stars-desc" in raised.value.data["errors"][0]["message"]


def test_only_the_first_thousand_results_can_be_paged_and_issue_count_counts_all():
    org = generate_org(seed=3, weeks=1, repos=3, prs_per_repo=420, reviews_per_pr=0, issues_per_repo=2, channels=1,
                       messages_per_channel=1, big_pr_reviews=0, gaming=False)
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token="x") as sandbox:
        gh = make_github(sandbox)
        count, nodes = everything(gh, "org:acme is:pr sort:updated-desc")
        total = sum(len(r.pulls) for r in org.repos)
        assert total > 1000 and count == total and len(nodes) == 1000
        cursor = base64.b64decode(gh.requester.graphql_query(PAGE, {"q": "org:acme is:pr", "after": None})[1]
                                  ["data"]["search"]["pageInfo"]["endCursor"]).decode()
        assert cursor == "cursor:100"  # GitHub's search cursors are offsets


@pytest.mark.parametrize("kind, reviews", [("pr", True), ("pr", False), ("issue", False)])
def test_the_collectors_search_documents_are_valid_against_githubs_schema(gh, kind, reviews):
    _, data = gh.requester.graphql_query(search_page_query(kind, reviews=reviews), {"q": f"org:acme is:{kind}", "after": None})
    assert "errors" not in data and data["data"]["search"]["issueCount"] > 0
    _, data = gh.requester.graphql_query(search_counts_query(2, newest=True), {"q0": "org:acme is:pr", "q1": "org:acme is:issue"})
    assert "errors" not in data and all(data["data"][f"s{i}"]["nodes"][0]["updatedAt"] for i in (0, 1))
