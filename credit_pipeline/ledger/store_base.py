"""The connection plumbing every part of the store shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from credit_pipeline.core.epochs import parse_epoch_key
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.records import EpochRecord, EpochStateError, epoch_from_row


class StoreBase:
    """An engine, transactions, and the epoch row every operation checks."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        """Read on the caller's connection (inside its transaction) or a fresh one."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as fresh:
                yield fresh

    def _epoch(self, conn: Connection, key: str, lock: bool = False) -> EpochRecord:
        query = sa.select(t.epochs).where(t.epochs.c.epoch_key == parse_epoch_key(key))
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise EpochStateError(f"epoch {key} does not exist yet; collect or resolve its activity first")
        return epoch_from_row(row)
