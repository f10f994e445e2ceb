"""No secret reaches anything a user or a viewer can see.

A whole week runs through the real Dagster machinery on a persistent instance (``DAGSTER_HOME`` with
PostgreSQL storage) with recognizable fake secrets: the GitHub and Discord tokens (``dg.EnvVar``s, as
production reads them), a ledger URL and a Dagster storage URL with passwords, and an approver's private
key. Then the error paths: a CLI command against an unreachable database whose URL has a password, each
source with a rejected token (itself a secret), a refused approval; ``--debug`` off.

Scanned afterwards, for every secret (and any ``SECRETSCAN`` substring): captured stdout/stderr, every
log record (root logger at DEBUG while the flow runs), every file under the home, the Dagster home and
the exports, every run (config, tags, the whole record) and every event record of the instance, the
workspace snapshot the Dagster UI serves (resource config included), and every row of every table of
the ledger and of Dagster's database. A self-check plants a secret in each channel and the scanner must
find it there, so the test can fail.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._serdes import serialize_value

from credit_pipeline.cli import main
from credit_pipeline.core.hashing import address_of, sign_message
from credit_pipeline.defs.builder import build_defs, default_resources
from credit_pipeline.demo import ENV_DAGSTER_URL, bind_demo_people, write_instance_yaml
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.faults import Fault
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.sandbox.sample_org import generate_org

from credit_pipeline_tests.conftest import scratch_database
from credit_pipeline_tests.sources.conftest import org_policy

GITHUB_SECRET = "ghp_SECRETSCANgithub0123456789abcdef"
DISCORD_SECRET = "SECRETSCAN.discord.token"
DB_PASSWORD = "SECRETSCANpw"
DAGSTER_DB_PASSWORD = "SECRETSCANdagsterpw"
WRONG_GITHUB = "ghp_SECRETSCANwrong9876543210fedcba"
WRONG_DISCORD = "SECRETSCAN.wrong.discord.token"
APPROVER_KEY = "0x" + "5ec12e75ca" * 6 + "5ec1"  # 32 bytes of hex: cannot hold the marker, scanned for itself
MARKER = "SECRETSCAN"
SECRETS = [GITHUB_SECRET, DISCORD_SECRET, DB_PASSWORD, DAGSTER_DB_PASSWORD, WRONG_GITHUB, WRONG_DISCORD, APPROVER_KEY, MARKER]


def needles() -> dict[str, str]:
    """Each secret as it could be written: plain, lower-case, URL-quoted, base64 (an Authorization header)."""
    found: dict[str, str] = {}
    for s in SECRETS:
        for form, value in (("plain", s), ("lower", s.lower()), ("quoted", quote(s, safe="")),
                            ("base64", base64.b64encode(s.encode()).decode().rstrip("=")),
                            ("hex-body", s[2:] if s.startswith("0x") else s)):
            found.setdefault(value, f"{s[:14]}... ({form})")
    return found


def scan(channel: str, text: str) -> list[str]:
    hits = []
    low = text.lower()
    for needle, what in needles().items():
        position = text.find(needle) if needle != needle.lower() else low.find(needle)
        if position >= 0:
            hits.append(f"{channel}: {what} at {position}: ...{text[max(0, position - 80):position + 40]!r}...")
    return hits


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot be formatted is still evidence
            self.lines.append(f"{record.name} {record.msg!r} {record.args!r} ({exc})")


def dump_database(url: str) -> Iterator[tuple[str, str]]:
    """Every row of every table in the public schema as text (``row::text`` covers every column)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").all()
            for schema, table in tables:
                rows = conn.exec_driver_sql(f'SELECT t::text FROM "{schema}"."{table}" t').scalars().all()
                yield f"{table} ({len(rows)} rows)", "\n".join(rows)
    finally:
        engine.dispose()


def dump_files(*roots: Path) -> Iterator[tuple[str, str]]:
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            yield str(path), path.read_bytes().decode("utf-8", "replace")


