"""A local Discord REST API (v10) that unmodified discord.py cannot tell from discord.com.

Served under ``/api/v10``: ``GET /users/@me``, ``GET /oauth2/applications/@me``, ``GET /guilds/{id}``,
``GET /guilds/{id}/channels``, ``GET /channels/{id}``, ``GET /channels/{id}/messages`` (``before`` |
``after`` | ``around``, ``limit`` 1..100 default 50; always newest first, also with ``after``, which
discord.py's ``history(oldest_first=True)`` relies on) and ``GET /channels/{id}/messages/{id}``.

Threads, as on Discord: a thread is a channel of its own, never in ``GET /guilds/{id}/channels``;
``GET /channels/{thread_id}`` is its thread object and ``/channels/{thread_id}/messages`` pages its
messages like a channel's (their ``channel_id`` is the thread's). ``GET /guilds/{id}/threads/active``
lists every non-archived thread the bot can see (``{"threads", "members"}``; no paging);
``GET /channels/{id}/threads/archived/public`` lists the parent's archived public threads, newest
``archive_timestamp`` first, ``before`` an exclusive ISO 8601 timestamp and ``limit`` 2..100 (default
50), with ``has_more``. A forum channel (type 15) has no messages: its messages route is 400
``{"code": 50024, "message": "Cannot execute action on this channel type"}``; its posts are threads.
A private thread the bot is not in answers 403 Missing Access (50001).

Rate limits: every answer carries ``X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket``
(never Remaining without Reset: discord.py would raise ``KeyError``); each route + major parameter
(channel / guild id) is a bucket of ``bucket_limit`` requests per ``bucket_window`` seconds. Going
over it gets Discord's 429 (``Via: 1.1 google``, ``Retry-After``, JSON ``retry_after`` / ``global``).
Auth is ``Authorization: Bot <token>`` (401 ``{"message": "401: Unauthorized", "code": 0}``);
the hidden channel answers 403 ``{"message": "Missing Access", "code": 50001}``.
``message_content = False`` blanks message content, as without the privileged intent.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import threading
import time
from http import HTTPStatus
from typing import Any, Callable

from credit_pipeline.sandbox import discord_payloads as payloads
from credit_pipeline.sandbox.faults import Fault, FaultKind, FaultPlan
from credit_pipeline.sandbox.http_base import App, Request, RequestLog, Response, ServerThread
from credit_pipeline.sandbox.ids import parse_time
from credit_pipeline.sandbox.model import ANNOUNCEMENT_THREAD, GUILD_FORUM, PUBLIC_THREAD, Channel, Thread
from credit_pipeline.sandbox.org import SampleOrg

API_PREFIX = "/api/v10"


class DiscordError(Exception):
    def __init__(self, status: int, message: str, code: int = 0, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors


def _limit(query: dict[str, str], *, low: int, high: int = 100, default: str = "50") -> int:
    """A ``limit`` query parameter, refused as Discord refuses it (50035 form errors) outside ``low``..``high``."""
    raw = query.get("limit", default)
    if not raw.lstrip("-").isdigit():
        raise _form_error("limit", "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.')
    limit = int(raw)
    if not low <= limit <= high:
        code, bound = (("NUMBER_TYPE_MAX", f"less than or equal to {high}") if limit > high
                       else ("NUMBER_TYPE_MIN", f"greater than or equal to {low}"))
        raise _form_error("limit", code, f"int value should be {bound}.")
    return limit


def _form_error(field: str, code: str, message: str) -> DiscordError:
    return DiscordError(400, "Invalid Form Body", 50035, {field: {"_errors": [{"code": code, "message": message}]}})


class _Buckets:
    """Per (route, major parameter) fixed windows, reported the way Discord reports them."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._state: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def take(self, route: str, major: str, spend: bool = True) -> tuple[bool, list[tuple[str, str]], float]:
        now = time.time()
        with self._lock:
            used, reset_at = self._state.get((route, major), [0, 0.0])
            if now >= reset_at:
                used, reset_at = 0, now + self.window
            allowed = used < self.limit
            used += 1 if allowed and spend else 0
            self._state[(route, major)] = [used, reset_at]
        after = max(0.0, reset_at - now)
        headers = [("X-RateLimit-Limit", str(self.limit)), ("X-RateLimit-Remaining", str(max(0, self.limit - used))),
                   ("X-RateLimit-Reset", f"{reset_at:.3f}"), ("X-RateLimit-Reset-After", f"{after:.3f}"),
                   ("X-RateLimit-Bucket", hashlib.md5(route.encode()).hexdigest())]
        return allowed, headers, after

    def peek(self, route: str, major: str) -> list[tuple[str, str]]:
        """The bucket's headers without spending a request (for 401/404 answers)."""
        return self.take(route, major, spend=False)[1]


