"""Numbered SQL migrations from ``sql/``: applied in order, each in one transaction.

Each applied file is recorded in ``schema_migrations`` with its SHA-256; a file that
was edited after it was applied is refused, because the database no longer matches
what the file says. Concurrent upgraders serialize on an advisory lock.

Only the ledger's owner (or a superuser) applies migrations. The application may
connect as a least-privilege role (docs/database.md): for it, a current schema is a
read-only check, and a pending migration is an error that says who must run it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

ENV_SQL_DIR = "CREDIT_PIPELINE_SQL_DIR"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_KEY = 0x63726564  # "cred": one advisory lock for all upgraders
log = logging.getLogger(__name__)

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationState:
    version: str
    name: str
    state: str  # applied | pending | edited | unknown
    applied_at: datetime | None


def sql_dir() -> Path:
    """``$CREDIT_PIPELINE_SQL_DIR``, else the project's ``sql/`` folder."""
    configured = os.environ.get(ENV_SQL_DIR)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "sql"


def discover(directory: Path | None = None) -> list[Migration]:
    """Migration files in version order; refuses stray or duplicate names."""
    directory = directory or sql_dir()
    if not directory.is_dir():
        raise MigrationError(f"migration folder {directory} does not exist (set {ENV_SQL_DIR} to the project's sql/ folder)")
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_snake_case.sql")
        version, name = match.groups()
        if version in found:
            raise MigrationError(f"{path}: version {version} is also used by {found[version].path.name}")
        found[version] = Migration(version, name, path, hashlib.sha256(path.read_bytes()).hexdigest())
    return [found[v] for v in sorted(found)]


def _applied(conn: Connection) -> dict[str, tuple[str, str, datetime]]:
    rows = conn.execute(sa.text("SELECT version, name, checksum, applied_at FROM schema_migrations"))
    return {r.version: (r.name, r.checksum, r.applied_at) for r in rows}


def _check_consistent(migrations: list[Migration], applied: dict[str, tuple[str, str, datetime]]) -> None:
    on_disk = {m.version: m for m in migrations}
    for version, (name, checksum, _) in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version}_{name}, which is not in {sql_dir()}: "
                "this code is older than the database; upgrade credit_pipeline"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.path.name} was edited after it was applied (database checksum {checksum[:12]}, "
                f"file {migration.checksum[:12]}). Applied migrations never change: restore the file "
                "and put the change in a new numbered migration"
            )


def _may_change_schema(conn: Connection) -> bool:
    """Whether the connected role can run migrations: a superuser, or a role that may create in the
    schema and is a member of the owner of ``schema_migrations`` (when there is one yet)."""
    return bool(conn.execute(sa.text("""
        SELECT r.rolsuper OR (has_schema_privilege(current_schema(), 'CREATE')
                              AND coalesce((SELECT pg_has_role(c.relowner, 'MEMBER') FROM pg_class c
                                            WHERE c.oid = to_regclass('schema_migrations')), true))
        FROM pg_roles r WHERE r.rolname = current_user""")).scalar())


def _pending(engine: Engine, migrations: list[Migration]) -> list[Migration]:
    """The migrations not applied yet, read without any DDL or lock; refuses them to a role that cannot apply them."""
    with engine.connect() as conn:
        user = conn.execute(sa.text("SELECT current_user")).scalar()
        may_migrate = _may_change_schema(conn)
        has_table = conn.execute(sa.text("SELECT to_regclass('schema_migrations') IS NOT NULL")).scalar()
        try:
            applied = _applied(conn) if has_table else {}
        except DBAPIError as exc:
            raise MigrationError(
                f"{user} cannot read schema_migrations ({str(exc.orig).strip().splitlines()[0]}): connect as a member "
                "of credit_pipeline_app (docs/database.md) or as the database owner"
            ) from None
    _check_consistent(migrations, applied)
    pending = [m for m in migrations if m.version not in applied]
    if pending and not may_migrate:
        counted = f"{len(pending)} migrations are" if len(pending) != 1 else "1 migration is"
        raise MigrationError(
            f"{counted} pending; run `credit-pipeline db upgrade` as the database owner "
            f"({user} cannot change the schema; pending: {', '.join(m.path.name for m in pending)})"
        )
    return pending


def _report_notices(migration: Migration, dbapi_connection) -> None:
    """A migration's NOTICEs say what someone must still do (e.g. create a role): log them as warnings."""
    notices = getattr(dbapi_connection, "notices", None) or []
    for notice in notices:
        log.warning("%s: %s", migration.path.name, str(notice).strip().removeprefix("NOTICE:").strip())
    del notices[:]


def upgrade(engine: Engine, directory: Path | None = None) -> list[str]:
    """Apply every pending migration; return the versions applied now (none pending: no DDL, no lock)."""
    migrations = discover(directory)
    if not _pending(engine, migrations):
        return []
    done: list[str] = []
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
        conn.commit()  # a session-level lock outlives this transaction
        try:
            with conn.begin():
                conn.exec_driver_sql(BOOKKEEPING)
                applied = _applied(conn)
            _check_consistent(migrations, applied)
            for migration in migrations:
                if migration.version in applied:
                    continue
                try:
                    with conn.begin():
                        # Raw DBAPI cursor: the file is several statements with $$ bodies and '%'.
                        dbapi = conn.connection.dbapi_connection
                        dbapi.cursor().execute(migration.sql)
                        _report_notices(migration, dbapi)
                        conn.execute(
                            sa.text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
                            {"v": migration.version, "n": migration.name, "c": migration.checksum},
                        )
                except (DBAPIError, psycopg2.Error) as exc:
                    detail = str(getattr(exc, "orig", exc)).strip()
                    raise MigrationError(
                        f"{migration.path.name} failed and was rolled back (nothing of it is applied): {detail}"
                    ) from exc
                done.append(migration.version)
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            conn.commit()
    return done


def status(engine: Engine, directory: Path | None = None) -> list[MigrationState]:
    """Each migration on disk or in the database, with its state."""
    migrations = discover(directory)
    with engine.connect() as conn:
        has_table = conn.execute(sa.text("SELECT to_regclass('schema_migrations') IS NOT NULL")).scalar()
        applied = _applied(conn) if has_table else {}
    states = []
    for m in migrations:
        row = applied.get(m.version)
        state = "pending" if row is None else ("applied" if row[1] == m.checksum else "edited")
        states.append(MigrationState(m.version, m.name, state, row[2] if row else None))
    known = {m.version for m in migrations}
    for version, (name, _, at) in sorted(applied.items()):
        if version not in known:
            states.append(MigrationState(version, name, "unknown", at))
    return states


def ensure_current(engine: Engine, directory: Path | None = None) -> None:
    """Apply pending migrations (idempotent); every entry point calls this.

    When nothing is pending this only reads, so the application's role (a member of
    ``credit_pipeline_app``, which cannot change the schema) opens a current ledger;
    when something is, a role that cannot apply it is told who must.
    """
    upgrade(engine, directory)
