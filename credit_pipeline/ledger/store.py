"""The ledger store: one object whose public methods are each one transaction.

``LedgerStore.atomic()`` groups several of them into one (an admin write and the
re-derivation it needs commit together or not at all).

Writes are batched (multi-row ``INSERT ... ON CONFLICT``), never row by row. The
database enforces the invariants (append-only, freeze, unique keys); the methods
check again first so a user sees a message that names the thing to fix. The
methods live in one module per concern; ``LedgerStore`` puts them together.
"""

from __future__ import annotations

from credit_pipeline.ledger.curation import CurationStore
from credit_pipeline.ledger.engine import get_engine
from credit_pipeline.ledger.epoch_rows import EpochStore
from credit_pipeline.ledger.facts import FactsStore
from credit_pipeline.ledger.identity import IdentityStore
from credit_pipeline.ledger.identity_log import IdentityLogStore
from credit_pipeline.ledger.migrations import ensure_current
from credit_pipeline.ledger.pass_marks import PassMarkStore
from credit_pipeline.ledger.payout_rows import PayoutStore
from credit_pipeline.ledger.records import (  # noqa: F401  (re-exported: callers import them from here)
    CurationProposal,
    CursorAdvance,
    EpochRecord,
    EpochStateError,
    IdentityConflict,
    LedgerError,
    PageWrite,
)


class LedgerStore(FactsStore, EpochStore, CurationStore, PayoutStore, IdentityStore, IdentityLogStore, PassMarkStore):
    """Transactions over the ledger tables."""

    @classmethod
    def open(cls, url: str | None = None, migrate: bool = True) -> LedgerStore:
        """Connect (embedded server by default) and bring the schema up to date."""
        engine = get_engine(url)
        if migrate:
            ensure_current(engine)
        return cls(engine)
