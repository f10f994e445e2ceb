"""A backfill of eight weeks the way Dagster runs one, equal to eight sequential runs (issue 13, scale-out).

``dagster job backfill`` of ``weekly_epoch_job`` (the job the weekly schedule runs: collect, resolve, allocate)
submits one run per week to the shipped ``QueuedRunCoordinator``; ``dagster-daemon`` starts at most two at a
time (``concurrency.runs.max_concurrent_runs: 2``) through the default run launcher, and each run executes with
Dagster's multiprocess executor (a process per step). The ledger it leaves is compared with the one eight
sequential runs of the same job leave (``execute_in_process``, one week after the other): the same facts, the
same curation, the same allocations and allocation set hash per week, the same pool, every week in review.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import dagster as dg

from credit_pipeline.core.hashing import address_of
from credit_pipeline.defs.builder import build_defs
from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.allocate import allocation_state
from credit_pipeline.stages.settings import load_policy

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.reliability.conftest import SCALE
from credit_pipeline_tests.reliability.scratch_cluster import (
    ROOT, Processes, completeness_problems, deployment_env, ledger_problems, ledger_rows, write_dagster_home, write_policy,
)
from credit_pipeline_tests.reliability.test_concurrency import (
    APPROVER_KEY, TOKENS, curated_problems, epoch_keys, key_of, no_drift, open_instance, streams_of,
)

WEEKS = 8
AT_A_TIME = 2
TIMEOUT = 900 if SCALE == "full" else 600

# What a run writes that must not depend on how the runs were scheduled (ids, timestamps and actors aside).
COMPARED = {
    "activity_events": "SELECT event_id, source, event_type, platform_user_id, platform_login, is_bot, event_time, payload_hash "
                       "FROM activity_events ORDER BY event_id",
    "event_facts": "SELECT event_id, facts_version, facts::text FROM event_facts ORDER BY event_id, facts_version",
    "activity_curation": "SELECT epoch_key, event_id, recipient_id, resolution, included, weight_override, note "
                         "FROM activity_curation ORDER BY epoch_key, event_id",
    "epoch_allocations": "SELECT epoch_key, recipient_id, proposed_units, activity_count, final_units, algorithm_version "
                         "FROM epoch_allocations ORDER BY epoch_key, recipient_id",
    "epoch_pool_components": "SELECT epoch_key, component_id, amount, algorithm_version FROM epoch_pool_components "
                             "ORDER BY epoch_key, component_id",
    "epochs": "SELECT epoch_key, status, policy_hash, window_start, window_end FROM epochs ORDER BY epoch_key",
}


def ledger_contents(url: str) -> dict[str, list[tuple]]:
    return {table: [tuple(r) for r in ledger_rows(url, sql)] for table, sql in COMPARED.items()}


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of the (start, end) intervals that overlap at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # an end sorts before a start at a tie
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def sequential_runs(org, sandbox, policy_path: Path, url: str, keys: list[str]) -> None:
    """The reference: the same job for one week after the other, in this process."""
    env = sandbox.env()
    resources = {"ledger": LedgerResource(database_url=url), "policy": PolicyResource(path=str(policy_path)),
                 "github": GitHubResource(token=env["GITHUB_TOKEN"], api_url=env["GITHUB_API_URL"]),
                 "discord": DiscordResource(token=env["DISCORD_BOT_TOKEN"], api_url=env["DISCORD_API_URL"])}
    job = build_defs(str(policy_path), resources).resolve_job_def("weekly_epoch_job")
    with dg.DagsterInstance.ephemeral() as instance:
        for key in keys:
            assert job.execute_in_process(partition_key=key, instance=instance).success, key


def test_a_backfill_of_eight_weeks_two_at_a_time_equals_eight_sequential_runs(pg_server_url, template_db, tmp_path):
    org = generate_org(seed=88, weeks=WEEKS, repos=2, prs_per_repo=48, reviews_per_pr=1, issues_per_repo=24, channels=2,
                       messages_per_channel=400 if SCALE == "fast" else 4000)
    keys = [key_of(org, k) for k in range(WEEKS)]
    policy_path = write_policy(tmp_path / "policy.yaml", org, [address_of(APPROVER_KEY)])
    name = f"cp_backfill_dagster_{os.getpid()}"
    # Eight completeness checks within minutes spend more than GitHub's 30 searches a minute; that wait is the
    # fault tests' subject.
    with start_sandbox(org, **TOKENS, github_rate_limits={"search": (2000, 60.0)}) as sandbox, \
            scratch_database(pg_server_url, name) as dagster_url, \
            scratch_database(pg_server_url, f"cp_backfill_{os.getpid()}", template=template_db) as url, \
            scratch_database(pg_server_url, f"cp_backfill_ref_{os.getpid()}", template=template_db) as reference_url:
        home = write_dagster_home(tmp_path / "dagster_home", dagster_url, max_concurrent_runs=AT_A_TIME)
        with open_instance(home, dagster_url) as instance:
            instance.get_runs()  # Dagster's schema, made once before the daemon and the CLI race to make it
        env = deployment_env(ledger_url=url, policy_path=policy_path, sandbox=sandbox, dagster_home=home, dagster_url=dagster_url)
        procs = Processes(env, ROOT)
        workspace = str(ROOT / "workspace.yaml")
        started = time.monotonic()
        try:
            # Only the backfill's runs: the cursor sensor and the weekly schedule (on by default) are stopped first,
            # as their own runs would also take a slot and write an open week of their own.
            for kind, name in (("sensor", "source_cursor_sensor"), ("schedule", "weekly_epoch_schedule")):
                stopped = procs.start(f"stop-{kind}", [sys.executable, "-m", "dagster", kind, "stop", name, "-w", workspace]).wait(120)
                assert stopped.returncode == 0, stopped.describe()
            daemon = procs.start("daemon", [sys.executable, "-m", "dagster._daemon", "run", "-w", workspace])
            backfill = procs.start("backfill", [sys.executable, "-m", "dagster", "job", "backfill", "-w", workspace,
                                                "-j", "weekly_epoch_job", "--partitions", ",".join(keys), "--noprompt"])
            submitted = backfill.wait(180)
            assert submitted.returncode == 0, submitted.describe()
            with open_instance(home, dagster_url) as instance:
                runs = _wait_for_runs(instance, daemon, WEEKS, started + TIMEOUT)
                records = instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs]))
                engine_lines = {r.run_id: [e.message for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
                                for r in runs}
        finally:
            procs.kill_all()
        elapsed = time.monotonic() - started

        failed = [(r.tags.get("dagster/partition"), r.status.value) for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        assert failed == [], failed
        assert sorted(r.tags.get("dagster/partition") for r in runs) == keys  # one run per week
        assert {r.tags.get("dagster/backfill") for r in runs} != {None}  # they are the backfill's runs
        at_once = most_at_once([(r.start_time, r.end_time) for r in records])
        assert at_once == AT_A_TIME, f"{at_once} runs were executing at once; the instance allows {AT_A_TIME}"
        for run_id, lines in engine_lines.items():
            assert any("multiprocess executor" in (line or "") for line in lines), (run_id, lines[:5])

        sequential_runs(org, sandbox, policy_path, reference_url, keys)

        assert epoch_keys(url) == keys
        for k, key in enumerate(keys):
            window = org.windows[k]
            assert ledger_problems(url, sandbox, window) == [], key
            assert curated_problems(url, sandbox, window, key) == [], key
            assert completeness_problems(url, key, streams_of(policy_path)) == [], key
        backfilled, reference = ledger_contents(url), ledger_contents(reference_url)
        for table in COMPARED:
            assert backfilled[table] == reference[table], f"{table} differs between the backfill and the sequential runs"
        store, ref_store = LedgerStore.open(url), LedgerStore.open(reference_url)
        policy = load_policy(policy_path)
        for key in keys:
            assert store.get_epoch(key).status == "review", key
            assert no_drift(store, key, policy_path) == [], key
            assert allocation_state(store, key, policy).allocation_set_hash == allocation_state(ref_store, key, policy).allocation_set_hash
        store.engine.dispose()
        ref_store.engine.dispose()
        print(f"{WEEKS} weeks backfilled {AT_A_TIME} at a time in {elapsed:.1f} s ({len(backfilled['activity_events'])} facts)")


def _wait_for_runs(instance: dg.DagsterInstance, daemon, count: int, deadline: float) -> list[dg.DagsterRun]:
    """The backfill's runs once all of them are finished; fails early when the daemon dies."""
    while True:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": _backfill_id(instance)}))
        if len(runs) == count and all(r.is_finished for r in runs):
            return runs
        if daemon.process.poll() is not None:
            raise AssertionError(f"the daemon exited with {daemon.process.returncode}:\n{daemon.wait(1).describe()}")
        if time.monotonic() > deadline:
            raise AssertionError("the backfill did not finish: " + ", ".join(f"{r.tags.get('dagster/partition')}={r.status.value}" for r in runs))
        time.sleep(2)


def _backfill_id(instance: dg.DagsterInstance) -> str:
    [backfill] = instance.get_backfills()
    return backfill.backfill_id
