"""Reading fields out of raw API items, failing with the item and the field named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from credit_pipeline.sources.base import MalformedItem


def field(item: Any, name: str, what: str) -> Any:
    if not isinstance(item, dict) or name not in item:
        raise MalformedItem(f"{what}: field {name!r} is missing from the API response")
    return item[name]


def timestamp(item: dict[str, Any], name: str, what: str, optional: bool = False) -> datetime | None:
    value = item.get(name) if optional else field(item, name, what)
    if value is None:
        if optional:
            return None
        raise MalformedItem(f"{what}: field {name!r} is null")
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedItem(f"{what}: field {name!r} is not an ISO 8601 timestamp ({value!r})") from None
    if parsed.tzinfo is None:
        raise MalformedItem(f"{what}: field {name!r} has no time zone ({value!r})")
    return parsed.astimezone(UTC)


def integer(item: dict[str, Any], name: str, what: str) -> int:
    value = field(item, name, what)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise MalformedItem(f"{what}: field {name!r} is not a whole number ({value!r})")
    return int(value)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
