"""The protocol every source adapter follows, and the errors it raises.

An adapter turns one source's API into pages of normalized ``ActivityEvent``s.
Each page carries the cursor position the stream reaches once that page is
stored; the caller writes both in one transaction, so a crash never moves a
cursor past an event that was not committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from credit_pipeline.core.events import ActivityEvent
from credit_pipeline.core.storable import QuarantinedItem

log = logging.getLogger("credit_pipeline.sources")

Window = tuple[datetime, datetime]


@dataclass(frozen=True, order=True)
class StreamRef:
    """One cursor's identity: ``(source, stream, source_ref)``, e.g. github/pull_requests/acme/widgets."""

    source: str
    stream: str
    ref: str

    def __str__(self) -> str:
        return f"{self.source}:{self.stream}:{self.ref}"


@dataclass(frozen=True)
class Page:
    stream: StreamRef
    events: list[ActivityEvent]
    cursor: dict[str, Any]
    last: bool = False
    quarantined: tuple[QuarantinedItem, ...] = ()


@dataclass(frozen=True)
class Probe:
    stream: StreamRef
    has_new: bool
    head: str | None  # the newest position the source reports (used as a run key)
    reason: str = ""


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str


@dataclass
class Telemetry:
    """What a collection cost: API requests made and rate-limit waits."""

    requests: int = 0
    waits: list[Wait] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    by_stream: dict[str, int] = field(default_factory=dict)
    current: str = "(setup)"

    def count_request(self) -> None:
        self.requests += 1
        self.by_stream[self.current] = self.by_stream.get(self.current, 0) + 1

    def wait(self, seconds: float, reason: str) -> None:
        if seconds > 0:
            log.warning("waiting %.1f s (%s)", seconds, reason)
            self.waits.append(Wait(round(seconds, 3), reason))

    def sleep(self, seconds: float, reason: str) -> None:
        self.wait(seconds, reason)
        if seconds > 0:
            time.sleep(seconds)

    @property
    def waited_seconds(self) -> float:
        return round(sum(w.seconds for w in self.waits), 3)


class SourceError(RuntimeError):
    """A collection that cannot go on; the message says what to do."""


class SourceAuthError(SourceError):
    """The token is missing, wrong, or lacks a scope or permission."""


class RateLimitTooLong(SourceError):
    """The source asks for a wait longer than the configured maximum."""

    def __init__(self, message: str, retry_at: datetime):
        super().__init__(message)
        self.retry_at = retry_at


class MalformedItem(SourceError):
    """An item the source returned that cannot be read; names the item and the field.

    Raised for one item, the adapter quarantines it (``QuarantinedItem``) and goes on; raised for a
    whole response (not a list, no page info), the collection stops with this message."""


# What parsing one item may raise when the item is not what the API documents.
UNREADABLE = (MalformedItem, KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError)


class Source(Protocol):
    name: str
    telemetry: Telemetry
    incomplete_totals: set[StreamRef] | frozenset[StreamRef]

    def streams(self) -> list[StreamRef]: ...

    def collect(self, window: Window, cursors: Mapping[StreamRef, dict[str, Any] | None], *, full: bool) -> Iterator[Page]:
        """Pages of events for ``window``; ``full`` ignores cursors and proves the whole window."""
        ...

    def probe(self, cursors: Mapping[StreamRef, dict[str, Any] | None]) -> list[Probe]:
        """Cheaply: is there anything past each stream's cursor?"""
        ...

    def totals(self, window: Window) -> dict[StreamRef, int | None]:
        """The source's own count of facts in ``window`` per stream (None: not countable).

        Streams whose count the source itself called partial are left in ``incomplete_totals``."""
        ...
