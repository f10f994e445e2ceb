"""The GitHub REST sandbox through unmodified PyGithub, plus raw checks of what PyGithub hides."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

import github
import pytest
import requests

from credit_pipeline.sandbox import Sandbox, generate_org, start_sandbox
from credit_pipeline.sandbox.github_payloads import DATA_DIR, template

from .conftest import GITHUB_TOKEN, make_github

UTC = timezone.utc
AUTH = {"Authorization": f"token {GITHUB_TOKEN}"}
WEEK1 = (datetime(2026, 2, 16, tzinfo=UTC), datetime(2026, 2, 23, tzinfo=UTC))


def get(sandbox: Sandbox, path: str, **params: Any) -> requests.Response:
    return requests.get(sandbox.github_url + path, params=params, headers=AUTH, timeout=10)


def closed_pulls_by_updated_desc(org, repo="acme/widgets"):
    pulls = [p for p in org.repo(repo).pulls if p.closed_at]
    return sorted(pulls, key=lambda p: (p.updated_at, p.number), reverse=True)


def test_pygithub_pages_closed_prs_in_ceil_n_over_100_requests(sandbox, gh, org) -> None:
    expected = closed_pulls_by_updated_desc(org)
    assert len(expected) >= 250
    pulls = list(gh.get_repo("acme/widgets").get_pulls(state="closed", sort="updated", direction="desc"))
    assert [p.number for p in pulls] == [p.number for p in expected]
    assert [p.merged_at for p in pulls] == [p.merged_at for p in expected]
    records = sandbox.log.records("github")
    assert len(records) == math.ceil(len(expected) / 100)
    assert [r.query.get("page") for r in records] == [None, "2", "3"]
    assert records[1].path.startswith("/repositories/")  # followed from the Link header


def test_pr_fields_read_by_a_collector_are_free_and_correct(sandbox, gh, org) -> None:
    merged = [p for p in org.repo("acme/widgets").pulls if p.merged_at]
    pulls = {p.number: p for p in gh.get_repo("acme/widgets").get_pulls(state="closed")}
    sandbox.log.reset()
    for record in merged[:20]:
        pull = pulls[record.number]
        assert pull.merged_at == record.merged_at
        assert pull.html_url == f"{sandbox.github_url}/acme/widgets/pull/{record.number}"
        assert pull.user.id == (10137 if record.author.deleted else record.author.id)
    assert len(sandbox.log) == 0  # lazy=True and everything read is in the list payload
    assert pulls[merged[0].number].merged is True  # costs exactly one GET of the PR
    assert sandbox.log.count(path_contains=f"/pulls/{merged[0].number}") == 1


def test_link_header_is_formatted_like_github(sandbox, org) -> None:
    repo = org.repo("acme/widgets")
    response = get(sandbox, "/repos/acme/widgets/pulls", state="closed", per_page=100, page=2)
    base = f"{sandbox.github_url}/repositories/{repo.id}/pulls?state=closed&per_page=100"
    assert response.headers["Link"] == (
        f'<{base}&page=1>; rel="prev", <{base}&page=3>; rel="next", '
        f'<{base}&page=3>; rel="last", <{base}&page=1>; rel="first"')
    first = get(sandbox, "/repos/acme/widgets/pulls", state="closed", per_page=100)
    assert first.headers["Link"] == f'<{base}&page=2>; rel="next", <{base}&page=3>; rel="last"'
    same = requests.get(f"{sandbox.github_url}/repositories/{repo.id}/pulls?state=closed&per_page=100&page=2",
                        headers=AUTH, timeout=10)
    assert [p["number"] for p in same.json()] == [p["number"] for p in response.json()]
    single = get(sandbox, "/repos/acme/docs/pulls", state="open")
    assert "Link" not in single.headers


def test_per_page_is_clamped_to_100_and_defaults_to_30(sandbox) -> None:
    assert len(get(sandbox, "/repos/acme/widgets/pulls", state="all", per_page=500).json()) == 100
    assert len(get(sandbox, "/repos/acme/widgets/pulls", state="all").json()) == 30


def test_default_sort_directions_follow_github(sandbox, org) -> None:
    def numbers(**params: Any) -> list[int]:
        return [p["number"] for p in get(sandbox, "/repos/acme/widgets/pulls", state="all", per_page=100, **params).json()]

    pulls = org.repo("acme/widgets").pulls
    newest_created = sorted(pulls, key=lambda p: (p.created_at, p.number), reverse=True)
    oldest_updated = sorted(pulls, key=lambda p: (p.updated_at, p.number))
    assert numbers() == [p.number for p in newest_created[:100]]  # created, desc
    assert numbers(sort="updated") == [p.number for p in oldest_updated[:100]]  # updated defaults to asc
    assert get(sandbox, "/repos/acme/widgets/pulls", sort="bogus").status_code == 422


def test_issues_since_filters_on_updated_at_and_includes_prs(sandbox, gh, org) -> None:
    since = WEEK1[0]
    issues = list(gh.get_repo("acme/widgets").get_issues(state="all", since=since))
    repo = org.repo("acme/widgets")
    expected = {i.number for i in [*repo.issues, *repo.pulls] if i.updated_at >= since}
    assert {i.number for i in issues} == expected
    assert all(i.updated_at >= since for i in issues)
    prs = {i.number for i in issues if "/pull/" in i.html_url}
    assert prs == {p.number for p in repo.pulls if p.updated_at >= since}
    raw = get(sandbox, "/repos/acme/widgets/issues", state="all", since="2026-02-16T00:00:00Z", per_page=100).json()
    for item in raw:
        assert ("pull_request" in item) == ("/pull/" in item["html_url"])
        assert item["closed_by"] is None  # list items name no closer, as GitHub's (the single issue does)


def test_issue_closed_by_someone_else(sandbox, org) -> None:
    number = int(org.scenario["issue_closed_by_other"].rsplit(":", 1)[1])
    item = get(sandbox, f"/repos/acme/widgets/issues/{number}").json()
    assert item["user"]["login"] == "carol" and item["closed_by"]["login"] == "alice"
    ghost_item = int(org.scenario["deleted_user_issue"].rsplit(":", 1)[1])
    assert get(sandbox, f"/repos/acme/widgets/issues/{ghost_item}").json()["user"]["id"] == 10137


def test_reviews_are_paged_and_pending_has_no_submitted_at(sandbox, gh, org) -> None:
    big = int(org.scenario["big_pr"].rsplit(":", 1)[1])
    reviews = list(gh.get_repo("acme/widgets").get_pull(big).get_reviews())
    assert len(reviews) > 100 and sandbox.log.count(path_contains="/reviews") == 2
    pending_pr = int(org.scenario["pending_review"].split(":")[3])
    raw = get(sandbox, f"/repos/acme/widgets/pulls/{pending_pr}/reviews").json()
    pending = [r for r in raw if r["state"] == "PENDING"]
    assert pending and all("submitted_at" not in r for r in pending)
    assert all(r["submitted_at"] for r in raw if r["state"] != "PENDING")


def test_search_total_count_and_inclusive_date_ranges(sandbox, gh, org) -> None:
    start, end = WEEK1
    merged = [p for r in org.repos for p in r.pulls if p.merged_at and r.full_name == "acme/widgets"]
    half_open = sum(1 for p in merged if start <= p.merged_at < end)
    inclusive = sum(1 for p in merged if start <= p.merged_at <= end)
    assert inclusive == half_open + 1  # the PR merged exactly at the end boundary
    q = "repo:acme/widgets is:pr is:merged merged:>=2026-02-16T00:00:00Z merged:<2026-02-23T00:00:00Z"
    assert gh.search_issues(q).totalCount == half_open
    body = get(sandbox, "/search/issues", q="repo:acme/widgets is:pr merged:2026-02-16T00:00:00Z..2026-02-23T00:00:00Z")
    assert body.json()["total_count"] == inclusive and body.json()["incomplete_results"] is False
    issues = [i for i in org.repo("acme/widgets").issues if i.closed_at and start <= i.closed_at < end]
    q = "repo:acme/widgets is:issue is:closed closed:>=2026-02-16T00:00:00Z closed:<2026-02-23T00:00:00Z"
    assert get(sandbox, "/search/issues", q=q).json()["total_count"] == len(issues)
    day = get(sandbox, "/search/issues", q="repo:acme/widgets is:pr merged:2026-02-16").json()["total_count"]
    assert day == sum(1 for p in merged if p.merged_at.date().isoformat() == "2026-02-16")
    assert get(sandbox, "/search/issues", q="repo:acme/widgets foo:bar").status_code == 422


def test_search_serves_only_the_first_1000_results() -> None:
    org = generate_org(seed=5, repos=1, prs_per_repo=1100, reviews_per_pr=0, issues_per_repo=0, channels=1,
                       messages_per_channel=1, big_pr_reviews=0)
    with start_sandbox(org) as sandbox:
        first = get(sandbox, "/search/issues", q="repo:acme/widgets is:pr", per_page=100)
        assert first.json()["total_count"] > 1000
        assert re.search(r'page=10>; rel="last"', first.headers["Link"])
        beyond = get(sandbox, "/search/issues", q="repo:acme/widgets is:pr", per_page=100, page=11)
        assert beyond.status_code == 422 and "first 1000" in beyond.json()["message"]


def test_wrong_token_is_bad_credentials(sandbox) -> None:
    response = requests.get(sandbox.github_url + "/user", headers={"Authorization": "token nope"}, timeout=10)
    assert response.status_code == 401 and response.json()["message"] == "Bad credentials"
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers.keys())
    missing = get(sandbox, "/repos/acme/nope")
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"
    assert "x-ratelimit-remaining" in missing.headers
    with pytest.raises(github.BadCredentialsException):
        make_github(sandbox, token="nope").get_user().login
    bearer = requests.get(sandbox.github_url + "/user", headers={"Authorization": f"Bearer {GITHUB_TOKEN}"}, timeout=10)
    assert bearer.status_code == 200 and bearer.json()["login"] == "alice"


def test_rate_limit_headers_decrement_and_are_enforced() -> None:
    org = generate_org(seed=2, repos=1, prs_per_repo=3, channels=1, messages_per_channel=1)
    with start_sandbox(org, github_rate_limits={"core": (3, 60.0)}) as sandbox:
        seen = [get(sandbox, "/repos/acme/widgets") for _ in range(3)]
        assert [r.headers["x-ratelimit-remaining"] for r in seen] == ["2", "1", "0"]
        assert {r.headers["x-ratelimit-resource"] for r in seen} == {"core"}
        assert seen[-1].headers["x-ratelimit-used"] == "3" and seen[-1].headers["x-ratelimit-limit"] == "3"
        over = get(sandbox, "/repos/acme/widgets")
        assert over.status_code == 403 and over.json()["message"].startswith("API rate limit exceeded")
        assert over.headers["x-ratelimit-remaining"] == "0" and int(over.headers["x-ratelimit-reset"]) > 0
        overview = get(sandbox, "/rate_limit").json()  # does not count
        assert overview["resources"]["core"]["remaining"] == 0 and overview["rate"] == overview["resources"]["core"]


def test_etag_revalidation_is_free(sandbox) -> None:
    first = get(sandbox, "/repos/acme/widgets/pulls", state="closed", per_page=1)
    remaining = int(first.headers["x-ratelimit-remaining"])
    again = requests.get(first.url, headers={**AUTH, "If-None-Match": first.headers["ETag"]}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    assert int(again.headers["x-ratelimit-remaining"]) == remaining


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if "://" in value else []
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []


@pytest.mark.parametrize(("path", "template_name", "params"), [
    ("/repos/acme/widgets/pulls", "pull-request-simple-items", {"state": "closed"}),
    ("/repos/acme/widgets/issues", "issue-items", {"state": "closed"}),
    ("/repos/acme/widgets/pulls/{pr}/reviews", "pull-request-review-items", {}),
    ("/repos/acme/widgets", "full-repository-default-response", {}),
    ("/repos/acme/widgets/pulls/{pr}", "pull-request", {}),
    ("/user", "private-user", {}),
    ("/rate_limit", "rate-limit-overview", {}),
])
def test_payloads_have_the_documented_shape_and_only_sandbox_urls(sandbox, org, path, template_name, params) -> None:
    pr = next(p for p in org.repo("acme/widgets").pulls if p.merged_at and p.reviews)
    body = get(sandbox, path.format(pr=pr.number), **params).json()
    item = body[0] if isinstance(body, list) else body
    expected = set(template(template_name))
    if template_name == "issue-items":
        item = next(i for i in body if "pull_request" not in i)
        expected -= {"pull_request"}
    if template_name == "full-repository-default-response":
        expected -= {"parent", "source"}  # only forks have them
    assert expected <= set(item), expected - set(item)
    for url in _urls(body):
        assert not re.match(r"https?://(api\.)?github\.com", url), url
    assert all(u.startswith(sandbox.github_url) for u in _urls(body) if u.startswith("http") and "/avatars/" not in u)


def test_search_items_have_the_documented_shape(sandbox) -> None:
    body = get(sandbox, "/search/issues", q="repo:acme/widgets is:pr is:merged").json()
    page_keys = set(json.loads((DATA_DIR / "github" / "issue-search-result-item-paginated.json").read_text()))
    assert page_keys <= set(body) | {"search_type"}
    assert set(template("issue-search-result-item-paginated")["items"][0]) <= set(body["items"][0]) | {"type"}
    assert body["items"][0]["pull_request"]["merged_at"]


def test_deleted_users_show_as_ghost_and_bots_as_bots(sandbox, org) -> None:
    week = {p.number: p for p in org.repo("acme/widgets").pulls}
    ghost_pr = int(org.scenario["deleted_user_pr"].rsplit(":", 1)[1])
    bot_pr = int(org.scenario["bot_pr"].rsplit(":", 1)[1])
    ghost = get(sandbox, f"/repos/acme/widgets/pulls/{ghost_pr}").json()["user"]
    assert (ghost["login"], ghost["id"], ghost["type"]) == ("ghost", 10137, "User")
    bot = get(sandbox, f"/repos/acme/widgets/pulls/{bot_pr}").json()["user"]
    assert (bot["login"], bot["type"]) == ("dependabot[bot]", "Bot") and bot["url"].endswith("/users/dependabot%5Bbot%5D")
    assert week[bot_pr].author.is_bot
    assert get(sandbox, "/users/ghost").json()["id"] == 10137
    assert get(sandbox, "/users/leaver").status_code == 404
