"""Fault injection shared by both sandbox servers.

A test builds ``FaultRule``s (which requests) around a ``Fault`` (what goes wrong) and adds them to
the running sandbox's ``FaultPlan``. Every rule counts the requests it matches and is due on match
numbers ``after+1 .. after+times`` (``times=None``: every one after ``after``; ``nth=N``: only the
Nth). One fault per request: when several rules are due, the first added wins and the others'
occurrence passes unused. Waits are parameters so tests can keep them at ~1 s.

Kinds and what the client sees:

- ``github_secondary_limit``: 403 ``{"message": "You have exceeded a secondary rate limit..."}``,
  with ``Retry-After`` when ``retry_after`` is set (PyGithub then waits it, else 60 s).
- ``github_primary_limit``: 403 (or 429) "API rate limit exceeded ...", ``x-ratelimit-remaining: 0``,
  ``x-ratelimit-reset`` = now + ``reset_in``.
- ``http_429``: plain 429 with ``Retry-After`` (omitted when ``retry_after`` is None).
- ``github_forbidden``: 403 "Resource not accessible by personal access token" (a missing permission).
- ``server_error``: a 5xx (``status``); use ``times=K`` for a burst.
- ``graphql_rate_limited``: HTTP 200 ``{"data": null, "errors": [{"type": "RATE_LIMITED", ...}]}``.
- ``discord_429``: Discord's 429 with ``Via: 1.1 google``, ``Retry-After`` and JSON ``retry_after``/``global``.
- ``discord_cloudflare_ban``: a 429 without ``Via`` and with a text body (discord.py raises, never retries).
- ``malformed_item``: the real response with one item's ``field`` (dotted path) set to ``value`` or deleted.
- ``drop_connection``: the socket is closed without a response.
- ``delay``: the real response after ``delay`` seconds.
- ``truncated_body``: the real response (status and headers) with its body cut after ``keep`` of its
  bytes, mid-JSON, and a ``Content-Length`` that matches the cut body (a proxy that lost the tail).
  Only a 200 is cut; any other answer is sent whole.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

_MISSING = object()


class FaultKind(str, Enum):
    GITHUB_SECONDARY_LIMIT = "github_secondary_limit"
    GITHUB_PRIMARY_LIMIT = "github_primary_limit"
    HTTP_429 = "http_429"
    SERVER_ERROR = "server_error"
    GITHUB_FORBIDDEN = "github_forbidden"
    GRAPHQL_RATE_LIMITED = "graphql_rate_limited"
    DISCORD_429 = "discord_429"
    DISCORD_CLOUDFLARE_BAN = "discord_cloudflare_ban"
    MALFORMED_ITEM = "malformed_item"
    DROP_CONNECTION = "drop_connection"
    DELAY = "delay"
    TRUNCATED_BODY = "truncated_body"


@dataclass(frozen=True)
class Fault:
    """What goes wrong. Build with the class methods; fields irrelevant to a kind are ignored."""

    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    reset_in: float = 1.0
    is_global: bool = False
    field: str | None = None
    value: Any = None
    delete: bool = False
    index: int = 0
    delay: float = 0.0
    keep: float = 0.5

    @classmethod
    def github_secondary_limit(cls, retry_after: float | None = 1) -> "Fault":
        return cls(FaultKind.GITHUB_SECONDARY_LIMIT, status=403, retry_after=retry_after)

    @classmethod
    def github_primary_limit(cls, reset_in: float = 1.0, status: int = 403) -> "Fault":
        return cls(FaultKind.GITHUB_PRIMARY_LIMIT, status=status, reset_in=reset_in)

    @classmethod
    def http_429(cls, retry_after: float | None = 1) -> "Fault":
        return cls(FaultKind.HTTP_429, status=429, retry_after=retry_after)

    @classmethod
    def github_forbidden(cls) -> "Fault":
        """403 "Resource not accessible by personal access token": the token lacks a permission."""
        return cls(FaultKind.GITHUB_FORBIDDEN, status=403)

    @classmethod
    def server_error(cls, status: int = 502) -> "Fault":
        return cls(FaultKind.SERVER_ERROR, status=status)

    @classmethod
    def graphql_rate_limited(cls, reset_in: float = 1.0) -> "Fault":
        return cls(FaultKind.GRAPHQL_RATE_LIMITED, status=200, reset_in=reset_in)

    @classmethod
    def discord_429(cls, retry_after: float = 1.0, is_global: bool = False) -> "Fault":
        return cls(FaultKind.DISCORD_429, status=429, retry_after=retry_after, is_global=is_global)

    @classmethod
    def discord_cloudflare_ban(cls) -> "Fault":
        return cls(FaultKind.DISCORD_CLOUDFLARE_BAN, status=429)

    @classmethod
    def malformed_item(cls, field: str, value: Any = None, *, delete: bool = False, index: int = 0) -> "Fault":
        """Corrupt ``field`` (dotted path, e.g. ``merged_at`` or ``user.id``) of the ``index``-th item."""
        return cls(FaultKind.MALFORMED_ITEM, field=field, value=value, delete=delete, index=index)

    @classmethod
    def drop_connection(cls) -> "Fault":
        return cls(FaultKind.DROP_CONNECTION)

    @classmethod
    def slow(cls, seconds: float) -> "Fault":
        return cls(FaultKind.DELAY, delay=seconds)

    @classmethod
    def truncated_body(cls, keep: float = 0.5) -> "Fault":
        """The real status and headers, the body cut after ``keep`` (0..1) of its bytes: invalid JSON."""
        if not 0 <= keep < 1:
            raise ValueError("keep is the fraction of the body kept, in [0, 1)")
        return cls(FaultKind.TRUNCATED_BODY, keep=keep)


QueryMatcher = dict[str, str] | Callable[[dict[str, str]], bool] | None


@dataclass
class FaultRule:
    """Which requests get ``fault``: server (``github``/``discord``/None = both), method, path regex
    (``re.search`` on the path without query), query (exact key/values or a predicate), then the
    occurrence window: skip ``after`` matches, fire ``times`` times. ``nth=N`` means after=N-1, times=1."""

    fault: Fault
    method: str | None = None
    path: str | None = None
    query: QueryMatcher = None
    server: str | None = None
    after: int = 0
    times: int | None = 1
    nth: int | None = None
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.nth is not None:
            if self.nth < 1:
                raise ValueError("nth is 1-based")
            self.after, self.times = self.nth - 1, 1
        self._path_re = re.compile(self.path) if self.path else None

    def matches(self, server: str, method: str, path: str, query: dict[str, str]) -> bool:
        if self.server and self.server != server:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self._path_re and not self._path_re.search(path):
            return False
        if callable(self.query):
            return bool(self.query(query))
        if self.query:
            return all(query.get(k) == v for k, v in self.query.items())
        return True

    @property
    def exhausted(self) -> bool:
        """True once the rule can no longer fire."""
        return self.times is not None and self.matched >= self.after + self.times


class FaultPlan:
    """Thread-safe ordered list of rules consulted by both servers for every request."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = list(rules or [])

    def add(self, rule: FaultRule | Fault, **match: Any) -> FaultRule:
        """Add a rule (or build one from a Fault and FaultRule keyword arguments) and return it."""
        if isinstance(rule, Fault):
            rule = FaultRule(rule, **match)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def match(self, server: str, method: str, path: str, query: dict[str, str]) -> Fault | None:
        with self._lock:
            chosen: Fault | None = None
            for rule in self._rules:
                if not rule.matches(server, method, path, query):
                    continue
                rule.matched += 1
                window = rule.matched > rule.after and (rule.times is None or rule.matched <= rule.after + rule.times)
                if window and chosen is None:
                    rule.fired += 1
                    chosen = rule.fault
            return chosen


