"""Discord through discord.py's REST client: one ``message_sent`` per message (SPEC §3, §4).

REST only, no gateway. Each allow-listed channel is paged forward from its cursor,
100 messages a request (``after=<newest id so far>``; Discord answers newest-first
and the page is reversed), and stops at the first message at or after the window's
end. discord.py waits out 429s (with ``Via`` and ``retry_after``) and retries some
5xx; this module logs those waits and retries what it lacks (a dropped connection,
503) with tenacity. Snowflakes are compared as integers, never as strings.

Cursor (per channel): ``{"last_id": "<snowflake>"}``, the newest message stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import discord
import discord.http
from discord.utils import time_snowflake
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from credit_pipeline.core.events import ActivityEvent, discord_message_event_id
from credit_pipeline.core.storable import QuarantinedItem, bounded
from credit_pipeline.sources.base import (
    MalformedItem,
    Page,
    Probe,
    RateLimitTooLong,
    SourceAuthError,
    SourceError,
    StreamRef,
    UNREADABLE,
    Telemetry,
    Window,
)
from credit_pipeline.sources.fields import field, iso
from credit_pipeline.sources.parsing import DerivedColumns, discord_message_columns, discord_message_id

PRODUCER = "credit_pipeline.sources.discord"
PRODUCER_VERSION = "1"
DEFAULT_API_URL = "https://discord.com/api/v10"
PAGE = 100
CONVERSATION_TYPES = (0, 19)  # Discord DEFAULT and REPLY: the messages that carry text someone typed
# A body cut short (a proxy that lost the tail) reaches us as a JSONDecodeError from discord.py's reader.
TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, discord.DiscordServerError, json.JSONDecodeError,
             UnicodeDecodeError)


def _lenient_json(text: str) -> Any:
    """discord.py's JSON reader (orjson when installed) refuses ``NaN`` and lone surrogates, failing the whole
    page on every run; the standard library's reader accepts them and ``core.storable`` then stores the item
    losslessly. Text that is not JSON at all (a truncated body) still raises."""
    try:
        return _strict_from_json(text)
    except ValueError:
        return json.loads(text)


# discord.http.json_or_text reads discord.utils._from_json for every response. Kept idempotent under reloads.
_strict_from_json = getattr(discord.utils._from_json, "strict", discord.utils._from_json)
_lenient_json.strict = _strict_from_json  # type: ignore[attr-defined]
discord.utils._from_json = _lenient_json


class _WaitRecorder(logging.Handler):
    """discord.py reports its rate-limit sleeps only as log warnings; count them."""

    def __init__(self, telemetry: Telemetry):
        super().__init__(logging.WARNING)
        self.telemetry = telemetry

    def emit(self, record: logging.LogRecord) -> None:
        if "Retrying in" in str(record.msg) and record.args:
            seconds = float(record.args[-1])  # type: ignore[index]
            reason = "Discord global rate limit (429)" if "Global" in str(record.msg) else "Discord 429 rate limit"
            self.telemetry.wait(seconds, reason)


class DiscordSource:
    """Collects a guild's allow-listed channels from a Discord API (real or sandbox)."""

    name = "discord"

    def __init__(self, token: str | None, guild_id: str, channels: list[str], *, api_url: str | None = None,
                 max_wait: float = 900.0, attempts: int = 5):
        if not token:
            raise SourceAuthError("DISCORD_BOT_TOKEN is not set: create a bot in the Discord developer portal, invite it to the "
                                  "guild with View Channel and Read Message History, and export its token")
        self.token = token
        self.guild_id = str(guild_id)
        self.channels = [str(c) for c in channels]
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.max_wait = max_wait
        self.attempts = attempts
        self.telemetry = Telemetry()

    def streams(self) -> list[StreamRef]:
        return [StreamRef("discord", "messages", c) for c in self.channels]

    # -- protocol --------------------------------------------------------------

    def collect(self, window: Window, cursors: Mapping[StreamRef, dict[str, Any] | None], *, full: bool) -> Iterator[Page]:
        first_id = time_snowflake(window[0]) - 1  # discord's "after" is exclusive: include a message exactly at start
        end_id = time_snowflake(window[1])  # the lowest snowflake at the end instant: ids below it are in the window
        with _Session(self) as session:
            session.check_channels()
            for ref in self.streams():
                self.telemetry.current = str(ref)
                stored = int((cursors.get(ref) or {}).get("last_id") or 0)
                after = first_id if full else max(first_id, stored)
                seen_content, read_messages = False, 0
                while True:
                    raw = session.messages(ref.ref, after=after)
                    parsed, quarantined = [], []
                    for m in raw:
                        try:
                            parsed.append(self._parse(ref, m))
                        except UNREADABLE as exc:  # set aside with the reason; the channel moves on
                            quarantined.append(QuarantinedItem.of(m, str(exc) if isinstance(exc, MalformedItem) else f"{type(exc).__name__}: {exc}",
                                                                  self._key(ref, m)))
                    messages = sorted(parsed, key=lambda item: item[0])
                    inside = [(mid, columns, m) for mid, columns, m in messages if mid < end_id]
                    events = [self._event(columns, m) for _, columns, m in inside]
                    # System messages (joins, pins, boosts) have empty content whatever the intent: judge by conversation.
                    said = [m for _, _, m in inside if m.get("type", 0) in CONVERSATION_TYPES]
                    seen_content = seen_content or any(m.get("content") for m in said)
                    read_messages += len(said)
                    if inside:
                        after = inside[-1][0]
                    last = len(raw) < PAGE or len(inside) < len(messages)
                    position = max(stored, after if inside else stored)
                    yield Page(ref, events, {"last_id": str(position)} if position else {}, last=last, quarantined=tuple(quarantined))
                    if last:
                        break
                if read_messages and not seen_content:  # judged only on what this pass read (a quiet channel says nothing)
                    self.telemetry.notes.append(
                        f"channel {ref.ref}: every message came back with empty content: the bot's privileged Message "
                        "Content intent is probably off (counting still works; enable it in the developer portal to keep text)")

    def probe(self, cursors: Mapping[StreamRef, dict[str, Any] | None]) -> list[Probe]:
        probes = []
        with _Session(self) as session:
            for ref in self.streams():
                self.telemetry.current = str(ref)
                last = int((cursors.get(ref) or {}).get("last_id") or 0)
                if last:
                    newer = session.messages(ref.ref, after=last, limit=1)
                    head = str(int(field(newer[0], "id", f"{ref}: a message"))) if newer else str(last)
                else:
                    newest = session.messages(ref.ref, limit=1)
                    head = str(int(field(newest[0], "id", f"{ref}: a message"))) if newest else None
                    newer = newest
                probes.append(Probe(ref, bool(newer), head, f"new message {head}" if newer else f"nothing after {last or 'the start'}"))
        return probes

    incomplete_totals: frozenset[StreamRef] = frozenset()  # no totals at all, so none partial

    def totals(self, window: Window) -> dict[StreamRef, int | None]:
        return {ref: None for ref in self.streams()}  # Discord has no count endpoint; the cursor chain proves completeness

    # -- items -------------------------------------------------------------------

    def _parse(self, ref: StreamRef, message: Any) -> tuple[int, DerivedColumns, dict[str, Any]]:
        """One message, read and checked; what cannot be read raises (and the caller quarantines it)."""
        message = bounded(message)
        columns = discord_message_columns(self.guild_id, ref.ref, message)
        return discord_message_id(ref.ref, message), columns, message

    def _key(self, ref: StreamRef, message: Any) -> str | None:
        """The event id an unreadable message would have had, when its id is a snowflake."""
        try:
            return discord_message_event_id(self.guild_id, ref.ref, discord_message_id(ref.ref, message))
        except UNREADABLE:
            return None

    def _event(self, columns: DerivedColumns, message: dict[str, Any]) -> ActivityEvent:
        return columns.event(message, producer=PRODUCER, producer_version=PRODUCER_VERSION, retrieved_at=datetime.now(UTC))


