"""GraphQL object graph for the sandbox: nodes as dicts, connections as callables.

Cursors are keyset cursors (like GitHub's): they encode the sort key of the last item, so a page
boundary stays put when new items are added, and ``after`` an item that changed position continues
from where that key would sort.

Pull requests carry ``labels``, ``additions``/``deletions``, their ``body`` and the issues it says it
closes (``closingIssuesReferences``: GitHub's closing keywords naming an issue of the same repository).
Issues carry ``stateReason`` and, in ``timelineItems``, the ``ClosedEvent`` that names who closed them.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from graphql import GraphQLError

from credit_pipeline.sandbox.ground_truth import graphql_login
from credit_pipeline.sandbox.ids import github_node_id, github_time, parse_time
from credit_pipeline.sandbox.labels import graphql_label, label_created
from credit_pipeline.sandbox.model import GitHubUser, Issue, PullRequest, Repo, Review
from credit_pipeline.sandbox.org import SampleOrg


@dataclass
class GraphQLContext:
    org: SampleOrg
    base: str
    viewer: GitHubUser
    rate: dict[str, Any] = field(default_factory=dict)


class TypedError(GraphQLError):
    """A resolver error carrying GitHub's top-level ``type`` (e.g. NOT_FOUND)."""

    def __init__(self, message: str, type_: str) -> None:
        super().__init__(message, extensions={"type": type_})


def _cursor(key: Sequence[Any]) -> str:
    return base64.b64encode(("cursor:v2:" + json.dumps(list(key))).encode()).decode()


def _uncursor(cursor: str, argument: str) -> list[Any]:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
        if not raw.startswith("cursor:v2:"):
            raise ValueError(raw)
        return json.loads(raw[len("cursor:v2:"):])
    except (ValueError, UnicodeDecodeError) as exc:
        raise TypedError(f"`{argument}` does not appear to be a valid cursor.", "INVALID_CURSOR_ARGUMENTS") from exc


def connection(items: list[Any], key: Callable[[Any], list[Any]], descending: bool, node: Callable[[Any], Any],
               first: int | None = None, last: int | None = None, after: str | None = None,
               before: str | None = None) -> dict[str, Any]:
    """A Relay connection over ``items`` (already filtered) ordered by ``key`` ascending/descending."""
    ordered = sorted(items, key=key, reverse=descending)
    keys = [key(i) for i in ordered]
    lo, hi = 0, len(ordered)
    if after:
        mark = _uncursor(after, "after")
        lo = next((i for i, k in enumerate(keys) if (k < mark if descending else k > mark)), len(keys))
    if before:
        mark = _uncursor(before, "before")
        hi = next((i for i, k in enumerate(keys) if (k <= mark if descending else k >= mark)), len(keys))
        hi = max(hi, lo)
    window = list(range(lo, hi))
    if first is not None:
        window = window[:first]
    if last is not None:
        window = window[-last:] if last else []
    has_next = bool(window) and window[-1] < len(ordered) - 1 if first is not None else hi < len(ordered)
    has_previous = bool(window) and window[0] > 0 if last is not None else lo > 0
    return {
        "totalCount": len(ordered),
        "pageInfo": {
            "hasNextPage": has_next, "hasPreviousPage": has_previous,
            "startCursor": _cursor(keys[window[0]]) if window else None,
            "endCursor": _cursor(keys[window[-1]]) if window else None,
        },
        "nodes": [node(ordered[i]) for i in window],
        "edges": [{"cursor": _cursor(keys[i]), "node": node(ordered[i])} for i in window],
    }


def actor(ctx: GraphQLContext, user: GitHubUser | None, moment: Any) -> dict[str, Any] | None:
    """``Actor``: deleted users are null; Bot logins drop the ``[bot]`` suffix, as GitHub's GraphQL does."""
    if user is None or user.deleted:
        return None
    login = graphql_login(user, moment)
    if user.type == "Bot":
        return {"__typename": "Bot", "login": login, "databaseId": user.id, "id": github_node_id("Bot", user.id),
                "url": f"{ctx.base}/apps/{login}", "resourcePath": f"/apps/{login}",
                "avatarUrl": f"{ctx.base}/avatars/u/{user.id}?v=4"}
    return {"__typename": "User", "login": login, "databaseId": user.id, "id": github_node_id("User", user.id),
            "name": user.name, "url": f"{ctx.base}/{login}", "resourcePath": f"/{login}",
            "avatarUrl": f"{ctx.base}/avatars/u/{user.id}?v=4"}


