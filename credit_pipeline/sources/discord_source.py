"""Discord through discord.py's REST client: one ``message_sent`` per message (SPEC §3, §4).

REST only, no gateway. Each allow-listed channel is paged forward from its cursor,
100 messages a request (``after=<newest id so far>``; Discord answers newest-first
and the page is reversed), and stops at the first message at or after the window's
end. discord.py waits out 429s (with ``Via`` and ``retry_after``) and retries some
5xx; this module logs those waits and retries what it lacks (a dropped connection,
503) with tenacity. Snowflakes are compared as integers, never as strings.

Cursor (per channel): ``{"last_id": "<snowflake>"}``, the newest message stored.

Threads (``sources.discord.threads``, on by default): the messages of every thread whose parent is an
allow-listed channel (text, announcement or forum) are collected too, each thread a stream of its own
with its own cursor (``discord:messages:<thread id>``, as Discord's ``channel_id`` of its messages is the
thread's). A pass finds them with one request for the guild's active threads and, per allow-listed
channel, the pages of its archived public threads, newest archive first, until they were archived before
the window began. A thread message's stored payload carries ``in_thread`` (the thread's id, parent and
type), which the message itself does not say; the allow-list is applied on the parent. A forum channel
has no messages of its own (Discord answers 50024), only its posts, which are threads. A thread the bot
may not read (a private one it is not in: 403) is reported in the pass's notes and ``thread_report``.
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
from credit_pipeline.sources.parsing import IN_THREAD, DerivedColumns, discord_message_columns, discord_message_id

PRODUCER = "credit_pipeline.sources.discord"
PRODUCER_VERSION = "1"
DEFAULT_API_URL = "https://discord.com/api/v10"
PAGE = 100
CONVERSATION_TYPES = (0, 19)  # Discord DEFAULT and REPLY: the messages that carry text someone typed
GUILD_FORUM = 15  # a channel whose posts are threads; it has no messages of its own
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


class ThreadUnreadable(SourceError):
    """A thread under an allow-listed channel that the bot may not read (403): reported, its messages not collected."""


class ForumChannel(SourceError):
    """Messages asked of a forum channel (Discord 50024): a forum has none of its own, only posts (threads)."""


def _archived_at(thread: dict[str, Any]) -> datetime:
    """When a thread was archived (its ``thread_metadata.archive_timestamp``); an unreadable value sorts as long ago."""
    raw = (thread.get("thread_metadata") or {}).get("archive_timestamp")
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


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
                 max_wait: float = 900.0, attempts: int = 5, threads: bool = True):
        if not token:
            raise SourceAuthError("DISCORD_BOT_TOKEN is not set: create a bot in the Discord developer portal, invite it to the "
                                  "guild with View Channel and Read Message History, and export its token")
        self.token = token
        self.guild_id = str(guild_id)
        self.channels = [str(c) for c in channels]
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.max_wait = max_wait
        self.attempts = attempts
        self.threads = threads
        self.telemetry = Telemetry()
        self.thread_report: dict[str, dict[str, Any]] = {}  # parent channel -> threads seen, messages per thread, unreadable
        self._forums: set[str] = set()  # allow-listed forum channels: no messages of their own, only posts (threads)

    def streams(self) -> list[StreamRef]:
        """The allow-listed channels; the threads under them are streams too, found at each pass (``collect``)."""
        return [StreamRef("discord", "messages", c) for c in self.channels]

    # -- protocol --------------------------------------------------------------

    def collect(self, window: Window, cursors: Mapping[StreamRef, dict[str, Any] | None], *, full: bool) -> Iterator[Page]:
        first_id = time_snowflake(window[0]) - 1  # discord's "after" is exclusive: include a message exactly at start
        end_id = time_snowflake(window[1])  # the lowest snowflake at the end instant: ids below it are in the window
        self.thread_report = {}
        with _Session(self) as session:
            self._forums = session.check_channels()
            for ref in self.streams():
                if ref.ref in self._forums:  # a forum has no messages of its own (Discord: 50024); its posts are threads
                    if not self.threads:
                        self.telemetry.notes.append(f"channel {ref.ref} is a forum: its posts are threads, and sources.discord.threads "
                                                    "is false, so nothing of it is collected")
                    continue
                yield from self._stream_pages(session, ref, cursors, full, first_id, end_id)
            if self.threads:
                for thread in self._threads_in(session, window):
                    ref = StreamRef("discord", "messages", thread["id"])
                    seen = self.thread_report.setdefault(thread["parent_id"], {"threads": 0, "messages": {}, "unreadable": []})
                    seen["threads"] += 1
                    try:
                        for page in self._stream_pages(session, ref, cursors, full, first_id, end_id, thread=thread):
                            seen["messages"][thread["id"]] = seen["messages"].get(thread["id"], 0) + len(page.events)
                            yield page
                    except ThreadUnreadable as exc:
                        seen["unreadable"].append(thread["id"])
                        self.telemetry.notes.append(str(exc))
        self.telemetry.current = "(other)"

    def _threads_in(self, session: _Session, window: Window) -> list[dict[str, Any]]:
        """The threads under the allow-listed channels that can hold messages of the window: the guild's active
        threads (one request) and each channel's archived public threads, newest archive first, until they were
        archived before the window began (an archived thread gets no messages; posting unarchives it). A
        thread created after the window ends has none either. Each is ``{"id", "parent_id", "type", "name"}``."""
        allowed, end_id = set(self.channels), time_snowflake(window[1])
        found: dict[str, dict[str, Any]] = {}

        def keep(t: Any) -> None:
            if not isinstance(t, dict) or str(t.get("parent_id")) not in allowed or not str(t.get("id", "")).isdigit():
                return
            if int(t["id"]) >= end_id:
                return
            found.setdefault(str(t["id"]), {"id": str(t["id"]), "parent_id": str(t["parent_id"]), "type": t.get("type"),
                                            "name": t.get("name")})

        self.telemetry.current = f"discord:threads:{self.guild_id}"
        for t in session.active_threads(self.guild_id):
            keep(t)
        for channel in self.channels:
            self.telemetry.current = f"discord:threads:{channel}"
            before: str | None = None
            while True:
                threads, more = session.archived_threads(channel, before)
                for t in threads:
                    if _archived_at(t) >= window[0]:
                        keep(t)
                if not more or not threads or _archived_at(threads[-1]) < window[0]:
                    break
                before = (threads[-1].get("thread_metadata") or {}).get("archive_timestamp")
        return [found[k] for k in sorted(found, key=int)]

    def _stream_pages(self, session: _Session, ref: StreamRef, cursors: Mapping[StreamRef, dict[str, Any] | None], full: bool,
                      first_id: int, end_id: int, *, thread: dict[str, Any] | None = None) -> Iterator[Page]:
        """One channel's or thread's messages from its cursor to the window's end, a page per request."""
        self.telemetry.current = str(ref)
        stored = int((cursors.get(ref) or {}).get("last_id") or 0)
        after = first_id if full else max(first_id, stored)
        seen_content, read_messages = False, 0
        while True:
            raw = session.messages(ref.ref, after=after, thread=thread is not None)
            if thread is not None:  # what the message alone does not say: the thread it is in, and its parent
                raw = [{**m, IN_THREAD: {k: thread[k] for k in ("id", "parent_id", "type")}} if isinstance(m, dict) else m
                       for m in raw]
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
            # A thread's cursor also moves over a window it said nothing in, so the probe does not take its older
            # messages for new ones (a channel's stays where its last message is).
            position = max(stored, after if inside or thread is not None else stored)
            yield Page(ref, events, {"last_id": str(position)} if position else {}, last=last, quarantined=tuple(quarantined))
            if last:
                break
        if read_messages and not seen_content:  # judged only on what this pass read (a quiet channel says nothing)
            self.telemetry.notes.append(
                f"channel {ref.ref}: every message came back with empty content: the bot's privileged Message "
                "Content intent is probably off (counting still works; enable it in the developer portal to keep text)")

    def probe(self, cursors: Mapping[StreamRef, dict[str, Any] | None]) -> list[Probe]:
        """One request per allow-listed channel (its newest message after the cursor) and, for threads, one for the
        guild's active threads: a thread gets a message only while active, and lists its ``last_message_id``."""
        probes = []
        with _Session(self) as session:
            for ref in self.streams():
                self.telemetry.current = str(ref)
                last = int((cursors.get(ref) or {}).get("last_id") or 0)
                if ref.ref in self._forums:
                    continue  # known from a pass: a forum's posts are threads, probed below
                try:
                    newer = session.messages(ref.ref, after=last or None, limit=1, forum_ok=True)
                except ForumChannel:
                    self._forums.add(ref.ref)
                    continue
                if last:
                    head = str(int(field(newer[0], "id", f"{ref}: a message"))) if newer else str(last)
                else:
                    head = str(int(field(newer[0], "id", f"{ref}: a message"))) if newer else None
                probes.append(Probe(ref, bool(newer), head, f"new message {head}" if newer else f"nothing after {last or 'the start'}"))
            if self.threads:
                self.telemetry.current = f"discord:threads:{self.guild_id}"
                allowed = set(self.channels)
                for t in session.active_threads(self.guild_id):
                    if not isinstance(t, dict) or str(t.get("parent_id")) not in allowed or not str(t.get("id", "")).isdigit():
                        continue
                    ref = StreamRef("discord", "messages", str(t["id"]))
                    last = int((cursors.get(ref) or {}).get("last_id") or 0)
                    head = str(t.get("last_message_id") or "") or None
                    newer = head is not None and head.isdigit() and int(head) > last
                    probes.append(Probe(ref, newer, head, f"thread {t['id']} under {t['parent_id']}: "
                                                         + (f"new message {head}" if newer else f"nothing after {last or 'the start'}")))
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

    def check_channels(self) -> set[str]:
        """One request: every allow-listed channel must be a channel of the guild; returns the forum channels."""
        listed = self._run(lambda: self.http.get_all_guild_channels(self.source.guild_id), f"list channels of guild {self.source.guild_id}")
        known = {str(c.get("id")): c for c in listed if isinstance(c, dict)}
        missing = [c for c in self.source.channels if c not in known]
        if missing:
            raise SourceError(f"channel(s) {', '.join(missing)} in the policy's allow-list are not channels of guild "
                              f"{self.source.guild_id} (or the bot cannot see them): fix sources.discord.channels")
        return {c for c in self.source.channels if known[c].get("type") == GUILD_FORUM}

    def messages(self, channel_id: str, *, after: int | None = None, limit: int = PAGE, thread: bool = False,
                 forum_ok: bool = False) -> list[dict[str, Any]]:
        what = f"read messages of {'thread' if thread else 'channel'} {channel_id}"
        try:
            data = self._run(lambda: self.http.logs_from(channel_id, limit, after=after), what,
                             forbidden=ThreadUnreadable if thread else None)
        except ForumChannel:
            if forum_ok:
                raise
            raise SourceError(f"channel {channel_id} is a forum: it has no messages of its own, only posts (threads)") from None
        except ThreadUnreadable:
            raise ThreadUnreadable(f"thread {channel_id}: the bot may not read it (403; a private thread the bot is not in): "
                                   "its messages are not collected; add the bot to the thread to count them") from None
        if not isinstance(data, list):
            raise MalformedItem(f"discord:messages:{channel_id}: expected a list of messages, got {type(data).__name__}")
        return data

    def active_threads(self, guild_id: str) -> list[Any]:
        """The guild's active threads the bot can see (one request, no paging: Discord lists them all)."""
        data = self._run(lambda: self.http.get_active_threads(guild_id), f"list the active threads of guild {guild_id}")
        threads = data.get("threads") if isinstance(data, dict) else None
        if not isinstance(threads, list):
            raise MalformedItem(f"discord:threads:{guild_id}: expected {{'threads': [...]}}, got {type(data).__name__}")
        return threads

    def archived_threads(self, channel_id: str, before: str | None) -> tuple[list[dict[str, Any]], bool]:
        """A page of a channel's archived public threads, newest archive first, and whether there are more."""
        data = self._run(lambda: self.http.get_public_archived_threads(channel_id, before=before, limit=PAGE),
                         f"list the archived threads of channel {channel_id}")
        threads = data.get("threads") if isinstance(data, dict) else None
        if not isinstance(threads, list):
            raise MalformedItem(f"discord:threads:{channel_id}: expected {{'threads': [...], 'has_more'}}, got {type(data).__name__}")
        return [t for t in threads if isinstance(t, dict)], bool(data.get("has_more"))

    def _run(self, call: Callable[[], Awaitable[Any]], what: str, *, forbidden: type[Exception] | None = None) -> Any:
        """Run one API call to completion; ``call`` builds a fresh request for each attempt. ``forbidden`` is raised
        for a 403 instead of the error that names the bot's permissions (a thread the bot may not read)."""
        return self.loop.run_until_complete(self._retrying(call, what, forbidden))

    async def _retrying(self, call: Callable[[], Awaitable[Any]], what: str, forbidden: type[Exception] | None = None) -> Any:
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
            if forbidden is not None:
                raise forbidden(what) from None
            raise SourceAuthError(f"DISCORD_BOT_TOKEN may not {what} (403: {exc.text}): give the bot View Channel and "
                                  "Read Message History on it") from None
        except discord.NotFound:
            raise SourceError(f"Discord says the target of '{what}' does not exist (404): check the policy's guild_id and channels") from None
        except discord.RateLimited as exc:
            retry_at = datetime.now(UTC) + timedelta(seconds=exc.retry_after)
            raise RateLimitTooLong(f"Discord asks us to wait {exc.retry_after:.0f} s to {what}, more than the configured maximum; "
                                   f"retry after {iso(retry_at)} (every full page so far is committed)", retry_at) from None
        except discord.HTTPException as exc:
            if exc.status == 400 and exc.code == 50024:  # "Cannot execute action on this channel type": a forum's messages
                raise ForumChannel(what) from None
            if exc.status == 401:
                raise SourceAuthError(f"Discord rejected DISCORD_BOT_TOKEN (401) while trying to {what}") from None
            raise SourceError(f"Discord answered {exc.status} when trying to {what}: {exc.text}") from None
        except TRANSIENT as exc:
            raise SourceError(f"Discord kept failing to {what} after {self.source.attempts} attempts ({type(exc).__name__}: {exc}); "
                              "run the collection again later (every full page so far is committed)") from None

