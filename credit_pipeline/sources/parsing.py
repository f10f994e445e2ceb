"""Raw source payloads to event columns, with no I/O (SPEC §3).

The adapters build every ``ActivityEvent`` from these functions, and ``verify``
re-derives a stored event's columns from its stored payload with the same functions,
so the code that wrote a column is the code that checks it. Nothing here talks to
an API or holds a client: a payload goes in, columns come out, or ``MalformedItem``
names the item and the field.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from credit_pipeline.core.events import (
    GITHUB_GHOST_ID,
    GITHUB_GHOST_LOGIN,
    ActivityEvent,
    discord_message_event_id,
    github_issue_event_id,
    github_pr_event_id,
    github_review_event_id,
)
from credit_pipeline.core.storable import is_escaped, storable_payload, storable_text, storable_value, unwrap_payload
from credit_pipeline.sources.base import MalformedItem
from credit_pipeline.sources.fields import field, integer, timestamp

DISCORD_EPOCH_MS = 1420070400000  # 2015-01-01T00:00:00Z, the zero of every Discord snowflake
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Account columns: (platform_user_id, platform_login, is_bot).
Account = tuple[str | None, str | None, bool]


@dataclass(frozen=True)
class DerivedColumns:
    """Every column of an event that its raw payload determines (all but payload and provenance)."""

    event_id: str
    source: str  # "github" | "discord"
    event_type: str  # pr_merged | review_submitted | issue_closed | message_sent
    platform_user_id: str | None
    platform_login: str | None
    is_bot: bool
    artifact_url: str | None
    event_time: datetime  # aware, UTC
    metadata: dict[str, Any]

    def event(self, payload: dict[str, Any], *, producer: str, producer_version: str, retrieved_at: datetime) -> ActivityEvent:
        """The stored event: these columns plus the payload they came from and who fetched it when.

        Text PostgreSQL refuses (NUL, lone surrogates) is replaced in the columns and escaped losslessly
        in the payload (``core.storable``), so one hostile item can never fail its page's insert.
        """
        return ActivityEvent(**self.storable().as_columns(), payload=storable_payload(payload), producer=producer,
                             producer_version=producer_version, retrieved_at=retrieved_at)

    def storable(self) -> DerivedColumns:
        """These columns as the ledger stores them (see ``core.storable.storable_text``)."""
        return replace(self, platform_login=storable_text(self.platform_login), artifact_url=storable_text(self.artifact_url, 2048),
                       metadata=storable_value(self.metadata))

    def as_columns(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- GitHub ---------------------------------------------------------------------------------------


def is_graphql_node(item: dict[str, Any]) -> bool:
    """A pull request or issue node from GraphQL (the organization search) rather than a REST item: GraphQL
    names its fields in camelCase (``mergedAt``, ``closedAt``), REST in snake_case."""
    return "mergedAt" in item or "closedAt" in item


def node_account(author: Any, what: str) -> Account:
    """The author of a GraphQL pull request or issue node, named as REST names it: GraphQL drops a bot's
    ``[bot]`` suffix (``dependabot``), REST keeps it (``dependabot[bot]``), and the policy's ``exclude`` and
    every earlier PR and issue event use REST's name. (Review events keep GraphQL's own name, as they always have.)"""
    user_id, login, is_bot = graphql_account(author, what)
    if isinstance(author, dict) and author.get("__typename") == "Bot" and login and not str(login).endswith("[bot]"):
        login = f"{login}[bot]"
    return user_id, login, is_bot


def node_repo(item: dict[str, Any], what: str) -> str:
    """The ``owner/name`` a GraphQL search node says it belongs to."""
    return str(field(field(item, "repository", what), "nameWithOwner", f"{what}.repository"))


def github_pull_columns(repo: str, item: dict[str, Any], what: str) -> DerivedColumns | None:
    """A pull request, REST list item or GraphQL node: credited to its author when merged; None when closed
    without merging (or still open)."""
    number = integer(item, "number", what)
    graphql = is_graphql_node(item)
    merged_at = timestamp(item, "mergedAt" if graphql else "merged_at", what, optional=True)
    if merged_at is None:
        return None
    user_id, login, is_bot = node_account(item.get("author"), what) if graphql else rest_account(field(item, "user", what), what)
    return DerivedColumns(github_pr_event_id(repo, number), "github", "pr_merged", user_id, login, is_bot,
                          item.get("url" if graphql else "html_url"), merged_at, {"repo": repo, "number": item["number"], "title": item.get("title")})


def github_issue_columns(repo: str, item: dict[str, Any], what: str, issue_credit: str = "author") -> DerivedColumns | None:
    """An issue (REST list item or GraphQL node) closed at its close time, credited to its author or, by policy, its closer.

    None for a PR (the issues endpoint lists PRs too) or an issue not closed. The
    closer is credited only when GitHub names one; otherwise the author is, and the
    metadata keeps both so a curator can see who was chosen and why.
    """
    number = integer(item, "number", what)
    if is_pull_request(item):
        return None
    graphql = is_graphql_node(item)
    closed_at = timestamp(item, "closedAt" if graphql else "closed_at", what, optional=True)
    if closed_at is None:
        return None
    author = node_account(item.get("author"), what) if graphql else rest_account(field(item, "user", what), what)
    closer = issue_closer(item, what)
    user_id, login, is_bot = closer if issue_credit == "closer" and closer[0] else author
    meta = {"repo": repo, "number": item["number"], "title": item.get("title"), "author_id": author[0], "closer_id": closer[0],
            "closer_login": closer[1], "credited": issue_credit}
    return DerivedColumns(github_issue_event_id(repo, number), "github", "issue_closed", user_id, login, is_bot,
                          item.get("url" if graphql else "html_url"), closed_at, meta)


# The key under which the collector stores, beside a REST list item, the GraphQL node of what the list form
# lacks (``sources.github_graphql.details_query``): a PR's sizes and closing references, an issue's ClosedEvent.
DETAILS = "graphql_details"


def details(item: dict[str, Any]) -> dict[str, Any]:
    """The GraphQL details stored beside a REST item; empty when there are none (older payloads, or the item
    was gone by the time they were asked for)."""
    node = item.get(DETAILS)
    return node if isinstance(node, dict) else {}


def issue_closer(item: dict[str, Any], what: str) -> Account:
    """Who closed an issue: REST's ``closed_by`` where the payload has one (the single-issue form), else the
    actor of the issue's last ``ClosedEvent`` (in a GraphQL node, or the GraphQL details stored beside a REST list
    item: GitHub's list items carry no closer);
    (None, None, False) when neither says."""
    if item.get("closed_by"):
        return rest_account(item["closed_by"], what)
    nodes = _dig(item if "timelineItems" in item else details(item), "timelineItems", "nodes")
    if isinstance(nodes, list) and nodes and isinstance(nodes[-1], dict) and "actor" in nodes[-1]:
        return graphql_account(nodes[-1]["actor"], f"{what} ClosedEvent.actor")
    return None, None, False


def is_pull_request(item: dict[str, Any]) -> bool:
    """The issues endpoint lists PRs too; GitHub marks them with ``pull_request`` and a ``/pull/`` URL."""
    return "/pull/" in str(item.get("html_url", "")) or bool(item.get("pull_request"))


def github_review_columns(repo: str, pr: dict[str, Any], review: dict[str, Any]) -> DerivedColumns | None:
    """A GraphQL review node of a PR node: credited to its author at ``submittedAt``, whatever the PR's state.

    None for a ``PENDING`` review (a draft never submitted). Messages name the item
    as the review stream does (``github:reviews:{repo}#{number}``).
    """
    ref = f"github:reviews:{repo}"
    number = integer(pr, "number", f"{ref}: a pull request")
    state = field(review, "state", f"{ref}#{number}: a review")
    if state == "PENDING":
        return None
    review_id = integer(review, "fullDatabaseId", f"{ref}#{number}: a review")
    what = f"{ref}#{number} review {review_id}"
    submitted = timestamp(review, "submittedAt", what)
    user_id, login, is_bot = graphql_account(review.get("author"), what)
    meta = {"repo": repo, "number": pr["number"], "state": state, "pr_state": pr.get("state")}
    return DerivedColumns(github_review_event_id(repo, number, review_id), "github", "review_submitted", user_id, login, is_bot,
                          review.get("url"), submitted, meta)


def github_review_payload(pr: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    """What a review event stores: the PR node without its review list (which changes) and the review."""
    return {"pull_request": {k: v for k, v in pr.items() if k != "reviews"}, "review": review}


def rest_account(user: Any, what: str) -> Account:
    """A REST ``user``: a deleted account (null or GitHub's ghost) is recorded but unattributable."""
    if user is None:
        return None, GITHUB_GHOST_LOGIN, False
    login = field(user, "login", f"{what}.user")
    user_id = str(integer(user, "id", f"{what}.user"))
    if user_id == GITHUB_GHOST_ID or login == GITHUB_GHOST_LOGIN:
        return None, GITHUB_GHOST_LOGIN, False
    return user_id, login, user.get("type") == "Bot" or str(login).endswith("[bot]")


def graphql_account(author: Any, what: str) -> Account:
    """A GraphQL ``author``: null when the account was deleted; bots are ``__typename == "Bot"`` or ``[bot]`` logins."""
    if author is None:
        return None, GITHUB_GHOST_LOGIN, False
    login = field(author, "login", what)
    is_bot = author.get("__typename") == "Bot" or str(login).endswith("[bot]")
    raw_id = author.get("databaseId")
    user_id = None if raw_id is None or str(raw_id) == GITHUB_GHOST_ID else str(integer(author, "databaseId", what))
    return user_id, login, is_bot


# -- Discord --------------------------------------------------------------------------------------


def discord_message_id(channel_id: str, message: dict[str, Any]) -> int:
    """The message's snowflake; read as an integer because snowflakes pass 2^53 and order numerically."""
    raw_id = field(message, "id", f"discord:messages:{channel_id}: a message")
    if not _is_snowflake(raw_id):
        raise MalformedItem(f"discord:messages:{channel_id}: message id {raw_id!r} is not a snowflake (field 'id')")
    return int(raw_id)


# The key under which the collector stores, beside a thread's message, what the message does not say: the thread
# it is in (``id``, ``parent_id``, ``type``). Discord's own ``thread`` key means another thing (the thread a
# message started), so this one is named apart.
IN_THREAD = "in_thread"


def thread_parent(message: dict[str, Any]) -> str | None:
    """The parent channel of the thread a stored message is in, or None for a channel's own message."""
    thread = message.get(IN_THREAD)
    parent = thread.get("parent_id") if isinstance(thread, dict) else None
    return str(parent) if parent is not None and str(parent).isdigit() else None


def discord_message_columns(guild_id: str, channel_id: str, message: dict[str, Any]) -> DerivedColumns:
    """A REST message: credited to its author at the time its snowflake encodes (Discord's own clock). A thread's
    message (``channel_id`` the thread's) also records the thread's parent channel."""
    ref = f"discord:messages:{channel_id}"
    message_id = discord_message_id(channel_id, message)
    author = field(message, "author", f"{ref} message {message['id']}")
    if not _is_snowflake(field(author, "id", f"{ref} message {message['id']}.author")):
        raise MalformedItem(f"{ref} message {message['id']}: field 'author.id' is not a snowflake ({author.get('id')!r})")
    return DerivedColumns(
        event_id=discord_message_event_id(guild_id, channel_id, message_id), source="discord", event_type="message_sent",
        platform_user_id=str(int(author["id"])), platform_login=author.get("global_name") or author.get("username"),
        is_bot=bool(author.get("bot")), artifact_url=f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}",
        event_time=snowflake_time(message_id),
        metadata={"guild_id": guild_id, "channel_id": channel_id,
                  **({"parent_channel_id": thread_parent(message)} if thread_parent(message) else {})},
    )


def snowflake_time(snowflake: int) -> datetime:
    """The creation time in a snowflake's top 42 bits (ms since the Discord epoch), in exact integer arithmetic."""
    return _UNIX_EPOCH + timedelta(milliseconds=(snowflake >> 22) + DISCORD_EPOCH_MS)


def _is_snowflake(value: Any) -> bool:
    text = str(value)
    return not isinstance(value, bool) and text.isascii() and text.isdigit() and int(text) < 2**64


# -- a stored event, re-derived --------------------------------------------------------------------


def columns_from_payload(event_id: str, payload: dict[str, Any], *, issue_credit: str = "author") -> DerivedColumns:
    """Re-derive a stored event's columns from its stored payload, as the adapter that stored it did.

    The event id says which parser applies and supplies what the payload does not
    carry (the repo; the guild and channel); the payload must then yield exactly this
    event: the same id, and the same repo or channel where the payload names one.
    Raises ``MalformedItem`` naming the event and the field otherwise.
    """
    kind, parts = _split_event_id(event_id)
    try:
        if is_escaped(payload):
            text = payload.get("json", "")
            if hashlib.sha256(text.encode("ascii", "replace")).hexdigest() != payload.get("sha256"):
                raise MalformedItem(f"stored event {event_id}: the escaped payload's text does not hash to its recorded sha256")
            payload = unwrap_payload(payload)
        if not isinstance(payload, dict):
            raise MalformedItem(f"stored event {event_id}: the payload is a {type(payload).__name__}, not an object")
        columns = _REDERIVE[kind](event_id, parts, payload, issue_credit)
    except MalformedItem as exc:
        if event_id in str(exc):
            raise
        raise MalformedItem(f"stored event {event_id}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise MalformedItem(f"stored event {event_id}: the payload does not parse ({type(exc).__name__}: {exc})") from None
    return columns.storable()


def _split_event_id(event_id: str) -> tuple[str, list[str]]:
    """``(kind, parts after the kind)``, checking the part count and that numbers are numbers."""
    parts = str(event_id).split(":")
    shapes = {("github", "pr"): 2, ("github", "issue"): 2, ("github", "review"): 3, ("discord", "message"): 3}
    kind = tuple(parts[:2])
    if shapes.get(kind) != len(parts) - 2:
        raise MalformedItem(f"stored event {event_id!r}: not an event id of a known form (SPEC §3)")
    rest = parts[2:]
    numeric = rest if kind[0] == "discord" else rest[1:]
    if not rest[0] or not all(p.isascii() and p.isdigit() for p in numeric):
        raise MalformedItem(f"stored event {event_id!r}: an id part that must be a number is not one")
    return ":".join(kind), rest


def _pull(event_id: str, parts: list[str], payload: dict[str, Any], issue_credit: str) -> DerivedColumns:
    repo = parts[0]
    _names(event_id, repo, _dig(payload, "base", "repo", "full_name"), "base.repo.full_name")
    _names(event_id, repo, _dig(payload, "repository", "nameWithOwner"), "repository.nameWithOwner")
    columns = github_pull_columns(repo, payload, event_id)
    if columns is None:
        raise MalformedItem(f"{event_id}: field 'merged_at' is null: the payload is a pull request closed without merging")
    return _same_id(event_id, columns, "'number'")


def _issue(event_id: str, parts: list[str], payload: dict[str, Any], issue_credit: str) -> DerivedColumns:
    repo = parts[0]
    _names(event_id, repo, _repo_in_url(payload.get("repository_url"), after="/repos/"), "repository_url")
    _names(event_id, repo, _dig(payload, "repository", "nameWithOwner"), "repository.nameWithOwner")
    columns = github_issue_columns(repo, payload, event_id, issue_credit)
    if columns is None:
        reason = "field 'closed_at' is null: the issue is not closed"
        if is_pull_request(payload):
            reason = "field 'pull_request' (or a /pull/ html_url) says the payload is a pull request, not an issue"
        raise MalformedItem(f"{event_id}: {reason}")
    return _same_id(event_id, columns, "'number'")


def _review(event_id: str, parts: list[str], payload: dict[str, Any], issue_credit: str) -> DerivedColumns:
    repo = parts[0]
    pr, review = field(payload, "pull_request", event_id), field(payload, "review", event_id)
    _names(event_id, repo, _repo_in_url(_dig(payload, "pull_request", "url"), before="/pull/"), "pull_request.url")
    columns = github_review_columns(repo, pr, review)
    if columns is None:
        raise MalformedItem(f"{event_id}: field 'review.state' is PENDING: the review was never submitted")
    return _same_id(event_id, columns, "'pull_request.number' or 'review.fullDatabaseId'")


def _message(event_id: str, parts: list[str], payload: dict[str, Any], issue_credit: str) -> DerivedColumns:
    guild_id, channel_id, _ = parts
    _names(event_id, channel_id, payload.get("channel_id"), "channel_id")
    _names(event_id, guild_id, payload.get("guild_id"), "guild_id")
    return _same_id(event_id, discord_message_columns(guild_id, channel_id, payload), "'id'")


_REDERIVE = {"github:pr": _pull, "github:issue": _issue, "github:review": _review, "discord:message": _message}


def _same_id(event_id: str, columns: DerivedColumns, names: str) -> DerivedColumns:
    if columns.event_id != event_id:
        raise MalformedItem(f"{event_id}: the payload's field {names} makes it event {columns.event_id}")
    return columns


def _names(event_id: str, expected: str, found: Any, name: str) -> None:
    """Where the payload names its repo or channel, it must be the one in the event id."""
    if found is not None and str(found) != expected:
        raise MalformedItem(f"{event_id}: field {name!r} names {found!r}, not {expected!r}")


def _repo_in_url(url: Any, *, after: str = "", before: str = "") -> str | None:
    """``owner/name`` from an API URL (``…/repos/owner/name``) or a web URL (``…/owner/name/pull/5``); None if absent."""
    path = urlsplit(url).path if isinstance(url, str) else ""
    marker = after or before
    if marker not in path:
        return None
    return path.rsplit(after, 1)[1] if after else path.rsplit(before, 1)[0].strip("/")


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


# -- the facts the policy's rules read (core.rules) ------------------------------------------------

# GitHub's closing keywords (docs: "Linking a pull request to an issue"), optionally naming another repo.
_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+(?:([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+))?#([0-9]+)\b",
                      re.IGNORECASE)
# Discord markup that carries no words: user, role and channel mentions, custom emoji, timestamps.
_DISCORD_MARKUP = re.compile(r"<(?:@[!&]?|#)[0-9]+>|<a?:[A-Za-z0-9_~]+:[0-9]+>|<t:-?[0-9]+(?::[tTdDfFR])?>")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)


def message_text(content: Any) -> str:
    """A message's words: mentions, custom emoji, timestamps, URLs and Unicode emoji removed, whitespace collapsed."""
    text = _URL.sub(" ", _DISCORD_MARKUP.sub(" ", content if isinstance(content, str) else ""))
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Sk", "Cf", "Mn", "Me", "Cs", "Co")
                   and not 0xFE00 <= ord(ch) <= 0xFE0F)
    return " ".join(kept.split())


