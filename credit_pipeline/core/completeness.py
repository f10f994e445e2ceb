"""What a stream's completeness result means for review (SPEC §4): one rule, used everywhere."""

from __future__ import annotations

from typing import Any


def is_short(result: Any) -> bool:
    """True when a stream's completeness result blocks review until collected again or waived: the stored
    count is below the source's total, or the source said its own total is partial (GitHub search's
    ``incomplete_results``), or items are quarantined (unreadable, so not credited)."""
    return isinstance(result, dict) and bool(result.get("shortfall") or result.get("incomplete") or result.get("quarantined"))


def short_streams(completeness: dict[str, Any] | None) -> list[str]:
    return sorted(k for k, v in (completeness or {}).items() if is_short(v))
