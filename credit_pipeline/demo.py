"""``credit-pipeline demo`` and ``credit-pipeline dev``: the whole product on one machine, no setup.

Both start the embedded PostgreSQL (unless ``CREDIT_PIPELINE_DATABASE_URL`` is set), the sandbox
GitHub and Discord servers with a generated sample org, and a persistent Dagster instance whose
storage is PostgreSQL (its own database, beside the ledger's) under ``CREDIT_PIPELINE_HOME``.
``demo`` runs the last closed week through the real Definitions: collect, resolve, allocate,
review, approve with the demo approver's key, finalize, verify. ``dev`` serves the same
environment in the Dagster UI with the sensor and schedule live.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from eth_account import Account

from credit_pipeline.core.epochs import epoch_window
from credit_pipeline.core.hashing import address_of, sign_message
from credit_pipeline.core.statement import statement_bytes
from credit_pipeline.dagster_storage import ENV_DAGSTER_URL, dagster_database_url
from credit_pipeline.ledger.engine import ENV_DATABASE_URL, credit_home, resolve_database
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.runner import DEMO_DISCORD_TOKEN, DEMO_GITHUB_TOKEN, Sandbox, start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org
from credit_pipeline.stages.admin import bind_wallet, wallet_binding_message

# A published, demo-only key: anyone can sign with it. Never list its address in a real policy.
DEMO_APPROVER_KEY = "0x" + hashlib.sha256(b"credit_pipeline demo approver - public, never use for real credit").hexdigest()
DEMO_PEOPLE = ("alice", "bob", "carol")
# Demo-only wallet keys, public like the approver's: alice and bob get payout wallets, carol does not (her credit is held).
DEMO_WALLET_KEYS = {person: "0x" + hashlib.sha256(f"credit_pipeline demo wallet of {person} - public".encode()).hexdigest()
                    for person in ("alice", "bob")}
# The token the demo pays (SPEC §6's example: DAI's address, 18 decimals, one token per credit).
DEMO_PAYOUT = {"token_address": "0x6B175474E89094C44Da98b954EedeAC495271d0F", "decimals": 18, "token_units_per_credit": 10**18}
DEMO_TAG = "credit_pipeline/demo"
DEMO_TAGS = {DEMO_TAG: "true", "credit_pipeline/trigger": "demo"}
EPOCH_TAG = "credit_pipeline/epoch"

Say = Callable[[str], None]


@dataclass
class DemoEnvironment:
    home: Path
    dagster_home: Path
    ledger_url: str
    dagster_url: str
    policy_path: Path
    sandbox: Sandbox
    week_key: str
    describe: str

    def env(self) -> dict[str, str]:
        """What a Dagster process needs to load the Definitions against this environment."""
        return {**self.sandbox.env(), ENV_DATABASE_URL: self.ledger_url, "CREDIT_PIPELINE_POLICY": str(self.policy_path),
                "DAGSTER_HOME": str(self.dagster_home), ENV_DAGSTER_URL: self.dagster_url}


def last_closed_week(now: datetime) -> datetime:
    return epoch_window(now)[0] - timedelta(days=7)


def write_instance_yaml(dagster_home: Path, dagster_url: str) -> None:
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = {
        # the same storage class as the repository's dagster.yaml; the URL comes from the environment
        "storage": {"custom": {"module": "credit_pipeline.dagster_storage", "class": "CreditPipelineStorage", "config": {}}},
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {"runs": {"max_concurrent_runs": 2}, "pools": {"default_limit": 1}},
        "telemetry": {"enabled": False},
    }
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (dagster_home / "workspace.yaml").write_text(yaml.safe_dump(
        {"load_from": [{"python_module": {"module_name": "credit_pipeline.defs.definitions", "attribute": "defs"}}]}))
    os.environ[ENV_DAGSTER_URL] = dagster_url


# The shipped rules (SPEC §6 "Rules", docs/policy.md): the sample org games each of them once.
DEMO_RULES = {
    "github": {"review_weights": {"APPROVED": 2000, "CHANGES_REQUESTED": 2000, "COMMENTED": 500, "DISMISSED": 2000},
               "self_review": False, "one_review_per_pr": True, "pr_labels": [{"label": "trivial", "weight": 0}],
               "issue_reasons": ["completed"], "self_closed_issues": "referenced"},
    "discord": {"message_types": [0, 19], "min_length": 10, "dedupe": True, "daily_cap": 20},
    "caps": {"units_per_person": {"discord": 5000}},
}


def write_demo_policy(path: Path, org, anchor: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    policy = {
        "version": 1,
        "epoch": {"anchor": anchor.date().isoformat()},
        "sources": org.policy_sources(),
        "weights": {"github:pr_merged": 8000, "github:review_submitted": 2000, "github:issue_closed": 1000, "discord:message_sent": 100},
        "exclude": org.bot_accounts(),
        "unresolved": "claimant",
        "pool": {"base_issuance": 10000},
        "approvers": [address_of(DEMO_APPROVER_KEY)],
        "rules": DEMO_RULES,
        "payout": DEMO_PAYOUT,
    }
    header = "# Written by `credit-pipeline demo` for its sandbox org. The approver is the public demo key.\n"
    path.write_text(header + yaml.safe_dump(policy, sort_keys=False))


def prepare(say: Say, *, now: datetime | None = None, github_port: int = 0, discord_port: int = 0) -> DemoEnvironment:
    """Start the database, the sandbox and the Dagster home; write the demo policy."""
    now = now or datetime.now(UTC)
    home = credit_home()
    home.mkdir(parents=True, exist_ok=True)
    say(f"home: {home}")
    target = resolve_database()
    say(f"ledger: {target.describe()}")
    LedgerStore.open(target.url)  # migrate
    dagster_url = dagster_database_url()
    dagster_home = home / "dagster"
    write_instance_yaml(dagster_home, dagster_url)
    week = last_closed_week(now)
    org = generate_org(seed=7, week_start=week, weeks=1, now=now, threads=True)  # nothing after the clock
    sandbox = start_sandbox(org, github_port=github_port, discord_port=discord_port,
                            github_token=DEMO_GITHUB_TOKEN, discord_token=DEMO_DISCORD_TOKEN)
    say(f"sandbox: GitHub {sandbox.github_url}, Discord {sandbox.discord_api_url} ({org.stats()['merged_pulls']} merged PRs, "
        f"{org.stats()['messages']} messages)")
    policy_path = home / "demo" / "policy.yaml"
    write_demo_policy(policy_path, org, week)
    return DemoEnvironment(home, dagster_home, target.url, dagster_url, policy_path, sandbox, week.date().isoformat(), target.describe())


def bind_demo_people(store: LedgerStore, org) -> int:
    """Bind a few sample accounts to people; everyone else stays a visible claimant."""
    humans = [u for u in org.github_users if not u.is_bot and u.login != "ghost"][: len(DEMO_PEOPLE)]
    bound = 0
    for person, user in zip(DEMO_PEOPLE, humans):
        bound += store.bind("github", str(user.id), person, actor="demo", evidence={"note": "demo binding"})
    for person, user in zip(DEMO_PEOPLE, [u for u in org.discord_users if not u.bot]):
        bound += store.bind("discord", str(user.id), person, actor="demo", evidence={"note": "demo binding"})
    for person, key in DEMO_WALLET_KEYS.items():  # each wallet signs its own binding message, as a contributor would
        wallet = Account.from_key(key).address
        bound += bind_wallet(store, wallet, person, sign_message(wallet_binding_message(store, wallet, person), key), actor="demo")
    return bound


def run_demo(say: Say = print) -> dict[str, Any]:
    """The main job: one full week through the real Definitions on a persistent instance."""
    import dagster as dg

    from credit_pipeline.defs.builder import build_defs
    from credit_pipeline.defs.resources import DiscordResource, GitHubResource, LedgerResource, PolicyResource
    from credit_pipeline.stages.export import export_statement, held_csv
    from credit_pipeline.stages.report import finalized_bundles, report_extras
    from credit_pipeline.stages.site import build_site
    from credit_pipeline.stages.weekly_report import report_chart_png, weekly_report_markdown
    from credit_pipeline.stages.verify import verify_file_bytes, verify_stored

    started = time.monotonic()
    env = prepare(say)
    try:
        store = LedgerStore.open(env.ledger_url)
        key = env.week_key
        say(f"identities: {bind_demo_people(store, env.sandbox.org)} new binding(s) for {', '.join(DEMO_PEOPLE)}")
        resources = {
            "ledger": LedgerResource(database_url=env.ledger_url),
            "policy": PolicyResource(path=str(env.policy_path)),
            "github": GitHubResource(token=DEMO_GITHUB_TOKEN, api_url=env.sandbox.github_url, max_wait_seconds=60),
            "discord": DiscordResource(token=DEMO_DISCORD_TOKEN, api_url=env.sandbox.discord_api_url, max_wait_seconds=60),
        }
        defs = build_defs(str(env.policy_path), resources)
        os.environ["DAGSTER_HOME"] = str(env.dagster_home)
        instance = dg.DagsterInstance.get()
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        tags = {**DEMO_TAGS, EPOCH_TAG: key}

        def run(job: Any, what: str, *, partition: bool = True, run_config: dict | None = None) -> dict[str, dict[str, Any]]:
            """One run of a real job on the persistent instance; the metadata of what it materialized."""
            say(f"{what} ...")
            result = job.execute_in_process(instance=instance, partition_key=key if partition else None,
                                            run_config={**quiet, **(run_config or {})}, tags=tags, raise_on_error=False)
            if not result.success:
                failures = [e.event_specific_data.error.message.strip() for e in result.all_events
                            if e.is_step_failure and e.event_specific_data and e.event_specific_data.error]
                raise RuntimeError(f"{what} failed: {' | '.join(failures) or 'see run ' + result.run_id + ' in the Dagster UI'}")
            return {m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
                    for m in (ev.event_specific_data.materialization for ev in result.get_asset_materialization_events())}

        # The week as production runs it: the weekly job (what the Monday schedule launches), the approver's
        # approve_epoch run, then the admin's materialization of payout_statements (as the UI's Materialize does).
        meta = run(defs.resolve_job_def("weekly_epoch_job"), f"weekly_epoch_job for {key}: collect from GitHub and Discord, resolve, allocate")
        for name in ("raw_github_activity", "raw_discord_activity"):
            m = meta[name]
            say(f"  {name}: {m['new_events']} new events, {m['already_stored']} already stored, {m['api_requests']} API requests")
        allocated = meta["epoch_allocations"]
        say(_reconciliation(meta))
        say(f"  policy rules: {allocated['rules_summary']} (credit-pipeline explain --epoch {key} --recipient R shows why)")
        say(f"  {allocated['recipients']} recipients, epoch {key} is {allocated['epoch_status']}"
            + (f" (waiting: {allocated['review_blocked_by']})" if allocated["epoch_status"] == "open" else ""))
        epoch = store.get_epoch(key)
        if epoch.status == "review":
            from credit_pipeline.stages.allocate import allocation_state
            from credit_pipeline.stages.settings import load_policy

            state = allocation_state(store, key, load_policy(env.policy_path))
            if not any(a["message"] == state.approval_message for a in store.approvals(key)):
                config = {"epoch_key": key, "allocation_set_hash": state.allocation_set_hash,
                          "signature": sign_message(state.approval_message, DEMO_APPROVER_KEY)}
                run(defs.resolve_job_def("approve_epoch"),
                    f"approve_epoch: allocation set {state.allocation_set_hash[:16]}… signed by the demo approver {address_of(DEMO_APPROVER_KEY)}",
                    partition=False, run_config={"ops": {"record_approval": {"config": config}}})
        finalize = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("payout_statements")})
        run(finalize, "materializing payout_statements (the admin's finalize)")
        bundle = store.statement(key)
        report = verify_stored(store, key)
        exported = env.home / "demo" / f"statement-{key}.json"
        exported.write_bytes(statement_bytes(bundle))
        offline = verify_file_bytes(exported.read_bytes())
        airdrop = env.home / "demo" / f"airdrop-{key}.csv"
        airdrop.write_bytes(export_statement(bundle, "safe-airdrop"))
        airdrop.with_suffix(".held.csv").write_bytes(held_csv(bundle))
        report_path = env.home / "demo" / f"report-{key}.md"
        report_path.with_suffix(".png").write_bytes(report_chart_png(bundle))
        report_path.write_text(weekly_report_markdown(bundle, chart_name=report_path.with_suffix(".png").name,
                                                      extras=report_extras(store, key)), encoding="utf-8")
        site_dir = env.home / "demo" / "site"
        build_site(finalized_bundles(store), site_dir)
        say("")
        say(f"Payout statement for epoch {key} [{bundle['epoch']['start']}, {bundle['epoch']['end']}), pool {bundle['pool']['total']} credits")
        say(_payout_table(bundle["payouts"]))
        say(f"statement hash: {bundle['statement_hash']}")
        say(f"verify from the ledger: {'OK' if report.ok else 'FAIL: ' + str(report.mismatch)}; "
            f"offline from {exported.name}: {'OK' if offline.ok else 'FAIL: ' + str(offline.mismatch)}")
        dist = bundle["distribution"]
        say(f"payout: {dist['payable_credits']} credits to {sum(1 for x in dist['lines'] if x['status'] == 'payable')} wallet(s), "
            f"Merkle root {dist['merkle']['root'] if dist['merkle'] else 'none'}; {dist['held_credits']} credits held "
            f"(claimants and people without a wallet)")
        say(f"Safe airdrop CSV: {airdrop} (held lines: {airdrop.with_suffix('.held.csv').name})")
        say(f"weekly report: {report_path} (chart {report_path.with_suffix('.png').name}); "
            f"transparency site: {site_dir / 'index.html'}")
        say(f"done in {time.monotonic() - started:.0f} s; the runs are tagged {DEMO_TAG}=true. Next:")
        say(f"  credit-pipeline verify {exported}        # recompute the statement offline")
        say("  credit-pipeline epochs                  # every epoch and its status")
        say("  credit-pipeline dev                     # browse these runs in the Dagster UI (sensor and schedule live)")
        if not (report.ok and offline.ok):
            raise RuntimeError("the statement did not verify")
        return {"epoch": key, "statement_hash": bundle["statement_hash"], "verified": report.ok and offline.ok, "bundle_path": str(exported),
                "env": env.env(), "airdrop": str(airdrop), "report": str(report_path), "site": str(site_dir)}
    finally:
        env.sandbox.stop()


def _reconciliation(meta: dict[str, dict[str, Any]]) -> str:
    """Where every collected event went, in numbers that add up (the UI shows the same metadata)."""
    collected = sum(meta[n]["new_events"] + meta[n]["already_stored"] for n in ("raw_github_activity", "raw_discord_activity"))
    resolved = meta["resolved_activity"]
    by = dict(resolved["by_resolution"])
    in_window = resolved["events_in_window"]
    parts = [f"{by.pop('bound', 0)} resolved to people", f"{by.pop('claimant', 0)} kept for unbound accounts (claimants)",
             f"{by.pop('bot', 0)} by bots", f"{by.pop('excluded', 0)} by excluded accounts",
             f"{by.pop('unattributable', 0)} unattributable (deleted accounts)"]
    parts += [f"{n} {name.replace('_', ' ')}" for name, n in sorted(by.items())]
    lines = [f"  reconciliation: {collected} events collected (the week and the days around it); {in_window} in the week's window:",
             "    " + ", ".join(parts)]
    if collected != in_window:
        lines.append(f"    {collected - in_window} collected outside the window belong to the neighbouring weeks")
    return "\n".join(lines)


def _payout_table(payouts: list[dict[str, Any]]) -> str:
    rows = sorted(payouts, key=lambda p: (-p["amount_credits"], p["recipient_id"]))
    width = max([len("recipient")] + [len(p["recipient_id"]) for p in rows])
    lines = [f"  {'recipient'.ljust(width)}  {'units':>8}  {'share':>8}  {'credits':>8}"]
    lines += [f"  {p['recipient_id'].ljust(width)}  {p['total_units']:>8}  {p['share']:>8}  {p['amount_credits']:>8}" for p in rows]
    return "\n".join(lines)


def run_dev(say: Say = print, port: int = 3000, github_port: int = 8765, discord_port: int = 8766) -> int:
    """Serve the demo environment in the Dagster UI (webserver + daemon) until SIGINT, SIGTERM or SIGHUP.

    ``dagster dev`` runs in a session of its own and is stopped through its shutdown pipe (its own
    graceful path: webserver, daemon and code servers shut down in order); whatever of its tree is
    still alive after ``STOP_GRACE_SECONDS`` is killed, so nothing is left serving the port. The
    embedded PostgreSQL server is left running, as everywhere (``credit-pipeline db stop`` stops it)."""
    from dagster_shared.ipc import get_ipc_shutdown_pipe, send_ipc_shutdown_message

    env = prepare(say, github_port=github_port, discord_port=discord_port)
    tree = ProcessTree()
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        store = LedgerStore.open(env.ledger_url)
        bind_demo_people(store, env.sandbox.org)
        child_env = {**os.environ, **env.env()}
        read_fd, write_fd = get_ipc_shutdown_pipe()
        command = [sys.executable, "-m", "dagster", "dev", "-w", str(env.dagster_home / "workspace.yaml"), "-p", str(port),
                   "--shutdown-pipe", str(read_fd)]
        say(f"Dagster UI: http://127.0.0.1:{port}  (DAGSTER_HOME={env.dagster_home}); Ctrl-C (or SIGTERM) stops everything")
        say(f"the sensor and the weekly schedule are live; the demo week is {env.week_key}")
        tree.adopt_orphans()
        process = subprocess.Popen(command, env=child_env, start_new_session=True, pass_fds=[read_fd])
        os.close(read_fd)
        tree.root = process.pid
        while process.poll() is None and not stop_requested:
            tree.remember()
            time.sleep(0.5)
        if process.poll() is not None:
            say(f"dagster dev exited with code {process.returncode}")
            return process.returncode or 1
        say(f"stopping Dagster ({signal.Signals(stop_requested[0]).name}) ...")
        tree.remember()
        try:
            send_ipc_shutdown_message(write_fd)
        except OSError:
            pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            tree.remember()
            time.sleep(0.2)
        return 0
    finally:
        left = tree.stop()
        if left:
            say(f"killed {left} Dagster process(es) that did not stop in time")
        env.sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_SECONDS = 9.0
_PR_SET_CHILD_SUBREAPER = 36


class ProcessTree:
    """Every process ``dagster dev`` starts, remembered while it runs, so none outlives ``credit-pipeline dev``.

    The webserver, the daemon and the code servers are started by ``dagster dev`` and by each other;
    one that loses its parent would be re-parented away from us. On Linux this process becomes a child
    subreaper (orphans of the tree are re-parented to it, so they stay descendants); everywhere, the
    tree is polled and remembered by (pid, start time), so a recycled pid is never signalled."""

    def __init__(self) -> None:
        self.root: int | None = None
        self.known: dict[int, Any] = {}

    def adopt_orphans(self) -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            except (OSError, AttributeError):
                pass

    def remember(self) -> None:
        import psutil

        try:
            for proc in psutil.Process().children(recursive=True):
                if proc.pid not in self.known and not _is_embedded_postgres(proc):
                    self.known[proc.pid] = proc
        except psutil.Error:
            pass

    def stop(self) -> int:
        """Terminate what is still alive of the tree, then kill it; returns how many had to be killed."""
        import psutil

        self.remember()
        alive = [p for p in self.known.values() if _alive(p)]
        for proc in alive:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _gone, alive = psutil.wait_procs(alive, timeout=3)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=3)
        return len(alive)


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_embedded_postgres(proc: Any) -> bool:
    import psutil

    try:
        return proc.name().startswith(("postgres", "pg_ctl"))
    except psutil.Error:
        return True
