"""What the ledger store returns and raises: plain records and errors with messages for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from credit_pipeline.core.events import ActivityEvent


class LedgerError(RuntimeError):
    """A write the ledger refuses, with a message that says what to do."""


class IdentityConflict(LedgerError):
    """The account is already bound to another person."""


class EpochStateError(LedgerError):
    """The epoch is not in the status the operation needs."""


@dataclass(frozen=True)
class CursorAdvance:
    """Where a stream's collection reached, written with the page it covers."""

    source: str
    stream: str
    source_ref: str
    position: dict[str, Any]


@dataclass(frozen=True)
class PageWrite:
    new_ids: list[str]
    seen: int

    @property
    def new(self) -> int:
        return len(self.new_ids)


@dataclass(frozen=True)
class EpochRecord:
    key: str
    start: datetime
    end: datetime
    status: str
    policy: dict[str, Any] | None
    policy_hash: str | None
    approvers: list[str] | None
    completeness: dict[str, Any] | None
    completeness_waiver: dict[str, Any] | None
    final_collection_at: datetime | None
    review_at: datetime | None
    finalized_at: datetime | None
    policy_text: str | None = None  # the exact canonical JSON that policy_hash covers


@dataclass(frozen=True)
class CurationProposal:
    """The resolution-owned fields of a curation row (admin fields are never set here)."""

    event_id: str
    recipient_id: str | None
    resolution: str


def epoch_from_row(row: sa.Row) -> EpochRecord:
    return EpochRecord(
        key=row.epoch_key.isoformat(), start=row.window_start, end=row.window_end, status=row.status,
        policy=row.policy, policy_hash=row.policy_hash, approvers=row.approvers, completeness=row.completeness,
        completeness_waiver=row.completeness_waiver, final_collection_at=row.final_collection_at,
        review_at=row.review_at, finalized_at=row.finalized_at, policy_text=row.policy_text,
    )


def event_row(event: ActivityEvent) -> dict[str, Any]:
    return event.model_dump()
