"""A whole GitHub organization through GitHub's search, at a cost that follows events, not repos (issue 13).

The per-repo collector (``github_source``) spends a fixed number of requests per repo and stream on every
pass, so an organization of 500 mostly quiet repos costs thousands of requests a week and its sensor a
thousand a tick. Here one GraphQL ``search`` covers every repo in scope:

- pull requests: ``is:pr updated:STOP..*`` newest-updated first, 100 a page, each with its sizes, labels,
  closing references and first 100 reviews in the same node (a PR with more reviews costs one more page).
  Every PR updated since the window began is read, not only the merged ones, because a review counts
  whatever its PR's state (SPEC §3); with the reviews stream off the search adds ``is:merged merged:>=START``;
- issues: ``is:issue is:closed closed:>=START updated:STOP..*``, with the closer in the same node.

GitHub answers at most 1,000 results per search. When a search has more (its ``issueCount``), the pass goes on
with the same search bounded above by the oldest ``updatedAt`` read so far (``updated:STOP..T``, inclusive: the
items of that second are read twice, which is harmless): one more request per split. A single second with more
than 1,000 updates cannot be split and is refused with a message.

Scope: ``org:ORG`` (``repos`` given: ``repo:`` qualifiers instead, 20 to a search, several searches a pass),
plus ``-repo:`` for each ``exclude_repos``; a node outside the scope is dropped with a note. Streams are
``github:pull_requests:ORG/*`` and ``github:issues:ORG/*`` (``reviews`` when pull requests are off); the cursor
records a fingerprint of the scope, and a cursor of another scope is not used.

Search is an index: an item can appear in it some time after it changed. An incremental pass therefore reads
again what was updated in the ``SEARCH_LAG`` before its cursor; the closed window's full pass reads the whole
window again and its completeness check compares the stored counts with the search's own ``issueCount``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from credit_pipeline.core.events import github_issue_event_id, github_pr_event_id
from credit_pipeline.core.storable import QuarantinedItem, bounded
from credit_pipeline.sources.base import UNREADABLE, Page, Probe, SourceError, StreamRef, Window
from credit_pipeline.sources.fields import field, integer, iso, timestamp
from credit_pipeline.sources.github_graphql import search_counts_query, search_page_query
from credit_pipeline.sources.github_source import OVERLAP, STREAMS, GitHubSource, _cursor, _path, _reason, _review_key
from credit_pipeline.sources.parsing import node_repo

SEARCH_CAP = 1000  # GitHub returns at most this many results of one search
REPOS_PER_SEARCH = 20  # ``repo:`` qualifiers per search query when the policy narrows the organization
SEARCH_LAG = timedelta(minutes=5)  # re-read on incremental passes: an item may reach the search index late


def org_streams(organization: str, streams: tuple[str, ...] | list[str]) -> list[StreamRef]:
    """The streams of an organization-wide collection (one search each)."""
    ref = f"{organization}/*"
    pulls = "pull_requests" if "pull_requests" in streams else ("reviews" if "reviews" in streams else None)
    return [StreamRef("github", s, ref) for s in (pulls, "issues" if "issues" in streams else None) if s]


class GitHubOrgSource(GitHubSource):
    """Collects an organization's repos (all, or narrowed) through GraphQL search."""

    def __init__(self, token: str | None, organization: str, *, repos: list[str] | None = None,
                 exclude_repos: list[str] | None = None, streams: tuple[str, ...] = STREAMS, **options: Any):
        super().__init__(token, list(repos or []), streams=streams, **options)
        self.organization = organization
        self.only = {r.lower() for r in repos or []}
        self.excluded = {r.lower() for r in exclude_repos or []}
        negated = "".join(f" -repo:{r}" for r in sorted(exclude_repos or []))
        if self.only:
            names = sorted(repos or [])
            self.scopes = [" ".join(f"repo:{r}" for r in names[i:i + REPOS_PER_SEARCH]) + negated
                           for i in range(0, len(names), REPOS_PER_SEARCH)]
        else:
            self.scopes = [f"org:{organization}{negated}"]
        self.fingerprint = hashlib.sha256("\n".join(self.scopes).lower().encode()).hexdigest()[:16]
        self.dropped = 0  # nodes the search returned from outside the scope

    # -- protocol --------------------------------------------------------------

    def streams(self) -> list[StreamRef]:
        return org_streams(self.organization, self.stream_names)

    def covers(self, repo: str) -> bool:
        """True for ``owner/name`` in the policy's scope."""
        name = repo.lower()
        return (name.split("/", 1)[0] == self.organization.lower() and (not self.only or name in self.only)
                and name not in self.excluded)

    def stored_count(self, ref: StreamRef, stored: Mapping[tuple[str, str], int], event_type: str) -> int:
        """The stored count a stream's completeness compares: the event type summed over the repos in scope."""
        return sum(n for (kind, repo), n in stored.items() if kind == event_type and self.covers(repo))

    def collect(self, window: Window, cursors: Mapping[StreamRef, dict[str, Any] | None], *, full: bool) -> Iterator[Page]:
        for ref in self.streams():
            cursor = self._own(cursors.get(ref))
            through = None if full or not cursor.get("through") else datetime.fromisoformat(cursor["through"].replace("Z", "+00:00"))
            stop = window[0] if through is None else max(window[0], through - max(OVERLAP, SEARCH_LAG))
            self.telemetry.current = str(ref)
            yield from self._search_pages(ref, window, stop, cursor)
        self.telemetry.current = "(other)"

    def probe(self, cursors: Mapping[StreamRef, dict[str, Any] | None]) -> list[Probe]:
        """One request for the whole organization: per stream and scope, the newest item updated after the cursor."""
        refs = self.streams()
        self.telemetry.current = f"github:{self.organization}/* (probe)"
        throughs = {ref: self._own(cursors.get(ref)).get("through") for ref in refs}
        queries = [(ref, q) for ref in refs for q in self._queries(ref, None, f">{throughs[ref]}" if throughs[ref] else None)]
        found = self._counts(queries, newest=True)
        probes = []
        for ref in refs:
            heads = [head for (r, _), (count, head) in zip(queries, found) if r == ref and count and head]
            head, through = (max(heads) if heads else None), throughs[ref]
            reason = (f"head {head} is past cursor {through}" if head and through else f"newest update {head}" if head
                      else f"nothing updated since {through}" if through else "no activity at all")
            probes.append(Probe(ref, head is not None, head or through, reason))
        return probes

    def totals(self, window: Window) -> dict[StreamRef, int | None]:
        """The search's own counts for the window, every stream and scope in one request: merged PRs and closed
        issues (reviews are not countable)."""
        span = f"{iso(window[0])}..{iso(window[1] - timedelta(seconds=1))}"  # search ranges are inclusive
        qualifier = {"pull_requests": f"is:pr is:merged merged:{span}", "issues": f"is:issue is:closed closed:{span}"}
        refs = [ref for ref in self.streams() if ref.stream in qualifier]
        queries = [(ref, f"{scope} {qualifier[ref.stream]}") for ref in refs for scope in self.scopes]
        self.telemetry.current = f"github:{self.organization}/* (totals)"
        counts = self._counts(queries, newest=False) if queries else []
        totals: dict[StreamRef, int | None] = {ref: None for ref in self.streams()}
        for (ref, _), (count, _) in zip(queries, counts):
            totals[ref] = (totals[ref] or 0) + count
        return totals

    # -- search ------------------------------------------------------------------

    def _own(self, cursor: dict[str, Any] | None) -> dict[str, Any]:
        """The stored cursor when it was written for this scope; otherwise none (the scope changed)."""
        return cursor if cursor and cursor.get("scope") == self.fingerprint else {}

    def _queries(self, ref: StreamRef, window: Window | None, updated: str | None) -> list[str]:
        return [self._query(ref, window, updated, scope) for scope in self.scopes]

    def _query(self, ref: StreamRef, window: Window | None, updated: str | None, scope: str | None = None) -> str:
        parts = [scope or self.scopes[0]]
        if ref.stream == "issues":
            parts.append("is:issue is:closed" + (f" closed:>={iso(window[0])}" if window else ""))
        else:
            parts.append("is:pr" + (" is:merged" + (f" merged:>={iso(window[0])}" if window else "")
                                    if "reviews" not in self.stream_names else ""))
        if updated:
            parts.append(f"updated:{updated}")
        parts.append("sort:updated-desc")
        return " ".join(parts)

    def _counts(self, queries: list[tuple[StreamRef, str]], *, newest: bool) -> list[tuple[int, str | None]]:
        """``(issueCount, newest updatedAt)`` of each query, all in one GraphQL request."""
        data = self._graphql(search_counts_query(len(queries), newest=newest), {f"q{i}": q for i, (_, q) in enumerate(queries)},
                             f"github:{self.organization}/* search counts")
        out = []
        for i, (ref, _) in enumerate(queries):
            result = _path(data, ("data", f"s{i}"), str(ref))
            nodes = result.get("nodes") or []
            head = iso(timestamp(nodes[0], "updatedAt", str(ref))) if newest and nodes and isinstance(nodes[0], dict) else None
            out.append((integer(result, "issueCount", str(ref)), head))
        return out

    def _search_pages(self, ref: StreamRef, window: Window, stop: datetime, cursor: dict[str, Any]) -> Iterator[Page]:
        kind = "issue" if ref.stream == "issues" else "pr"
        document = search_page_query(kind, reviews="reviews" in self.stream_names and kind == "pr")
        head: str | None = None
        for n, scope in enumerate(self.scopes):
            upper, after, read = "*", None, 0
            while True:
                query = self._query(ref, window, f"{iso(stop)}..{upper}", scope)
                data = self._graphql(document, {"q": query, "after": after}, f"{ref} search")
                result = _path(data, ("data", "search"), f"{ref} search")
                nodes = list(field(result, "nodes", f"{ref} search"))
                events, quarantined, oldest = self._events(ref, kind, nodes)
                read += len(nodes)
                head = max(filter(None, (head, *(self._updated(node) for node in nodes[:1]))), default=head)
                info = field(result, "pageInfo", f"{ref} search")
                total = integer(result, "issueCount", f"{ref} search")
                more = bool(info.get("hasNextPage"))
                split = not more and total > read and oldest is not None
                last = n == len(self.scopes) - 1 and not more and not split
                yield Page(ref, events, {**_cursor(cursor, head, stop, last), "scope": self.fingerprint}, last=last,
                           quarantined=tuple(quarantined))
                if more:
                    after = info.get("endCursor")
                    continue
                if not split:
                    break
                if iso(oldest) == upper:  # the split cannot narrow: one second holds more than the cap
                    raise SourceError(f"{ref}: GitHub's search has more than {SEARCH_CAP} items updated at {upper}, which "
                                      "cannot be split further; list the busiest repos in sources.github.repos (per-repo listing)")
                self.telemetry.notes.append(f"{ref}: the search passed GitHub's {SEARCH_CAP}-result cap ({total} results); "
                                            f"going on with the items updated at or before {iso(oldest)}")
                upper, after, read = iso(oldest), None, 0

    @staticmethod
    def _updated(node: Any) -> str | None:
        try:
            return iso(timestamp(node, "updatedAt", "a search result"))
        except UNREADABLE:
            return None

    def _events(self, ref: StreamRef, kind: str, nodes: list[Any]) -> tuple[list[Any], list[QuarantinedItem], datetime | None]:
        """A page's events (PRs and their reviews, or issues), what could not be read, and the oldest update on it."""
        events, quarantined, oldest = [], [], None
        key_of = github_issue_event_id if kind == "issue" else github_pr_event_id
        for node in map(bounded, nodes):
            try:
                repo = node_repo(node, f"{ref}: a search result")
                number = integer(node, "number", f"{ref}: a search result")
                updated = timestamp(node, "updatedAt", f"{ref}: {repo}#{number}")
            except UNREADABLE as exc:
                quarantined.append(QuarantinedItem.of(node, _reason(exc)))
                continue
            oldest = updated if oldest is None or updated < oldest else oldest
            if not self.covers(repo):
                self.dropped += 1
                continue
            what = f"github:{ref.stream}:{repo}#{number}"
            item_ref = StreamRef("github", "issues" if kind == "issue" else "pull_requests", repo)
            try:
                if kind == "issue":
                    event = self._issue_event(item_ref, node, what)
                else:
                    event = self._pull_event(item_ref, {k: v for k, v in node.items() if k != "reviews"}, what) \
                        if "pull_requests" in self.stream_names else None
            except UNREADABLE as exc:  # the item is set aside; its reviews, read on their own, still count
                quarantined.append(QuarantinedItem.of(node, _reason(exc), key_of(repo, number)))
                event = None
            if event is not None:
                events.append(event)
            if kind == "pr" and "reviews" in self.stream_names:
                events += self._node_reviews(StreamRef("github", "reviews", repo), repo, number, node, quarantined)
        return events, quarantined, oldest

    def _node_reviews(self, ref: StreamRef, repo: str, number: int, node: dict[str, Any], quarantined: list[QuarantinedItem]) -> list[Any]:
        try:
            first = field(node, "reviews", f"{ref}#{number}")
            reviews = list(field(first, "nodes", f"{ref}#{number}"))
        except UNREADABLE as exc:
            quarantined.append(QuarantinedItem.of(node, _reason(exc)))
            return []
        owner, name = repo.split("/", 1)
        reviews += self._more_reviews(ref, owner, name, number, first)
        events = []
        for review in reviews:
            try:
                event = self._review_event(ref, node, review)
            except UNREADABLE as exc:
                quarantined.append(QuarantinedItem.of(review, _reason(exc), _review_key(repo, number, review)))
                continue
            if event is not None:
                events.append(event)
        return events
