"""Helpers for the concurrency and restart tests: a scratch PostgreSQL cluster, real subprocesses, and
ground-truth checks of a ledger.

``ScratchCluster`` is a PostgreSQL cluster of its own (``initdb`` in a temporary folder, a free port,
``pg_ctl start``/``stop``) that a test may stop and start at will: the shared server the rest of the
suite uses is never restarted. When the tests run as root, the server binaries run as the ``postgres``
system user (``initdb`` refuses root).

``Processes`` starts ``credit-pipeline`` / ``dagster`` / plain Python subprocesses with the environment
a deployment would give them (ledger URL, policy file, sandbox URLs and tokens, ``DAGSTER_HOME``) and
collects their exit codes and output; a process that outlives its timeout is killed (its own process
group, by pid) and reported as a hang.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from credit_pipeline.core.events import GITHUB_GHOST_ID

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS_MODULE = "credit_pipeline.defs.definitions"
STAGES = ["raw_github_activity", "raw_discord_activity", "resolved_activity", "epoch_allocations"]


# -- a scratch cluster ------------------------------------------------------------------------------


def pg_bin(name: str) -> str:
    """The newest installed PostgreSQL binary ``name`` (``initdb``, ``pg_ctl``)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise FileNotFoundError(f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin or on PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScratchCluster:
    """A throw-away PostgreSQL cluster on 127.0.0.1:<free port>, trust auth, superuser ``postgres``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cp-scratch-pg-"))
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            for path in (self.dir,):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.socket_dir.mkdir()
        if self._as_postgres:
            os.chown(self.socket_dir, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout[-1500:]} {done.stderr[-1500:]}")
        return done

    def init(self) -> "ScratchCluster":
        self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        command = [pg_bin("pg_ctl"), "-D", str(self.data), "status"]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True).returncode == 0

    def destroy(self) -> None:
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ScratchCluster":
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def create_database(server_url: str, name: str) -> str:
    from credit_pipeline.ledger.engine import with_database

    admin = sa.create_engine(with_database(server_url, "postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return with_database(server_url, name)


# -- subprocesses -----------------------------------------------------------------------------------


@dataclass
class Finished:
    name: str
    argv: list[str]
    returncode: int | None  # None: it hung and was killed
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"{self.name}: exit {self.returncode} after {self.seconds:.1f} s\n--- stdout ---\n{self.stdout[-3000:]}"
                f"\n--- stderr ---\n{self.stderr[-5000:]}")


@dataclass
class Running:
    name: str
    argv: list[str]
    process: subprocess.Popen
    started: float
    out: Any
    err: Any

    def wait(self, timeout: float) -> Finished:
        try:
            self.process.wait(timeout=max(0.1, timeout - (time.monotonic() - self.started)))
            code: int | None = self.process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # our own child's process group, by its pid
            self.process.wait()
            code = None
        seconds = time.monotonic() - self.started
        self.out.seek(0)
        self.err.seek(0)
        done = Finished(self.name, self.argv, code, self.out.read(), self.err.read(), seconds)
        self.out.close()
        self.err.close()
        return done


@dataclass
class Processes:
    """Start subprocesses with one deployment's environment."""

    env: dict[str, str]
    cwd: Path
    started: list[Running] = field(default_factory=list)

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Running:
        out = tempfile.TemporaryFile(mode="w+")
        err = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(argv, cwd=self.cwd, env={**self.env, **(extra_env or {})}, stdout=out, stderr=err,
                                   text=True, start_new_session=True)
        running = Running(name, argv, process, time.monotonic(), out, err)
        self.started.append(running)
        return running

    def cli(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> Running:
        return self.start(name, [sys.executable, "-m", "credit_pipeline.cli", *args], extra_env)

    def materialize(self, name: str, select: list[str], partition: str, extra_env: dict[str, str] | None = None,
                    in_process: bool = True) -> Running:
        """``dagster asset materialize`` of ``select`` for one partition, a run of its own on the instance."""
        config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        if in_process:  # one process per run; the multiprocess executor would start one more per step
            config["execution"] = {"config": {"in_process": {}}}
        return self.start(name, [sys.executable, "-m", "dagster", "asset", "materialize", "-m", DEFINITIONS_MODULE,
                                 "--select", ",".join(select), "--partition", partition,
                                 "--config-json", json.dumps(config)], extra_env)

    def python(self, name: str, code: str, *args: str, extra_env: dict[str, str] | None = None) -> Running:
        return self.start(name, [sys.executable, "-c", code, *args], extra_env)

    def kill_all(self) -> None:
        """Kill what is still running (teardown after a failed assertion): each by its own pid."""
        for r in self.started:
            if r.process.poll() is None:
                try:
                    os.killpg(r.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                r.process.wait()


def wait_all(running: list[Running], timeout: float) -> list[Finished]:
    return [r.wait(timeout) for r in running]


def deployment_env(*, ledger_url: str | None, policy_path: Path, sandbox, dagster_home: Path | None = None,
                   dagster_url: str | None = None, home: Path | None = None) -> dict[str, str]:
    """What a deployment's processes see: ledger, policy, sandbox APIs and tokens, Dagster's home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CREDIT_PIPELINE_", "DAGSTER_", "GITHUB_", "DISCORD_"))}
    env.update(sandbox.env())
    env["CREDIT_PIPELINE_POLICY"] = str(policy_path)
    env["CREDIT_PIPELINE_ACTOR"] = "reliability-test"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    if ledger_url:
        env["CREDIT_PIPELINE_DATABASE_URL"] = ledger_url
    if home:
        env["CREDIT_PIPELINE_HOME"] = str(home)
    if dagster_home:
        env["DAGSTER_HOME"] = str(dagster_home)
    if dagster_url:
        env["CREDIT_PIPELINE_DAGSTER_DATABASE_URL"] = dagster_url
    return env


def write_dagster_home(path: Path, dagster_url: str | None, max_concurrent_runs: int = 8) -> Path:
    """A persistent instance: PostgreSQL storage (``dagster_url``) as the shipped dagster.yaml, or sqlite."""
    path.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if dagster_url is None:
        config.pop("storage", None)
    else:  # the shipped storage class with the URL itself, so that this process and its children open it without env
        config["storage"]["custom"]["config"] = {"postgres_url": dagster_url}
    config["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    (path / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_policy(path: Path, org, approvers: list[str]) -> Path:
    from credit_pipeline_tests.sources.conftest import org_policy

    doc = org_policy(org).canonical()
    doc["approvers"] = approvers
    path.write_text(yaml.safe_dump(doc))
    return path


# -- the ledger against the ground truth ------------------------------------------------------------


def ledger_rows(url: str, sql: str, **params: Any) -> list[sa.Row]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def expected_events(sandbox, window, source: str | None = None) -> dict[str, tuple]:
    """event_id -> (type, account, is_bot, time) as the ledger must store it (the adapters' tests' view)."""
    view = {}
    for event_id, x in sandbox.ground_truth(*window, source=source).items():
        user = None if x.platform_user_id in (None, GITHUB_GHOST_ID) else x.platform_user_id
        view[event_id] = (x.event_type, user, x.is_bot, x.event_time)
    return view


def ledger_problems(url: str, sandbox, window, source: str | None = None) -> list[str]:
    """Every way the ledger's facts in ``window`` differ from the sandbox's ground truth (empty: exact)."""
    where = "event_time >= :start AND event_time < :end" + (" AND source = :source" if source else "")
    rows = ledger_rows(url, f"SELECT event_id, event_type, platform_user_id, is_bot, event_time FROM activity_events WHERE {where}",
                       start=window[0], end=window[1], source=source)
    problems = []
    dupes = {k: n for k, n in Counter(r.event_id for r in rows).items() if n > 1}
    if dupes:
        problems.append(f"{len(dupes)} duplicated event ids, e.g. {sorted(dupes)[:3]}")
    stored = {r.event_id: (r.event_type, r.platform_user_id, r.is_bot, r.event_time) for r in rows}
    expected = expected_events(sandbox, window, source)
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing:
        problems.append(f"{len(missing)} events lost, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected events, e.g. {unexpected[:3]}")
    differ = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])
    if differ:
        problems.append(f"{len(differ)} events stored with other fields, e.g. {[(k, stored[k], expected[k]) for k in differ[:2]]}")
    # (The same fact under a second id would be an unexpected event above.)
    return problems


def cursors(url: str) -> dict[tuple[str, str, str], Any]:
    return {(r.source, r.stream, r.source_ref): r.position
            for r in ledger_rows(url, "SELECT source, stream, source_ref, position FROM source_cursors")}


def completeness(url: str, key: str) -> dict[str, dict[str, Any]]:
    rows = ledger_rows(url, "SELECT completeness FROM epochs WHERE epoch_key = :k", k=key)
    assert len(rows) == 1, f"{len(rows)} epoch rows for {key}"
    return rows[0].completeness or {}


def completeness_problems(url: str, key: str, streams: list[str]) -> list[str]:
    """The epoch's completeness names every stream once, each with stored == the source's total and no shortfall."""
    found = completeness(url, key)
    problems = []
    if sorted(found) != sorted(streams):
        problems.append(f"completeness covers {sorted(found)}, expected {sorted(streams)}")
    for stream, result in sorted(found.items()):
        if result.get("shortfall"):
            problems.append(f"{stream}: shortfall {result['shortfall']} (stored {result['stored']}, source {result['source']})")
        if result.get("source") is not None and result["source"] != result["stored"]:
            problems.append(f"{stream}: stored {result['stored']}, source {result['source']}")
    return problems