def _visible(ctx: GraphQLContext, review: Review) -> bool:
    # PENDING reviews are visible only to their author (here: the token's user).
    return review.state != "PENDING" or review.author.id == ctx.viewer.id


def review_node(ctx: GraphQLContext, review: Review) -> dict[str, Any]:
    url = f"{ctx.base}/{review.repo}/pull/{review.pr_number}#pullrequestreview-{review.id}"
    return {
        "__typename": "PullRequestReview", "id": github_node_id("PullRequestReview", review.id),
        "fullDatabaseId": str(review.id), "databaseId": review.id, "state": review.state,
        "submittedAt": github_time(review.submitted_at), "createdAt": github_time(review.created_at),
        "updatedAt": github_time(review.submitted_at or review.created_at),
        "publishedAt": github_time(review.submitted_at), "url": url, "body": review.body, "bodyText": review.body,
        "author": actor(ctx, review.author, review.submitted_at or review.created_at),
        "authorAssociation": "NONE" if review.author.deleted else "MEMBER",
        "resourcePath": url.removeprefix(ctx.base),
    }


# GitHub's closing keywords ("Linking a pull request to an issue"), for an issue of the same repository.
_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+#([0-9]+)\b", re.IGNORECASE)


def labels_connection(ctx: GraphQLContext, repo: Repo, names: list[str]) -> Callable[..., dict[str, Any]]:
    """``labels(first:, orderBy:)`` of a PR or an issue; default order: when the repository got each label."""
    def labels(info: Any, orderBy: dict[str, str] | None = None, **page: Any) -> dict[str, Any]:  # noqa: N803
        order = orderBy or {"field": "CREATED_AT", "direction": "ASC"}
        key = (lambda n: [n]) if order["field"] == "NAME" else (lambda n: [github_time(label_created(repo.created_at, n)), n])
        return connection(list(names), key, order["direction"] == "DESC",
                          lambda n: graphql_label(ctx.base, repo.full_name, n, label_created(repo.created_at, n)), **page)

    return labels


def pull_node(ctx: GraphQLContext, repo: Repo, pr: PullRequest) -> dict[str, Any]:
    url = f"{ctx.base}/{pr.repo}/pull/{pr.number}"

    def reviews(info: Any, states: list[str] | None = None, author: str | None = None, **page: Any) -> dict[str, Any]:
        chosen = [r for r in pr.reviews if _visible(ctx, r) and (not states or r.state in states)
                  and (author is None or (not r.author.deleted and graphql_login(r.author, r.submitted_at) == author))]
        return connection(chosen, lambda r: [r.id], False, lambda r: review_node(ctx, r), **page)

    def closing_issues(info: Any, orderBy: dict[str, str] | None = None, userLinkedOnly: bool = False,  # noqa: N803
                       **page: Any) -> dict[str, Any]:
        named = {int(m.group(1)) for text in (pr.title, pr.description) for m in _CLOSING.finditer(text)}
        chosen = [] if userLinkedOnly else [i for i in repo.issues if i.number in named]
        key, descending = _order(orderBy)
        return connection(chosen, key, descending, lambda i: issue_node(ctx, repo, i), **page)

    return {
        "__typename": "PullRequest", "id": github_node_id("PullRequest", pr.id), "number": pr.number,
        "fullDatabaseId": str(pr.id), "databaseId": pr.id, "title": pr.title, "body": pr.description,
        "bodyText": pr.description,
        "state": pr.graphql_state, "url": url, "permalink": url, "resourcePath": url.removeprefix(ctx.base),
        "createdAt": github_time(pr.created_at), "updatedAt": github_time(pr.updated_at),
        "mergedAt": github_time(pr.merged_at), "closedAt": github_time(pr.closed_at),
        "merged": pr.merged_at is not None, "closed": pr.closed_at is not None, "isDraft": False, "locked": False,
        "author": actor(ctx, pr.author, pr.event_time), "mergedBy": actor(ctx, pr.merged_by, pr.merged_at),
        "baseRefName": "main", "headRefName": f"change-{pr.number}", "headRefOid": pr.head_sha,
        "additions": pr.additions, "deletions": pr.deletions, "changedFiles": 1, "authorAssociation": "MEMBER",
        "repository": lambda info: repo_node(ctx, repo), "reviews": reviews, "labels": labels_connection(ctx, repo, pr.labels),
        "closingIssuesReferences": closing_issues,
    }


