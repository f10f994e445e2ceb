"""Every fault kind, checked on the raw wire (where clients would hide it) and, where it matters,
through the real clients' retry logic. Waits are kept at about a second."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

import github
import pytest
import requests

from credit_pipeline.sandbox import Fault, FaultRule

from .conftest import DISCORD_TOKEN, GITHUB_TOKEN, make_github

GH = {"Authorization": f"token {GITHUB_TOKEN}"}
DC = {"Authorization": f"Bot {DISCORD_TOKEN}"}
PULLS = "/repos/acme/widgets/pulls"


def gh_get(sandbox, path: str = PULLS, **params) -> requests.Response:
    return requests.get(sandbox.github_url + path, params=params, headers=GH, timeout=10)


def dc_get(sandbox, path: str, **params) -> requests.Response:
    return requests.get(sandbox.discord_api_url + path, params=params, headers=DC, timeout=10)


def test_secondary_limit_with_and_without_retry_after(sandbox) -> None:
    sandbox.faults.add(Fault.github_secondary_limit(retry_after=1), path=r"/pulls$", nth=1)
    sandbox.faults.add(Fault.github_secondary_limit(retry_after=None), path=r"/pulls$", nth=2)
    with_header, without = gh_get(sandbox), gh_get(sandbox)
    for response in (with_header, without):
        assert response.status_code == 403
        assert response.json()["message"].startswith("You have exceeded a secondary rate limit")
        assert "secondary-rate-limits" in response.json()["documentation_url"]
    assert with_header.headers["Retry-After"] == "1" and "Retry-After" not in without.headers
    assert gh_get(sandbox).status_code == 200
    assert [r.fault for r in sandbox.log.records()] == ["github_secondary_limit", "github_secondary_limit", None]


def test_pygithub_waits_out_a_secondary_limit(sandbox, gh, org) -> None:
    sandbox.faults.add(Fault.github_secondary_limit(retry_after=1), path=r"/pulls$", nth=1)
    started = time.monotonic()
    pulls = list(gh.get_repo("acme/docs").get_pulls(state="all"))
    assert len(pulls) == len(org.repo("acme/docs").pulls)
    assert time.monotonic() - started >= 1
    pages = -(-len(pulls) // 100)
    assert [r.status for r in sandbox.log.records()] == [403] + [200] * pages


@pytest.mark.parametrize("status", [403, 429])
def test_primary_limit_exhausted(sandbox, status) -> None:
    sandbox.faults.add(Fault.github_primary_limit(reset_in=2, status=status), path=r"/pulls$")
    before = time.time()
    response = gh_get(sandbox)
    assert response.status_code == status
    assert response.json()["message"].startswith("API rate limit exceeded")
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert before + 1 <= int(response.headers["x-ratelimit-reset"]) <= before + 4


def test_plain_429_with_and_without_retry_after(sandbox) -> None:
    sandbox.faults.add(Fault.http_429(retry_after=1), nth=1, server="github")
    sandbox.faults.add(Fault.http_429(retry_after=None), nth=2, server="github")
    first, second = gh_get(sandbox), gh_get(sandbox)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
    assert second.status_code == 429 and "Retry-After" not in second.headers


def test_5xx_burst_then_recovery_and_pygithub_retries_it(sandbox, org) -> None:
    sandbox.faults.add(Fault.server_error(502), path=r"/pulls$", times=2)
    sandbox.faults.add(Fault.server_error(503), path=r"/pulls$", after=2, times=1)
    assert [gh_get(sandbox).status_code for _ in range(4)] == [502, 502, 503, 200]
    sandbox.faults.clear()
    sandbox.log.reset()
    sandbox.faults.add(Fault.server_error(502), path=r"/pulls$", times=3)
    pulls = list(make_github(sandbox, total=3).get_repo("acme/docs").get_pulls(state="all"))
    assert len(pulls) == len(org.repo("acme/docs").pulls)
    pages = -(-len(pulls) // 100)
    assert [r.status for r in sandbox.log.records()] == [502, 502, 502] + [200] * pages


def test_5xx_beyond_the_retry_budget_is_a_retry_error(sandbox) -> None:
    sandbox.faults.add(Fault.server_error(502), path=r"/pulls$", times=None)
    with pytest.raises(requests.exceptions.RetryError):
        list(make_github(sandbox, total=2).get_repo("acme/docs").get_pulls())


def test_graphql_rate_limited_inside_http_200(sandbox, gh) -> None:
    sandbox.faults.add(Fault.graphql_rate_limited(reset_in=1), path=r"/graphql$")
    response = requests.post(sandbox.github_url + "/graphql", json={"query": "{ viewer { login } }"}, headers=GH,
                             timeout=10)
    assert response.status_code == 200
    assert response.json()["data"] is None and response.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert response.json()["errors"][0]["message"].startswith("API rate limit exceeded")
    assert response.headers["x-ratelimit-remaining"] == "0" and response.headers["x-ratelimit-resource"] == "graphql"
    sandbox.faults.add(Fault.graphql_rate_limited(), path=r"/graphql$")
    with pytest.raises(github.GithubException):  # PyGithub does not retry it: the collector must
        gh.requester.graphql_query("{ viewer { login } }", {})


@pytest.mark.parametrize("is_global", [False, True])
def test_discord_429_shape(sandbox, org, is_global) -> None:
    sandbox.faults.add(Fault.discord_429(retry_after=0.5, is_global=is_global), server="discord")
    response = dc_get(sandbox, f"/channels/{org.allow_listed_channels[0].id}/messages")
    assert response.status_code == 429 and response.headers["Via"] == "1.1 google"
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"message": "You are being rate limited.", "retry_after": 0.5, "global": is_global}
    assert (response.headers.get("X-RateLimit-Global") == "true") == is_global
    if not is_global:
        assert response.headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Reset" in response.headers


def test_cloudflare_ban_has_no_via_and_no_json(sandbox, org) -> None:
    sandbox.faults.add(Fault.discord_cloudflare_ban(), server="discord")
    response = dc_get(sandbox, f"/channels/{org.allow_listed_channels[0].id}/messages")
    assert response.status_code == 429 and "Via" not in response.headers
    assert not response.headers["Content-Type"].startswith("application/json")


def test_malformed_rest_item(sandbox, gh, org) -> None:
    sandbox.faults.add(Fault.malformed_item("merged_at", "not-a-date", index=0), path=r"/pulls$")
    body = gh_get(sandbox, state="closed", sort="updated", direction="desc").json()
    assert body[0]["merged_at"] == "not-a-date" and body[1]["merged_at"] != "not-a-date"
    assert sandbox.log.records()[-1].fault == "malformed_item"
    sandbox.faults.add(Fault.malformed_item("merged_at", "not-a-date"), path=r"/pulls$")
    pulls = list(gh.get_repo("acme/widgets").get_pulls(state="closed", sort="updated", direction="desc"))
    with pytest.raises(github.BadAttributeException):
        pulls[0].merged_at
    assert pulls[1].closed_at is not None  # only the first item of the first page was corrupted


def test_malformed_nested_field_does_not_leak_into_shared_objects(sandbox, org) -> None:
    sandbox.faults.add(Fault.malformed_item("user.id", "abc", index=0), path=r"/issues$", nth=1)
    sandbox.faults.add(Fault.malformed_item("user", None, index=1), path=r"/issues$", nth=2)

    def fetch() -> list[dict]:
        return gh_get(sandbox, "/repos/acme/widgets/issues", state="all", per_page=100).json()

    corrupted, nulled, clean = fetch(), fetch(), fetch()
    assert corrupted[0]["user"]["id"] == "abc"
    same_author = [i for i in corrupted[1:] if i["user"]["login"] == corrupted[0]["user"]["login"]]
    assert same_author and all(isinstance(i["user"]["id"], int) for i in same_author)
    assert nulled[1]["user"] is None and isinstance(nulled[0]["user"]["id"], int)
    assert isinstance(clean[0]["user"]["id"], int) and clean[1]["user"] is not None


def test_malformed_item_deleted_field_and_graphql_node(sandbox) -> None:
    sandbox.faults.add(Fault.malformed_item("mergedAt", "not-a-date"), path=r"/graphql$")
    query = '{ repository(owner: "acme", name: "widgets") { pullRequests(first: 2, states: [MERGED]) { nodes { number mergedAt } } } }'
    nodes = requests.post(sandbox.github_url + "/graphql", json={"query": query}, headers=GH,
                          timeout=10).json()["data"]["repository"]["pullRequests"]["nodes"]
    assert nodes[0]["mergedAt"] == "not-a-date" and nodes[1]["mergedAt"].endswith("Z")
    sandbox.faults.add(Fault.malformed_item("merged_at", delete=True), path=r"/pulls$")
    assert "merged_at" not in gh_get(sandbox, state="closed").json()[0]


def test_malformed_discord_message_id(sandbox, org) -> None:
    sandbox.faults.add(Fault.malformed_item("id", "not-a-snowflake", index=2), path=r"/messages$")
    body = dc_get(sandbox, f"/channels/{org.allow_listed_channels[0].id}/messages", limit=5).json()
    assert body[2]["id"] == "not-a-snowflake" and body[1]["id"].isdigit()


def test_dropped_connection(sandbox) -> None:
    sandbox.faults.add(Fault.drop_connection(), path=r"/pulls$")
    url = urlsplit(sandbox.github_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    connection.request("GET", PULLS, headers=GH)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()
    connection.close()
    record = sandbox.log.records()[-1]
    assert (record.status, record.fault) == (0, "drop_connection")
    sandbox.faults.add(Fault.drop_connection(), path=r"/pulls$")
    with pytest.raises(requests.exceptions.ConnectionError):
        gh_get(sandbox)
    assert gh_get(sandbox).status_code == 200


def test_slow_response(sandbox) -> None:
    sandbox.faults.add(Fault.slow(0.3), path=r"/pulls$")
    started = time.monotonic()
    assert gh_get(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert sandbox.log.records()[-1].fault == "delay"


def test_rule_matching_by_method_query_and_occurrence(sandbox) -> None:
    plan = sandbox.faults
    plan.add(FaultRule(Fault.server_error(500), method="GET", path=r"/pulls$", query={"page": "2"}))
    plan.add(Fault.server_error(503), path=r"/issues$", query=lambda q: q.get("state") == "closed", after=1, times=2)
    assert gh_get(sandbox).status_code == 200
    assert gh_get(sandbox, page=2).status_code == 500
    assert gh_get(sandbox, page=2).status_code == 200  # times=1 by default
    statuses = [gh_get(sandbox, "/repos/acme/widgets/issues", state="closed").status_code for _ in range(4)]
    assert statuses == [200, 503, 503, 200]
    assert gh_get(sandbox, "/repos/acme/widgets/issues", state="open").status_code == 200
    with pytest.raises(ValueError):
        FaultRule(Fault.drop_connection(), nth=0)
    assert len(sandbox.log.faults()) == 3


def test_truncated_body_keeps_status_and_headers_and_cuts_the_json(sandbox, org) -> None:
    from credit_pipeline.sandbox.faults import truncate_body

    channel = f"/channels/{org.allow_listed_channels[0].id}/messages"
    sandbox.faults.add(Fault.truncated_body(keep=0.5), path=r"/pulls$", nth=1)
    sandbox.faults.add(Fault.truncated_body(keep=0.3), server="discord", path=r"/messages$", nth=1)
    cut, whole = gh_get(sandbox, state="closed"), gh_get(sandbox, state="closed")
    dc_cut, dc_whole = dc_get(sandbox, channel, limit=100), dc_get(sandbox, channel, limit=100)
    for short, full, keep in ((cut, whole, 0.5), (dc_cut, dc_whole, 0.3)):
        assert short.status_code == full.status_code == 200
        assert short.headers["Content-Type"] == full.headers["Content-Type"]
        assert int(short.headers["Content-Length"]) == len(short.content) == int(len(full.content) * keep)
        assert full.content.startswith(short.content)
        with pytest.raises(ValueError):
            short.json()
    assert cut.headers["Link"] == whole.headers["Link"] and "x-ratelimit-remaining" in cut.headers
    assert [r.fault for r in sandbox.log.records()][-4:] == ["truncated_body", None, "truncated_body", None]
    assert sandbox.log.records()[-4].status == 200
    sandbox.faults.add(Fault.server_error(503), path=r"/pulls$", nth=1)  # other kinds still answer as before
    assert gh_get(sandbox).status_code == 503
    with pytest.raises(ValueError):
        Fault.truncated_body(keep=1)
    assert truncate_body(b"", Fault.truncated_body()) == b"" and truncate_body(b"[]", Fault.truncated_body(0)) == b"["
