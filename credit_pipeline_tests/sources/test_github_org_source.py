"""Organization-wide GitHub collection through GraphQL search (``sources.github.organization``), with the real
PyGithub requester against the sandbox: exact against the ground truth, the same facts as the per-repo listing,
a cost that follows events (not repos), the 1,000-result cap split, narrowing, faults and crashes."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import sqlalchemy as sa

from credit_pipeline.core.policy import PolicyError, validate_policy
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.faults import Fault
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.sources.base import StreamRef
from credit_pipeline.sources.parsing import columns_from_payload, event_facts
from credit_pipeline.stages.collect import collect_epoch
from credit_pipeline.stages.sources_config import build_source, policy_streams

from credit_pipeline_tests.conftest import _counter, scratch_database
from credit_pipeline_tests.sources.conftest import (
    DISCORD_TOKEN,
    FAST,
    GITHUB_TOKEN,
    after_window,
    assert_ground_truth,
    collect,
    key_of,
    org_policy,
    pages,
    window_of,
)

PRS, ISSUES = StreamRef("github", "pull_requests", "acme/*"), StreamRef("github", "issues", "acme/*")


def org_mode(org, **github):
    doc = org_policy(org).canonical()
    doc["sources"]["github"].update({"organization": "acme", "repos": [], **github})
    return validate_policy(doc)


@pytest.fixture
def make_org_source(sandbox, org):
    def make(**github):
        options = github.pop("options", {})
        return build_source("github", org_mode(org, **github), sandbox.env(), **{**FAST["github"], **options})

    return make


@pytest.fixture
def other_store(pg_server_url, template_db):
    import os

    with scratch_database(pg_server_url, f"cp_t_{os.getpid()}_{next(_counter)}", template=template_db) as url:
        engine = sa.create_engine(url)
        yield LedgerStore(engine)
        engine.dispose()


def search_pages(log) -> int:
    return sum(1 for x in log if x.path.endswith("graphql"))


def updated_since(org, start, *, issues: bool) -> int:
    if issues:
        return sum(1 for r in org.repos for i in r.issues if i.closed_at and i.closed_at >= start and i.updated_at >= start)
    return sum(1 for r in org.repos for p in r.pulls if p.updated_at >= start)


def extra_review_pages(org, start) -> int:
    return sum(math.ceil(len(p.reviews) / 100) - 1 for r in org.repos for p in r.pulls if p.updated_at >= start and len(p.reviews) > 100)


def test_the_organization_is_collected_exactly_with_requests_per_page_of_events(store, sandbox, org, make_org_source):
    source = make_org_source()
    assert source.streams() == [PRS, ISSUES]
    sandbox.log.reset()
    report = collect(store, source, org)
    assert_ground_truth(store, sandbox, window_of(org), "github")
    start = window_of(org)[0]
    prs, issues = updated_since(org, start, issues=False), updated_since(org, start, issues=True)
    floor = pages(prs) + pages(issues) + extra_review_pages(org, start)
    # every page of PRs (with their reviews) and of issues, the extra page of the PR with 105 reviews, one totals request
    assert report.requests == search_pages(sandbox.log.records("github")) == floor + 1, (report.requests, floor)
    assert len(org.repos) >= 2 and report.requests < 2 * len(org.repos) * 3  # fewer than the per-repo listing's fixed cost
    assert set(report.completeness) == {str(PRS), str(ISSUES)} and not report.shortfalls
    assert all(v["stored"] == v["source"] > 0 for v in report.completeness.values())


def test_the_search_stores_the_same_facts_as_the_per_repo_listing(store, other_store, sandbox, org, make_source, make_org_source):
    """Switching a policy from repos to organization keeps every event id, column and rule fact."""
    collect(store, make_source("github"), org)
    collect(other_store, make_org_source(), org)
    window = window_of(org)
    listed = {e["event_id"]: e for e in store.events_between(*window, source="github")}
    searched = {e["event_id"]: e for e in other_store.events_between(*window, source="github")}
    assert listed and set(listed) == set(searched)
    a, b = store.payloads(list(listed)), other_store.payloads(list(listed))
    assert any("mergedAt" in p for p in b.values()) and not any("mergedAt" in p for p in a.values())  # two payload forms
    for event_id in listed:
        assert event_facts(event_id, a[event_id]) == event_facts(event_id, b[event_id]), event_id
        assert columns_from_payload(event_id, a[event_id]) == columns_from_payload(event_id, b[event_id]), event_id
        stored = searched[event_id]
        derived = columns_from_payload(event_id, b[event_id])  # what verify re-derives from the stored payload
        assert (stored["platform_user_id"], stored["platform_login"], stored["event_time"]) == \
            (derived.platform_user_id, derived.platform_login, derived.event_time)
    # and collecting the other way round into the same ledger adds nothing
    assert collect(store, make_org_source(), org).new == 0


def test_an_idle_probe_is_one_request_and_a_new_merge_is_seen_and_collected_with_a_page_per_stream(store, sandbox, org, make_org_source):
    end = window_of(org, 1)[1]
    collect(store, make_org_source(), org, k=1, now=end + timedelta(days=30), full=False)
    source = make_org_source()
    cursors = {ref: store.get_cursor(ref.source, ref.stream, ref.ref) for ref in source.streams()}
    sandbox.log.reset()
    probes = source.probe(cursors)
    assert [p.has_new for p in probes] == [False, False] and len(sandbox.log.records("github")) == 1
    repo, author = "acme/docs", org.github_users[0].login
    late = max(p.updated_at for r in org.repos for p in r.pulls) + timedelta(minutes=30)
    pr = org.add_pull_request(repo, author, late - timedelta(hours=1), merged_at=late)
    sandbox.log.reset()
    changed = {p.stream: p for p in make_org_source().probe(cursors) if p.has_new}
    assert list(changed) == [PRS] and changed[PRS].head is not None and len(sandbox.log.records("github")) == 1
    sandbox.log.reset()
    report = collect(store, make_org_source(), org, k=1, now=end + timedelta(days=30), full=False)
    assert report.new == 1 and store.get_event(f"github:pr:{repo}:{pr.number}") is not None
    assert len(sandbox.log.records("github")) == 2  # one search page per stream


def test_a_rerun_adds_nothing_and_a_changed_scope_does_not_reuse_the_cursor(store, sandbox, org, make_org_source):
    first = collect(store, make_org_source(), org)
    again = collect(store, make_org_source(), org)
    assert first.new > 0 and again.new == 0 and again.seen == first.new + first.seen
    cursor = store.get_cursor("github", "pull_requests", "acme/*")
    narrowed = make_org_source(exclude_repos=["acme/docs"])
    assert cursor["scope"] == make_org_source().fingerprint != narrowed.fingerprint
    assert narrowed._own(cursor) == {}  # another scope's cursor would skip what the new scope never read


def test_narrowing_collects_only_the_scope_and_completeness_counts_only_it(store, sandbox, org, make_org_source):
    source = make_org_source(exclude_repos=["acme/docs"])
    report = collect(store, source, org)
    window = window_of(org)
    stored = store.events_between(*window, source="github")
    assert stored and {e["event_id"].split(":")[2] for e in stored} == {"acme/widgets"}
    truth = {k for k, x in sandbox.ground_truth(*window, source="github").items() if ":acme/widgets:" in k}
    assert {e["event_id"] for e in stored} == truth
    assert not report.shortfalls and all(v["stored"] == v["source"] for v in report.completeness.values())
    only = make_org_source(repos=["acme/docs"])
    assert only.scopes == ["repo:acme/docs"]
    report = collect(store, only, org)
    assert not report.shortfalls and {e["event_id"].split(":")[2] for e in store.events_between(*window, source="github")} == {
        "acme/widgets", "acme/docs"}


def test_the_thousand_result_cap_is_split_on_the_update_time_and_nothing_is_missed(store):
    org = generate_org(seed=5, weeks=1, repos=4, prs_per_repo=420, reviews_per_pr=1, issues_per_repo=10, channels=1,
                       messages_per_channel=1, big_pr_reviews=0, gaming=False)
    start = org.windows[0][0]
    prs = updated_since(org, start, issues=False)
    assert prs > 1000, prs
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sandbox:
        source = build_source("github", org_mode(org), sandbox.env(), **FAST["github"])
        report = collect_epoch(store, source, key_of(org), now=after_window(org))
        assert_ground_truth(store, sandbox, org.windows[0], "github")
        splits = sum("1000-result cap" in n for n in report.notes)
        assert splits == prs // 1000 >= 1, report.notes
        # the issue's bound: pages of PRs and issues + one per split + 5 (here: totals)
        floor = pages(prs) + pages(updated_since(org, start, issues=True))
        assert report.requests <= floor + splits + 5, (report.requests, floor, splits)
        assert not report.shortfalls


@pytest.mark.parametrize("fault, path", [
    (Fault.graphql_rate_limited(reset_in=1), r"graphql$"), (Fault.server_error(502), r"graphql$"),
    (Fault.drop_connection(), r"graphql$"), (Fault.truncated_body(0.5), r"graphql$"),
], ids=["RATE_LIMITED in a 200", "5xx", "dropped connection", "truncated body"])
def test_faults_end_with_the_exact_ground_truth(store, sandbox, org, make_org_source, fault, path):
    rule = sandbox.faults.add(fault, server="github", path=path, after=1, times=2)
    collect(store, make_org_source(), org)
    assert rule.fired >= 1
    assert_ground_truth(store, sandbox, window_of(org), "github")


@pytest.mark.parametrize("crash_after", [1, 3])
def test_a_crash_after_page_k_then_a_rerun_is_exact(store, sandbox, org, make_org_source, crash_after):
    seen = []

    def crash(page, write, report):
        seen.append(page)
        if len(seen) == crash_after:
            raise RuntimeError("injected crash")

    now = window_of(org)[1] - timedelta(seconds=1)
    with pytest.raises(RuntimeError, match="injected crash"):
        collect(store, make_org_source(), org, now=now, full=False, on_page=crash)
    crashed = seen[-1]  # committed with its cursor; a pass that had not reached its last page advances nothing
    assert (store.get_cursor("github", crashed.stream.stream, crashed.stream.ref).get("through") is not None) == crashed.last
    collect(store, make_org_source(), org, now=now, full=False)
    assert_ground_truth(store, sandbox, window_of(org), "github")


def test_a_malformed_search_node_is_quarantined_and_blocks_review(store, sandbox, org, make_org_source):
    sandbox.faults.add(Fault.malformed_item("mergedAt", "yesterday", index=3), server="github", path=r"graphql$", after=0, times=1)
    report = collect(store, make_org_source(), org)
    assert report.quarantined == 1 and report.shortfalls
    assert report.completeness[str(PRS)].get("quarantined") == 1
    again = collect(store, make_org_source(), org)  # GitHub answers properly again: the item is read, the stream proven
    assert again.quarantined == 0 and not again.shortfalls
    assert_ground_truth(store, sandbox, window_of(org), "github")


def test_reviews_only_and_pull_requests_only_search_what_they_need(store, sandbox, org, make_org_source):
    reviews = make_org_source(streams=["reviews"])
    assert reviews.streams() == [StreamRef("github", "reviews", "acme/*")]
    collect(store, reviews, org)
    kinds = {e["event_type"] for e in store.events_between(*window_of(org), source="github")}
    assert kinds == {"review_submitted"}
    merged = make_org_source(streams=["pull_requests"])
    assert "is:merged merged:>=" in merged._query(PRS, window_of(org), None)
    collect(store, merged, org)
    kinds = {e["event_type"] for e in store.events_between(*window_of(org), source="github")}
    assert kinds == {"review_submitted", "pr_merged"}


def test_policy_keys_refuse_what_cannot_be_meant_and_keep_old_hashes(org):
    policy = org_policy(org)
    assert org_policy(org).policy_hash == policy.policy_hash
    assert "organization" not in policy.canonical()["sources"]["github"]
    doc = policy.canonical()
    for github, message in [
        ({"exclude_repos": ["acme/docs"]}, "exclude_repos narrows an organization"),
        ({"organization": "acme", "repos": ["other/x"]}, "not a repo of organization acme"),
        ({"organization": "acme", "repos": ["acme/x"], "exclude_repos": ["acme/x"]}, "in both repos and exclude_repos"),
        ({"organization": "-bad-"}, "sources.github.organization"),
    ]:
        bad = {**doc, "sources": {**doc["sources"], "github": {**doc["sources"]["github"], **github}}}
        with pytest.raises(PolicyError, match=message):
            validate_policy(bad)
    assert [str(r) for r in policy_streams(org_mode(org)) if r.source == "github"] == ["github:pull_requests:acme/*", "github:issues:acme/*"]