def timeline_items(ctx: GraphQLContext, issue: Issue) -> Callable[..., dict[str, Any]]:
    """``timelineItems(itemTypes:, first:|last:)``: the sandbox keeps an issue's close only, as one ``ClosedEvent``
    whose ``actor`` is the closer (null for a deleted account, as on GitHub); other item types are empty."""
    def items(info: Any, itemTypes: list[str] | None = None, since: str | None = None, skip: int | None = None,  # noqa: N803
              **page: Any) -> dict[str, Any]:
        closed = issue.closed_at is not None and (not itemTypes or "CLOSED_EVENT" in itemTypes) \
            and (since is None or issue.closed_at >= parse_time(since))
        url = f"{ctx.base}/{issue.repo}/issues/{issue.number}#event-{issue.id}"
        nodes = [{"__typename": "ClosedEvent", "id": github_node_id("ClosedEvent", issue.id), "createdAt": github_time(issue.closed_at),
                  "actor": actor(ctx, issue.closed_by, issue.closed_at), "closer": None, "url": url,
                  "resourcePath": url.removeprefix(ctx.base), "stateReason": issue.state_reason.upper() if issue.state_reason else None,
                  "closable": None}] if closed else []
        return connection(nodes[(skip or 0):], lambda n: [n["createdAt"]], False, lambda n: n, **page)

    return items


def issue_node(ctx: GraphQLContext, repo: Repo, issue: Issue) -> dict[str, Any]:
    url = f"{ctx.base}/{issue.repo}/issues/{issue.number}"
    return {
        "__typename": "Issue", "id": github_node_id("Issue", issue.id), "number": issue.number,
        "fullDatabaseId": str(issue.id), "databaseId": issue.id, "title": issue.title, "body": "", "bodyText": "",
        "state": issue.state.upper(), "stateReason": issue.state_reason.upper() if issue.state_reason else None,
        "url": url, "resourcePath": url.removeprefix(ctx.base), "createdAt": github_time(issue.created_at),
        "updatedAt": github_time(issue.updated_at), "closedAt": github_time(issue.closed_at),
        "closed": issue.closed_at is not None, "locked": False, "author": actor(ctx, issue.author, issue.event_time),
        "labels": labels_connection(ctx, repo, issue.labels), "repository": lambda info: repo_node(ctx, repo),
        "timelineItems": timeline_items(ctx, issue),
    }


_ORDER_KEYS: dict[str, Callable[[Any], list[Any]]] = {
    "CREATED_AT": lambda i: [github_time(i.created_at), i.number],
    "UPDATED_AT": lambda i: [github_time(i.updated_at), i.number],
    "COMMENTS": lambda i: [0, i.number],
}


def _order(order_by: dict[str, str] | None) -> tuple[Callable[[Any], list[Any]], bool]:
    order_by = order_by or {"field": "CREATED_AT", "direction": "ASC"}
    return _ORDER_KEYS[order_by["field"]], order_by["direction"] == "DESC"


def repo_node(ctx: GraphQLContext, repo: Repo) -> dict[str, Any]:
    def pull_requests(info: Any, states: list[str] | None = None, orderBy: dict[str, str] | None = None,  # noqa: N803
                      baseRefName: str | None = None, headRefName: str | None = None,  # noqa: N803
                      labels: list[str] | None = None, **page: Any) -> dict[str, Any]:
        chosen = [p for p in repo.pulls if (not states or p.graphql_state in states)
                  and (baseRefName in (None, "main")) and (headRefName in (None, f"change-{p.number}"))
                  and (not labels or set(labels) & set(p.labels))]
        key, descending = _order(orderBy)
        return connection(chosen, key, descending, lambda p: pull_node(ctx, repo, p), **page)

    def pull_request(info: Any, number: int) -> dict[str, Any]:
        for pr in repo.pulls:
            if pr.number == number:
                return pull_node(ctx, repo, pr)
        raise TypedError(f"Could not resolve to a PullRequest with the number of {number}.", "NOT_FOUND")

    def issues(info: Any, states: list[str] | None = None, orderBy: dict[str, str] | None = None,  # noqa: N803
               filterBy: dict[str, Any] | None = None, labels: list[str] | None = None,  # noqa: N803
               **page: Any) -> dict[str, Any]:
        filters = filterBy or {}
        since = parse_time(filters["since"]) if filters.get("since") else None
        wanted = states or filters.get("states")
        creator = filters.get("createdBy")
        chosen = [i for i in repo.issues if (not wanted or i.state.upper() in wanted) and (not labels or set(labels) & set(i.labels))
                  and (since is None or i.updated_at >= since)
                  and (creator is None or (not i.author.deleted and i.author.login == creator))]
        key, descending = _order(orderBy)
        return connection(chosen, key, descending, lambda i: issue_node(ctx, repo, i), **page)

    def issue(info: Any, number: int) -> dict[str, Any] | None:
        for item in repo.issues:
            if item.number == number:
                return issue_node(ctx, repo, item)
        raise TypedError(f"Could not resolve to an Issue with the number of {number}.", "NOT_FOUND")

    owner = {"__typename": "Organization", "login": repo.owner, "id": github_node_id("Organization", ctx.org.org_id),
             "url": f"{ctx.base}/{repo.owner}", "resourcePath": f"/{repo.owner}", "databaseId": ctx.org.org_id}
    return {
        "__typename": "Repository", "id": github_node_id("Repository", repo.id), "databaseId": repo.id,
        "name": repo.name, "nameWithOwner": repo.full_name, "owner": owner, "url": f"{ctx.base}/{repo.full_name}",
        "resourcePath": f"/{repo.full_name}", "isPrivate": False, "isArchived": False, "isFork": False,
        "createdAt": github_time(repo.created_at), "updatedAt": "2026-02-01T00:00:00Z",
        "pullRequests": pull_requests, "pullRequest": pull_request, "issues": issues, "issue": issue,
    }


