"""Identity bindings and their append-only log (bind, revoke, merge)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from credit_pipeline.ledger import tables as t
from credit_pipeline.ledger.records import IdentityConflict, LedgerError
from credit_pipeline.ledger.store_base import StoreBase


class IdentityStore(StoreBase):
    """Identity bindings and their append-only log (bind, revoke, merge)."""

    def bind(self, provider: str, external_id: str, user_id: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> bool:
        """Bind an account to a person; True when new. Refuses an account another person holds."""
        b = t.user_bindings.c
        with self.transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{provider}:{external_id}"})
            current = conn.execute(sa.select(b.user_id).where(b.provider == provider, b.external_id == external_id)).scalar()
            if current == user_id:
                return False
            if current is not None:
                raise IdentityConflict(f"{provider} account {external_id} is already bound to {current}; "
                                       f"revoke that binding first (credit-pipeline identity revoke {provider} {external_id})")
            event_id = conn.execute(sa.insert(t.identity_events).values(
                action="bind", provider=provider, external_id=external_id, user_id=user_id, evidence=evidence or {}, actor=actor
            ).returning(t.identity_events.c.identity_event_id)).scalar()
            conn.execute(sa.insert(t.user_bindings).values(provider=provider, external_id=external_id, user_id=user_id, identity_event_id=event_id))
            return True

    def revoke(self, provider: str, external_id: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> str:
        """Remove an account's binding (logged); returns the person it was bound to."""
        b = t.user_bindings.c
        with self.transaction() as conn:
            current = conn.execute(sa.select(b.user_id).where(b.provider == provider, b.external_id == external_id).with_for_update()).scalar()
            if current is None:
                raise LedgerError(f"{provider} account {external_id} is not bound to anyone")
            conn.execute(sa.insert(t.identity_events).values(
                action="revoke", provider=provider, external_id=external_id, user_id=current, evidence=evidence or {}, actor=actor))
            conn.execute(sa.delete(t.user_bindings).where(b.provider == provider, b.external_id == external_id))
            return current

    def merge_users(self, from_user: str, into_user: str, *, actor: str | None = None, evidence: dict[str, Any] | None = None) -> int:
        """Move every account of ``from_user`` to ``into_user`` (one logged merge per account)."""
        if from_user == into_user:
            raise LedgerError("a person cannot be merged into themselves")
        b = t.user_bindings.c
        with self.transaction() as conn:
            accounts = conn.execute(sa.select(b.provider, b.external_id).where(b.user_id == from_user).with_for_update()).all()
            if not accounts:
                raise LedgerError(f"{from_user} has no bound accounts; nothing to merge")
            for provider, external_id in accounts:
                event_id = conn.execute(sa.insert(t.identity_events).values(
                    action="merge", provider=provider, external_id=external_id, user_id=into_user, previous_user_id=from_user,
                    evidence=evidence or {}, actor=actor).returning(t.identity_events.c.identity_event_id)).scalar()
                conn.execute(sa.update(t.user_bindings).where(b.provider == provider, b.external_id == external_id)
                             .values(user_id=into_user, identity_event_id=event_id, bound_at=sa.func.now()))
            return len(accounts)

    def bindings(self) -> dict[tuple[str, str], str]:
        """The current account → person index."""
        b = t.user_bindings.c
        with self.engine.connect() as conn:
            return {(r.provider, r.external_id): r.user_id for r in conn.execute(sa.select(b.provider, b.external_id, b.user_id))}

    def identity_log(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t.identity_events).order_by(t.identity_events.c.identity_event_id))]
