"""SIGKILL at any point of a week's pipeline loses nothing, duplicates nothing, and gives the same statement.

One sandbox (the real GitHub and Discord servers, driven by the real PyGithub and discord.py clients) serves
the reliability week (``big_org``: ``fast`` in CI, ``full`` = >= 50,000 facts). Every step runs in its own
process (``kill_child``) against its own database cloned from the migrated template:

1. the reference: every step uninterrupted, once; its statement bytes and ledger view are what every killed
   run must reproduce; the database state before each step is kept as a snapshot;
2. per kill point: a fresh database (the reference's snapshot before the armed step, or with
   ``CREDIT_PIPELINE_KILLS_FROM_SCRATCH=1`` the empty week replaying every earlier step in child processes),
   the armed step in a child that must die by SIGKILL at that point (returncode -9; a child that never
   reaches its kill point fails the test), then the killed step again, unarmed, and every later step; then:
   the stored facts are the sandbox's ground truth (no event missing, none extra, each id once), every
   stream's cursor is complete and equal to the reference's, curation, allocations, pool, the single
   approval and the epoch row equal the reference's, exactly one statement exists, it verifies, and its
   bytes are the reference's.

Statement bytes and the clock. Every stage the child runs takes the week's fixed ``--now``: collection and
allocation as ``now``, the approval as ``approved_at`` and finalize as ``issued_at`` (production leaves the last
two to the database clock). So a killed-and-rerun week must write exactly the reference's bytes, and whenever
a statement had committed before the kill, the final bytes are that committed statement.
``test_statement_bytes_reproducible_across_runs`` checks the premise: an uninterrupted second run of the same
week gives the reference's bytes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from credit_pipeline.core.hashing import address_of
from credit_pipeline.core.statement import iso_utc, statement_bytes
from credit_pipeline.demo import DEMO_APPROVER_KEY, bind_demo_people
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import Sandbox, start_sandbox
from credit_pipeline.stages.export import export_statement
from credit_pipeline.stages.settings import load_policy
from credit_pipeline.stages.sources_config import policy_streams
from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.reliability.conftest import SCALE
from credit_pipeline_tests.reliability.kill_child import STEPS
from credit_pipeline_tests.sources.conftest import DISCORD_TOKEN, GITHUB_TOKEN, expected_view, stored_view

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 300 if SCALE == "fast" else 1800
FROM_SCRATCH = os.environ.get("CREDIT_PIPELINE_KILLS_FROM_SCRATCH", "").strip() not in ("", "0")
APPROVER_KEY = DEMO_APPROVER_KEY  # the policy's approver (published demo key: fine for a sandbox week)
_names = iter(range(1_000_000))


# -- the week -----------------------------------------------------------------------------------------------


@dataclass
class Week:
    sandbox: Sandbox
    key: str
    window: tuple
    now: str
    policy_path: Path
    server_url: str
    template: str  # migrated, with the demo bindings: every run of the week starts from a clone of it
    workdir: Path

    def new_database(self, template: str | None = None):
        return scratch_database(self.server_url, f"cp_kill_{os.getpid()}_{next(_names)}", template=template or self.template)


@dataclass
class Child:
    step: str
    returncode: int
    stdout: str
    stderr: str
    trace: list[dict[str, Any]]
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def write_policy(path: Path, org) -> None:
    path.write_text(yaml.safe_dump({
        "version": 1, "epoch": {"anchor": org.week_start.date().isoformat()}, "sources": org.policy_sources(),
        "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000, "discord:message_sent": 500},
        "exclude": org.bot_accounts(), "unresolved": "claimant", "pool": {"base_issuance": 10000},
        "approvers": [address_of(APPROVER_KEY)],
    }, sort_keys=False))


@pytest.fixture(scope="module")
def week(big_org, pg_server_url, template_db, tmp_path_factory) -> Iterator[Week]:
    workdir = tmp_path_factory.mktemp("kills")
    policy_path = workdir / "policy.yaml"
    write_policy(policy_path, big_org)
    load_policy(policy_path)  # valid before any child reads it
    start, end = big_org.windows[0]
    with start_sandbox(big_org, github_token=GITHUB_TOKEN, discord_token=DISCORD_TOKEN) as sandbox:
        with scratch_database(pg_server_url, f"cp_kill_week_{os.getpid()}", template=template_db) as url:
            engine = sa.create_engine(url)
            assert bind_demo_people(LedgerStore(engine), big_org) > 0
            engine.dispose()
            yield Week(sandbox, start.date().isoformat(), (start, end), iso_utc(end + timedelta(days=1)), policy_path,
                       pg_server_url, url.rsplit("/", 1)[1], workdir)


def run_child(week: Week, url: str, step: str, kill: tuple[str, int, str] | None = None) -> Child:
    trace = week.workdir / f"trace-{next(_names)}.jsonl"
    command = [sys.executable, "-m", "credit_pipeline_tests.reliability.kill_child", "--database-url", url,
               "--policy", str(week.policy_path), "--epoch", week.key, "--now", week.now, "--step", step, "--trace", str(trace)]
    if kill:
        target, occurrence, phase = kill
        command += ["--kill", target, "--occurrence", str(occurrence), "--phase", phase]
    env = {**os.environ, **week.sandbox.env(), "KILL_CHILD_APPROVER_KEY": APPROVER_KEY}
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    lines = trace.read_text().splitlines() if trace.exists() else []
    return Child(step, done.returncode, done.stdout, done.stderr, [json.loads(x) for x in lines], time.monotonic() - started)


def run_ok(week: Week, url: str, step: str) -> Child:
    child = run_child(week, url, step)
    assert child.returncode == 0, f"step {step} failed (exit {child.returncode}):\n{child.stdout}\n{child.stderr[-4000:]}"
    return child


# -- what a run leaves in its database ----------------------------------------------------------------------


def rows(conn, query: str, **params) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.text(query), params)]


def ledger_view(url: str, key: str) -> dict[str, Any]:
    """Everything a run writes, except columns stamped by the database clock (ingested_at, resolved_at, ...)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            view = {
                "events": rows(conn, "SELECT event_id, source, event_type, platform_user_id, platform_login, is_bot, event_time, "
                                     "payload_hash, artifact_url, metadata::text FROM activity_events ORDER BY event_id"),
                "cursors": rows(conn, "SELECT source, stream, source_ref, position::text FROM source_cursors ORDER BY 1, 2, 3"),
                "curation": rows(conn, "SELECT event_id, epoch_key, recipient_id, resolution, included, weight_override, note, "
                                       "curated_by FROM activity_curation ORDER BY event_id"),
                "allocations": rows(conn, "SELECT recipient_id, proposed_units, activity_count, algorithm_version, final_units, "
                                          "reason, adjusted_by FROM epoch_allocations WHERE epoch_key = :k ORDER BY recipient_id", k=key),
                "pool": rows(conn, "SELECT component_id, amount, algorithm_version, inputs::text, evidence_ref, recorded_by "
                                   "FROM epoch_pool_components WHERE epoch_key = :k ORDER BY component_id", k=key),
                "approvals": rows(conn, "SELECT revision, signer, signature, message, allocation_set_hash, policy_hash, pool_total, "
                                        "ledger_id::text, supersedes FROM epoch_approvals WHERE epoch_key = :k ORDER BY approval_id", k=key),
                "epoch": rows(conn, "SELECT status, policy_text, policy_hash, approvers::text, completeness::text, "
                                    "completeness_waiver::text FROM epochs WHERE epoch_key = :k", k=key),
                "statements": rows(conn, "SELECT revision, supersedes, allocation_set_hash, pool_total FROM payout_statements "
                                         "WHERE epoch_key = :k ORDER BY revision", k=key),
                "identity": rows(conn, "SELECT identity_event_id, action, provider, external_id, user_id FROM identity_events "
                                       "ORDER BY identity_event_id"),
            }
    finally:
        engine.dispose()
    return view