def build_root(ctx: GraphQLContext) -> dict[str, Any]:
    def repository(info: Any, owner: str, name: str, followRenames: bool = True) -> dict[str, Any]:  # noqa: N803
        try:
            return repo_node(ctx, ctx.org.repo(f"{owner}/{name}"))
        except KeyError:
            raise TypedError(f"Could not resolve to a Repository with the name '{owner}/{name}'.", "NOT_FOUND") from None

    def rate_limit(info: Any, dryRun: bool = False) -> dict[str, Any]:  # noqa: N803
        return dict(ctx.rate)

    return {"repository": repository, "rateLimit": rate_limit, "viewer": actor(ctx, ctx.viewer, None),
            "search": lambda info, **args: search_connection(ctx, **args)}


SEARCH_CAP = 1000  # GitHub serves at most the first 1,000 results of a search; issueCount is the whole count


def _offset_cursor(offset: int) -> str:
    return base64.b64encode(f"cursor:{offset}".encode()).decode()  # GitHub's search cursors: "cursor:N"


def search_connection(ctx: GraphQLContext, query: str, type: str, first: int | None = None, last: int | None = None,  # noqa: A002
                      after: str | None = None, before: str | None = None) -> dict[str, Any]:
    """``search(query:, type: ISSUE)``: GitHub's issue search (``github_search``'s qualifiers, ``sort:`` in the
    query; default order newest created first) over pull requests and issues; only the first 1,000 results can
    be paged, ``issueCount`` counts them all. Other search types find nothing here."""
    from credit_pipeline.sandbox.github_search import SearchError, search_items  # the search imports this module's org types

    if type != "ISSUE":
        found: list[Any] = []
    else:
        try:
            found = search_items(ctx.org, query, None, None)
        except SearchError as exc:
            raise TypedError(f"Invalid search query: {exc}", "INVALID_SEARCH") from None
    reachable = found[:SEARCH_CAP]
    start = 0
    if after:
        try:
            raw = base64.b64decode(after.encode(), validate=True).decode()
            start = int(raw.removeprefix("cursor:")) if raw.startswith("cursor:") else int("x")
        except (ValueError, UnicodeDecodeError):
            raise TypedError("`after` does not appear to be a valid cursor.", "INVALID_CURSOR_ARGUMENTS") from None
    end = len(reachable)
    if before:
        raw = base64.b64decode(before.encode()).decode()
        end = min(end, int(raw.removeprefix("cursor:")) - 1)
    positions = list(range(start, max(start, end)))
    if first is not None:
        positions = positions[:first]
    if last is not None:
        positions = positions[-last:] if last else []

    def node(item: Any) -> dict[str, Any]:
        repo = ctx.org.repo(item.repo)
        return pull_node(ctx, repo, item) if isinstance(item, PullRequest) else issue_node(ctx, repo, item)

    nodes = [node(reachable[i]) for i in positions]
    return {
        "issueCount": len(found), "repositoryCount": 0, "userCount": 0, "codeCount": 0, "discussionCount": 0, "wikiCount": 0,
        "pageInfo": {"hasNextPage": bool(positions) and positions[-1] + 1 < len(reachable), "hasPreviousPage": start > 0,
                     "startCursor": _offset_cursor(positions[0] + 1) if positions else None,
                     "endCursor": _offset_cursor(positions[-1] + 1) if positions else None},
        "nodes": nodes,
        "edges": [{"cursor": _offset_cursor(i + 1), "node": n} for i, n in zip(positions, nodes)],
    }
