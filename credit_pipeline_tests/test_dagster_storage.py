"""The shipped Dagster storage class: where its database comes from, and a pool's first use under concurrency."""

import os
import threading

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from credit_pipeline.dagster_storage import CreditPipelineStorage, InstanceStorageError, PoolSafeEventLogStorage
from credit_pipeline_tests.conftest import scratch_database


def _home(tmp_path, url: str, default_limit: int = 1):
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    config = {"storage": {"custom": {"module": "credit_pipeline.dagster_storage", "class": "CreditPipelineStorage",
                                     "config": {"postgres_url": url}}},
              "concurrency": {"pools": {"default_limit": default_limit}}, "telemetry": {"enabled": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return str(home)


def test_the_url_comes_from_the_config_then_the_environment(pg_server_url, tmp_path, monkeypatch):
    with scratch_database(pg_server_url, f"cp_dst_{os.getpid()}") as url:
        with dg.DagsterInstance.from_config(_home(tmp_path, url)) as instance:
            assert isinstance(instance.event_log_storage, PoolSafeEventLogStorage)  # what dagster.yaml loaded
            assert instance.get_runs() == []
        monkeypatch.setenv("CREDIT_PIPELINE_DAGSTER_DATABASE_URL", url.replace("postgresql+psycopg2://", "postgresql://"))
        storage = CreditPipelineStorage.from_config_value(None, {})
        assert storage.postgres_url == url
        monkeypatch.setenv("CREDIT_PIPELINE_DAGSTER_DATABASE_URL", "mysql://root:hunter2@db/x")
        with pytest.raises(InstanceStorageError) as refused:
            CreditPipelineStorage.from_config_value(None, {})
        message = str(refused.value)
        assert "\n" not in message and "hunter2" not in message and "credit-pipeline dev" in message


def test_a_pools_first_use_by_many_processes_at_once_fails_none_and_allocates_its_slots_once(pg_server_url, tmp_path):
    """dagster-io/dagster#33552: the stock storage fails one of two concurrent first uses of a pool with
    UniqueViolation (it failed a finalize in CI); ours upserts under an advisory lock."""
    with scratch_database(pg_server_url, f"cp_dsp_{os.getpid()}") as url:
        home = _home(tmp_path, url, default_limit=2)
        with dg.DagsterInstance.from_config(home) as first:
            first.get_runs()  # the schema exists before the race, as in a deployment
        for round_ in range(5):
            pool = f"pool_{round_}"
            barrier, errors = threading.Barrier(6), []

            def use_pool() -> None:
                try:
                    with dg.DagsterInstance.from_config(home) as instance:
                        barrier.wait(timeout=30)
                        instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
                except Exception as exc:  # noqa: BLE001 - collected and asserted on below
                    errors.append(repr(exc))

            threads = [threading.Thread(target=use_pool) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert errors == []
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                limits = conn.execute(sa.text('SELECT "limit" FROM concurrency_limits WHERE concurrency_key = :k'), {"k": pool}).all()
                slots = conn.execute(sa.text("SELECT count(*) FROM concurrency_slots WHERE concurrency_key = :k AND deleted = false"),
                                     {"k": pool}).scalar()
            engine.dispose()
            assert [r[0] for r in limits] == [2] and slots == 2, (limits, slots)
