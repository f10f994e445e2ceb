"""``GET /search/issues`` query language (the subset a collector needs), with GitHub's semantics.

Supported qualifiers: ``repo:o/r`` (several = any of them), ``org:o`` / ``user:o``, ``is:pr`` /
``is:pull-request`` / ``type:pr``, ``is:issue`` / ``type:issue``, ``is:open`` / ``is:closed`` /
``state:open|closed``, ``is:merged`` / ``is:unmerged``, ``author:login`` and date qualifiers
``merged:``, ``closed:``, ``created:``, ``updated:``; ``-repo:``, ``-org:`` exclude; ``sort:updated-desc``
(``updated``/``created``, ``-asc``/``-desc``) orders as the ``sort``/``order`` parameters do and wins over
them; other words match the title.

Dates follow GitHub: a value is a date (``2026-02-16``, the whole UTC day) or a datetime
(``2026-02-16T00:00:00Z`` / ``+00:00``, that second). ``A..B`` is INCLUSIVE at both ends (so
``merged:START..END`` also matches items at exactly END: use ``merged:>=START merged:<END`` for a
half-open window; repeated date qualifiers are ANDed). ``>``, ``>=``, ``<``, ``<=`` and ``*`` work.
Unknown qualifiers are rejected with 422 (stricter than GitHub, to catch typos in collectors).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from credit_pipeline.sandbox.ids import parse_time
from credit_pipeline.sandbox.model import Issue, PullRequest
from credit_pipeline.sandbox.org import SampleOrg

Item = Issue | PullRequest
DATE_FIELDS = {"merged": "merged_at", "closed": "closed_at", "created": "created_at", "updated": "updated_at"}


class SearchError(ValueError):
    """Becomes a 422 Validation Failed response."""


def _bounds(value: str) -> tuple[datetime, datetime]:
    """``[low, high)`` covered by one date or datetime value."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        low = parse_time(value + "T00:00:00Z")
        return low, low + timedelta(days=1)
    try:
        low = parse_time(value)
    except ValueError as exc:
        raise SearchError(f"invalid date {value!r}") from exc
    return low, low + timedelta(seconds=1)


def date_predicate(spec: str) -> Callable[[datetime | None], bool]:
    """Predicate for a date qualifier value such as ``2026-02-16..2026-02-22`` or ``<2026-02-23T00:00:00Z``."""
    if ".." in spec:
        left, right = spec.split("..", 1)
        low = None if left in ("", "*") else _bounds(left)[0]
        high = None if right in ("", "*") else _bounds(right)[1]
        return lambda t: t is not None and (low is None or t >= low) and (high is None or t < high)
    for op in (">=", "<=", ">", "<"):
        if spec.startswith(op):
            low, high = _bounds(spec[len(op):])
            return {
                ">=": lambda t: t is not None and t >= low,
                ">": lambda t: t is not None and t >= high,
                "<": lambda t: t is not None and t < low,
                "<=": lambda t: t is not None and t < high,
            }[op]
    low, high = _bounds(spec)
    return lambda t: t is not None and low <= t < high


@dataclass
class SearchQuery:
    repos: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    kind: str | None = None  # "pr" | "issue"
    predicates: list[Callable[[Item], bool]] = field(default_factory=list)
    not_repos: list[str] = field(default_factory=list)
    not_owners: list[str] = field(default_factory=list)
    sort: tuple[str, str] | None = None  # from a ``sort:FIELD[-asc|-desc]`` qualifier: (field, order)


SORTS = {"updated", "created"}


def _normalise(q: str) -> str:
    # A "+00:00" offset sent without percent-encoding arrives as " 00:00": glue it back.
    return re.sub(r"(T\d{2}:\d{2}(?::\d{2})?) (\d{2}:\d{2})", r"\1+\2", q)


def parse_query(q: str) -> SearchQuery:
    if not q or not q.strip():
        raise SearchError("q is missing")
    parsed = SearchQuery()
    try:
        tokens = shlex.split(_normalise(q))
    except ValueError as exc:
        raise SearchError(str(exc)) from exc
    for token in tokens:
        key, sep, value = token.partition(":")
        key = key.lower()
        if sep and key in ("-repo", "-org", "-user"):  # GitHub: a qualifier prefixed with - excludes its matches
            (parsed.not_repos if key == "-repo" else parsed.not_owners).append(value.lower())
        elif sep and key == "sort":
            name, _, order = value.lower().partition("-")
            if name not in SORTS or order not in ("", "asc", "desc"):
                raise SearchError(f"unsupported sort qualifier {token!r} (sort:updated-desc, sort:created-asc, ...)")
            parsed.sort = (name, order or "desc")
        elif not sep:
            word = token.lower()
            parsed.predicates.append(lambda item, w=word: w in item.title.lower())
        elif key == "repo":
            parsed.repos.append(value.lower())
        elif key in ("org", "user"):
            parsed.owners.append(value.lower())
        elif (key, value) in (("is", "pr"), ("is", "pull-request"), ("type", "pr")):
            parsed.kind = "pr"
        elif (key, value) in (("is", "issue"), ("type", "issue")):
            parsed.kind = "issue"
        elif key in ("is", "state") and value in ("open", "closed"):
            parsed.predicates.append(lambda item, v=value: item.state == v)
        elif key == "is" and value in ("merged", "unmerged"):
            parsed.kind = "pr"
            merged = value == "merged"
            parsed.predicates.append(lambda item, m=merged: isinstance(item, PullRequest)
                                     and (item.merged_at is not None) == m and (m or item.closed_at is not None))
        elif key == "author":
            parsed.predicates.append(lambda item, v=value.lower(): item.author.login.lower() == v
                                     and not item.author.deleted)
        elif key in DATE_FIELDS:
            test = date_predicate(value)
            attr = DATE_FIELDS[key]
            parsed.predicates.append(lambda item, t=test, a=attr: t(getattr(item, a, None)))
        else:
            raise SearchError(f"unsupported search qualifier {token!r}")
    return parsed


def search_items(org: SampleOrg, q: str, sort: str | None, order: str | None) -> list[Item]:
    """All matching issues/PRs in GitHub order (``sort`` created|updated, default best match)."""
    query = parse_query(q)
    if sort not in (None, "", "created", "updated", "best-match"):
        raise SearchError(f"unsupported sort {sort!r}")
    if query.sort:  # a sort: qualifier in the query wins over the parameters, as on GitHub
        sort, order = query.sort
    found: list[Item] = []
    for repo in org.repos:
        if query.repos and repo.full_name.lower() not in query.repos:
            continue
        if query.owners and repo.owner.lower() not in query.owners:
            continue
        if repo.full_name.lower() in query.not_repos or repo.owner.lower() in query.not_owners:
            continue
        pools: list[list[Item]] = []
        if query.kind in (None, "pr"):
            pools.append(list(repo.pulls))
        if query.kind in (None, "issue"):
            pools.append(list(repo.issues))
        for pool in pools:
            found.extend(item for item in pool if all(p(item) for p in query.predicates))
    descending = (order or "desc") != "asc"
    # "best match" has no meaning here; it is served as newest-created first.
    key = (lambda i: (i.updated_at, i.number)) if sort == "updated" else (lambda i: (i.created_at, i.number))
    found.sort(key=key, reverse=descending)
    return found
