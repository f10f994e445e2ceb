"""Concurrency: real processes against one real PostgreSQL ledger and one persistent Dagster instance.

Every scenario starts its writers as separate OS processes at the same moment (``credit-pipeline collect``,
``dagster asset materialize`` / ``dagster job execute``, or ``python -m`` this module's workers), waits for
them, then checks the ledger against the sandbox's ground truth and against a fresh re-derivation:

1. two collections of one week at once (both sources, the same order and crossed);
2. the schedule's run and a sensor-style run of one partition at the same time;
3. a collection (with resolution and allocation passes) while an admin curates and adjusts;
4. two finalizes of one approved epoch (with the shipped pool limit, and with no limit at all);
5. a parallel backfill: eight weeks collected, resolved and allocated at once.

The week's size is the reliability scale's (``CREDIT_PIPELINE_RELIABILITY=fast|full``, see conftest.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from credit_pipeline.core.hashing import address_of, sign_message
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.allocate import allocate_epoch, allocation_state
from credit_pipeline.stages.approve import approve_epoch
from credit_pipeline.stages.collect import collect_epoch
from credit_pipeline.stages.derive import allocation_drift, resolution_drift
from credit_pipeline.stages.resolve import effective_policy, resolve_epoch
from credit_pipeline.stages.settings import load_policy
from credit_pipeline.stages.sources_config import build_source, policy_streams
from credit_pipeline.stages.verify import verify_stored

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.reliability.scratch_cluster import (
    ROOT, STAGES, Finished, Processes, completeness_problems, cursors, deployment_env, ledger_problems, ledger_rows,
    wait_all, write_dagster_home, write_policy,
)
from credit_pipeline_tests.reliability.conftest import SCALE
from credit_pipeline_tests.sources.conftest import FAST

APPROVER_KEY = "0x" + "5c" * 32
TIMEOUT = 600 if SCALE == "full" else 240  # a process still running after this is a hang: killed and reported
TOKENS = dict(github_token="gh-concurrency", discord_token="dc-concurrency")


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def week_sandbox(big_org):
    # Several full collections of the week within a minute spend more than GitHub's 30 searches a minute;
    # that wait is the fault tests' subject, here it would only slow the runs down and spread them apart.
    with start_sandbox(big_org, **TOKENS, github_rate_limits={"search": (2000, 60.0)}) as sb:
        yield sb


@pytest.fixture(scope="module")
def week_policy(big_org, tmp_path_factory) -> Path:
    return write_policy(tmp_path_factory.mktemp("policy") / "policy.yaml", big_org, [address_of(APPROVER_KEY)])


@pytest.fixture(scope="module")
def reference_cursors(big_org, week_sandbox, week_policy, pg_server_url, template_db) -> dict:
    """The cursors one sequential, uninterrupted collection of the week leaves (the 'complete' ones)."""
    with scratch_database(pg_server_url, f"cp_conc_ref_{os.getpid()}", template=template_db) as url:
        store = LedgerStore.open(url)
        collect_both(store, big_org, week_sandbox, week_policy)
        found = cursors(url)
        store.engine.dispose()
    return found


@pytest.fixture
def dagster_home(pg_server_url, tmp_path):
    """A persistent Dagster instance on PostgreSQL (the shipped dagster.yaml), its schema made once here."""
    name = f"cp_conc_dagster_{os.getpid()}_{tmp_path.name[-12:]}".replace("-", "_").lower()
    with scratch_database(pg_server_url, name) as url:
        home = write_dagster_home(tmp_path / "dagster_home", url)
        with open_instance(home, url) as instance:
            instance.get_runs()  # creates and migrates the schema before two processes race to do it
        yield home, url


def open_instance(home: Path, url: str):
    """The same persistent instance the subprocesses use (its dagster.yaml names ``url``)."""
    return dg.DagsterInstance.from_config(str(home))


def key_of(org, k: int = 0) -> str:
    return org.windows[k][0].date().isoformat()


def after(org, k: int = 0) -> datetime:
    return org.windows[k][1] + timedelta(days=1)


def collect_both(store, org, sandbox, policy_path, k: int = 0, sources=("github", "discord")) -> None:
    policy = load_policy(policy_path)
    for name in sources:
        collect_epoch(store, build_source(name, policy, sandbox.env(), **FAST[name]), key_of(org, k), now=after(org, k))


def ok(done: list[Finished]) -> None:
    bad = [d for d in done if d.returncode != 0]
    assert not bad, "\n\n".join(d.describe() for d in bad)


def no_drift(store: LedgerStore, key: str, policy_path: Path) -> list[str]:
    """Stored recipients and allocations against a fresh re-derivation from the rows (empty: none)."""
    epoch = store.get_epoch(key)
    rules = effective_policy(epoch, load_policy(policy_path))
    rows = store.curated_events(key)
    return resolution_drift(rows, store.bindings(), rules) + allocation_drift(rows, store.allocations(key), rules)


def epoch_keys(url: str) -> list[str]:
    return [r.epoch_key.isoformat() for r in ledger_rows(url, "SELECT epoch_key FROM epochs ORDER BY epoch_key")]


def streams_of(policy_path: Path) -> list[str]:
    return [str(ref) for ref in policy_streams(load_policy(policy_path))]


def curated_problems(url: str, sandbox, window, key: str) -> list[str]:
    """Exactly the window's ground-truth events are curated into ``key``, each once."""
    rows = ledger_rows(url, "SELECT event_id, epoch_key FROM activity_curation WHERE epoch_key = :k", k=datetime.fromisoformat(key).date())
    ids = [r.event_id for r in rows]
    truth = set(sandbox.ground_truth(*window))
    problems = []
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} events curated twice")
    if set(ids) != truth:
        problems.append(f"curated {len(set(ids))} events, the window holds {len(truth)} "
                        f"(missing {sorted(truth - set(ids))[:3]}, extra {sorted(set(ids) - truth)[:3]})")
    return problems


