"""Identity: the append-only log of bind / revoke / merge, and the bindings it implies.

Only ``identity_events`` is written. ``user_bindings`` is a view of that log (the
latest event of each account decides, sql/0003), and a database trigger refuses an
event that does not follow from the account's current state. The methods check
first, under the same locks the trigger takes, so a person is told what to do; if
the trigger refuses anyway, its refusal is raised as the same error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.payout_rows import IDENTITY_LOG_LOCK
from credit_pipeline.ledger.records import IdentityConflict, LedgerError
from credit_pipeline.ledger.store_base import StoreBase

Account = tuple[str, str]  # (provider, external_id)

# The CHECK constraints of sql/0003 that identity events can fail, and what they mean.
_GRAMMAR = {
    "identity_user_grammar": "user_id",
    "identity_previous_user_grammar": "previous_user_id",
}
PERSON_ID_RULE = "1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"


def already_bound(provider: str, external_id: str, holder: str) -> str:
    return (f"{provider} account {external_id} is already bound to {holder}; "
            f"revoke that binding first (credit-pipeline identity revoke {provider} {external_id})")


class IdentityStore(StoreBase):
    """The identity log (bind, revoke, merge) and the account → person bindings it implies."""

    def bind(self, provider: str, external_id: str, user_id: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> bool:
        """Bind an account to a person; True when new, False (nothing written) when already theirs.

        Refuses (IdentityConflict) an account another person holds: revoke it first.
        """
        with self.transaction() as conn:
            self._lock_accounts(conn, [(provider, external_id)])
            holder = self._holders(conn, [(provider, external_id)]).get((provider, external_id))
            if holder == user_id:
                return False
            if holder is not None:
                raise IdentityConflict(already_bound(provider, external_id, holder))
            self._append(conn, [{"action": "bind", "provider": provider, "external_id": external_id, "user_id": user_id,
                                 "evidence": evidence or {}, "actor": actor}])
            return True

    def revoke(self, provider: str, external_id: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> str:
        """Unbind an account (a logged revoke); returns the person it was bound to."""
        with self.transaction() as conn:
            self._lock_accounts(conn, [(provider, external_id)])
            holder = self._holders(conn, [(provider, external_id)]).get((provider, external_id))
            if holder is None:
                raise LedgerError(f"{provider} account {external_id} is not bound to anyone")
            self._append(conn, [{"action": "revoke", "provider": provider, "external_id": external_id, "user_id": holder,
                                 "evidence": evidence or {}, "actor": actor}])
            return holder

    def merge_users(self, from_user: str, into_user: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> int:
        """Move every account of ``from_user`` to ``into_user`` (one logged merge per account); returns how many."""
        if from_user == into_user:
            raise LedgerError("a person cannot be merged into themselves")
        b = t.user_bindings.c
        with self.transaction() as conn:
            seen = [(r.provider, r.external_id) for r in conn.execute(sa.select(b.provider, b.external_id).where(b.user_id == from_user))]
            self._lock_accounts(conn, seen)
            # Re-read under the locks: an account revoked or moved meanwhile is no longer from_user's.
            accounts = sorted(a for a, holder in self._holders(conn, seen).items() if holder == from_user)
            if not accounts:
                raise LedgerError(f"{from_user} has no bound accounts; nothing to merge")
            self._append(conn, [{"action": "merge", "provider": p, "external_id": e, "user_id": into_user, "previous_user_id": from_user,
                                 "evidence": evidence or {}, "actor": actor} for p, e in accounts])
            return len(accounts)

    def bindings(self) -> dict[Account, str]:
        """The current account → person index (the view of the log)."""
        b = t.user_bindings.c
        with self._reading() as conn:
            return {(r.provider, r.external_id): r.user_id for r in conn.execute(sa.select(b.provider, b.external_id, b.user_id))}

    def identity_log(self) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t.identity_events).order_by(t.identity_events.c.identity_event_id))]

    # -- helpers ---------------------------------------------------------------

    def _lock_accounts(self, conn: Connection, accounts: Iterable[Account]) -> None:
        """Take the locks the identity trigger takes, in its order: the log (shared with finalize), then each account."""
        conn.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": IDENTITY_LOG_LOCK})
        for provider, external_id in sorted(set(accounts)):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{provider}:{external_id}"})

    def _holders(self, conn: Connection, accounts: Sequence[Account]) -> dict[Account, str]:
        """Who each of ``accounts`` is bound to now (unbound accounts are absent)."""
        if not accounts:
            return {}
        b = t.user_bindings.c
        query = sa.select(b.provider, b.external_id, b.user_id).where(sa.tuple_(b.provider, b.external_id).in_(list(accounts)))
        return {(r.provider, r.external_id): r.user_id for r in conn.execute(query)}

    def _append(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert identity events in one statement; a refusal by the database leaves nothing written."""
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(t.identity_events).values(list(rows)))
        except sa.exc.DBAPIError as exc:
            refusal = _refusal(exc, rows)
            if refusal is None:
                raise
            raise refusal from None


def _refusal(exc: sa.exc.DBAPIError, rows: Sequence[Mapping[str, Any]]) -> LedgerError | None:
    """The database's refusal of identity events as the error the methods raise themselves (None: not a refusal)."""
    diag = getattr(exc.orig, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc.orig)).strip()
    constraint = getattr(diag, "constraint_name", None)
    if constraint in _GRAMMAR:
        column = _GRAMMAR[constraint]
        bad = sorted({repr(r.get(column)) for r in rows if r.get(column) is not None})
        return LedgerError(f"{', '.join(bad)} is not a person id ({PERSON_ID_RULE})")
    if getattr(exc.orig, "pgcode", None) == "23000":  # the identity trigger: integrity_constraint_violation
        if "already bound to" in message and "revoke that binding first" in message:
            return IdentityConflict(message)
        return LedgerError(message)
    return None
