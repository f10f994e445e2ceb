"""Epochs: UTC weeks, Monday 00:00 inclusive to the next Monday 00:00 exclusive (SPEC §2).

Every window in the project is half-open, ``[start, end)``: an instant exactly at
``end`` belongs to the next epoch, so no event can fall into two epochs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

EPOCH_LENGTH = timedelta(days=7)
STATUSES = ("open", "review", "finalized")
# The one spelling of a key, used with fullmatch. Explicit ASCII ranges: ``\d`` (and
# ``str.isdigit``) would also take full-width digits such as "２０２６".
EPOCH_KEY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class EpochKeyError(ValueError):
    """An epoch key that is not a Monday written as ``YYYY-MM-DD``."""


def _as_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp {ts.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return ts.astimezone(UTC)


def epoch_window(ts: datetime) -> tuple[datetime, datetime]:
    """The half-open window ``[start, end)`` of the epoch containing ``ts``."""
    ts = _as_utc(ts)
    monday = ts.date() - timedelta(days=ts.weekday())
    start = datetime.combine(monday, time(0), tzinfo=UTC)
    return start, start + EPOCH_LENGTH


def epoch_key(ts: datetime) -> str:
    """The key (start date, ``YYYY-MM-DD``) of the epoch containing ``ts``."""
    return epoch_window(ts)[0].date().isoformat()


def _loose_date(text: str) -> date:
    # 2026-2-16 or full-width digits (int() reads any Unicode decimal digit).
    parts = text.split("-")
    if len(parts) != 3:
        raise ValueError(text)
    return date(*(int(p) for p in parts))


def _meant(key: str) -> str:
    """`` (did you mean YYYY-MM-DD?)`` naming the Monday ``key`` reads as, or "" when it reads as no date."""
    text = key.strip()
    # Lenient on purpose, only to suggest the strict spelling: ISO week and basic forms, timestamps, ...
    for read in (date.fromisoformat, lambda t: datetime.fromisoformat(t).date(), _loose_date):
        try:
            day = read(text)
        except (ValueError, OverflowError):
            continue
        return f" (did you mean {(day - timedelta(days=day.weekday())).isoformat()}?)"
    return ""


def parse_epoch_key(key: str) -> date:
    """Parse and check an epoch key: a Monday written exactly ``YYYY-MM-DD``.

    Only that spelling is a key: it names the Dagster partition and is signed in the
    approval message, so ``2026-W08-1`` or ``20260216`` (which Python 3.11's
    ``date.fromisoformat`` accepts) would be a second name for the same epoch.
    """
    if not isinstance(key, str) or not EPOCH_KEY.fullmatch(key):
        hint = _meant(key) if isinstance(key, str) and len(key) <= 64 else ""
        shown = repr(key[:40]) + "…" if isinstance(key, str) and len(key) > 40 else repr(key)  # never echo a huge value
        raise EpochKeyError(f"epoch key {shown} is not a date written YYYY-MM-DD (for example 2026-02-16){hint}")
    try:
        day = date.fromisoformat(key)
    except ValueError:
        raise EpochKeyError(f"epoch key {key!r} is not a calendar date; write a Monday as YYYY-MM-DD (for example 2026-02-16)") from None
    if day.weekday() != 0:
        monday = day - timedelta(days=day.weekday())
        raise EpochKeyError(f"epoch key {key!r} is a {day.strftime('%A')}; epochs start on Mondays (did you mean {monday.isoformat()}?)")
    return day


def window_for_key(key: str) -> tuple[datetime, datetime]:
    """The half-open window of the epoch named ``key``."""
    start = datetime.combine(parse_epoch_key(key), time(0), tzinfo=UTC)
    return start, start + EPOCH_LENGTH


def in_window(ts: datetime, window: tuple[datetime, datetime]) -> bool:
    """True when ``start <= ts < end``."""
    start, end = window
    return start <= _as_utc(ts) < end


def epoch_keys(anchor: date, until: datetime) -> Iterator[str]:
    """Keys of every epoch from ``anchor`` (a Monday) up to the one containing ``until``."""
    if anchor.weekday() != 0:
        raise EpochKeyError(f"epoch anchor {anchor.isoformat()} is not a Monday")
    last = epoch_window(until)[0].date()
    day = anchor
    while day <= last:
        yield day.isoformat()
        day += EPOCH_LENGTH


def status_can_move(current: str, new: str) -> bool:
    """Status moves forward only: open → review → finalized (staying put is allowed)."""
    return STATUSES.index(new) >= STATUSES.index(current)
