"""The Discord adapter, with discord.py's REST client over HTTP against the sandbox server."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from credit_pipeline.core.policy import validate_policy
from credit_pipeline.sandbox.faults import Fault
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sources.base import MalformedItem, RateLimitTooLong, SourceAuthError
from credit_pipeline.stages.sources_config import build_source

from credit_pipeline_tests.sources.conftest import (
    DISCORD_TOKEN,
    FAST,
    GITHUB_TOKEN,
    after_window,
    assert_ground_truth,
    collect,
    org_policy,
    pages,
    stored_view,
    window_of,
)


def test_full_window_is_exactly_the_ground_truth(store, sandbox, org, make_source):
    report = collect(store, make_source("discord"), org)
    window = window_of(org)
    assert_ground_truth(store, sandbox, window, "discord")
    stored = stored_view(store, window, "discord")
    s = org.scenario
    assert s["message_at_boundary_0"] in stored and s["message_at_boundary_1"] not in stored
    assert s["message_just_before_end"] in stored and s["message_just_before_start"] not in stored
    assert s["non_allow_listed_message"] not in stored and s["hidden_channel_message"] not in stored
    assert stored[s["bot_message"]][2] is True
    assert s["same_ms_message_a"] in stored and s["same_ms_message_b"] in stored
    assert report.notes == []


def test_snowflakes_above_2_53_round_trip_exactly(store, sandbox, org, make_source):
    collect(store, make_source("discord"), org)
    event_id = org.scenario["same_ms_message_a"]
    message_id = int(event_id.rsplit(":", 1)[1])
    assert message_id > 2**53
    stored = store.get_event(event_id)
    assert stored["payload"]["id"] == str(message_id)
    assert int(stored["platform_user_id"]) == int(stored["payload"]["author"]["id"])
    # Two messages in the same millisecond differ only below 2^22: floats would merge them.
    other = int(org.scenario["same_ms_message_b"].rsplit(":", 1)[1])
    assert float(message_id) == float(other) or abs(message_id - other) < 2**22
    assert store.get_event(org.scenario["same_ms_message_b"]) is not None


def test_renamed_user_is_one_account(store, sandbox, org, make_source):
    collect(store, make_source("discord"), org)
    collect(store, make_source("discord"), org, k=1)
    before = store.get_event(org.scenario["renamed_user_message_before"])
    after = store.get_event(org.scenario["renamed_user_message_after"])
    assert before["platform_user_id"] == after["platform_user_id"]


def test_request_budget_per_channel(store, sandbox, org, make_source):
    window = window_of(org)
    sandbox.log.reset()
    collect(store, make_source("discord"), org)
    for channel in org.allow_listed_channels:
        in_window = sum(1 for m in channel.messages if window[0] <= m.created_at < window[1])
        used = sum(1 for r in sandbox.log.records("discord") if r.path.endswith(f"/channels/{channel.id}/messages"))
        assert in_window > 100 and used <= pages(in_window) + 1, (channel.id, used, in_window)


def test_probe_and_incremental_collection(store, sandbox, org, make_source):
    # The week after the generated ones holds the last three days of activity; "now" is after all of it.
    start = window_of(org, 1)[1]
    key, now = start.date().isoformat(), start + timedelta(days=5)
    from credit_pipeline.stages.collect import collect_epoch

    collect_epoch(store, make_source("discord"), key, now=now)
    source = make_source("discord")
    cursors = {ref: store.get_cursor(ref.source, ref.stream, ref.ref) for ref in source.streams()}
    sandbox.log.reset()
    probes = source.probe(cursors)
    assert [p.has_new for p in probes] == [False] * len(probes)
    channel_requests = [r for r in sandbox.log.records("discord") if "/messages" in r.path]
    assert len(channel_requests) == len(probes) == len(source.streams())
    channel = org.allow_listed_channels[0]
    new = org.add_message(channel.id, org.discord_users[0].id, now - timedelta(minutes=1))
    changed = [p for p in make_source("discord").probe(cursors) if p.has_new]
    assert [p.stream.ref for p in changed] == [str(channel.id)] and changed[0].head == str(new.id)
    sandbox.log.reset()
    report = collect_epoch(store, make_source("discord"), key, now=now)
    assert report.new == 1
    per_channel = sum(1 for r in sandbox.log.records("discord") if r.path.endswith(f"/channels/{channel.id}/messages"))
    assert per_channel == 1
    assert_ground_truth(store, sandbox, (start, start + timedelta(days=7)), "discord")


FAULTS = {
    "429 with retry_after": (Fault.discord_429(retry_after=1), True),
    "global 429": (Fault.discord_429(retry_after=1, is_global=True), True),
    "5xx burst": (Fault.server_error(502), False),
    "503": (Fault.server_error(503), False),
    "dropped connection": (Fault.drop_connection(), False),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_faults_end_with_the_exact_ground_truth(store, sandbox, org, make_source, name):
    fault, waits = FAULTS[name]
    rule = sandbox.faults.add(fault, server="discord", path=r"/messages$", after=1, times=2 if "5xx" in name else 1)
    report = collect(store, make_source("discord"), org)
    assert rule.fired >= 1
    assert_ground_truth(store, sandbox, window_of(org), "discord")
    if waits:
        assert report.waited_seconds >= 0.9, report.waits


def test_a_wait_longer_than_the_maximum_fails_with_when_to_retry(store, sandbox, org, make_source):
    sandbox.faults.add(Fault.discord_429(retry_after=120), server="discord", path=r"/messages$", nth=2)
    with pytest.raises(RateLimitTooLong, match="retry after"):
        collect(store, make_source("discord", max_wait=30), org)
    assert len(store.events_between(*window_of(org), source="discord")) == 100  # the first full page stayed


def test_bad_token_and_missing_access_name_what_to_fix(store, sandbox, org, make_source, policy):
    with pytest.raises(SourceAuthError, match="DISCORD_BOT_TOKEN"):
        collect(store, make_source("discord", env={"DISCORD_BOT_TOKEN": "wrong"}), org)
    assert store.list_cursors() == []
    hidden = next(c for c in org.guild.channels if not c.readable)
    doc = policy.canonical()
    doc["sources"]["discord"]["channels"] = [str(hidden.id)]
    blind = build_source("discord", validate_policy(doc), sandbox.env(), **FAST["discord"])
    with pytest.raises(SourceAuthError, match=r"View Channel and Read Message History"):
        collect(store, blind, org)
    doc["sources"]["discord"]["channels"] = ["123456789012345678"]
    unknown = build_source("discord", validate_policy(doc), sandbox.env(), **FAST["discord"])
    with pytest.raises(Exception, match="not channels of guild"):
        collect(store, unknown, org)


def test_a_malformed_message_is_quarantined_and_the_channel_moves_on(store, sandbox, org, make_source):
    sandbox.faults.add(Fault.malformed_item("id", "not-a-snowflake", index=7), server="discord", path=r"/messages$", nth=2)
    report = collect(store, make_source("discord"), org)
    first = str(org.allow_listed_channels[0].id)
    stream = f"discord:messages:{first}"
    [item] = store.unresolved_quarantined()
    assert item["source_ref"] == first and item["item_key"] is None  # no readable id: nothing to match it with later
    assert re.search(r"discord:messages:\d+: message id 'not-a-snowflake' is not a snowflake", item["reason"])
    assert report.completeness[stream]["quarantined"] == 1 and stream in report.shortfalls
    expected = set(sandbox.ground_truth(*window_of(org), source="discord"))
    stored = {e["event_id"] for e in store.events_between(*window_of(org), source="discord")}
    assert len(expected - stored) == 1 and stored <= expected  # exactly the quarantined one is missing
    sandbox.faults.clear()
    again = collect(store, make_source("discord"), org)  # this pass reads every message: the channel is proven
    assert not again.shortfalls
    assert_ground_truth(store, sandbox, window_of(org), "discord")


@pytest.mark.parametrize("full", [True, False], ids=["closed window", "open window"])
def test_crash_after_page_k_then_rerun(store, sandbox, org, make_source, full):
    count = []

    def crash(page, write, report):
        count.append(page)
        if len(count) == 2:
            raise RuntimeError("injected crash")

    now = after_window(org) if full else window_of(org)[1] - timedelta(seconds=1)
    with pytest.raises(RuntimeError):
        collect(store, make_source("discord"), org, now=now, full=full, on_page=crash)
    collect(store, make_source("discord"), org, now=now, full=full)
    assert_ground_truth(store, sandbox, window_of(org), "discord")


def test_empty_content_everywhere_is_reported(store, org):
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN, message_content=False) as sb:
        source = build_source("discord", org_policy(org), sb.env(), **FAST["discord"])
        report = collect(store, source, org)
        assert report.new > 0 and any("Message Content intent" in n for n in report.notes)


def test_quiet_channels_on_incremental_passes_raise_no_content_note(store, sandbox, org, make_source):
    open_week = window_of(org)[1] - timedelta(hours=1)
    first = collect(store, make_source("discord"), org, now=open_week, full=False)
    assert first.new > 0 and not any("Message Content" in n for n in first.notes)  # content is on
    again = collect(store, make_source("discord"), org, now=open_week, full=False)  # nothing new anywhere
    assert again.new == 0 and again.notes == []


def test_cli_collect_prints_progress_and_a_summary(store, sandbox, org, policy, tmp_path, monkeypatch, capsys, ledger_url):
    import yaml

    from credit_pipeline.cli import main

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy.canonical()))
    for name, value in {**sandbox.env(), "CREDIT_PIPELINE_DATABASE_URL": ledger_url, "CREDIT_PIPELINE_POLICY": str(path)}.items():
        monkeypatch.setenv(name, value)
    key = org.windows[0][0].date().isoformat()
    assert main(["collect", "--epoch", key, "--source", "discord"]) == 0
    out, err = capsys.readouterr()
    assert f"discord: epoch {key} (full window): " in out and "requests" in out
    assert "page 1" in err
    assert len(store.events_between(*org.windows[0], source="discord")) == len(sandbox.ground_truth(*org.windows[0], source="discord"))
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    assert main(["collect", "--epoch", key, "--source", "github"]) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    assert main(["collect", "--epoch", "2026-02-17"]) == 2


def test_a_pass_that_reads_only_system_messages_raises_no_content_note(store):
    """Joins, pins and boosts have empty content whatever the intent: they say nothing about it."""
    from credit_pipeline.sandbox.blank_org import blank_org

    org = blank_org()
    channel, now = org.allow_listed_channels[0].id, window_of(org)[0] + timedelta(days=2)
    org.add_message(channel, "mason", now - timedelta(hours=2), "hello there")
    with start_sandbox(org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sb:
        source = lambda: build_source("discord", org_policy(org), sb.env(), **FAST["discord"])  # noqa: E731
        assert collect(store, source(), org, now=now, full=False).new == 1
        org.add_message(channel, "nelly", now - timedelta(hours=1), "", type=7)  # a member join
        again = collect(store, source(), org, now=now, full=False)
        assert again.new == 1 and again.notes == []
        sb.discord.message_content = False  # the same pass with the intent off and a message typed: reported
        org.add_message(channel, "nelly", now - timedelta(minutes=30), "thanks for having me")
        assert any("Message Content intent" in n for n in collect(store, source(), org, now=now, full=False).notes)