class _Session:
    """One logged-in discord.py HTTP client on a private event loop, driven synchronously."""

    def __init__(self, source: DiscordSource):
        self.source = source
        self.loop = asyncio.new_event_loop()
        self.recorder = _WaitRecorder(source.telemetry)
        self.http: discord.http.HTTPClient | None = None

    def __enter__(self) -> _Session:
        discord.http.Route.BASE = self.source.api_url  # read whenever a route is built
        logging.getLogger("discord.http").addHandler(self.recorder)
        try:
            self.http = discord.http.HTTPClient(self.loop, max_ratelimit_timeout=self.source.max_wait)
            self._run(lambda: self.http.static_login(self.source.token), "log in (GET /users/@me)")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("discord.http").removeHandler(self.recorder)
        if self.http is not None:
            self.loop.run_until_complete(self.http.close())
        self.loop.close()

    def check_channels(self) -> None:
        """One request: every allow-listed channel must be a channel of the guild."""
        listed = self._run(lambda: self.http.get_all_guild_channels(self.source.guild_id), f"list channels of guild {self.source.guild_id}")
        known = {str(c.get("id")) for c in listed}
        missing = [c for c in self.source.channels if c not in known]
        if missing:
            raise SourceError(f"channel(s) {', '.join(missing)} in the policy's allow-list are not channels of guild "
                              f"{self.source.guild_id} (or the bot cannot see them): fix sources.discord.channels")

    def messages(self, channel_id: str, *, after: int | None = None, limit: int = PAGE) -> list[dict[str, Any]]:
        data = self._run(lambda: self.http.logs_from(channel_id, limit, after=after), f"read messages of channel {channel_id}")
        if not isinstance(data, list):
            raise MalformedItem(f"discord:messages:{channel_id}: expected a list of messages, got {type(data).__name__}")
        return data

    def _run(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Run one API call to completion; ``call`` builds a fresh request for each attempt."""
        return self.loop.run_until_complete(self._retrying(call, what))

    async def _retrying(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        telemetry = self.source.telemetry
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(self.source.attempts), wait=wait_exponential(multiplier=1, max=8),
                                               retry=retry_if_exception_type(TRANSIENT), reraise=True,
                                               before_sleep=lambda s: telemetry.wait(s.next_action.sleep, f"Discord {type(s.outcome.exception()).__name__}: retrying")):
                with attempt:
                    telemetry.count_request()
                    return await call()
        except discord.LoginFailure:
            raise SourceAuthError("Discord rejected DISCORD_BOT_TOKEN (401 Unauthorized): set it to the bot's token from the developer portal") from None
        except discord.Forbidden as exc:
            raise SourceAuthError(f"DISCORD_BOT_TOKEN may not {what} (403: {exc.text}): give the bot View Channel and "
                                  "Read Message History on it") from None
        except discord.NotFound:
            raise SourceError(f"Discord says the target of '{what}' does not exist (404): check the policy's guild_id and channels") from None
        except discord.RateLimited as exc:
            retry_at = datetime.now(UTC) + timedelta(seconds=exc.retry_after)
            raise RateLimitTooLong(f"Discord asks us to wait {exc.retry_after:.0f} s to {what}, more than the configured maximum; "
                                   f"retry after {iso(retry_at)} (every full page so far is committed)", retry_at) from None
        except discord.HTTPException as exc:
            if exc.status == 401:
                raise SourceAuthError(f"Discord rejected DISCORD_BOT_TOKEN (401) while trying to {what}") from None
            raise SourceError(f"Discord answered {exc.status} when trying to {what}: {exc.text}") from None
        except TRANSIENT as exc:
            raise SourceError(f"Discord kept failing to {what} after {self.source.attempts} attempts ({type(exc).__name__}: {exc}); "
                              "run the collection again later (every full page so far is committed)") from None