def count(url: str, query: str, **params) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()
    finally:
        engine.dispose()


def statement_of(url: str, key: str) -> tuple[bytes | None, dict | None]:
    """The stored bytes of the epoch's latest statement and what ``credit-pipeline export --format json`` writes."""
    engine = sa.create_engine(url)
    try:
        store = LedgerStore(engine)
        text = store.statement_text(key)
        bundle = store.statement(key)
        return (None if text is None else text.encode("utf-8")), bundle
    finally:
        engine.dispose()


# -- the reference run ---------------------------------------------------------------------------------------


@dataclass
class Reference:
    url: str
    bytes: bytes
    bundle: dict[str, Any]
    view: dict[str, Any]
    traces: dict[str, list[dict[str, Any]]]
    snapshots: dict[str, str]  # step -> database name holding the state just before it
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def reference(week: Week) -> Iterator[Reference]:
    with week.new_database() as url:
        snapshots, traces, seconds, stack = {}, {}, {}, []
        try:
            for step in STEPS:
                if not FROM_SCRATCH:
                    snap = week.new_database(template=url.rsplit("/", 1)[1])
                    stack.append(snap)
                    snapshots[step] = snap.__enter__().rsplit("/", 1)[1]
                child = run_ok(week, url, step)
                traces[step], seconds[step] = child.trace, round(child.seconds, 1)
            data, bundle = statement_of(url, week.key)
            assert data is not None, "the reference run wrote no statement"
            yield Reference(url, data, bundle, ledger_view(url, week.key), traces, snapshots, seconds)
        finally:
            for snap in reversed(stack):
                snap.__exit__(None, None, None)