def new_counts(done: list[Finished]) -> int:
    """Sum of the 'N new events' the CLI collections reported."""
    total = 0
    for d in done:
        for line in d.stdout.splitlines():
            if ": epoch " in line and " new events" in line:
                total += int(line.split("): ")[1].split(" new events")[0])
    return total


# -- 1. two collections of one week at once -----------------------------------------------------------


@pytest.mark.parametrize("order", ["same order", "crossed"])
def test_two_collections_of_one_week_at_once(order, big_org, week_sandbox, week_policy, ledger_url, reference_cursors):
    key, window = key_of(big_org), big_org.windows[0]
    procs = Processes(deployment_env(ledger_url=ledger_url, policy_path=week_policy, sandbox=week_sandbox), ROOT)
    LedgerStore.open(ledger_url).engine.dispose()  # migrated already (template); this only checks it opens
    try:
        if order == "same order":
            running = [procs.cli(f"collect-{i}", "collect", "--epoch", key) for i in (1, 2)]
        else:  # one goes GitHub then Discord, the other Discord then GitHub
            code = ("import sys; from credit_pipeline.cli import main; "
                    "sys.exit(main(['collect', '--epoch', sys.argv[1], '--source', 'discord']) "
                    "or main(['collect', '--epoch', sys.argv[1], '--source', 'github']))")
            running = [procs.cli("collect-github-first", "collect", "--epoch", key), procs.python("collect-discord-first", code, key)]
        done = wait_all(running, TIMEOUT)
    finally:
        procs.kill_all()
    ok(done)
    assert ledger_problems(ledger_url, week_sandbox, window) == []
    stored_total = ledger_rows(ledger_url, "SELECT count(*) AS n FROM activity_events")[0].n
    # Each fact was new to exactly one of the two processes: no insert counted twice, none lost.
    assert new_counts(done) == stored_total, [d.stdout for d in done]
    assert cursors(ledger_url) == reference_cursors
    assert epoch_keys(ledger_url) == [key]
    assert completeness_problems(ledger_url, key, streams_of(week_policy)) == []
    recorded = ledger_rows(ledger_url, "SELECT completeness, final_collection_at FROM epochs WHERE epoch_key = :k",
                           k=datetime.fromisoformat(key).date())[0]
    stored_in_window = ledger_rows(ledger_url, "SELECT count(*) AS n FROM activity_events WHERE event_time >= :s AND event_time < :e",
                                   s=window[0], e=window[1])[0].n
    assert sum(v["stored"] for v in recorded.completeness.values()) == stored_in_window == len(week_sandbox.ground_truth(*window))
    assert recorded.final_collection_at is not None


