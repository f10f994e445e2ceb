"""Rows in PostgreSQL ``COPY`` text format, and ``COPY ... FROM STDIN`` through a SQLAlchemy connection."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.ledger import tables as t

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# COPY's text format: NULL is \N, a backslash starts an escape. JSON text already escapes every control
# character, so only its backslashes need doubling; other text also escapes newline, carriage return, tab.
def _text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _json(value: Any) -> str:
    return _JSON.encode(value).replace("\\", "\\\\")


def _bool(value: bool) -> str:
    return "t" if value else "f"


def _converter(column: sa.Column) -> Callable[[Any], str]:
    if isinstance(column.type, JSONB):
        return _json
    if isinstance(column.type, sa.Boolean):
        return _bool
    if isinstance(column.type, sa.DateTime):
        return datetime.isoformat
    if isinstance(column.type, sa.Integer):
        return str
    if isinstance(column.type, sa.Date):
        return lambda value: value.isoformat()
    return _text


# The columns a page writes (ingested_at is the database's now()), each with its converter.
_EVENT_CONVERTERS = [(c.name, _converter(c)) for c in t.activity_events.c if c.name != "ingested_at"]
EVENT_COLUMNS = tuple(name for name, _ in _EVENT_CONVERTERS)


def copy_text(events: Sequence[ActivityEvent]) -> str:
    """``events`` as the rows of ``COPY ... (EVENT_COLUMNS) FROM STDIN`` (text format)."""
    return "".join("\t".join(["\\N" if (v := getattr(e, name)) is None else convert(v) for name, convert in _EVENT_CONVERTERS])
                   + "\n" for e in events)


def rows_copy_text(table: sa.Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` (dicts keyed by column name) as the rows of ``COPY table (columns) FROM STDIN`` (text format)."""
    converters = [(name, _converter(table.c[name])) for name in columns]
    return "".join("\t".join(["\\N" if (v := row.get(name)) is None else convert(v) for name, convert in converters]) + "\n"
                   for row in rows)


def copy_from(conn: Connection, statement: str, rows: str) -> None:
    """Run ``statement`` (a ``COPY ... FROM STDIN``) with ``rows`` through the psycopg2 connection under ``conn``,
    in its transaction. A row the server refuses raises SQLAlchemy's error (``DataError``, ``IntegrityError``,
    ...), as any statement through ``conn`` would."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        with conn.connection.driver_connection.cursor() as cursor:
            cursor.copy_expert(statement, io.StringIO(rows))
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi.Error) from None
