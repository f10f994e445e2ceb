"""Who gets credit for an event, and the ``weight-sum-v1`` allocation (SPEC §5, §6).

An event's recipient is the person bound to its account, else a *claimant*
``provider:external_id`` that holds the credit until someone binds the account.
Bots, policy-excluded accounts and deleted accounts are recorded but credit no one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from credit_pipeline.core.policy import Policy

ALGORITHM_VERSION = "weight-sum-v1"

# How an event's recipient was decided; stored on its curation row.
BOUND, CLAIMANT, BOT, EXCLUDED, UNATTRIBUTABLE, UNRESOLVED_EXCLUDED = (
    "bound", "claimant", "bot", "excluded", "unattributable", "unresolved_excluded",
)
RESOLUTIONS = (BOUND, CLAIMANT, BOT, EXCLUDED, UNATTRIBUTABLE, UNRESOLVED_EXCLUDED)


@dataclass(frozen=True, slots=True)
class Resolution:
    recipient_id: str | None
    resolution: str


def resolve_recipient(
    *,
    source: str,
    platform_user_id: str | None,
    login: str | None,
    is_bot: bool,
    bindings: Mapping[tuple[str, str], str],
    policy: Policy,
) -> Resolution:
    """Decide who an event credits, from the account, the bindings and the policy."""
    if platform_user_id is None:
        return Resolution(None, UNATTRIBUTABLE)
    if is_bot or (login or "").endswith("[bot]"):
        return Resolution(None, BOT)
    if policy.is_excluded_account(source, platform_user_id, login):
        return Resolution(None, EXCLUDED)
    user_id = bindings.get((source, platform_user_id))
    if user_id is not None:
        return Resolution(user_id, BOUND)
    if policy.unresolved == "exclude":
        return Resolution(None, UNRESOLVED_EXCLUDED)
    return Resolution(f"{source}:{platform_user_id}", CLAIMANT)


@dataclass(frozen=True, slots=True)
class CuratedEvent:
    """An event as the allocation sees it: type, recipient and the admin's curation."""

    event_id: str
    source: str
    event_type: str
    recipient_id: str | None
    included: bool = True
    weight_override: int | None = None


@dataclass(frozen=True, slots=True)
class ProposedAllocation:
    recipient_id: str
    proposed_units: int
    activity_count: int


def event_weight(event: CuratedEvent, weights: Mapping[str, int]) -> int:
    """Override if set, else the policy weight for ``source:event_type``, else 0."""
    if event.weight_override is not None:
        if event.weight_override < 0:
            raise ValueError(f"weight override of {event.event_id} is negative ({event.weight_override})")
        return event.weight_override
    return weights.get(f"{event.source}:{event.event_type}", 0)


def counts(event: CuratedEvent) -> bool:
    """An event counts when it is included and credits someone."""
    return event.included and event.recipient_id is not None


def propose_allocations(events: Iterable[CuratedEvent], weights: Mapping[str, int]) -> list[ProposedAllocation]:
    """Sum counted events' weights per recipient; sorted by recipient id."""
    units: dict[str, int] = {}
    activity: dict[str, int] = {}
    for event in events:
        if not counts(event):
            continue
        rid = event.recipient_id
        assert rid is not None
        units[rid] = units.get(rid, 0) + event_weight(event, weights)
        activity[rid] = activity.get(rid, 0) + 1
    return [ProposedAllocation(r, units[r], activity[r]) for r in sorted(units)]
