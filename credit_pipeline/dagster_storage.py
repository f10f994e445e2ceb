"""Dagster's instance storage for credit_pipeline: PostgreSQL, found the way the ledger is found.

``dagster.yaml`` names this class (``storage: custom:``) so that ``dagster dev``, ``dg dev`` and
``dagster definitions validate`` work in the repository root with nothing set. The database is, in
order: ``postgres_url`` in the config, ``$CREDIT_PIPELINE_DAGSTER_DATABASE_URL``, or the ``dagster``
database beside the ledger (``$CREDIT_PIPELINE_DATABASE_URL``'s server, else the embedded server under
``$CREDIT_PIPELINE_HOME``, started if needed): the same storage ``credit-pipeline dev`` uses. Dagster's
tables never share the ledger's database.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from dagster import Field, StringSource
from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from sqlalchemy.dialects.postgresql import insert as pg_insert

from credit_pipeline.ledger.engine import ENV_DATABASE_URL, normalize_url, resolve_database, with_database

ENV_DAGSTER_URL = "CREDIT_PIPELINE_DAGSTER_DATABASE_URL"
DAGSTER_DATABASE = "dagster"


class InstanceStorageError(Exception):
    """Dagster's storage cannot be reached; the message names what to set or run."""


def dagster_database_url(explicit: str | None = None) -> str:
    """Dagster's own database as a psycopg2 URL (dagster-postgres needs psycopg2)."""
    from credit_pipeline.ledger.engine import ensure_database

    configured = explicit or os.environ.get(ENV_DAGSTER_URL)
    if configured:
        return normalize_url(configured, variable=ENV_DAGSTER_URL)
    ledger = resolve_database()
    ensure_database(ledger.url, DAGSTER_DATABASE)
    return with_database(ledger.url, DAGSTER_DATABASE)


class PoolSafeEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres' event log, with a pool's first use safe under concurrency.

    Dagster 1.13 creates a pool's limit row on first use with INSERT, catching the IntegrityError; on
    PostgreSQL the failed INSERT aborts the transaction, so two runs of a fresh pool (two finalizes launched
    at once) fail one of them with UniqueViolation (dagster-io/dagster#33552, fix proposed in #33890). Here the
    row is upserted under a transaction-scoped advisory lock on the pool, which also keeps two processes
    from allocating the pool's slots twice."""

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        if not (self.has_concurrency_limits_table and self.has_instance and self.has_default_pool_limit_col):
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        default_limit = self._instance.global_op_concurrency_default_limit
        if default_limit is None:
            return super().initialize_concurrency_limit_to_default(concurrency_key)
        self._reconcile_concurrency_limits_from_slots()
        with self.index_transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"dagster_pool:{concurrency_key}"})
            table = ConcurrencyLimitsTable
            conn.execute(pg_insert(table).values(concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True)
                         .on_conflict_do_update(index_elements=[table.c.concurrency_key], set_={"limit": default_limit},
                                                where=table.c.limit != default_limit))
            self._allocate_concurrency_slots(conn, concurrency_key, default_limit)
        return True


class CreditPipelineStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose URL defaults to credit_pipeline's database (see the module doc), with
    the pool-initialization race of :class:`PoolSafeEventLogStorage` fixed."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data: ConfigurableClassData | None = None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data=inst_data)
        self._event_log_storage = PoolSafeEventLogStorage(postgres_url, should_autocreate_tables)

    @classmethod
    def config_type(cls) -> dict[str, Any]:  # type: ignore[override]
        return {
            "postgres_url": Field(StringSource, is_required=False,
                                  description=f"Dagster's database; default ${ENV_DAGSTER_URL}, else the `dagster` "
                                              f"database on the ledger's server (${ENV_DATABASE_URL} or the embedded one)"),
            "should_autocreate_tables": Field(bool, is_required=False, default_value=True),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]) -> CreditPipelineStorage:  # type: ignore[override]
        try:
            url = dagster_database_url(config_value.get("postgres_url"))
        except Exception as exc:  # one line, never the URL's password
            raise InstanceStorageError(
                f"credit_pipeline: Dagster's storage is not reachable ({exc}); set {ENV_DAGSTER_URL} to a "
                "postgresql:// URL, or run `credit-pipeline dev`, which starts the embedded server") from None
        return cls(postgres_url=url, should_autocreate_tables=config_value.get("should_autocreate_tables", True), inst_data=inst_data)