def test_reference_run_is_the_ground_truth(week: Week, reference: Reference, scale: str):
    """The uninterrupted run every kill is compared with: complete, verified, exported as stored."""
    engine = sa.create_engine(reference.url)
    try:
        store = LedgerStore(engine)
        for source in ("github", "discord"):
            stored, expected = stored_view(store, week.window, source), expected_view(week.sandbox, week.window, source)
            assert sorted(set(expected) - set(stored)) == [] and sorted(set(stored) - set(expected)) == []
            assert {k: v for k, v in stored.items() if v != expected[k]} == {}
        assert verify_stored(store, week.key).ok
    finally:
        engine.dispose()
    assert verify_file_bytes(reference.bytes).ok
    assert export_statement(reference.bundle, "json") == reference.bytes == statement_bytes(json.loads(reference.bytes))
    assert len(reference.bundle["approvals"]) == 1 and reference.bundle["approvals"][0]["signer"] == address_of(APPROVER_KEY).lower()
    assert {k: len(v) for k, v in reference.traces.items() if v}  # pages were committed and traced
    print(f"\n[{scale}] reference: {len(reference.view['events'])} facts, step seconds {reference.seconds}")


# -- kill points ---------------------------------------------------------------------------------------------

Occurrence = int | Callable[[Reference], int]


@dataclass(frozen=True)
class KillPoint:
    name: str
    step: str
    target: str
    occurrence: Occurrence
    phase: str
    what: str
    # What the database must show right after the kill (uncommitted work invisible, committed work kept):
    # probe name -> expected value, or a function of the reference giving it.
    after_kill: tuple[tuple[str, Any], ...] = ()

    def resolve(self, ref: Reference) -> int:
        return self.occurrence(ref) if callable(self.occurrence) else self.occurrence


PROBES = {
    "status": "SELECT status FROM epochs WHERE epoch_key = :k",
    "curated": "SELECT count(*) FROM activity_curation WHERE epoch_key = :k",
    "allocations": "SELECT count(*) FROM epoch_allocations WHERE epoch_key = :k",
    "pool": "SELECT count(*) FROM epoch_pool_components WHERE epoch_key = :k",
    "approvals": "SELECT count(*) FROM epoch_approvals WHERE epoch_key = :k",
    "statements": "SELECT count(*) FROM payout_statements WHERE epoch_key = :k",
}