# -- 2. the schedule's run and a sensor-style run of one partition at once --------------------------------


def test_schedule_run_and_sensor_run_of_one_partition_at_once(big_org, week_sandbox, week_policy, ledger_url, dagster_home):
    from credit_pipeline.defs.builder import build_defs

    key, window = key_of(big_org), big_org.windows[0]
    home, dagster_url = dagster_home
    # The schedule's own request for the tick after the week closed names this partition.
    defs = build_defs(str(week_policy), {})
    repo = defs.get_repository_def()
    with open_instance(home, dagster_url) as instance:
        tick = repo.get_schedule_def("weekly_epoch_schedule").evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=window[1] + timedelta(hours=6), repository_def=repo))
    [request] = tick.run_requests
    assert request.partition_key == key
    env = deployment_env(ledger_url=ledger_url, policy_path=week_policy, sandbox=week_sandbox, dagster_home=home, dagster_url=dagster_url)
    procs = Processes(env, ROOT)
    config = home / "in_process.yaml"
    config.write_text(json.dumps({"execution": {"config": {"in_process": {}}}}))  # JSON is YAML
    tags = json.dumps({**request.tags, "dagster/partition": key})
    try:
        schedule_run = procs.start("schedule-run", [sys.executable, "-m", "dagster", "job", "execute", "-m", "credit_pipeline.defs.definitions",
                                                    "-j", "weekly_epoch_job", "--tags", tags, "-c", str(config)])
        sensor_run = procs.materialize("sensor-run", STAGES, key)
        done = wait_all([schedule_run, sensor_run], TIMEOUT)
    finally:
        procs.kill_all()
    ok(done)
    assert ledger_problems(ledger_url, week_sandbox, window) == []
    assert curated_problems(ledger_url, week_sandbox, window, key) == []
    assert epoch_keys(ledger_url) == [key]
    assert completeness_problems(ledger_url, key, streams_of(week_policy)) == []
    store = LedgerStore.open(ledger_url)
    assert store.get_epoch(key).status == "review"
    assert no_drift(store, key, week_policy) == []
    assert [(p["component_id"], int(p["amount"])) for p in store.pool_components(key)] == [("base_issuance", 10000)]
    with open_instance(home, dagster_url) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": key}))
        assert sorted(r.status.value for r in runs) == ["SUCCESS", "SUCCESS"], [(r.run_id, r.status) for r in runs]
        for asset in STAGES:
            records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=10).records
            assert len(records) == 2, (asset, len(records))
    store.engine.dispose()


# -- 3. collection while an admin curates ---------------------------------------------------------------


DEADLOCK = "40P01"


def retrying(what: str, deadlocks: list[str], write, attempts: int = 8):
    """Run one transaction; when PostgreSQL aborts it as a deadlock victim, note it and run it again.

    Nothing of an aborted transaction is committed, so a retry is safe; the test still fails on any
    deadlock (the pipeline's own code does not retry: a Dagster run or CLI command would just fail).
    """
    for attempt in range(attempts):
        try:
            return write()
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != DEADLOCK or attempt == attempts - 1:
                raise
            deadlocks.append(f"{what}: {str(exc.orig).splitlines()[0]}")