def _item_container(payload: Any) -> tuple[list[Any] | None, Any]:
    """The list holding the page's items: a top-level list, search ``items``, or the first GraphQL ``nodes``."""
    if isinstance(payload, list):
        return payload, None
    if isinstance(payload, dict):
        if isinstance(payload.get("items"), list):
            return payload["items"], None
        if "data" in payload:
            found = _first_nodes(payload["data"])
            return found, None
        return None, payload
    return None, None


def _first_nodes(value: Any) -> list[Any] | None:
    if isinstance(value, dict):
        if isinstance(value.get("nodes"), list) and value["nodes"]:
            return value["nodes"]
        for child in value.values():
            found = _first_nodes(child)
            if found is not None:
                return found
    elif isinstance(value, list):
        for child in value:
            found = _first_nodes(child)
            if found is not None:
                return found
    return None


def _set_path(item: dict[str, Any], parts: list[str], fault: Fault) -> dict[str, Any]:
    """Copy-on-write update: items share sub-objects (users, repos) with other items and caches."""
    copy = dict(item)
    head = parts[0]
    if len(parts) == 1:
        if fault.delete:
            copy.pop(head, None)
        else:
            copy[head] = fault.value
    else:
        child = copy.get(head)
        copy[head] = _set_path(child if isinstance(child, dict) else {}, parts[1:], fault)
    return copy


def corrupt_payload(payload: Any, fault: Fault) -> Any:
    """Return ``payload`` with the chosen item's field corrupted (no-op when there is no such item)."""
    items, single = _item_container(payload)
    parts = (fault.field or "id").split(".")
    if items is not None:
        if -len(items) <= fault.index < len(items) and isinstance(items[fault.index], dict):
            items[fault.index] = _set_path(items[fault.index], parts, fault)
        return payload
    if isinstance(single, dict):
        return _set_path(single, parts, fault)
    return payload


def truncate_body(data: bytes, fault: Fault) -> bytes:
    """``data`` cut after ``fault.keep`` of its bytes (at least one byte short, at least one kept when
    there are two): a JSON object or array cut anywhere before its end never parses."""
    if len(data) <= 1:
        return b""
    cut = min(len(data) - 1, max(1, int(len(data) * fault.keep)))
    return data[:cut]
