"""Curation, allocations and pool components: what an admin reviews and adjusts."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from credit_pipeline.core.allocation import ProposedAllocation
from credit_pipeline.core.epochs import parse_epoch_key, window_for_key
from credit_pipeline.core.policy import POOL_COMPONENTS
from credit_pipeline.core.rules import FACTS_VERSION
from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.records import CurationProposal, EpochStateError, LedgerError
from credit_pipeline.ledger.copy_rows import _text as _copy_text, copy_from, rows_copy_text
from credit_pipeline.ledger.store_base import StoreBase, as_dicts


# Resolution proposals of this many rows or more go through COPY into a session-private staging table (emptied by
# the upsert itself and at every commit), then one INSERT ... ON CONFLICT DO UPDATE with the same rule as below.
_STAGE_FROM = 500
_CURATION_STAGE = "staged_activity_curation"
_CURATION_COLUMNS = ("event_id", "epoch_key", "recipient_id", "resolution")
_STAGE_CURATION = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {_CURATION_STAGE} ON COMMIT DELETE ROWS AS "
                   f"SELECT {', '.join(_CURATION_COLUMNS)} FROM activity_curation WITH NO DATA")
_UPSERT_STAGED_CURATION = (
    f"WITH page AS (DELETE FROM {_CURATION_STAGE} RETURNING *) "
    f"INSERT INTO activity_curation AS c ({', '.join(_CURATION_COLUMNS)}) SELECT {', '.join(_CURATION_COLUMNS)} FROM page "
    "ON CONFLICT (event_id) DO UPDATE SET recipient_id = excluded.recipient_id, resolution = excluded.resolution, resolved_at = now() "
    "WHERE c.epoch_key = excluded.epoch_key AND (c.recipient_id IS DISTINCT FROM excluded.recipient_id OR c.resolution <> excluded.resolution) "
    "RETURNING c.event_id")


def _curated_query(key: str) -> sa.Select:
    """Epoch ``key``'s curation rows joined with their events (no payloads) and their facts at ``FACTS_VERSION``."""
    c, e, f = t.activity_curation.c, t.activity_events.c, t.event_facts.c
    return (
        sa.select(c.event_id, c.recipient_id, c.resolution, c.included, c.weight_override, c.note, c.curated_by, c.curated_at,
                  e.source, e.event_type, e.platform_user_id, e.platform_login, e.is_bot, e.event_time, e.payload_hash, f.facts)
        .join_from(t.activity_curation, t.activity_events, c.event_id == e.event_id)
        .outerjoin(t.event_facts, sa.and_(f.event_id == c.event_id, f.facts_version == FACTS_VERSION))
        .where(c.epoch_key == parse_epoch_key(key))
    )


