"""Discord threads and forum posts through discord.py's REST client against the sandbox: the conversation under
an allow-listed channel counts, exactly once (issue 12)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.collect import source_cursors
from credit_pipeline.stages.decisions import ensure_facts
from credit_pipeline.stages.sources_config import build_source

from credit_pipeline_tests.sources.conftest import (DISCORD_TOKEN, FAST, GITHUB_TOKEN, assert_ground_truth, collect, org_policy,
                                                    stored_view, window_of)


@pytest.fixture
def org():
    return generate_org(seed=11, prs_per_repo=20, reviews_per_pr=1, issues_per_repo=5, messages_per_channel=300, threads=True)


@pytest.fixture
def sandbox(org):
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sb:
        yield sb


def discord(sandbox, org, **doc):
    policy = org_policy(org)
    if doc:
        canonical = policy.canonical()
        canonical["sources"]["discord"].update(doc)
        policy = validate_policy(canonical)
    return build_source("discord", policy, sandbox.env(), **FAST["discord"])


def test_threads_and_forum_posts_under_allow_listed_channels_are_collected_exactly(store, sandbox, org):
    source = discord(sandbox, org)
    report = collect(store, source, org)
    window = window_of(org)
    assert_ground_truth(store, sandbox, window, "discord")
    stored, s = stored_view(store, window, "discord"), org.scenario
    for name in ("thread_active_message", "thread_archived_message", "thread_archived_after_window_message",
                 "thread_created_midweek_message", "forum_post_starter", "forum_post_reply", "thread_message_at_start",
                 "thread_message_just_before_end"):
        assert s[name] in stored, name
    for name in ("thread_under_unlisted_channel_message", "private_thread_message", "thread_message_at_end",
                 "thread_message_before_window"):
        assert s[name] not in stored, name
    # the event names the thread (as Discord's channel_id does) and records its parent; the rules read the parent
    event = store.get_event(s["thread_active_message"])
    thread_id = s["thread_active_message"].split(":")[3]
    parent = event["metadata"]["parent_channel_id"]
    assert event["metadata"]["channel_id"] == thread_id and parent in org.policy_sources()["discord"]["channels"]
    assert event["payload"]["in_thread"]["id"] == thread_id and event["payload"]["channel_id"] == thread_id
    ensure_facts(store, [s["thread_active_message"]])
    assert store.facts_of([s["thread_active_message"]], 1)[s["thread_active_message"]]["channel_id"] == parent
    # threads per parent and messages per thread (a private thread the bot is not in is not even listed to it)
    seen = source.thread_report
    assert sum(r["threads"] for r in seen.values()) >= 5 and not any(r["unreadable"] for r in seen.values())
    assert {t for r in seen.values() for t in r["messages"]} == {x.split(":")[3] for x in stored if stored[x] and
                                                                   store.get_event(x)["metadata"].get("parent_channel_id")}
    assert report.notes == []
    again = collect(store, discord(sandbox, org), org)
    assert again.new == 0  # a rerun adds nothing


def test_a_listed_thread_the_bot_may_not_read_is_reported_and_the_pass_goes_on(store, sandbox, org):
    """A thread listed to the bot that answers 403 when read (its access changed between the listing and the read):
    reported in the notes and the thread report, every other thread collected."""
    allowed = {int(c) for c in org.policy_sources()["discord"]["channels"]}
    listed = sorted((t for t in org.guild.threads if t.readable and t.parent_id in allowed), key=lambda t: t.id)
    target = listed[-1]  # threads are read in id order, after the listing: lock the last one once the first is read

    def lock_it(page, write, report):
        if page.stream.ref not in {str(c) for c in allowed}:
            target.readable = False

    source = discord(sandbox, org)
    report = collect(store, source, org, on_page=lock_it)
    unreadable = [t for r in source.thread_report.values() for t in r["unreadable"]]
    assert unreadable == [str(target.id)]
    assert any(f"thread {target.id}: the bot may not read it (403" in note for note in report.notes)
    stored = stored_view(store, window_of(org), "discord")
    assert not any(k.split(":")[3] == str(target.id) for k in stored)
    assert org.scenario["forum_post_reply"] in stored  # the pass went on


def test_threads_false_collects_the_channels_only(store, sandbox, org):
    report = collect(store, discord(sandbox, org, threads=False), org)
    assert any("is a forum: its posts are threads, and sources.discord.threads is false" in n for n in report.notes)
    stored, s = stored_view(store, window_of(org), "discord"), org.scenario
    assert s["thread_active_message"] not in stored and s["forum_post_starter"] not in stored
    assert stored  # the channels' own messages are there


def test_requests_are_pages_not_threads(store, sandbox, org):
    source = discord(sandbox, org)
    sandbox.log.reset()
    collect(store, source, org)
    log = sandbox.log.records("discord")
    seen = {t for r in source.thread_report.values() for t in [*r["messages"], *r["unreadable"]]}
    truth = sandbox.ground_truth(*window_of(org), source="discord")
    per_thread = {t: sum(1 for x in truth.values() if x.channel_id == t) for t in seen}
    listings = sum(1 for r in log if "/threads/" in r.path)
    thread_reads = sum(1 for r in log if r.path.endswith("/messages") and r.path.split("/")[-2] in seen)
    # at most one request per 100 thread messages plus one per thread (the page that proves it ends), one per listing page
    assert thread_reads <= sum(math.ceil(n / 100) for n in per_thread.values()) + len(seen)
    assert listings <= 1 + len(org.policy_sources()["discord"]["channels"])  # the active list, one archived page per channel here
    print(f"threads {len(seen)}, thread messages {sum(per_thread.values())}, thread reads {thread_reads}, listings {listings}")


def test_the_probe_is_one_request_for_active_threads_plus_one_per_channel_and_sees_a_new_thread_message(store, sandbox, org):
    collect(store, discord(sandbox, org), org)  # week 0, closed: every thread's cursor is at its last message of the week
    source = discord(sandbox, org)
    sandbox.log.reset()
    source.probe(source_cursors(store, source))
    log = [r for r in sandbox.log.records("discord") if not r.path.endswith("/users/@me")]
    assert len(log) == 1 + len(org.policy_sources()["discord"]["channels"]), [r.path for r in log]
    allowed = {int(c) for c in org.policy_sources()["discord"]["channels"]}
    active = next(t for t in org.guild.threads if not t.archived and t.readable and t.parent_id in allowed)
    at = window_of(org, 1)[0] + timedelta(days=2, hours=1)
    message = org.add_message(active.id, "mason", at, "a new reply in the thread, mid-week")
    hit = next(p for p in source.probe(source_cursors(store, source)) if p.stream.ref == str(active.id))
    assert hit.has_new and hit.head == str(message.id)
    report = collect(store, discord(sandbox, org), org, 1, now=at + timedelta(hours=1), full=False)
    assert report.new >= 1 and store.get_event(f"discord:message:{org.guild.id}:{active.id}:{message.id}") is not None


def test_faults_on_thread_listings_and_thread_messages_change_nothing(store, sandbox, org):
    """5xx bursts, 429s, dropped connections and bodies cut short on the active list, the archived listings and
    the threads' messages: the pass waits and retries, and what it stores is exactly the ground truth."""
    from credit_pipeline.sandbox.faults import Fault

    for fault, path, after, times in ((Fault.server_error(503), r"/threads/active$", 0, 2),
                                      (Fault.discord_429(retry_after=0.2), r"/threads/archived/public$", 0, 2),
                                      (Fault.drop_connection(), r"/threads/archived/public$", 2, 1),
                                      (Fault.truncated_body(0.4), r"/threads/active$", 2, 1)):
        sandbox.faults.add(fault, server="discord", path=path, after=after, times=times)  # rules on one path take turns
    thread_ids = {str(t.id) for t in org.guild.threads}
    # (discord.py gives one request 5 tries: faults on one request in a row beyond that fail the pass, cleanly)
    sandbox.faults.add(Fault.server_error(502), server="discord", path=r"/channels/(%s)/messages$" % "|".join(thread_ids), times=2)
    sandbox.faults.add(Fault.discord_429(retry_after=0.2), server="discord", path=r"/channels/(%s)/messages$" % "|".join(thread_ids),
                       after=4, times=2)
    report = collect(store, discord(sandbox, org), org)
    assert_ground_truth(store, sandbox, window_of(org), "discord")
    assert report.waits and report.new == len(sandbox.ground_truth(*window_of(org), source="discord"))
    assert all(rule.fired for rule in sandbox.faults.rules)


def test_a_thread_that_appears_mid_week_is_seen_by_the_next_probe_and_collected(store, sandbox, org):
    week = window_of(org, 1)
    collect(store, discord(sandbox, org), org, 1, now=week[0] + timedelta(days=1), full=False)
    source = discord(sandbox, org)
    channel = int(org.policy_sources()["discord"]["channels"][0])
    thread = org.add_thread(channel, "nelly", week[0] + timedelta(days=2), name="release planning")
    message = org.add_message(thread.id, "mason", week[0] + timedelta(days=2, minutes=5), "let us cut the release on thursday")
    hit = next(p for p in source.probe(source_cursors(store, source)) if p.stream.ref == str(thread.id))
    assert hit.has_new and hit.head == str(message.id)
    collect(store, discord(sandbox, org), org, 1, now=week[0] + timedelta(days=2, hours=1), full=False)
    event = store.get_event(f"discord:message:{org.guild.id}:{thread.id}:{message.id}")
    assert event is not None and event["metadata"]["parent_channel_id"] == str(channel)
    again = next(p for p in discord(sandbox, org).probe(source_cursors(store, source)) if p.stream.ref == str(thread.id))
    assert not again.has_new  # its cursor now stands at the message
