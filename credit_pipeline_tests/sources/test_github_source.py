"""The GitHub adapter, with the real PyGithub client over HTTP against the sandbox server."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from credit_pipeline.sandbox.faults import Fault
from credit_pipeline.sources.base import MalformedItem, RateLimitTooLong, SourceAuthError

from credit_pipeline_tests.sources.conftest import (
    after_window,
    assert_ground_truth,
    collect,
    key_of,
    pages,
    stored_view,
    window_of,
)


def test_full_window_is_exactly_the_ground_truth(store, sandbox, org, make_source):
    report = collect(store, make_source("github"), org)
    window = window_of(org)
    assert_ground_truth(store, sandbox, window, "github")
    stored = stored_view(store, window, "github")
    s = org.scenario
    # Half-open: exactly at start is in, exactly at end is the next window's.
    assert s["pr_merged_at_boundary_0"] in stored and s["review_at_boundary_0"] in stored and s["issue_closed_at_boundary_0"] in stored
    assert s["pr_merged_at_boundary_1"] not in stored and s["review_at_boundary_1"] not in stored and s["issue_closed_at_boundary_1"] not in stored
    assert s["pending_review"] not in stored and s["pr_closed_unmerged"] not in stored
    assert stored[s["bot_pr"]][2] is True and stored[s["deleted_user_pr"]][1] is None
    assert report.completeness and not report.shortfalls
    assert report.late_events == []


def test_renamed_login_is_one_account(store, sandbox, org, make_source):
    collect(store, make_source("github"), org)
    collect(store, make_source("github"), org, k=1)
    s = org.scenario
    before, after = store.get_event(s["renamed_user_pr_before"]), store.get_event(s["renamed_user_pr_after"])
    assert before["platform_login"] != after["platform_login"]
    assert before["platform_user_id"] == after["platform_user_id"]


def test_rerun_is_a_no_op(store, sandbox, org, make_source):
    first = collect(store, make_source("github"), org)
    again = collect(store, make_source("github"), org)
    assert first.new > 0 and again.new == 0 and again.seen == first.new + first.seen


def _updated_since(org, repo, stop, *, closed_only: bool, issues: bool = False) -> int:
    r = org.repo(repo)
    items = list(r.pulls) + (list(r.issues) if issues else [])
    return sum(1 for i in items if i.updated_at >= stop and (i.closed_at is not None or not closed_only))


def test_request_budget_is_pages_not_items(store, sandbox, org, make_source):
    window = window_of(org)
    sandbox.log.reset()
    collect(store, make_source("github"), org)
    log = sandbox.log.records("github")
    for repo in org.policy_sources()["github"]["repos"]:
        r = org.repo(repo)
        pulls = sum(1 for x in log if x.path in (f"/repos/{repo}/pulls", f"/repositories/{r.id}/pulls"))
        issues = sum(1 for x in log if x.path in (f"/repos/{repo}/issues", f"/repositories/{r.id}/issues"))
        k_pulls = _updated_since(org, repo, window[0], closed_only=True)
        k_issues = _updated_since(org, repo, window[0], closed_only=True, issues=True)
        assert pulls <= pages(k_pulls) + 3, (repo, pulls, k_pulls)
        assert issues <= pages(k_issues) + 3, (repo, issues, k_issues)
    graphql = sum(1 for x in log if x.path.endswith("graphql"))
    repos = org.policy_sources()["github"]["repos"]
    k_reviews = sum(pages(_updated_since(org, repo, window[0], closed_only=False)) + 3 for repo in repos)
    # one details query per listing page of PRs and of issues (what the REST list form lacks)
    k_details = sum(pages(_updated_since(org, repo, window[0], closed_only=True, issues=issues)) for repo in repos for issues in (False, True))
    assert graphql <= k_reviews + k_details + 1  # + one page for the PR with more than 100 reviews
    assert not any("/reviews" in x.path or "/pulls/" in x.path for x in log), "no per-PR requests"


def test_probe_costs_one_request_per_stream_and_sees_new_activity(store, sandbox, org, make_source):
    end = window_of(org, 1)[1]
    collect(store, make_source("github"), org, k=1, now=end + timedelta(days=30), full=False)
    cursors = {ref: store.get_cursor(ref.source, ref.stream, ref.ref) for ref in make_source("github").streams()}
    sandbox.log.reset()
    source = make_source("github")
    probes = source.probe(cursors)
    assert [p.has_new for p in probes] == [False] * len(probes)
    assert len(sandbox.log.records("github")) == len(probes) == len(source.streams())
    repo = org.policy_sources()["github"]["repos"][0]
    author = org.github_users[0].login
    late = max(p.updated_at for r in org.repos for p in r.pulls) + timedelta(minutes=5)
    pr = org.add_pull_request(repo, author, late - timedelta(hours=1), merged_at=late)
    changed = {str(p.stream): p for p in make_source("github").probe(cursors) if p.has_new}
    assert f"github:pull_requests:{repo}" in changed and changed[f"github:pull_requests:{repo}"].head is not None
    sandbox.log.reset()
    report = collect(store, make_source("github"), org, k=1, now=end + timedelta(days=30), full=False)
    assert report.new == 1
    assert store.get_event(f"github:pr:{repo}:{pr.number}") is not None
    assert len(sandbox.log.records("github")) <= 3 * len(probes)  # about one page per stream


FAULTS = {
    "secondary limit with Retry-After": (Fault.github_secondary_limit(retry_after=1), r"/pulls$", True),
    "secondary limit without Retry-After": (Fault.github_secondary_limit(retry_after=None), r"/issues$", True),
    "primary limit exhausted": (Fault.github_primary_limit(reset_in=1), r"/pulls$", True),
    "429 with Retry-After": (Fault.http_429(retry_after=1), r"/issues$", True),
    "429 without Retry-After": (Fault.http_429(retry_after=None), r"/pulls$", True),
    "GraphQL RATE_LIMITED in a 200": (Fault.graphql_rate_limited(reset_in=1), r"graphql$", True),
    "5xx burst": (Fault.server_error(502), r"/pulls$", False),
    "dropped connection": (Fault.drop_connection(), r"graphql$", False),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_end_with_the_exact_ground_truth(store, sandbox, org, make_source, name):
    fault, path, waits = FAULTS[name]
    rule = sandbox.faults.add(fault, server="github", path=path, after=1, times=3 if name == "5xx burst" else 1)
    source = make_source("github")
    report = collect(store, source, org)
    assert rule.fired >= 1, "the fault was never injected"
    assert_ground_truth(store, sandbox, window_of(org), "github")
    if waits:
        assert report.waits and report.waited_seconds >= 0.5, report.waits


def test_a_wait_longer_than_the_maximum_fails_with_when_to_retry(store, sandbox, org, make_source):
    repo = org.policy_sources()["github"]["repos"][0]
    assert _updated_since(org, repo, window_of(org)[0], closed_only=True) > 100, "the org needs two pages of PRs"
    sandbox.faults.add(Fault.github_primary_limit(reset_in=600), server="github", path=r"/pulls$", nth=2)
    with pytest.raises(RateLimitTooLong, match=r"retry after \d{4}-\d\d-\d\dT.*every full page so far is committed") as caught:
        collect(store, make_source("github", max_wait=5), org)
    assert caught.value.retry_at is not None
    cursor = store.get_cursor("github", "pull_requests", repo)
    assert cursor is not None and "through" not in cursor and cursor["pass"]["head"]  # page 1 committed, pass not complete
    assert len(store.events_between(*window_of(org), source="github")) > 0


def test_bad_token_names_the_variable_and_commits_nothing(store, sandbox, org, make_source):
    with pytest.raises(SourceAuthError, match="GITHUB_TOKEN"):
        collect(store, make_source("github", env={"GITHUB_TOKEN": "wrong"}), org)
    assert store.events_between(*window_of(org)) == [] and store.list_cursors() == []
    with pytest.raises(SourceAuthError, match="GITHUB_TOKEN is not set"):
        make_source("github", env={"GITHUB_TOKEN": ""})


def test_forbidden_names_the_token_and_the_permission_and_commits_nothing_for_the_stream(store, sandbox, org, make_source):
    repo = org.policy_sources()["github"]["repos"][1]
    sandbox.faults.add(Fault.github_forbidden(), server="github", path=rf"^/repos/{repo}/issues$", times=None)
    with pytest.raises(SourceAuthError, match=rf"GITHUB_TOKEN may not read github:issues:{repo} \(403: Resource not accessible.*Issues read"):
        collect(store, make_source("github"), org)
    assert store.get_cursor("github", "issues", repo) is None
    assert not [e for e in store.events_between(*window_of(org), source="github") if e["event_type"] == "issue_closed" and repo in e["event_id"]]


def test_a_malformed_item_is_quarantined_the_stream_completes_and_review_waits(store, sandbox, org, make_source):
    repo = org.policy_sources()["github"]["repos"][0]
    stream = f"github:pull_requests:{repo}"
    sandbox.faults.add(Fault.malformed_item("merged_at", "not-a-date", index=3), server="github", path=r"/pulls$", nth=2)
    report = collect(store, make_source("github"), org)  # no longer stops the stream
    assert report.streams[stream].quarantined and report.quarantined == 1
    assert store.get_cursor("github", "pull_requests", repo).get("through")  # the pass completed
    [item] = store.unresolved_quarantined()
    assert (item["source"], item["stream"], item["source_ref"]) == ("github", "pull_requests", repo)
    assert re.fullmatch(rf"github:pull_requests:{re.escape(repo)}#\d+: field 'merged_at' is not an ISO 8601 timestamp.*", item["reason"])
    assert item["item_key"].startswith(f"github:pr:{repo}:") and item["excerpt"].startswith('{"_links":') and len(item["excerpt"]) == 2000
    result = report.completeness[stream]
    assert result["quarantined"] == 1 and result["shortfall"] == 1 and stream in report.shortfalls  # not credited: short
    assert store.get_event(item["item_key"]) is None
    sandbox.faults.clear()
    again = collect(store, make_source("github"), org)  # read on the next pass: stored, quarantine resolved
    assert not again.shortfalls and again.quarantined == 0
    assert store.unresolved_quarantined() == [] and store.get_event(item["item_key"]) is not None
    assert_ground_truth(store, sandbox, window_of(org), "github")


def test_an_item_that_is_always_malformed_never_wedges_its_stream(store, sandbox, org, make_source):
    sandbox.faults.add(Fault.malformed_item("number", "twelve", index=0), server="github", path=r"/issues$", times=None)
    first = collect(store, make_source("github"), org)
    second = collect(store, make_source("github"), org)
    unresolved = store.unresolved_quarantined()
    assert first.quarantined >= 1 and second.quarantined == first.quarantined
    assert {q["item_key"] for q in unresolved} == {None} and all(q["times_seen"] == 2 for q in unresolved)
    assert all(store.get_cursor("github", ref.stream, ref.ref).get("through") for ref in make_source("github").streams())


@pytest.mark.parametrize("full", [True, False], ids=["closed window", "open window"])
@pytest.mark.parametrize("crash_after", [1, 3])
def test_crash_after_page_k_then_rerun(store, sandbox, org, make_source, full, crash_after):
    seen = []

    def crash(page, write, report):
        seen.append(page)
        if len(seen) == crash_after:
            raise RuntimeError("injected crash")

    now = after_window(org) if full else window_of(org)[1] - timedelta(seconds=1)
    with pytest.raises(RuntimeError, match="injected crash"):
        collect(store, make_source("github"), org, now=now, full=full, on_page=crash)
    collect(store, make_source("github"), org, now=now, full=full)
    assert_ground_truth(store, sandbox, window_of(org), "github")


def test_issue_credit_can_go_to_the_closer(store, sandbox, org, policy):
    from credit_pipeline.core.policy import validate_policy
    from credit_pipeline.stages.sources_config import build_source

    from credit_pipeline_tests.sources.conftest import FAST

    doc = policy.canonical()
    doc["sources"]["github"]["issue_credit"] = "closer"
    source = build_source("github", validate_policy(doc), sandbox.env(), **FAST["github"])
    collect(store, source, org)
    event_id = org.scenario["issue_closed_by_other"]
    expected = sandbox.ground_truth(*window_of(org), source="github")[event_id]
    stored = store.get_event(event_id)
    assert expected.closer_id and expected.closer_id != expected.platform_user_id
    assert stored["platform_user_id"] == expected.closer_id and stored["platform_login"] == expected.closer_login
    assert stored["metadata"]["author_id"] == expected.platform_user_id and stored["metadata"]["credited"] == "closer"


def test_a_week_that_has_not_begun_is_refused_before_any_request(store, sandbox, org, make_source):
    from credit_pipeline.stages.collect import FutureEpoch, collect_epoch

    for name in ("github", "discord"):
        source = make_source(name)
        key = org.windows[-1][0].date().isoformat()
        sandbox.log.reset()
        with pytest.raises(FutureEpoch, match="collect it once it has begun"):
            collect_epoch(store, source, key, now=org.windows[0][0] - timedelta(days=1))
        assert store.list_cursors() == [] and len(sandbox.log) == 0


def test_incomplete_search_results_are_asked_again_then_pass(store, sandbox, org, make_source):
    sandbox.github.app.incomplete_searches = 1  # one timed-out search, then GitHub answers in full
    report = collect(store, make_source("github"), org)
    assert not report.shortfalls and report.completeness
    assert any("incomplete_results: asking again" in reason for _, reason in report.waits)
    assert not any(v.get("incomplete") for v in report.completeness.values())


def test_search_that_stays_incomplete_reports_an_unproven_stream_and_blocks_review(store, sandbox, org, make_source):
    from credit_pipeline.stages.allocate import review_blockers

    sandbox.github.app.incomplete_searches = 10**6  # every search times out
    report = collect(store, make_source("github"), org)
    countable = [k for k, v in report.completeness.items() if v["source"] is not None]
    assert countable and sorted(report.shortfalls) == sorted(countable)
    for stream in countable:
        result = report.completeness[stream]
        assert result["incomplete"] is True and "incomplete_results" in result["method"]
        assert result["stored"] > result["source"]  # the partial count is below what is stored: it proves nothing
    assert any("incomplete_results" in note for note in report.notes)
    epoch = store.get_epoch(key_of(org))
    assert any("completeness shortfall in" in b and countable[0] in b for b in review_blockers(epoch, after_window(org), list(report.completeness)))
    sandbox.github.app.incomplete_searches = 0
    again = collect(store, make_source("github"), org)  # GitHub answers in full again: the stream is proven
    assert not again.shortfalls