class CurationStore(StoreBase):
    """Curation, allocations and pool components: what an admin reviews and adjusts."""

    def curate(self, key: str, proposals: Iterable[CurationProposal]) -> int:
        """Put events into epoch ``key`` with their resolution; returns rows written.

        Admin fields (included, weight_override, note) are never touched. An event
        already curated into another epoch stays there (one epoch per event).
        """
        rows = [{"event_id": p.event_id, "epoch_key": parse_epoch_key(key), "recipient_id": p.recipient_id, "resolution": p.resolution} for p in proposals]
        if not rows:
            return 0
        with self.transaction() as conn:
            if len(rows) >= _STAGE_FROM:  # a week's first resolution: COPY into a session table, then one upsert
                conn.exec_driver_sql(_STAGE_CURATION)
                copy_from(conn, f"COPY {_CURATION_STAGE} ({', '.join(_CURATION_COLUMNS)}) FROM STDIN",
                          rows_copy_text(t.activity_curation, _CURATION_COLUMNS, rows))
                return len(conn.exec_driver_sql(_UPSERT_STAGED_CURATION).all())
            c = t.activity_curation.c
            stmt = pg_insert(t.activity_curation)
            stmt = stmt.on_conflict_do_update(
                index_elements=["event_id"],
                set_={"recipient_id": stmt.excluded.recipient_id, "resolution": stmt.excluded.resolution, "resolved_at": sa.func.now()},
                where=sa.and_(
                    c.epoch_key == stmt.excluded.epoch_key,
                    sa.or_(c.recipient_id.is_distinct_from(stmt.excluded.recipient_id), c.resolution != stmt.excluded.resolution),
                ),
            )
            return len(conn.execute(stmt.returning(c.event_id), rows).all())

    def set_curation(self, event_id: str, *, actor: str, included: bool | None = None,
                     weight_override: int | None = None, clear_override: bool = False, note: str | None = None) -> None:
        """An admin's curation of one event: exclude/include, override weight, note."""
        if weight_override is not None and (isinstance(weight_override, bool) or weight_override < 0):
            raise LedgerError(f"weight override for {event_id} must be an integer >= 0 milli-units (got {weight_override})")
        values: dict[str, Any] = {"curated_by": actor, "curated_at": sa.func.now()}
        if included is not None:
            values["included"] = included
        if weight_override is not None or clear_override:
            values["weight_override"] = weight_override
        if note is not None:
            values["note"] = note
        with self.transaction() as conn:
            done = conn.execute(sa.update(t.activity_curation).where(t.activity_curation.c.event_id == event_id).values(**values))
            if done.rowcount == 0:
                raise LedgerError(f"event {event_id} is not curated into any epoch yet; run resolution for its epoch first")

    def curated_events(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        """The epoch's curation rows joined with their events (no payloads) and their rule facts (``facts``,
        None where not derived yet at ``FACTS_VERSION``)."""
        query = _curated_query(key).order_by(t.activity_curation.c.event_id)
        with self._reading(conn) as conn:
            return as_dicts(conn.execute(query))

    def curated_rows(self, key: str, conn: Connection | None = None, *, event_type: str | None = None,
                     batch: int = 5000) -> Iterator[dict[str, Any]]:
        """``curated_events``' rows one recipient's together (the rows crediting no one last), each recipient's in
        ``(event_time, event_id)`` order, read through a server-side cursor ``batch`` rows at a time: an epoch of
        millions of events is never in memory. Ids sort by code point (``COLLATE "C"``) whatever the database's
        collation, as Python compares them: the rules walk them in that order (``core.rules.RecipientRules``)."""
        c, e = t.activity_curation.c, t.activity_events.c
        query = (_curated_query(key).order_by(c.recipient_id.collate("C").asc().nulls_last(), e.event_time, c.event_id.collate("C"))
                 .execution_options(stream_results=True, yield_per=batch))
        if event_type is not None:
            query = query.where(e.event_type == event_type)
        with self._reading(conn) as conn:
            result = conn.execute(query)
            keys = list(result.keys())
            for row in result:
                yield dict(zip(keys, row))

    def ranked_remainders(self, rows: Iterable[tuple[str, str, int]], leftovers: Callable[[], dict[str, int]]) -> dict[str, tuple[int, str]]:
        """The largest-remainder boundary of each source, with bounded memory: ``rows`` (source, event_id,
        remainder) go into a session table as they come; once they are all in, ``leftovers()`` says how many
        events of each source get one more unit, and the last of them in (remainder descending, event id
        ascending by code point) is returned per source. An event gets the unit iff it ranks at or before it."""
        stage = "staged_share_remainders"
        with self.transaction() as conn:
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (source text NOT NULL, event_id text NOT NULL, "
                                 "remainder numeric NOT NULL) ON COMMIT DROP")
            conn.exec_driver_sql(f"TRUNCATE {stage}")
            it = iter(rows)
            while chunk := list(itertools.islice(it, 20_000)):
                copy_from(conn, f"COPY {stage} (source, event_id, remainder) FROM STDIN",
                          "".join(f"{_copy_text(s)}\t{_copy_text(eid)}\t{int(rem)}\n" for s, eid, rem in chunk))
            found = {}
            for source, k in sorted(leftovers().items()):
                if k <= 0:
                    continue
                row = conn.exec_driver_sql(f"SELECT remainder, event_id FROM {stage} WHERE source = %(s)s "
                                           "ORDER BY remainder DESC, event_id COLLATE \"C\" OFFSET %(k)s LIMIT 1",
                                           {"s": source, "k": k - 1}).first()
                if row is None:
                    raise LedgerError(f"pool_share of {source}: {k} leftover units for fewer events")
                found[source] = (int(row[0]), row[1])
            conn.exec_driver_sql(f"DROP TABLE {stage}")
            return found

    def count_curated_outside_window(self, key: str) -> int:
        """Curated events whose time is outside the epoch's ``[start, end)`` (the trigger makes this 0)."""
        start, end = window_for_key(key)
        c, e = t.activity_curation.c, t.activity_events.c
        query = (sa.select(sa.func.count()).select_from(t.activity_curation.join(t.activity_events, c.event_id == e.event_id))
                 .where(c.epoch_key == parse_epoch_key(key), sa.or_(e.event_time < start, e.event_time >= end)))
        with self._reading() as conn:
            return conn.execute(query).scalar()

    # -- allocations ---------------------------------------------------------

    def upsert_allocations(self, key: str, proposals: Sequence[ProposedAllocation], algorithm_version: str) -> None:
        """Write proposals, keeping every admin adjustment; drop unadjusted rows no longer proposed."""
        a = t.epoch_allocations.c
        epoch_key = parse_epoch_key(key)
        with self.transaction() as conn:
            if proposals:
                stmt = pg_insert(t.epoch_allocations)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["epoch_key", "recipient_id"],
                    set_={"proposed_units": stmt.excluded.proposed_units, "activity_count": stmt.excluded.activity_count,
                          "algorithm_version": stmt.excluded.algorithm_version, "proposed_at": sa.func.now()},
                    where=sa.or_(a.proposed_units != stmt.excluded.proposed_units, a.activity_count != stmt.excluded.activity_count,
                                 a.algorithm_version != stmt.excluded.algorithm_version),
                )
                conn.execute(stmt, [
                    {"epoch_key": epoch_key, "recipient_id": p.recipient_id, "proposed_units": p.proposed_units,
                     "activity_count": p.activity_count, "algorithm_version": algorithm_version}
                    for p in proposals
                ])
            keep = [p.recipient_id for p in proposals]
            conn.execute(sa.delete(t.epoch_allocations).where(a.epoch_key == epoch_key, a.final_units.is_(None), a.recipient_id.not_in(keep)))
            # An adjusted recipient who lost every event keeps its adjustment with proposal 0.
            conn.execute(sa.update(t.epoch_allocations).where(a.epoch_key == epoch_key, a.final_units.is_not(None), a.recipient_id.not_in(keep),
                                                              sa.or_(a.proposed_units != 0, a.activity_count != 0)).values(proposed_units=0, activity_count=0))

    def adjust_allocation(self, key: str, recipient_id: str, final_units: int | None, reason: str | None, actor: str) -> None:
        """Set (or clear, with ``final_units=None``) an admin's final units for a recipient."""
        if final_units is not None:
            if isinstance(final_units, bool) or not isinstance(final_units, int) or final_units < 0:
                raise LedgerError(f"final units for {recipient_id} must be an integer >= 0 (got {final_units!r})")
            if not (reason or "").strip():
                raise LedgerError(f"adjusting {recipient_id} in epoch {key} needs a reason (--reason)")
        epoch_key = parse_epoch_key(key)
        with self.transaction() as conn:
            if self._epoch(conn, key).status == "finalized":
                raise EpochStateError(f"epoch {key} is finalized; its allocations are frozen")
            values = {"final_units": final_units, "reason": reason if final_units is not None else None,
                      "adjusted_by": actor, "adjusted_at": sa.func.now()}
            stmt = pg_insert(t.epoch_allocations).values(epoch_key=epoch_key, recipient_id=recipient_id, proposed_units=0,
                                                          activity_count=0, algorithm_version="manual", **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["epoch_key", "recipient_id"], set_=values))

    def allocations(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        a = t.epoch_allocations.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.epoch_allocations).where(a.epoch_key == parse_epoch_key(key)).order_by(a.recipient_id))
            return [dict(r._mapping) for r in rows]

    # -- pool ----------------------------------------------------------------

    def add_pool_component(self, key: str, component_id: str, amount: int, *, algorithm_version: str,
                           inputs: dict[str, Any] | None = None, evidence_ref: str | None = None, actor: str | None = None) -> bool:
        """Record a pool component once (append-only); True when written now.

        Recording the same component with the same amount again is a no-op; a
        different amount is refused (components never change; add a ``top_up``).
        """
        if component_id not in POOL_COMPONENTS:
            raise LedgerError(f"pool component {component_id!r} is not one of {', '.join(POOL_COMPONENTS)}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise LedgerError(f"pool component {component_id} amount must be an integer >= 0 (got {amount!r})")
        p = t.epoch_pool_components.c
        with self.transaction() as conn:
            inserted = conn.execute(
                pg_insert(t.epoch_pool_components)
                .values(epoch_key=parse_epoch_key(key), component_id=component_id, amount=amount, algorithm_version=algorithm_version,
                        inputs=inputs or {}, evidence_ref=evidence_ref, recorded_by=actor)
                .on_conflict_do_nothing(index_elements=["epoch_key", "component_id"])
                .returning(p.component_id)
            ).first()
            if inserted:
                return True
            existing = conn.execute(sa.select(p.amount).where(p.epoch_key == parse_epoch_key(key), p.component_id == component_id)).scalar()
            if int(existing) != amount:
                raise LedgerError(f"epoch {key} already has {component_id} = {int(existing)}; components are append-only, "
                                  "record the difference as a top_up instead")
            return False

    def pool_components(self, key: str, conn: Connection | None = None) -> list[dict[str, Any]]:
        p = t.epoch_pool_components.c
        with self._reading(conn) as conn:
            rows = conn.execute(sa.select(t.epoch_pool_components).where(p.epoch_key == parse_epoch_key(key)).order_by(p.component_id))
            return [{**r._mapping, "amount": int(r.amount)} for r in rows]

    # -- where admin writes land ----------------------------------------------

    def curation_epoch(self, event_id: str) -> str | None:
        """The epoch an event is curated into, if any."""
        c = t.activity_curation.c
        with self._reading() as conn:
            key = conn.execute(sa.select(c.epoch_key).where(c.event_id == event_id)).scalar()
        return None if key is None else key.isoformat()

    def epochs_holding_accounts(self, accounts: Sequence[tuple[str, str]]) -> list[str]:
        """Epochs not yet finalized whose curated events belong to any of ``accounts`` (provider, external id)."""
        if not accounts:
            return []
        c, e, ep = t.activity_curation.c, t.activity_events.c, t.epochs.c
        query = (sa.select(c.epoch_key).distinct()
                 .join_from(t.activity_curation, t.activity_events, c.event_id == e.event_id)
                 .join(t.epochs, ep.epoch_key == c.epoch_key)
                 .where(ep.status != "finalized", sa.tuple_(e.source, e.platform_user_id).in_(list(accounts)))
                 .order_by(c.epoch_key))
        with self._reading() as conn:
            return [k.isoformat() for k in conn.execute(query).scalars()]