class DiscordApp(App):
    name = "discord"

    def __init__(self, org: SampleOrg, log: RequestLog, faults: FaultPlan, token: str | None = None,
                 message_content: bool = True, bucket_limit: int = 50, bucket_window: float = 1.0) -> None:
        super().__init__(log, faults)
        self.org = org
        self.token = token
        self.message_content = message_content
        self.buckets = _Buckets(bucket_limit, bucket_window)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("/users/@me", re.compile(r"/users/@me"), self._me),
            ("/oauth2/applications/@me", re.compile(r"/oauth2/applications/@me"), self._application),
            ("/guilds/{guild_id}", re.compile(r"/guilds/(?P<guild_id>[^/]+)"), self._guild),
            ("/guilds/{guild_id}/channels", re.compile(r"/guilds/(?P<guild_id>[^/]+)/channels"), self._channels),
            ("/guilds/{guild_id}/threads/active", re.compile(r"/guilds/(?P<guild_id>[^/]+)/threads/active"),
             self._active_threads),
            ("/channels/{channel_id}/threads/archived/public",
             re.compile(r"/channels/(?P<channel_id>[^/]+)/threads/archived/public"), self._archived_public_threads),
            ("/channels/{channel_id}", re.compile(r"/channels/(?P<channel_id>[^/]+)"), self._channel),
            ("/channels/{channel_id}/messages", re.compile(r"/channels/(?P<channel_id>[^/]+)/messages"), self._messages),
            ("/channels/{channel_id}/messages/{message_id}",
             re.compile(r"/channels/(?P<channel_id>[^/]+)/messages/(?P<message_id>[^/]+)"), self._message),
        ]

    @staticmethod
    def _json(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        return Response(status, payload, headers or [], content_type="application/json")

    def _error(self, exc: DiscordError, headers: list[tuple[str, str]] | None = None) -> Response:
        body: dict[str, Any] = {"message": exc.message, "code": exc.code}
        if exc.errors:
            body["errors"] = exc.errors
        return self._json(exc.status, body, headers)

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        route = self._route(request.method, path)
        if route is None:  # unknown routes still report a (per-path) bucket, so every answer has headers
            return self._error(DiscordError(404, "404: Not Found"), self.buckets.peek(f"{request.method} {path}", ""))
        template, handler, params = route
        major = params.get("channel_id") or params.get("guild_id") or ""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bot" or not value or (self.token is not None and value != self.token):
            return self._error(DiscordError(401, "401: Unauthorized"), self.buckets.peek(f"GET {template}", major))
        allowed, headers, after = self.buckets.take(f"GET {template}", major)
        if not allowed:
            return self._rate_limited(after, False, headers)
        try:
            with self.org.lock:
                return self._json(200, handler(request, **params), headers)
        except DiscordError as exc:
            return self._error(exc, headers)

    def _route(self, method: str, path: str) -> tuple[str, Callable[..., Any], dict[str, str]] | None:
        if method != "GET" or not path.startswith(API_PREFIX + "/"):
            return None
        for template, pattern, handler in self._routes:
            found = pattern.fullmatch(path[len(API_PREFIX):])
            if found:
                return template, handler, found.groupdict()
        return None

    def _rate_limited(self, retry_after: float, is_global: bool, headers: list[tuple[str, str]]) -> Response:
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3), "global": is_global}
        extra = [("Via", "1.1 google"), ("Retry-After", str(math.ceil(retry_after))),
                 ("X-RateLimit-Scope", "global" if is_global else "user")]
        if is_global:
            extra.append(("X-RateLimit-Global", "true"))
        return self._json(429, body, [*([] if is_global else headers), *extra])

    def fault_response(self, fault: Fault, request: Request) -> Response:
        kind = fault.kind
        if kind is FaultKind.DISCORD_429:
            now = time.time()
            wait = fault.retry_after if fault.retry_after is not None else 1.0
            headers = [("X-RateLimit-Limit", str(self.buckets.limit)), ("X-RateLimit-Remaining", "0"),
                       ("X-RateLimit-Reset", f"{now + wait:.3f}"), ("X-RateLimit-Reset-After", f"{wait:.3f}"),
                       ("X-RateLimit-Bucket", hashlib.md5(request.path.encode()).hexdigest())]
            return self._rate_limited(wait, fault.is_global, headers)
        if kind is FaultKind.DISCORD_CLOUDFLARE_BAN:
            return Response(429, raw=b"error code: 1015", content_type="text/plain; charset=UTF-8")
        if kind in (FaultKind.HTTP_429, FaultKind.GITHUB_SECONDARY_LIMIT, FaultKind.GITHUB_PRIMARY_LIMIT):
            extra = [("Retry-After", str(math.ceil(fault.retry_after)))] if fault.retry_after is not None else []
            return self._json(429, {"message": "Too Many Requests", "code": 0}, extra)
        status = fault.status if fault.status and fault.status >= 500 else 502
        return self._json(status, {"message": f"{status}: {HTTPStatus(status).phrase}", "code": 0})

    # -- endpoints -------------------------------------------------------------------------------
    def _me(self, request: Request) -> Any:
        return payloads.user(self.org.bot_user, private=True)

    def _application(self, request: Request) -> Any:
        owner = self.org.discord_user(self.org.guild.owner_id)
        return payloads.application(self.org.bot_user, owner, self.message_content)

    def _guild_or_404(self, guild_id: str) -> None:
        if guild_id != str(self.org.guild.id):
            raise DiscordError(404, "Unknown Guild", 10004)

    def _guild(self, request: Request, guild_id: str) -> Any:
        self._guild_or_404(guild_id)
        out = payloads.guild_object(self.org.guild)
        if request.query.get("with_counts", "").lower() in ("1", "true"):
            members = len(self.org.discord_users) + 1
            out.update(approximate_member_count=members, approximate_presence_count=members // 2)
        return out

    def _channels(self, request: Request, guild_id: str) -> Any:
        """Channels only: Discord does not list threads here."""
        self._guild_or_404(guild_id)
        return [payloads.category(self.org.guild), *(self._channel_payload(c) for c in self.org.guild.channels)]

    def _channel_payload(self, item: Channel | Thread) -> dict[str, Any]:
        if isinstance(item, Thread):
            return payloads.thread(item, forum=self._parent(item).type == GUILD_FORUM)
        posts = [t.id for t in self.org.guild.threads if t.parent_id == item.id] if item.type == GUILD_FORUM else []
        return payloads.channel(item, max(posts, default=None))

    def _parent(self, item: Thread) -> Channel:
        parent = self.org.channel(item.parent_id)
        assert isinstance(parent, Channel)
        return parent

    def _visible(self, item: Thread) -> bool:
        """The bot sees a thread it may read under a channel it may read."""
        return item.readable and self._parent(item).readable

    def _active_threads(self, request: Request, guild_id: str) -> Any:
        """Every non-archived thread (public, or private with the bot) in the guild; ``members`` lists the
        bot's own thread memberships, and it has joined none."""
        self._guild_or_404(guild_id)
        threads = [t for t in self.org.guild.threads if not t.archived and self._visible(t)]
        return {"threads": [self._channel_payload(t) for t in threads], "members": []}

    def _archived_public_threads(self, request: Request, channel_id: str) -> Any:
        """Archived public (and announcement) threads of a text, announcement or forum channel, newest
        ``archive_timestamp`` first; ``before`` is exclusive."""
        parent = self._readable(channel_id)
        if isinstance(parent, Thread):
            raise DiscordError(400, "Cannot execute action on this channel type", 50024)
        query = request.query
        limit = _limit(query, low=2)
        before = None
        if query.get("before") is not None:
            try:
                before = parse_time(query["before"])
            except ValueError:
                raise _form_error("before", "DATE_TIME_TYPE_PARSE",
                                  f'Could not interpret "{query["before"]}" as date-time.') from None
        archived = [t for t in self.org.guild.threads
                    if t.parent_id == parent.id and t.archived and t.type in (PUBLIC_THREAD, ANNOUNCEMENT_THREAD)
                    and (before is None or (t.archive_timestamp or t.created) < before)]
        archived.sort(key=lambda t: (t.archive_timestamp or t.created, t.id), reverse=True)
        return {"threads": [self._channel_payload(t) for t in archived[:limit]], "members": [],
                "has_more": len(archived) > limit}

    def _readable(self, channel_id: str) -> Channel | Thread:
        if not channel_id.isdigit():
            raise _form_error("channel_id", "NUMBER_TYPE_COERCE", f'Value "{channel_id}" is not snowflake.')
        try:
            channel = self.org.channel(int(channel_id))
        except KeyError:
            raise DiscordError(404, "Unknown Channel", 10003) from None
        if not channel.readable or (isinstance(channel, Thread) and not self._visible(channel)):
            raise DiscordError(403, "Missing Access", 50001)
        return channel

    def _channel(self, request: Request, channel_id: str) -> Any:
        return self._channel_payload(self._readable(channel_id))

    @staticmethod
    def _snowflake(query: dict[str, str], name: str) -> int | None:
        value = query.get(name)
        if value is None:
            return None
        if not value.isdigit():
            raise _form_error(name, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        return int(value)

    def _messages(self, request: Request, channel_id: str) -> Any:
        """A channel's or a thread's messages; a forum channel has none of its own (400, 50024)."""
        channel = self._readable(channel_id)
        if isinstance(channel, Channel) and channel.type == GUILD_FORUM:
            raise DiscordError(400, "Cannot execute action on this channel type", 50024)
        query = request.query
        limit = _limit(query, low=1)
        ids, items = channel.message_ids, channel.messages
        around, before, after = (self._snowflake(query, k) for k in ("around", "before", "after"))
        if around is not None:
            index = bisect.bisect_left(ids, around)
            older = items[max(0, index - limit // 2):index]
            chosen = older + items[index:index + limit - len(older)]
        elif before is not None:
            index = bisect.bisect_left(ids, before)
            chosen = items[max(0, index - limit):index]
        elif after is not None:
            index = bisect.bisect_right(ids, after)
            chosen = items[index:index + limit]
        else:
            chosen = items[-limit:]
        return [payloads.message(m, self.message_content, channel.guild_id) for m in reversed(chosen)]

    def _message(self, request: Request, channel_id: str, message_id: str) -> Any:
        channel = self._readable(channel_id)
        if message_id.isdigit():
            index = bisect.bisect_left(channel.message_ids, int(message_id))
            if index < len(channel.message_ids) and channel.message_ids[index] == int(message_id):
                return payloads.message(channel.messages[index], self.message_content, channel.guild_id)
        raise DiscordError(404, "Unknown Message", 10008)


class DiscordSandboxServer:
    """A running Discord sandbox; set ``discord.http.Route.BASE = server.api_url``."""

    def __init__(self, org: SampleOrg, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 log: RequestLog | None = None, faults: FaultPlan | None = None, message_content: bool = True,
                 bucket_limit: int = 50, bucket_window: float = 1.0) -> None:
        self.log = log if log is not None else RequestLog()
        self.faults = faults if faults is not None else FaultPlan()
        self.app = DiscordApp(org, self.log, self.faults, token, message_content, bucket_limit, bucket_window)
        self._thread = ServerThread(self.app, host, port)

    @property
    def url(self) -> str:
        return self._thread.url

    @property
    def api_url(self) -> str:
        return self._thread.url + API_PREFIX

    @property
    def port(self) -> int:
        return self._thread.port

    @property
    def message_content(self) -> bool:
        return self.app.message_content

    @message_content.setter
    def message_content(self, enabled: bool) -> None:
        self.app.message_content = enabled

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> "DiscordSandboxServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
