"""Identifier formats the real platforms use, so generated ids look and sort like real ones.

Discord snowflakes are 64-bit: ``(ms since 2015-01-01) << 22 | worker << 17 | process << 12 | increment``.
For 2026 timestamps they are far above 2**53, which is why callers must keep them as Python ints
(never floats) and why Discord sends them as JSON strings.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

DISCORD_EPOCH_MS = 1420070400000
"""Milliseconds since the Unix epoch of 2015-01-01T00:00:00Z, Discord's snowflake epoch."""

UTC = timezone.utc


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the Unix epoch (exact integer arithmetic, no float rounding)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    """UTC datetime for a millisecond Unix timestamp."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def make_snowflake(ms: int, worker: int = 1, process: int = 0, increment: int = 0) -> int:
    """A real Discord snowflake for a Unix-millisecond timestamp."""
    if ms < DISCORD_EPOCH_MS:
        raise ValueError(f"{ms} ms is before the Discord epoch")
    return ((ms - DISCORD_EPOCH_MS) << 22) | ((worker & 0x1F) << 17) | ((process & 0x1F) << 12) | (increment & 0xFFF)


def snowflake_ms(snowflake: int) -> int:
    """Unix milliseconds encoded in a snowflake."""
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


def snowflake_time(snowflake: int) -> datetime:
    """UTC creation time of a snowflake (what discord.py's ``Message.created_at`` returns)."""
    return from_ms(snowflake_ms(snowflake))


def time_snowflake(moment: datetime, high: bool = False) -> int:
    """Same as ``discord.utils.time_snowflake``: the lowest (or highest) snowflake at an instant."""
    return ((to_ms(moment) - DISCORD_EPOCH_MS) << 22) + (2**22 - 1 if high else 0)


def discord_timestamp(snowflake: int) -> str:
    """The ``timestamp`` string Discord sends for a message (ISO 8601, ``+00:00``)."""
    return snowflake_time(snowflake).isoformat()


def github_node_id(type_name: str, database_id: int) -> str:
    """GitHub's legacy global node id, e.g. ``MDQ6VXNlcjE=`` = base64("04:User1")."""
    raw = f"0{len(type_name)}:{type_name}{database_id}"
    return base64.b64encode(raw.encode()).decode()


def github_time(moment: datetime | None) -> str | None:
    """GitHub REST/GraphQL timestamp format: whole seconds, ``Z`` suffix."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` or offset); naive values are taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
