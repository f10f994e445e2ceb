"""Benchmarks 5 and 7 of issue 13: the large week from an empty ledger to a verified statement through the real
Dagster Definitions, wall time per stage; then verify from the database and offline from the exported bundle.

The sandbox (``bench/sandbox_process.py``: >= 5,000 merged PRs, 15,000 reviews, 3,000 closed issues, 200,000
messages in 20 channels at scale 1) runs in a process of its own. The ledger is a fresh PostgreSQL database and
Dagster's instance a fresh one on the same server; the stages are materialized in order on the closed week
(``raw_github_activity`` through the organization search, ``raw_discord_activity``, ``resolved_activity``, ``epoch_allocations``), the approval
job signs what ``epoch_allocations`` shows, ``payout_statements`` finalizes, and verify runs both ways.
Targets: the whole under 5 minutes; each verify under 30 s.

    python bench/end_to_end.py [--scale 1.0] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml
from eth_account import Account

from credit_pipeline.core.hashing import sign_message
from credit_pipeline.defs.builder import build_defs
from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
from credit_pipeline.ledger.engine import normalize_url
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

sys.path.insert(0, os.path.dirname(__file__))
from api_requests import temp_database  # noqa: E402

APPROVER_KEY = "0x" + "4c" * 32
STAGES = ["raw_github_activity", "raw_discord_activity", "resolved_activity", "epoch_allocations"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the ledger database (its URL is printed) for a later look")
    parser.add_argument("--profile", metavar="DIR", help="write pyinstrument profiles of finalize and verify to DIR (needs pyinstrument)")
    args = parser.parse_args()
    profiler = _profiler(args.profile)
    server = normalize_url(args.database_url)
    work = Path(tempfile.mkdtemp(prefix="cp_e2e_"))
    t0 = time.perf_counter()
    sandbox = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sandbox_process.py")), "--truth", str(work / "truth.txt"),
                                "--scale", str(args.scale)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    info = json.loads(sandbox.stdout.readline())
    key = info["key"]
    print(f"week {key}: {info['kinds']} ({info['truth']:,} facts; sandbox ready in {time.perf_counter() - t0:.0f} s)")
    sources = dict(info["sources"])
    github = dict(sources["github"])  # the organization's search: one request for completeness, not two REST searches per repo
    sources["github"] = {**{k: v for k, v in github.items() if k != "repos"}, "organization": github["repos"][0].split("/")[0]}
    policy = {"version": 1, "epoch": {"anchor": key}, "sources": sources, "exclude": info["exclude"],
              "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000, "discord:message_sent": 100},
              "pool": {"base_issuance": 10000}, "approvers": [Account.from_key(APPROVER_KEY).address]}
    (work / "policy.yaml").write_text(yaml.safe_dump(policy))
    ledger_url, drop_ledger = temp_database(server, "_e2e_ledger")
    dagster_url, drop_dagster = temp_database(server, "_e2e_dagster")
    times: dict[str, float] = {}
    try:
        env = info["env"]
        resources = {"ledger": LedgerResource(database_url=ledger_url), "policy": PolicyResource(path=str(work / "policy.yaml")),
                     "github": GitHubResource(token=env["GITHUB_TOKEN"], api_url=env["GITHUB_API_URL"]),
                     "discord": DiscordResource(token=env["DISCORD_BOT_TOKEN"], api_url=env["DISCORD_API_URL"])}
        defs = build_defs(str(work / "policy.yaml"), resources)
        (work / "home").mkdir()
        (work / "home" / "dagster.yaml").write_text(yaml.safe_dump({  # Dagster's own storage: PostgreSQL, as in production
            "storage": {"postgres": {"postgres_url": dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1)}},
            "telemetry": {"enabled": False}}))
        instance = dg.DagsterInstance.from_config(str(work / "home"))
        by_key = {a.key: a for a in defs.assets}
        started = time.perf_counter()
        LedgerStore.open(ledger_url)  # migrations, as `credit-pipeline db upgrade` would run them first
        times["migrate the empty ledger"] = time.perf_counter() - started
        for name in STAGES:
            t = time.perf_counter()
            result = dg.materialize([by_key[dg.AssetKey(name)]], partition_key=key, instance=instance, resources=defs.resources,
                                    raise_on_error=False)
            times[name] = time.perf_counter() - t
            if not result.success:
                raise SystemExit(f"{name} failed")
        meta = _metadata(instance, "epoch_allocations", key)
        if meta["epoch_status"] != "review":
            raise SystemExit(f"the epoch did not enter review: {meta['review_blocked_by']}")
        t = time.perf_counter()
        message = meta["approval_message"].strip("`\n")
        approved = defs.get_job_def("approve_epoch").execute_in_process(instance=instance, raise_on_error=False, run_config={
            "ops": {"record_approval": {"config": {"epoch_key": key, "allocation_set_hash": meta["allocation_set_hash"],
                                                   "signature": sign_message(message, APPROVER_KEY)}}}})
        times["approve_epoch (job)"] = time.perf_counter() - t
        if not approved.success:
            raise SystemExit("approval failed")
        t = time.perf_counter()
        with profiler("finalize"):
            done = dg.materialize([by_key[dg.AssetKey("payout_statements")]], partition_key=key, instance=instance,
                                  resources=defs.resources, raise_on_error=False)
        times["payout_statements (finalize)"] = time.perf_counter() - t
        if not done.success:
            raise SystemExit("finalize failed")
        pipeline = time.perf_counter() - started
        store = LedgerStore.open(ledger_url)
        t = time.perf_counter()
        with profiler("verify_db"):
            stored = verify_stored(store, key)
        verify_db = time.perf_counter() - t
        bundle = store.statement_rows(key)[-1]["bundle"].encode()
        t = time.perf_counter()
        offline = verify_file_bytes(bundle)
        verify_file = time.perf_counter() - t
        truth = set((work / "truth.txt").read_text().split())
        window = store.get_epoch(key)
        facts = {e["event_id"] for e in store.events_between(window.start, window.end)}
        instance.dispose()
    finally:
        sandbox.stdin.close()
        sandbox.wait(timeout=60)
        if args.keep:
            print(f"ledger kept: {ledger_url}")
        else:
            drop_ledger()
        drop_dagster()
    print(f"\n{'stage':34} {'seconds':>9}")
    for name, seconds in times.items():
        print(f"{name:34} {seconds:>9.1f}")
    print(f"{'empty ledger -> statement':34} {pipeline:>9.1f}   target < 300")
    print(f"{'verify from the database':34} {verify_db:>9.1f}   target < 30   ok={stored.ok}")
    print(f"{'verify offline from the bundle':34} {verify_file:>9.1f}   target < 30   ok={offline.ok} ({len(bundle) / 1e6:.0f} MB)")
    print(f"ledger == sandbox ground truth: {facts == truth} ({len(facts):,} facts)")
    return 0 if stored.ok and offline.ok and facts == truth else 1


def _profiler(directory: str | None):
    """A context manager per named step: a pyinstrument profile of it in ``directory``, or nothing."""
    @contextlib.contextmanager
    def step(name: str):
        if directory is None:
            yield
            return
        from pyinstrument import Profiler  # only for --profile; not a dependency of the benchmark
        profiler = Profiler()
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / f"{name}.txt").write_text(profiler.output_text(unicode=False, show_all=False))
    return step


def _metadata(instance: dg.DagsterInstance, asset: str, key: str) -> dict:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


if __name__ == "__main__":
    raise SystemExit(main())