def dump_instance(instance: dg.DagsterInstance) -> Iterator[tuple[str, str]]:
    runs = instance.get_runs()
    assert runs, "the instance recorded no runs"
    for run in runs:
        yield f"run {run.run_id} config/tags", repr(run.run_config) + repr(run.tags)
        yield f"run {run.run_id} record", serialize_value(run)
        for entry in instance.all_logs(run.run_id):
            yield f"run {run.run_id} event {entry.dagster_event_type}", serialize_value(entry) + entry.user_message
    for record in instance.get_run_records():
        yield f"run record {record.dagster_run.run_id}", serialize_value(record.dagster_run)


def dump_workspace_snapshot(defs: dg.Definitions) -> Iterator[tuple[str, str]]:
    """What the Dagster UI shows about the code location: assets, jobs and resources with their config."""
    from dagster._core.remote_representation.external_data import RepositorySnap

    yield "workspace snapshot", serialize_value(RepositorySnap.from_def(defs.get_repository_def()))


def scan_all(channels: Iterator[tuple[str, str]]) -> tuple[list[str], int]:
    hits, count = [], 0
    for name, text in channels:
        count += 1
        hits += scan(name, text)
    return hits, count


@pytest.fixture
def world(tmp_path, monkeypatch, pg_server_url, template_db):
    """Ledger and Dagster databases reached through URLs with passwords (trust auth accepts any), a sandbox
    that only accepts the secret tokens, a persistent DAGSTER_HOME, and the environment production reads."""
    name = f"cp_secret_{os.getpid()}"
    with scratch_database(pg_server_url, name, template=template_db) as plain, \
            scratch_database(pg_server_url, f"cp_secret_dagster_{os.getpid()}") as dagster_plain:
        ledger_url = sa.make_url(plain).set(password=DB_PASSWORD).render_as_string(hide_password=False)
        dagster_url = sa.make_url(dagster_plain).set(password=DAGSTER_DB_PASSWORD).render_as_string(hide_password=False)
        assert DB_PASSWORD in ledger_url and DAGSTER_DB_PASSWORD in dagster_url
        org = generate_org(seed=5, prs_per_repo=40, reviews_per_pr=2, issues_per_repo=16, messages_per_channel=150)
        with start_sandbox(org, github_token=GITHUB_SECRET, discord_token=DISCORD_SECRET) as sandbox:
            home, dagster_home, exports = tmp_path / "home", tmp_path / "dagster_home", tmp_path / "exports"
            exports.mkdir()
            policy = org_policy(org).canonical()
            policy["approvers"] = [address_of(APPROVER_KEY)]
            policy_path = tmp_path / "policy.yaml"
            policy_path.write_text(yaml.safe_dump(policy))
            for key, value in {**sandbox.env(), "CREDIT_PIPELINE_DATABASE_URL": ledger_url, "CREDIT_PIPELINE_POLICY": str(policy_path),
                               "CREDIT_PIPELINE_HOME": str(home), "DAGSTER_HOME": str(dagster_home), ENV_DAGSTER_URL: dagster_url,
                               "CP_APPROVER_KEY": APPROVER_KEY}.items():
                monkeypatch.setenv(key, value)
            assert os.environ["GITHUB_TOKEN"] == GITHUB_SECRET and os.environ["DISCORD_BOT_TOKEN"] == DISCORD_SECRET
            write_instance_yaml(dagster_home, dagster_url)
            yield dict(org=org, sandbox=sandbox, ledger_url=ledger_url, dagster_url=dagster_url, roots=[tmp_path],
                       exports=exports, policy_path=policy_path, key=org.windows[0][0].date().isoformat())


def test_the_workspace_snapshot_the_ui_serves_holds_no_database_password(world):
    defs = build_defs(str(world["policy_path"]), default_resources())
    hits, _ = scan_all(dump_workspace_snapshot(defs))
    assert scan_all(dump_workspace_snapshot(build_defs(str(world["policy_path"]), {
        **default_resources(), "ledger": dg.ResourceDefinition.none_resource()})))[0] == []  # only the ledger's config leaks
    assert hits == [], "\n".join(hits)


