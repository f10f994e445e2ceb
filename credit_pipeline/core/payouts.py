"""Split an integer pool over units with largest-remainder rounding (SPEC §8).

Integers only: no floats touch money. ``sum(amount_credits) == pool`` exactly, and
the output does not depend on the order of the input rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

SHARE_SCALE = 10**6


@dataclass(frozen=True, slots=True)
class PayoutLine:
    """One recipient's payout. Also readable as a mapping (``line["amount_credits"]``)."""

    recipient_id: str
    total_units: int
    share: str
    amount_credits: int

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer (got {value!r})")
    return value


def sum_units(rows: Iterable[tuple[str, int]] | Mapping[str, int]) -> dict[str, int]:
    """Sum several rows per recipient; refuse negative or non-integer units."""
    pairs = rows.items() if isinstance(rows, Mapping) else rows
    totals: dict[str, int] = {}
    for recipient_id, units in pairs:
        if not isinstance(recipient_id, str) or not recipient_id:
            raise ValueError(f"recipient id must be a non-empty string (got {recipient_id!r})")
        if _whole(units, f"units of {recipient_id}") < 0:
            raise ValueError(f"units of {recipient_id} are negative ({units}); units must be >= 0")
        totals[recipient_id] = totals.get(recipient_id, 0) + units
    return totals


def format_share(units: int, total: int) -> str:
    """``units/total`` truncated to six decimals, e.g. ``"0.333333"``."""
    scaled = units * SHARE_SCALE // total
    return f"{scaled // SHARE_SCALE}.{scaled % SHARE_SCALE:06d}"


def compute_payouts(rows: Iterable[tuple[str, int]] | Mapping[str, int], pool_total: int) -> list[PayoutLine]:
    """Largest-remainder split of ``pool_total`` credits over ``(recipient_id, units)`` rows.

    Empty input, a pool <= 0 or zero total units give no lines; negative units are an
    error. Residual credits go one each to the largest remainders, ties to the lower
    recipient id (code-point order). Lines come sorted by recipient id.
    """
    totals = sum_units(rows)
    pool = _whole(pool_total, "pool total")
    total_units = sum(totals.values())
    if not totals or pool <= 0 or total_units == 0:
        return []
    floors: dict[str, int] = {}
    remainders: dict[str, int] = {}
    for recipient_id, units in totals.items():
        floors[recipient_id], remainders[recipient_id] = divmod(units * pool, total_units)
    residual = pool - sum(floors.values())
    for recipient_id in sorted(totals, key=lambda r: (-remainders[r], r))[:residual]:
        floors[recipient_id] += 1
    return [
        PayoutLine(
            recipient_id=recipient_id,
            total_units=totals[recipient_id],
            share=format_share(totals[recipient_id], total_units),
            amount_credits=floors[recipient_id],
        )
        for recipient_id in sorted(totals)
    ]