def event_facts(event_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The facts of an event's raw payload that the policy's rules read, as plain JSON.

    Pull requests: labels, additions and deletions (None where the payload does not carry them; the
    collector adds them from GraphQL to the REST list form, which lacks them), and the issues its title
    and body say it closes, with GitHub's ``closingIssuesReferences`` where the payload has them.
    Reviews: the state, the PR and its author.
    Issues: the closing reason and the author and closer accounts (``[id, login, is_bot]``, None when
    deleted or unknown; the closer is ``issue_closer``'s). Messages: the type, the length of the words and a hash of them (the text itself is not
    repeated), and the channel.
    """
    kind, parts = _split_event_id(event_id)
    if is_escaped(payload):
        payload = unwrap_payload(payload)
    if not isinstance(payload, dict):
        return {}
    if kind == "github:pr":
        repo = parts[0]
        labels = payload.get("labels")
        names = labels.get("nodes") if isinstance(labels, dict) else labels  # GraphQL connection or REST list
        closes = {f"{m.group(1) or repo}#{int(m.group(2))}"
                  for text in (payload.get("title"), payload.get("body")) if isinstance(text, str) for m in _CLOSING.finditer(text)}
        refs = payload.get("closingIssuesReferences", details(payload).get("closingIssuesReferences"))
        for node in (refs.get("nodes") or []) if isinstance(refs, dict) else []:
            other = _dig(node, "repository", "nameWithOwner") or repo
            if isinstance(node, dict) and isinstance(node.get("number"), int):
                closes.add(f"{other}#{node['number']}")
        return {"labels": sorted({str(n.get("name")) for n in names or [] if isinstance(n, dict) and n.get("name") is not None}),
                "additions": _count(payload.get("additions", details(payload).get("additions"))),
                "deletions": _count(payload.get("deletions", details(payload).get("deletions"))),
                "closes": sorted(closes)}
    if kind == "github:review":
        pr, review = payload.get("pull_request") or {}, payload.get("review") or {}
        author = pr.get("author") if isinstance(pr, dict) else None
        pr_author = author.get("databaseId") if isinstance(author, dict) else None
        return {"state": review.get("state") if isinstance(review, dict) else None, "pr": f"{parts[0]}#{int(parts[1])}",
                "pr_author_id": None if pr_author is None or str(pr_author) == GITHUB_GHOST_ID else str(pr_author)}
    if kind == "github:issue":
        graphql = is_graphql_node(payload)

        def account(user: Any) -> list[Any] | None:
            try:
                user_id, login, is_bot = node_account(user, event_id) if graphql else rest_account(user, event_id)
            except MalformedItem:
                return None
            return None if user_id is None else [user_id, login, is_bot]
        def closer() -> list[Any] | None:
            try:
                user_id, login, is_bot = issue_closer(payload, event_id)
            except MalformedItem:
                return None
            return None if user_id is None else [user_id, login, is_bot]
        # GraphQL's stateReason is the REST state_reason in upper case (COMPLETED, NOT_PLANNED, DUPLICATE).
        reason = payload.get("stateReason") if graphql else payload.get("state_reason")
        return {"state_reason": reason.lower() if graphql and isinstance(reason, str) else reason, "issue": f"{parts[0]}#{int(parts[1])}",
                "author": account(payload.get("author" if graphql else "user")), "closer": closer()}
    if kind == "discord:message":
        words = message_text(payload.get("content"))
        kind_value = payload.get("type")
        # A thread counts as part of its parent channel for the per-channel rules (dedupe, daily cap): spreading
        # messages over threads does not multiply a cap.
        return {"type": kind_value if isinstance(kind_value, int) and not isinstance(kind_value, bool) else None,
                "length": len(words), "channel_id": thread_parent(payload) or parts[1],
                "content_sha256": hashlib.sha256(words.casefold().encode("utf-8", "surrogatepass")).hexdigest()}
    return {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
