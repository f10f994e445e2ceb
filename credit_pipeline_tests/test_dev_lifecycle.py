"""`credit-pipeline dev` stops its whole process tree on a signal, with or without a terminal, and the
repository root is loadable by `dagster` and `dg` with nothing set."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from credit_pipeline.ledger.engine import stop_embedded_server
from credit_pipeline_tests.conftest import scratch_database

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_ui(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"credit-pipeline dev exited early:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"the Dagster UI did not come up in {timeout} s:\n{log.read_text()[-3000:]}")


def _tree(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def _survivors(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_dev_stops_its_whole_tree_on_a_signal_without_a_terminal(signum, pg_server_url, tmp_path):
    ui, github, discord = _free_port(), _free_port(), _free_port()
    log = tmp_path / "dev.log"
    with scratch_database(pg_server_url, f"cp_dev_ledger_{os.getpid()}_{signum}") as ledger, \
            scratch_database(pg_server_url, f"cp_dev_dagster_{os.getpid()}_{signum}") as dagster_db:
        env = {**os.environ, "CREDIT_PIPELINE_HOME": str(tmp_path / "home"), "CREDIT_PIPELINE_DATABASE_URL": ledger,
               "CREDIT_PIPELINE_DAGSTER_DATABASE_URL": dagster_db}
        env.pop("DAGSTER_HOME", None)
        with log.open("wb") as out:
            # no terminal: a new session, stdin from /dev/null, output to a file (as a service manager or CI runs it)
            proc = subprocess.Popen([sys.executable, "-m", "credit_pipeline.cli", "dev", "--port", str(ui),
                                     "--github-port", str(github), "--discord-port", str(discord)],
                                    env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for_ui(ui, proc, log)
            procs = _tree(proc.pid)
            names = " ".join(" ".join(p.cmdline()) for p in procs)
            assert "dagster_webserver" in names and "dagster._daemon" in names, names
            assert _listening(ui) and _listening(github) and _listening(discord)
            sent = time.monotonic()
            proc.send_signal(signum)
            proc.wait(timeout=30)
            while _survivors(procs) and time.monotonic() - sent < 15:
                time.sleep(0.5)
            assert not _survivors(procs), f"still running 15 s after {signum.name}: {_survivors(procs)}"
            assert not [p for p in (ui, github, discord) if _listening(p)], "a port is still served"
            assert time.monotonic() - sent < 15
            assert f"stopping Dagster ({signum.name})" in log.read_text()
        finally:
            for p in _tree(proc.pid) if proc.poll() is None else []:
                p.kill()
            for p in psutil.process_iter(["cmdline"]):  # never leave a stray webserver behind a failed test
                if str(ui) in " ".join(p.info["cmdline"] or []) and "dagster" in " ".join(p.info["cmdline"] or []):
                    p.kill()


def _fresh_checkout(tmp_path: Path) -> Path:
    """The tracked files of this repository (what a clone has), without anything generated."""
    root = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, target)
    return root


@pytest.mark.slow
def test_dagster_and_dg_load_the_repository_root_with_nothing_set(tmp_path):
    root = _fresh_checkout(tmp_path)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CREDIT_PIPELINE_", "DAGSTER_", "GITHUB_", "DISCORD_"))}
    env["CREDIT_PIPELINE_HOME"] = str(home)  # only so that the embedded server of this test is its own
    env["PYTHONPATH"] = str(root)  # the checkout's own code, as `pip install -e .` in it would give
    try:
        validate = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                                  cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert validate.returncode == 0, validate.stdout + validate.stderr
        assert "All code locations passed validation" in validate.stdout + validate.stderr
        dg = shutil.which("dg")
        assert dg, "dagster-dg-cli is a dependency: dg must be installed"
        check = subprocess.run([dg, "check", "defs"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "All definitions loaded successfully" in check.stdout + check.stderr
        listing = subprocess.run([dg, "list", "defs", "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert listing.returncode == 0, listing.stdout + listing.stderr
        for name in ("raw_github_activity", "raw_discord_activity", "resolved_activity", "epoch_allocations",
                     "payout_statements", "weekly_epoch_job", "approve_epoch"):
            assert name in listing.stdout, name
        assert not list(root.glob(".tmp_dagster_home_*")), "dagster left its temporary home behind"
    finally:
        stop_embedded_server(home / "pgdata")