def all_curated(ref: Reference) -> int:
    return len(ref.view["curation"])


def all_allocations(ref: Reference) -> int:
    return len(ref.view["allocations"])


def middle_page(step: str) -> Callable[[Reference], int]:
    return lambda ref: max(2, len(ref.traces[step]) // 2)


def middle_insert(step: str) -> Callable[[Reference], int]:
    """The middle page with events (a page of no events executes no INSERT)."""
    return lambda ref: max(2, sum(1 for p in ref.traces[step] if p["events"]) // 2)


def last_page_of_first_stream(step: str) -> Callable[[Reference], int]:
    def occurrence(ref: Reference) -> int:
        pages = ref.traces[step]
        first = pages[0]["stream"]
        n = sum(1 for p in pages if p["stream"] == first)
        assert n < len(pages), f"{step} has a single stream; no 'between streams' point"
        return n
    return occurrence


def resolve_midway(ref: Reference) -> int:
    return max(2, len(ref.view["curation"]) // 2)


FACTS = "credit_pipeline.ledger.facts:FactsStore"
KILL_POINTS = [
    KillPoint("github-inside-page-transaction", "collect-github", f"{FACTS}._advance_cursor", middle_page("collect-github"), "before",
              "a GitHub page's events inserted, its cursor not yet, the transaction uncommitted"),
    KillPoint("github-between-pages", "collect-github", f"{FACTS}.record_page", middle_page("collect-github"), "after",
              "after the N-th GitHub page committed, before the next is fetched"),
    KillPoint("github-between-repos", "collect-github", "credit_pipeline.sources.github_source:GitHubSource._pull_pages", 2, "before",
              "the first repo's pull_requests stream complete, the second's not begun"),
    KillPoint("github-between-streams", "collect-github", "credit_pipeline.sources.github_source:GitHubSource._review_pages", 1, "before",
              "every pull_requests stream complete, reviews not begun"),
    KillPoint("github-before-completeness", "collect-github", "credit_pipeline.stages.collect:check_completeness", 1, "before",
              "every GitHub page committed, completeness not checked or recorded"),
    KillPoint("between-sources", "collect-github", "credit_pipeline.stages.collect:collect_epoch", 1, "after",
              "GitHub collected and its completeness recorded, Discord not begun"),
    KillPoint("discord-inside-page-insert", "collect-discord", "credit_pipeline.ledger.facts:copy_from", middle_insert("collect-discord"), "after",
              "a Discord page's new events COPY-ed inside its transaction, not committed"),
    KillPoint("discord-between-channels", "collect-discord", f"{FACTS}.record_page", last_page_of_first_stream("collect-discord"), "after",
              "the first channel's last page committed, the second channel not begun"),
    KillPoint("discord-before-completeness", "collect-discord", "credit_pipeline.stages.collect:check_completeness", 1, "before",
              "every Discord page committed, completeness not recorded"),
    KillPoint("resolve-midway", "resolve", "credit_pipeline.stages.resolve:resolve_recipient", resolve_midway, "before",
              "resolving the week's events, half of them resolved, nothing written", after_kill=(("curated", 0),)),
    KillPoint("resolve-curation-uncommitted", "resolve", "sql:INSERT INTO activity_curation", 1, "after",
              "the curation INSERT executed inside its transaction, not committed", after_kill=(("curated", 0),)),
    KillPoint("resolve-curate-returned-uncommitted", "resolve", "credit_pipeline.ledger.curation:CurationStore.curate", 1, "after",
              "curate returned inside resolve's transaction (which holds the epoch lock), not committed", after_kill=(("curated", 0),)),
    KillPoint("resolve-after-curation-commit", "resolve", "credit_pipeline.stages.resolve:summarize_curation", 1, "before",
              "curation committed, the resolution summary not computed", after_kill=(("curated", all_curated), ("allocations", 0))),
    KillPoint("allocate-proposals-uncommitted", "allocate", "credit_pipeline.ledger.curation:CurationStore.upsert_allocations", 1, "after",
              "proposals written inside allocate's transaction, not committed", after_kill=(("allocations", 0), ("status", "open"))),
    KillPoint("allocate-entering-review", "allocate", "credit_pipeline.ledger.epoch_rows:EpochStore.enter_review", 1, "after",
              "the epoch moved to review with its policy pinned, uncommitted", after_kill=(("allocations", 0), ("status", "open"), ("pool", 0))),
    KillPoint("allocate-pool-uncommitted", "allocate", "credit_pipeline.ledger.curation:CurationStore.add_pool_component", 1, "after",
              "base issuance recorded inside allocate's transaction, not committed", after_kill=(("allocations", 0), ("status", "open"), ("pool", 0))),
    KillPoint("allocate-committed", "allocate", "credit_pipeline.stages.allocate:allocate_epoch", 1, "after",
              "review entered and committed, before the step reports", after_kill=(("allocations", all_allocations), ("status", "review"), ("pool", 1))),
    KillPoint("approve-before-record", "approve", "credit_pipeline.ledger.payout_rows:PayoutStore.record_approval", 1, "before",
              "signature checked, the approval not recorded", after_kill=(("approvals", 0),)),
    KillPoint("approve-record-uncommitted", "approve", "credit_pipeline.ledger.payout_rows:PayoutStore.record_approval", 1, "after",
              "the approval inserted inside approve's transaction, not committed", after_kill=(("approvals", 0),)),
    KillPoint("approve-committed", "approve", "credit_pipeline.stages.approve:approve_epoch", 1, "after",
              "the approval committed, before the step reports", after_kill=(("approvals", 1),)),
    KillPoint("finalize-built-not-written", "finalize", "credit_pipeline.stages.finalize:_build_for_finalize", 1, "after",
              "the statement built and verified in memory, nothing inserted", after_kill=(("statements", 0), ("status", "review"))),
    KillPoint("finalize-statement-inserted-uncommitted", "finalize", "sql:^\\s*INSERT INTO payout_statements", 1, "after",
              "the statement row inserted, the epoch not yet finalized, uncommitted", after_kill=(("statements", 0), ("status", "review"))),
    KillPoint("finalize-before-commit", "finalize", "credit_pipeline.ledger.payout_rows:PayoutStore.finalize", 1, "after",
              "statement inserted and epoch finalized inside the transaction, the commit not yet sent", after_kill=(("statements", 0), ("status", "review"))),
    KillPoint("finalize-after-commit", "finalize", "credit_pipeline.stages.finalize:finalize_epoch", 1, "after",
              "the statement committed, before verify and the step's report", after_kill=(("statements", 1), ("status", "finalized"))),
]
assert len({p.name for p in KILL_POINTS}) == len(KILL_POINTS) >= 10


def fact_counts(url: str, sandbox: Sandbox, window) -> dict[str, int]:
    """Stored facts of the window counted by event_id against the sandbox's ground truth."""
    stored = Counter(r[0] for r in rows_of(url, "SELECT event_id FROM activity_events WHERE event_time >= :s AND event_time < :e",
                                            s=window[0], e=window[1]))
    curated = Counter(r[0] for r in rows_of(url, "SELECT event_id FROM activity_curation"))
    truth = set(sandbox.ground_truth(*window))
    return {"ground_truth": len(truth), "stored": sum(stored.values()), "lost": len(truth - set(stored)),
            "extra": len(set(stored) - truth), "duplicated": sum(n - 1 for n in stored.values() if n > 1),
            "curated_twice": sum(n - 1 for n in curated.values() if n > 1)}


def rows_of(url: str, query: str, **params) -> list[tuple]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return rows(conn, query, **params)
    finally:
        engine.dispose()


def assert_same_as_reference(week: Week, ref: Reference, url: str) -> tuple[bytes, dict[str, Any], dict[str, int]]:
    """No fact lost or duplicated, cursors complete, every row the reference's; returns the statement and the counts."""
    facts = fact_counts(url, week.sandbox, week.window)
    assert (facts["lost"], facts["extra"], facts["duplicated"], facts["curated_twice"]) == (0, 0, 0, 0), facts
    assert facts["stored"] == facts["ground_truth"]
    view = ledger_view(url, week.key)
    ref_ids, ids = [e[0] for e in ref.view["events"]], [e[0] for e in view["events"]]
    assert len(ids) == len(set(ids)), "an event id is stored twice"
    assert sorted(set(ref_ids) - set(ids)) == [], "events lost"
    assert sorted(set(ids) - set(ref_ids)) == [], "events the reference does not have"
    engine = sa.create_engine(url)
    try:
        store = LedgerStore(engine)
        for source in ("github", "discord"):
            stored, expected = stored_view(store, week.window, source), expected_view(week.sandbox, week.window, source)
            assert sorted(set(expected) - set(stored)) == [], f"{source}: ground-truth events missing"
            assert sorted(set(stored) - set(expected)) == [], f"{source}: events the sandbox never had"
            assert {k: v for k, v in stored.items() if v != expected[k]} == {}, f"{source}: stored columns differ from the ground truth"
        report = verify_stored(store, week.key)
        assert report.ok, report.mismatch
        policy = load_policy(week.policy_path)
    finally:
        engine.dispose()
    assert view["events"] == ref.view["events"]
    # Cursors: one per policy stream, each complete (GitHub: a finished pass, no 'pass' in flight), equal to the reference's.
    cursors = {(s, st, r): json.loads(p) for s, st, r, p in view["cursors"]}
    assert sorted(f"{s}:{st}:{r}" for s, st, r in cursors) == sorted(str(ref_) for ref_ in policy_streams(policy))
    for (source, _, _), position in cursors.items():
        assert ("through" in position and "pass" not in position) if source == "github" else position.get("last_id"), position
    assert view["cursors"] == ref.view["cursors"]
    for part in ("curation", "allocations", "pool", "approvals", "epoch", "identity"):
        assert view[part] == ref.view[part], f"{part} differs from the reference"
    assert len(view["approvals"]) == 1, "not exactly one approval"
    assert len(view["statements"]) == 1 and view["statements"] == ref.view["statements"], "not exactly one statement"
    assert view["epoch"][0][0] == "finalized"
    data, bundle = statement_of(url, week.key)
    assert data is not None and export_statement(bundle, "json") == data, "export --format json differs from the stored bytes"
    assert verify_file_bytes(data).ok
    return data, bundle, facts


@dataclass
class KilledRun:
    point: KillPoint
    occurrence: int
    killed: Child
    reruns: list[Child]
    committed_before_kill: bytes | None  # a statement that had committed when the child died
    facts_before: int
    facts_after_kill: int
    data: bytes
    bundle: dict[str, Any]
    facts: dict[str, int]


def run_killed(week: Week, ref: Reference, point: KillPoint, url: str) -> KilledRun:
    armed = STEPS.index(point.step)
    if FROM_SCRATCH:
        for step in STEPS[:armed]:
            run_ok(week, url, step)
    occurrence = point.resolve(ref)
    facts_before = count(url, "SELECT count(*) FROM activity_events")
    killed = run_child(week, url, point.step, (point.target, occurrence, point.phase))
    assert killed.killed, (f"{point.name}: the child was not SIGKILLed at {point.target} #{occurrence} {point.phase} (exit "
                           f"{killed.returncode}; the kill point was never reached?)\n{killed.stdout}\n{killed.stderr[-4000:]}")
    assert f"KILL POINT REACHED {point.target} #{occurrence} {point.phase}" in killed.stderr
    facts_after_kill = count(url, "SELECT count(*) FROM activity_events")
    # Only committed pages are visible: exactly the new events of the pages the killed child traced as committed.
    assert facts_after_kill == facts_before + sum(p["new"] for p in killed.trace), "an uncommitted page is visible after the kill"
    seen = {name: rows_of(url, PROBES[name], k=week.key)[0][0] for name, _ in point.after_kill}
    wanted = {name: value(ref) if callable(value) else value for name, value in point.after_kill}
    assert seen == wanted, f"{point.name}: right after the kill the database shows {seen}, expected {wanted}"
    committed, _ = statement_of(url, week.key)
    reruns = [run_ok(week, url, ",".join(STEPS[armed:]))]  # the killed step again, unarmed, then every later one
    data, bundle, facts = assert_same_as_reference(week, ref, url)
    return KilledRun(point, occurrence, killed, reruns, committed, facts_before, facts_after_kill, data, bundle, facts)


RESULTS: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("point", KILL_POINTS, ids=[p.name for p in KILL_POINTS])
def test_sigkill_loses_nothing_and_reproduces_the_statement(week: Week, reference: Reference, point: KillPoint, scale: str):
    template = reference.snapshots.get(point.step) if not FROM_SCRATCH else None
    with week.new_database(template=template) as url:
        run = run_killed(week, reference, point, url)
    if run.committed_before_kill is not None:
        assert run.data == run.committed_before_kill, "the statement committed before the kill changed on the rerun"
    finalized = json.loads(run.reruns[-1].stdout.strip().splitlines()[-1])
    assert finalized["step"] == "finalize" and finalized["written"] == (run.committed_before_kill is None)
    assert run.data == reference.bytes, f"fields that differ from the reference: {differing_paths(run.bundle, reference.bundle)}"
    RESULTS[point.name] = {"step": point.step, "occurrence": run.occurrence, "phase": point.phase, "kills": 1,
                           "facts_lost": run.facts["lost"], "facts_duplicated": run.facts["duplicated"], "bytes_identical": run.data == reference.bytes, "statement_committed_before_kill": run.committed_before_kill is not None,
                           "seconds": round(run.killed.seconds + sum(c.seconds for c in run.reruns), 1)}
    print(f"\n[{scale}] {point.name}: killed at {point.target} #{run.occurrence} {point.phase} ({point.what}); "
          f"facts {run.facts_before} -> {run.facts_after_kill} at the kill -> {len(reference.view['events'])}; "
          f"bytes identical: {run.data == reference.bytes}")


def test_an_unreached_kill_point_fails_the_run(week: Week, reference: Reference):
    """The harness itself: a kill point the step never reaches makes run_killed fail, not pass silently."""
    never = KillPoint("never", "finalize", "credit_pipeline.stages.finalize:_build_for_finalize", 2, "before", "a second build: never")
    with week.new_database(template=None if FROM_SCRATCH else reference.snapshots["finalize"]) as url:
        with pytest.raises(AssertionError, match="never reached"):
            run_killed(week, reference, never, url)


def test_statement_bytes_reproducible_across_runs(week: Week, reference: Reference):
    """A second, uninterrupted approve + finalize of the same week (same rows, same key, same ledger id) gives the
    reference's exact bytes. Every kill test depends on this for raw byte identity."""
    with week.new_database(template=None if FROM_SCRATCH else reference.snapshots["approve"]) as url:
        run_ok(week, url, ",".join(STEPS if FROM_SCRATCH else STEPS[STEPS.index("approve"):]))
        data, bundle, _ = assert_same_as_reference(week, reference, url)
    assert data == reference.bytes, f"fields that differ: {differing_paths(json.loads(data), reference.bundle)}"


def differing_paths(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(set(a) | set(b)) for p in differing_paths(a.get(k), b.get(k), f"{path}.{k}" if path else k)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in differing_paths(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def test_kill_summary(scale: str):
    """Prints what the kill points did (runs last in this module)."""
    if not RESULTS:
        pytest.skip("no kill point ran in this session")
    for name, r in RESULTS.items():
        print(f"\n[{scale}] {name}: {json.dumps(r, sort_keys=True)}")