def materialize(defs, instance, names, key, run_config=None, before=lambda: None) -> dg.ExecuteInProcessResult:
    before()
    wanted = {dg.AssetKey(n) for n in names}
    return dg.materialize([a for a in defs.assets if a.key in wanted], partition_key=key, instance=instance,
                          resources=defs.resources, raise_on_error=False, run_config=run_config or {})


def failures(result) -> str:
    return " | ".join(e.event_specific_data.error.to_string() for e in result.all_events
                      if e.is_step_failure and e.event_specific_data and e.event_specific_data.error)


def test_no_secret_reaches_output_logs_files_dagster_or_the_ledger(world, capfd, monkeypatch):
    key, sandbox = world["key"], world["sandbox"]
    capture, root = Capture(), logging.getLogger()
    level = root.level

    def listening() -> None:
        """Every logger that propagates, at DEBUG (more than a user would ever see). Dagster's storage setup runs
        alembic's logging config, which replaces the root handlers: re-attach before every step."""
        root.setLevel(logging.DEBUG)
        for logger in list(logging.root.manager.loggerDict.values()):  # fileConfig disables existing loggers too
            if isinstance(logger, logging.Logger):
                logger.disabled = False
                if logger.name.startswith("urllib3"):  # the kubernetes client (dagster-k8s, deploy tests) sets them to WARNING
                    logger.setLevel(logging.NOTSET)
        if capture not in root.handlers:
            root.addHandler(capture)

    outputs: list[tuple[str, str]] = []

    def cli(*argv: str, expect: int = 0) -> tuple[str, str]:
        listening()
        code = main(list(argv))
        out, err = capfd.readouterr()
        outputs.append((f"credit-pipeline {' '.join(argv)} (exit {code})", out + err))
        assert code == expect, (argv, code, out, err)
        return out, err

    try:
        # A few retried faults, so the retry and wait paths log too.
        sandbox.faults.add(Fault.github_secondary_limit(retry_after=1), server="github", path=r"/pulls$", nth=1)
        sandbox.faults.add(Fault.server_error(502), server="discord", path=r"/messages$", nth=2)
        sandbox.faults.add(Fault.http_429(retry_after=None), server="github", path=r"/graphql$", nth=1)
        store = LedgerStore.open(world["ledger_url"])
        bind_demo_people(store, world["org"])
        defs = build_defs(str(world["policy_path"]), default_resources())  # tokens as dg.EnvVar, as deployed
        instance = dg.DagsterInstance.get()  # the persistent one in DAGSTER_HOME, storage in PostgreSQL
        instance.get_runs()
        assert "postgres" in type(instance.run_storage).__module__
        debug = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}

        # The week through Dagster: collect both sources, resolve, allocate; approve (the job); finalize.
        for names in (["raw_github_activity", "raw_discord_activity"], ["resolved_activity"], ["epoch_allocations"]):
            result = materialize(defs, instance, names, key, debug, listening)
            assert result.success, failures(result)
        meta = {k: v.value for k, v in instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("epoch_allocations"), asset_partitions=[key]), limit=1
        ).records[0].asset_materialization.metadata.items()}
        assert meta["epoch_status"] == "review", meta
        cli("approve", "--epoch", key, "--print-message")
        signature = sign_message(meta["approval_message"].strip("`\n"), APPROVER_KEY)
        listening()
        approved = defs.get_job_def("approve_epoch").execute_in_process(instance=instance, raise_on_error=False, run_config={
            **debug, "ops": {"record_approval": {"config": {"epoch_key": key, "allocation_set_hash": meta["allocation_set_hash"],
                                                            "signature": signature}}}})
        assert approved.success
        final = materialize(defs, instance, ["payout_statements"], key, debug, listening)
        assert final.success, failures(final)

        # What an admin and an auditor run afterwards.
        cli("verify", "--epoch", key)
        for fmt in ("json", "csv", "safe-csv", "md"):
            cli("export", "--epoch", key, "--format", fmt, "-o", str(world["exports"] / f"statement.{fmt}"))
        cli("verify", str(world["exports"] / "statement.json"), "--expect-approver", address_of(APPROVER_KEY))
        cli("epochs", "--json")
        cli("db", "status")
        cli("identity", "list")
        cli("collect", "--epoch", key)  # the CLI's own collection path, with progress lines

        # Error paths, --debug off.
        out, err = cli("approve", "--epoch", key, "--hash", "0" * 64, "--key-env", "CP_APPROVER_KEY", expect=2)
        monkeypatch.setenv("GITHUB_TOKEN", WRONG_GITHUB)
        out, err = cli("collect", "--epoch", key, "--source", "github", expect=2)
        assert "GITHUB_TOKEN" in err
        monkeypatch.setenv("DISCORD_BOT_TOKEN", WRONG_DISCORD)
        out, err = cli("collect", "--epoch", key, "--source", "discord", expect=2)
        assert "DISCORD_BOT_TOKEN" in err
        rejected = materialize(build_defs(str(world["policy_path"]), default_resources()), instance,
                               ["raw_github_activity", "raw_discord_activity"], key, debug, listening)
        assert not rejected.success and "GITHUB_TOKEN" in failures(rejected), failures(rejected)
        monkeypatch.setenv("GITHUB_TOKEN", GITHUB_SECRET)
        monkeypatch.setenv("DISCORD_BOT_TOKEN", DISCORD_SECRET)
        unreachable = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/credit_pipeline"
        monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", unreachable)
        for argv in (["epochs"], ["db", "status"], ["db", "upgrade"], ["collect", "--epoch", key], ["verify", "--epoch", key]):
            out, err = cli(*argv, expect=2)
            assert "does not answer" in err or "error:" in err, err
        down = materialize(build_defs(str(world["policy_path"]), default_resources()), instance, ["resolved_activity"], key, debug, listening)
        assert not down.success
        monkeypatch.setenv("CREDIT_PIPELINE_DATABASE_URL", world["ledger_url"])
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
        sandbox.faults.clear()
    out, err = capfd.readouterr()
    outputs.append(("uncaptured stdout/stderr", out + err))

    def channels() -> Iterator[tuple[str, str]]:
        yield from outputs
        yield "log records", "\n".join(capture.lines)
        for result in (final, rejected, down):
            yield f"run {result.run_id} in-memory events", "\n".join(serialize_value(e) for e in result.all_events)
        yield from dump_files(*world["roots"])
        yield from dump_instance(instance)
        yield from dump_database(world["ledger_url"])
        yield from dump_database(world["dagster_url"])

    hits, scanned = scan_all(channels())
    assert scanned > 50 and len(capture.lines) > 50, (scanned, len(capture.lines))
    assert {"discord.http", "urllib3.connectionpool"} <= {line.split(" ", 1)[0] for line in capture.lines}
    assert hits == [], f"{len(hits)} secret(s) visible:\n" + "\n".join(hits[:40])

    # Self-check: a secret planted in each kind of channel is found there.
    planted = f"planted {GITHUB_SECRET}"
    (world["exports"] / "planted.txt").write_text(planted)
    logging.getLogger("credit_pipeline").addHandler(capture)
    logging.getLogger("credit_pipeline").warning("planted %s", DISCORD_SECRET)
    logging.getLogger("credit_pipeline").removeHandler(capture)
    instance.report_runless_asset_event(dg.AssetMaterialization("planted", metadata={"token": DB_PASSWORD}))
    engine = sa.create_engine(world["ledger_url"])
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE planted (note text)")
        conn.exec_driver_sql("INSERT INTO planted VALUES (%(n)s)", {"n": f"x{APPROVER_KEY}x"})
    engine.dispose()
    found, _ = scan_all(channels())
    where = "\n".join(found)
    assert "planted.txt" in where and GITHUB_SECRET[:14] in where
    assert any(h.startswith("log records") and DISCORD_SECRET[:14] in h for h in found), where
    assert any("ASSET_MATERIALIZATION" in h.split(":")[0] or "event_logs" in h for h in found), where  # the instance
    assert any(h.startswith("planted (") for h in found), where  # the ledger dump