def collector_worker(key: str, now_iso: str, rounds: str) -> None:
    """Collect Discord (new facts) and GitHub again, with resolution and allocation passes in between."""
    now = datetime.fromisoformat(now_iso)
    store, policy = LedgerStore.open(), load_policy()
    passes, deadlocks = 0, []
    for i in range(int(rounds)):
        if i in (0, int(rounds) // 2):
            name = "discord" if i == 0 else "github"
            collect_epoch(store, build_source(name, policy, **FAST[name]), key, now=now)
        retrying("resolve_epoch", deadlocks, lambda: resolve_epoch(store, key, policy))
        retrying("allocate_epoch", deadlocks, lambda: allocate_epoch(store, key, policy, now))
        passes += 1
    print(json.dumps({"passes": passes, "status": store.get_epoch(key).status, "deadlocks": deadlocks}))


def admin_worker(key: str, targets_json: str, stop_file: str, min_writes: str) -> None:
    """Curate events and adjust recipients until the collector is done (and at least ``min_writes``).

    After every write, read curation and allocations in one REPEATABLE READ snapshot and record any
    difference from a re-derivation: the stored set must be what the rows derive at every instant.
    """
    from credit_pipeline.stages.admin import adjust_recipient, curate_event

    targets = json.loads(targets_json)
    store, policy = LedgerStore.open(), load_policy()
    events, recipients = targets["events"], targets["recipients"]
    last_curation: dict[str, list] = {}
    last_adjustment: dict[str, list] = {}
    drift: list[str] = []
    deadlocks: list[str] = []
    writes = 0
    while writes < int(min_writes) or not os.path.exists(stop_file):
        if writes % 3 == 2:
            rid = recipients[writes % len(recipients)]
            units = None if writes % 7 == 0 else 1000 + writes
            reason = None if units is None else f"reliability adjustment {writes}"
            retrying("adjust_recipient", deadlocks, lambda: adjust_recipient(store, key, rid, units, reason, policy, actor="admin-worker"))
            last_adjustment[rid] = [units, reason]
        else:
            event = events[writes % len(events)]
            included = writes % 4 != 0
            override = None if writes % 5 == 0 else 10 * writes
            note = f"reliability note {writes}"
            retrying("curate_event", deadlocks, lambda: curate_event(store, event, policy, actor="admin-worker", included=included,
                                                                     weight_override=override, clear_override=override is None, note=note))
            last_curation[event] = [included, override, note]
        writes += 1
        with store.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            with conn.begin():
                epoch = store._epoch(conn, key)
                rules = effective_policy(epoch, policy)
                rows = store.curated_events(key, conn=conn)
                found = allocation_drift(rows, store.allocations(key, conn=conn), rules)
                if found:
                    drift.append(f"after write {writes}: {found[:3]}")
    print(json.dumps({"writes": writes, "curation": last_curation, "adjustments": last_adjustment, "drift": drift,
                      "deadlocks": deadlocks}))


def test_collection_while_an_admin_curates(big_org, week_sandbox, week_policy, ledger_url, tmp_path):
    key, window = key_of(big_org), big_org.windows[0]
    store = LedgerStore.open(ledger_url)
    policy = load_policy(week_policy)
    # The week so far: GitHub collected, resolved and allocated; Discord not yet, so the epoch is still open.
    collect_both(store, big_org, week_sandbox, week_policy, sources=("github",))
    resolve_epoch(store, key, policy)
    allocate_epoch(store, key, policy, after(big_org))
    assert store.get_epoch(key).status == "open"
    curated = [r["event_id"] for r in store.curated_events(key)]
    recipients = sorted(a["recipient_id"] for a in store.allocations(key))
    targets = {"events": curated[:: max(1, len(curated) // 40)][:40], "recipients": recipients[:8]}
    stop_file = tmp_path / "collector-done"
    procs = Processes(deployment_env(ledger_url=ledger_url, policy_path=week_policy, sandbox=week_sandbox), ROOT)
    module = "credit_pipeline_tests.reliability.test_concurrency"
    rounds = "10" if SCALE == "fast" else "4"
    try:
        collector = procs.start("collector", [sys.executable, "-m", module, "collector", key, after(big_org).isoformat(), rounds])
        admin = procs.start("admin", [sys.executable, "-m", module, "admin", key, json.dumps(targets), str(stop_file), "12"])
        [collected] = wait_all([collector], TIMEOUT)
        stop_file.write_text("done")
        [administered] = wait_all([admin], TIMEOUT)
    finally:
        procs.kill_all()
    ok([collected, administered])
    summary = json.loads(administered.stdout.strip().splitlines()[-1])
    print(f"admin writes: {summary['writes']}, deadlocks: {len(summary['deadlocks'])} admin + "
          f"{len(json.loads(collected.stdout.strip().splitlines()[-1])['deadlocks'])} pipeline")
    assert summary["writes"] >= 12
    assert summary["drift"] == [], summary["drift"]  # never, at any instant an admin write committed
    collector_summary = json.loads(collected.stdout.strip().splitlines()[-1])
    assert collector_summary["status"] == "review"
    # Every admin write persisted: each event's and recipient's last write is what the rows hold.
    rows = {r["event_id"]: r for r in store.curated_events(key)}
    lost = {e: (want, [rows[e]["included"], rows[e]["weight_override"], rows[e]["note"]])
            for e, want in summary["curation"].items() if [rows[e]["included"], rows[e]["weight_override"], rows[e]["note"]] != want}
    assert lost == {}
    allocations = {a["recipient_id"]: a for a in store.allocations(key)}
    lost = {r: (want, [allocations[r]["final_units"], allocations[r]["reason"]])
            for r, want in summary["adjustments"].items() if [allocations[r]["final_units"], allocations[r]["reason"]] != want}
    assert lost == {}
    assert ledger_problems(ledger_url, week_sandbox, window) == []
    assert curated_problems(ledger_url, week_sandbox, window, key) == []
    assert no_drift(store, key, week_policy) == []
    assert allocation_state(store, key, policy).drift == []
    store.engine.dispose()
    # Last, because the data checks above must hold even then: no transaction was a deadlock victim. Each one
    # is a Dagster run or an admin command that failed (the CLI then says the database "does not answer").
    deadlocks = collector_summary["deadlocks"] + summary["deadlocks"]
    assert deadlocks == [], (f"{len(deadlocks)} deadlock(s) between the pipeline's resolution/allocation passes and "
                             f"admin writes (each retried here): {deadlocks[:4]}")


# -- 4. two finalizes of one approved epoch ----------------------------------------------------------------


@pytest.mark.parametrize("pool_limit", ["shipped pool limit", "no pool limit"])
def test_two_finalizes_of_one_approved_epoch(pool_limit, big_org, week_sandbox, week_policy, ledger_url, dagster_home):
    key = key_of(big_org)
    home, dagster_url = dagster_home
    if pool_limit == "no pool limit":  # Dagster lets both runs in: the ledger alone must serialize them
        import yaml

        config = yaml.safe_load((home / "dagster.yaml").read_text())
        config.pop("concurrency", None)
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    store = LedgerStore.open(ledger_url)
    policy = load_policy(week_policy)
    collect_both(store, big_org, week_sandbox, week_policy)
    resolve_epoch(store, key, policy)
    allocate_epoch(store, key, policy, after(big_org))
    state = allocation_state(store, key, policy)
    assert state.status == "review"
    approve_epoch(store, key, state.allocation_set_hash, sign_message(state.approval_message, APPROVER_KEY), policy)
    env = deployment_env(ledger_url=ledger_url, policy_path=week_policy, sandbox=week_sandbox, dagster_home=home, dagster_url=dagster_url)
    procs = Processes(env, ROOT)
    try:
        done = wait_all([procs.materialize(f"finalize-{i}", ["payout_statements"], key) for i in (1, 2)], TIMEOUT)
    finally:
        procs.kill_all()
    assert all(d.returncode is not None for d in done), "a finalize hung:\n" + "\n".join(d.describe() for d in done)
    rows = ledger_rows(ledger_url, "SELECT epoch_key, revision, count(*) AS n FROM payout_statements GROUP BY 1, 2")
    assert [(r.epoch_key.isoformat(), r.revision, r.n) for r in rows] == [(key, 1, 1)]
    succeeded = [d for d in done if d.returncode == 0]
    print(f"finalize ({pool_limit}): exits {[d.returncode for d in done]} after {[round(d.seconds, 1) for d in done]} s")
    assert succeeded, "neither finalize succeeded:\n" + "\n".join(d.describe() for d in done)
    for failed in (d for d in done if d.returncode != 0):  # only finalize's own refusal (a dg.Failure), nothing unexpected
        assert "dagster._core.definitions.events.Failure: " in failed.stderr, failed.describe()
        assert not any(w in failed.stderr for w in ("OperationalError", "IntegrityError", "DeadlockDetected", "ImportError")), failed.describe()
    assert store.get_epoch(key).status == "finalized"
    report = verify_stored(store, key)
    assert report.ok, report.mismatch
    with open_instance(home, dagster_url) as instance:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("payout_statements"), asset_partitions=[key]),
                                                  limit=10).records
        metadata = [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]
    assert len(metadata) == len(succeeded)
    assert {m["statement_hash"] for m in metadata} == {store.statement(key)["statement_hash"]}
    assert sorted(m["written_now"] for m in metadata) == ([False, True] if len(metadata) == 2 else [True])
    store.engine.dispose()


def position(cursor: dict) -> tuple:
    """A cursor's place in its stream: GitHub's ``through`` instant, Discord's last snowflake."""
    return (cursor.get("through") or "", int(cursor.get("last_id") or 0))


# -- 5. a parallel backfill of eight weeks ------------------------------------------------------------------


def test_parallel_backfill_of_eight_weeks(pg_server_url, template_db, dagster_home, tmp_path):
    org = generate_org(seed=88, weeks=8, repos=2, prs_per_repo=48, reviews_per_pr=1, issues_per_repo=24, channels=2,
                       messages_per_channel=400 if SCALE == "fast" else 4000)
    keys = [key_of(org, k) for k in range(8)]
    home, dagster_url = dagster_home
    policy_path = write_policy(tmp_path / "policy.yaml", org, [address_of(APPROVER_KEY)])
    # Eight weeks' completeness checks at once spend more than GitHub's 30 searches a minute; that wait is
    # covered by the fault tests, here it would only make the run slower.
    with start_sandbox(org, **TOKENS, github_rate_limits={"search": (2000, 60.0)}) as sandbox, \
            scratch_database(pg_server_url, f"cp_conc_backfill_{os.getpid()}", template=template_db) as url, \
            scratch_database(pg_server_url, f"cp_conc_backfill_ref_{os.getpid()}", template=template_db) as reference_url:
        for k in range(8):
            assert len(sandbox.ground_truth(*org.windows[k])) > 0, f"week {k} is empty"
        env = deployment_env(ledger_url=url, policy_path=policy_path, sandbox=sandbox, dagster_home=home, dagster_url=dagster_url)
        procs = Processes(env, ROOT)
        started = time.monotonic()
        try:
            done = wait_all([procs.materialize(f"week-{key}", STAGES, key) for key in keys], TIMEOUT)
        finally:
            procs.kill_all()
        ok(done)
        elapsed = time.monotonic() - started
        store = LedgerStore.open(url)
        assert epoch_keys(url) == keys  # one epoch row per week, no other
        for k, key in enumerate(keys):
            window = org.windows[k]
            assert ledger_problems(url, sandbox, window) == [], key
            assert curated_problems(url, sandbox, window, key) == [], key
            assert completeness_problems(url, key, streams_of(policy_path)) == [], key
            assert store.get_epoch(key).status == "review", key
            assert no_drift(store, key, policy_path) == [], key
        total = ledger_rows(url, "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM activity_events")[0]
        assert total.n == total.d
        # The cursors: what one sequential pass over the eight weeks leaves (none behind, none ahead).
        reference = LedgerStore.open(reference_url)
        for k in range(8):
            collect_both(reference, org, sandbox, policy_path, k)
        expected, found = cursors(reference_url), cursors(url)
        assert sorted(found) == sorted(expected)  # every stream has its cursor
        ahead = {k: (found[k], expected[k]) for k in expected if position(found[k]) > position(expected[k]) or "pass" in found[k]}
        assert ahead == {}, "a cursor is past what was collected, or a pass was left unfinished"
        behind = {k: (found[k], expected[k]) for k in expected if position(found[k]) < position(expected[k])}
        # A cursor left behind only costs a re-read (facts are idempotent); see the report: the last week to
        # finish a channel writes its own position even when another week's is newer.
        print(f"cursors behind the sequential pass: {behind or 'none'}")
        assert ledger_rows(url, "SELECT count(*) AS n FROM activity_events")[0].n == \
            ledger_rows(reference_url, "SELECT count(*) AS n FROM activity_events")[0].n
        reference.engine.dispose()
        store.engine.dispose()
        with open_instance(home, dagster_url) as instance:
            runs = instance.get_runs()
            assert sorted(r.tags.get("dagster/partition") for r in runs if r.status == dg.DagsterRunStatus.SUCCESS) == keys
        print(f"8 weeks in parallel: {elapsed:.1f} s")


# -- workers ------------------------------------------------------------------------------------------------

if __name__ == "__main__":
    workers = {"collector": collector_worker, "admin": admin_worker}
    workers[sys.argv[1]](*sys.argv[2:])
