"""GitHub through PyGithub: merged PRs, submitted reviews, closed issues (SPEC §3, §4).

Costs are bounded by pages, never by items: PRs and issues are listed 100 a page
newest-updated first and the listing stops at the first item updated before the
stop point; what the REST list form lacks (a merged PR's additions, deletions and
linked issues; a closed issue's closer) is asked for in one GraphQL query per page
and stored beside the item (``parsing.DETAILS``); reviews ride along with their PRs
in one GraphQL page (a PR with more than 100 reviews costs one more page). PyGithub's requester does the HTTP, the auth
and the retries (5xx, 403 secondary limits, primary-limit resets); this module
adds what it lacks: 429 without Retry-After, GraphQL ``RATE_LIMITED`` in an HTTP 200,
proactive waits when the primary budget is spent, and a cap on any single wait.

Cursor (per stream and repo): ``{"through": T}`` means every fact updated between
the open window's start and ``T`` is stored. A pass advances ``through`` only with
its last page; pages before that record how far the pass reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.GithubException import BadCredentialsException, RateLimitExceededExceedsMaxWait

from credit_pipeline.core.events import ActivityEvent, github_issue_event_id, github_pr_event_id, github_review_event_id
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
from credit_pipeline.sources.fields import field, integer, iso, timestamp
from credit_pipeline.sources.github_graphql import PULLS_WITH_REVIEWS, PROBE_PULLS, REVIEWS_OF_PULL, details_query
from credit_pipeline.sources.parsing import (
    DETAILS,
    DerivedColumns,
    is_pull_request,
    github_issue_columns,
    github_pull_columns,
    github_review_columns,
    github_review_payload,
)

PRODUCER = "credit_pipeline.sources.github"
PRODUCER_VERSION = "1"
DEFAULT_API_URL = "https://api.github.com"
STREAMS = ("pull_requests", "reviews", "issues")
# Items updated within this many seconds before ``through`` are listed again, so a
# fact written in the same second as the last pass's head is never missed.
OVERLAP = timedelta(seconds=2)


def _recording_retry(telemetry: Telemetry, max_wait: float) -> type[GithubRetry]:
    """A GithubRetry that logs each wait and also waits out a 429 without Retry-After."""

    class RecordingRetry(GithubRetry):
        def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):  # type: ignore[override]
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
            if response is not None:
                after = response.headers.get("Retry-After")
                wait = float(after) if after and after.replace(".", "", 1).isdigit() else None
                if response.status == 429 and wait is None:
                    wait = self.secondary_rate_wait  # GitHub: wait at least a minute when not told
                    retry.get_backoff_time = lambda: wait  # type: ignore[method-assign]
                if wait is not None and wait > max_wait:
                    raise RateLimitExceededExceedsMaxWait(response.status, {"message": "Retry-After too long"}, dict(response.headers), wait=wait)
            return retry

        def sleep(self, response=None) -> None:  # type: ignore[override]
            started = datetime.now(UTC)
            super().sleep(response)
            waited = (datetime.now(UTC) - started).total_seconds()
            if waited >= 0.05:
                status = getattr(response, "status", "connection error")
                telemetry.wait(waited, f"GitHub {status}: retried after waiting")

    return RecordingRetry


SEARCH_ATTEMPTS = 3


class GitHubSource:
    """Collects one policy's repos and streams from a GitHub API (real or sandbox)."""

    name = "github"

    def __init__(self, token: str | None, repos: list[str], *, api_url: str | None = None, streams: tuple[str, ...] = STREAMS,
                 issue_credit: str = "author", max_wait: float = 900.0, secondary_wait: float = 60.0,
                 retries: int = 8, backoff: float = 1.0, graphql_rate_wait: float = 60.0):
        if not token:
            raise SourceAuthError("GITHUB_TOKEN is not set: create a token with read access to the policy's repos "
                                  "(classic: repo scope; fine-grained: Metadata, Pull requests and Issues read) and export it")
        self.repos = list(repos)
        self.stream_names = tuple(s for s in STREAMS if s in streams)
        self.issue_credit = issue_credit
        self.max_wait = max_wait
        self.graphql_rate_wait = graphql_rate_wait
        self.attempts, self.backoff = max(1, retries), backoff
        self.incomplete_totals: set[StreamRef] = set()  # streams whose last search total GitHub called partial
        self.telemetry = Telemetry()
        retry = _recording_retry(self.telemetry, max_wait)(total=retries, backoff_factor=backoff, secondary_rate_wait=secondary_wait,
                                                           max_rate_limit_wait=max_wait, status_forcelist=list(range(500, 600)) + [429])
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.gh = Github(base_url=self.api_url, auth=Auth.Token(token), per_page=100, seconds_between_requests=0,
                         seconds_between_writes=0, lazy=True, retry=retry)
        self.requester = self.gh.requester

    # -- protocol --------------------------------------------------------------

    def streams(self) -> list[StreamRef]:
        return [StreamRef("github", s, r) for s in self.stream_names for r in self.repos]

    def collect(self, window: Window, cursors: Mapping[StreamRef, dict[str, Any] | None], *, full: bool) -> Iterator[Page]:
        for ref in self.streams():
            cursor = cursors.get(ref) or {}
            through = None if full or not cursor.get("through") else datetime.fromisoformat(cursor["through"].replace("Z", "+00:00"))
            stop = window[0] if through is None else max(window[0], through - OVERLAP)
            pages = {"pull_requests": self._pull_pages, "reviews": self._review_pages, "issues": self._issue_pages}[ref.stream]
            self.telemetry.current = str(ref)
            yield from pages(ref, stop, cursor)
        self.telemetry.current = "(other)"

    def probe(self, cursors: Mapping[StreamRef, dict[str, Any] | None]) -> list[Probe]:
        probes = []
        for ref in self.streams():
            self.telemetry.current = str(ref)
            head = self._head(ref)
            through = (cursors.get(ref) or {}).get("through")
            has_new = head is not None and (through is None or head > through)
            reason = "no activity at all" if head is None else (f"head {head} is past cursor {through}" if has_new else f"nothing updated since {through}")
            probes.append(Probe(ref, has_new, head, reason))
        return probes

    def totals(self, window: Window) -> dict[StreamRef, int | None]:
        """Search counts per repo: merged PRs and closed issues in the window (reviews are not countable)."""
        last = window[1] - timedelta(seconds=1)  # search ranges are inclusive, in whole seconds
        span = f"{iso(window[0])}..{iso(last)}"
        totals: dict[StreamRef, int | None] = {}
        for ref in self.streams():
            self.telemetry.current = f"{ref} (totals)"
            qualifier = {"pull_requests": f"is:pr is:merged merged:{span}", "issues": f"is:issue is:closed closed:{span}"}.get(ref.stream)
            if qualifier is None:
                totals[ref] = None
                continue
            totals[ref] = self._search_total(ref, f"repo:{ref.ref} {qualifier}")
        return totals

    def _search_total(self, ref: StreamRef, query: str) -> int:
        """The search API's ``total_count``; ``incomplete_results: true`` (GitHub timed out, the count may be
        low) is asked again with backoff, then the stream is listed in ``incomplete_totals``."""
        self.incomplete_totals.discard(ref)
        for attempt in range(SEARCH_ATTEMPTS):
            _, data = self._request("GET", "/search/issues", {"q": query, "per_page": 1}, what=f"search for {ref}")
            total = int(field(data, "total_count", f"search result for {ref}"))
            if not data.get("incomplete_results"):
                return total
            if attempt < SEARCH_ATTEMPTS - 1:
                self.telemetry.sleep(min(self.backoff * 2 ** attempt, 8.0), f"GitHub search for {ref} returned incomplete_results: asking again")
        self.incomplete_totals.add(ref)
        self.telemetry.notes.append(f"{ref}: GitHub search kept answering incomplete_results (its total_count {total} may be low) "
                                    f"after {SEARCH_ATTEMPTS} attempts: completeness is reported as unproven, not passed")
        return total

    # -- REST streams ----------------------------------------------------------

    def _list_pages(self, ref: StreamRef, path: str, params: dict[str, Any]) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """Pages of a REST listing, following ``Link: rel="next"``; the flag is True on the last page."""
        url: str | None = path
        while url:
            headers, items = self._request("GET", url, params, what=f"{ref}")
            if not isinstance(items, list):
                raise MalformedItem(f"{ref}: expected a list from {url}, got {type(items).__name__}")
            url, params = _next_link(headers), None
            yield items, url is None

    def _rest_pages(self, ref: StreamRef, stop: datetime, cursor: dict[str, Any], path: str, params: dict[str, Any],
                    to_event) -> Iterator[Page]:
        head: str | None = None
        key_of = github_pr_event_id if ref.stream == "pull_requests" else github_issue_event_id
        for items, final in self._list_pages(ref, path, params):
            events, quarantined, done, listed = [], [], False, []
            for item in map(bounded, items):
                try:  # an item without a readable number and time has no place in the listing: set aside
                    number = integer(item, "number", f"{ref}: an item")
                    what = f"{ref}#{number}"
                    updated = timestamp(item, "updated_at", what)
                except UNREADABLE as exc:
                    quarantined.append(QuarantinedItem.of(item, _reason(exc)))
                    continue
                head = head or iso(updated)
                if updated < stop:
                    done = True
                    break
                listed.append((number, what, item))
            extra = self._details(ref, [(n, item) for n, _, item in listed])
            for number, what, item in listed:
                if number in extra:
                    item = {**item, DETAILS: extra[number]}
                try:
                    event = to_event(ref, item, what)
                except UNREADABLE as exc:
                    quarantined.append(QuarantinedItem.of(item, _reason(exc), key_of(ref.ref, number)))
                    continue
                if event is not None:
                    events.append(event)
            last = done or final
            yield Page(ref, events, _cursor(cursor, head, stop, last), last=last, quarantined=tuple(quarantined))
            if done:
                return

    def _details(self, ref: StreamRef, items: list[tuple[int, dict[str, Any]]]) -> dict[int, Any]:
        """What the REST list form of a page's events lacks, in one GraphQL query for the page: merged PRs'
        sizes and closing references, closed issues' closer. Items that already carry it (or make no event)
        are not asked for. A number GitHub no longer knows (deleted or moved since the listing) maps to None,
        with a note; its event is stored with what the listing said."""
        if ref.stream == "pull_requests":
            wanted = [n for n, item in items if item.get("merged_at") and "additions" not in item]
        else:
            wanted = [n for n, item in items if item.get("closed_at") and not item.get("closed_by") and not is_pull_request(item)]
        if not wanted:
            return {}
        owner, name = ref.ref.split("/", 1)
        data = self._graphql(details_query(ref.stream, wanted), {"owner": owner, "name": name}, f"{ref} (details of {len(wanted)})",
                             missing_ok=True)
        repo = _path(data, ("data", "repository"), f"{ref}")
        found = {n: bounded(repo.get(f"n{n}")) if isinstance(repo.get(f"n{n}"), dict) else None for n in wanted}
        gone = sorted(n for n, node in found.items() if node is None)
        if gone:
            self.telemetry.notes.append(f"{ref}: GitHub GraphQL no longer knows #{', #'.join(map(str, gone))} (deleted or moved "
                                        "since it was listed): stored without the details the list form lacks")
        return found

    def _pull_pages(self, ref: StreamRef, stop: datetime, cursor: dict[str, Any]) -> Iterator[Page]:
        params = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": 100}
        return self._rest_pages(ref, stop, cursor, f"/repos/{ref.ref}/pulls", params, self._pull_event)

    def _issue_pages(self, ref: StreamRef, stop: datetime, cursor: dict[str, Any]) -> Iterator[Page]:
        params = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": 100, "since": iso(stop)}
        return self._rest_pages(ref, stop, cursor, f"/repos/{ref.ref}/issues", params, self._issue_event)

    def _pull_event(self, ref: StreamRef, item: dict[str, Any], what: str) -> ActivityEvent | None:
        columns = github_pull_columns(ref.ref, item, what)
        return None if columns is None else self._event(columns, item)

    def _issue_event(self, ref: StreamRef, item: dict[str, Any], what: str) -> ActivityEvent | None:
        columns = github_issue_columns(ref.ref, item, what, self.issue_credit)
        return None if columns is None else self._event(columns, item)

    # -- GraphQL reviews -------------------------------------------------------

    def _review_pages(self, ref: StreamRef, stop: datetime, cursor: dict[str, Any]) -> Iterator[Page]:
        owner, name = ref.ref.split("/", 1)
        after, head = None, None
        while True:
            data = self._graphql(PULLS_WITH_REVIEWS, {"owner": owner, "name": name, "after": after}, f"{ref}")
            conn = _path(data, ("data", "repository", "pullRequests"), f"{ref}")
            nodes = field(conn, "nodes", f"{ref}")
            events, quarantined, done = [], [], False
            for pr in map(bounded, nodes):
                try:
                    number = integer(pr, "number", f"{ref}: a pull request")
                    updated = timestamp(pr, "updatedAt", f"{ref}#{number}")
                    reviews = list(field(field(pr, "reviews", f"{ref}#{number}"), "nodes", f"{ref}#{number}"))
                except UNREADABLE as exc:
                    quarantined.append(QuarantinedItem.of(pr, _reason(exc)))
                    continue
                head = head or iso(updated)
                if updated < stop:
                    done = True
                    break
                reviews += self._more_reviews(ref, owner, name, number, pr["reviews"])
                for review in reviews:
                    try:
                        event = self._review_event(ref, pr, review)
                    except UNREADABLE as exc:
                        quarantined.append(QuarantinedItem.of(review, _reason(exc), _review_key(ref.ref, number, review)))
                        continue
                    if event is not None:
                        events.append(event)
            info = field(conn, "pageInfo", f"{ref}")
            last = done or not info.get("hasNextPage")
            yield Page(ref, events, _cursor(cursor, head, stop, last), last=last, quarantined=tuple(quarantined))
            if last:
                return
            after = info.get("endCursor")

    def _more_reviews(self, ref: StreamRef, owner: str, name: str, number: int, first: dict[str, Any]) -> list[dict[str, Any]]:
        extra, info = [], first.get("pageInfo") or {}
        while info.get("hasNextPage"):
            data = self._graphql(REVIEWS_OF_PULL, {"owner": owner, "name": name, "number": number, "after": info.get("endCursor")}, f"{ref}#{number} reviews")
            conn = _path(data, ("data", "repository", "pullRequest", "reviews"), f"{ref}#{number}")
            extra += map(bounded, field(conn, "nodes", f"{ref}#{number}"))
            info = conn.get("pageInfo") or {}
        return extra

    def _review_event(self, ref: StreamRef, pr: dict[str, Any], review: dict[str, Any]) -> ActivityEvent | None:
        columns = github_review_columns(ref.ref, pr, review)
        return None if columns is None else self._event(columns, github_review_payload(pr, review))

    # -- plumbing ----------------------------------------------------------------

    def _event(self, columns: DerivedColumns, payload: dict[str, Any]) -> ActivityEvent:
        return columns.event(payload, producer=PRODUCER, producer_version=PRODUCER_VERSION, retrieved_at=datetime.now(UTC))

    def _head(self, ref: StreamRef) -> str | None:
        if ref.stream == "reviews":
            owner, name = ref.ref.split("/", 1)
            nodes = _path(self._graphql(PROBE_PULLS, {"owner": owner, "name": name}, f"{ref}"), ("data", "repository", "pullRequests", "nodes"), f"{ref}")
            return iso(timestamp(nodes[0], "updatedAt", f"{ref}")) if nodes else None
        path = f"/repos/{ref.ref}/{'pulls' if ref.stream == 'pull_requests' else 'issues'}"
        _, items = self._request("GET", path, {"state": "closed", "sort": "updated", "direction": "desc", "per_page": 1}, what=f"{ref}")
        return iso(timestamp(items[0], "updated_at", f"{ref}")) if items else None

    def _respect_primary_limit(self) -> None:
        remaining, _ = self.requester.rate_limiting
        reset = self.requester.rate_limiting_resettime
        if remaining == 0 and reset:
            wait = reset - datetime.now(UTC).timestamp() + 1
            if wait > self.max_wait:
                raise RateLimitTooLong(_too_long("GitHub's primary rate limit is spent", wait), datetime.fromtimestamp(reset, UTC))
            self.telemetry.sleep(wait, "GitHub primary rate limit spent: waiting for x-ratelimit-reset")

    def _request(self, verb: str, url: str, params: dict[str, Any] | None = None, body: Any = None, *, what: str) -> tuple[dict[str, Any], Any]:
        """One API call. urllib3's Retry (inside PyGithub) retries statuses and resets; a 200 whose body is not
        JSON (cut short by a proxy) is retried here, with the same backoff, then reported."""
        for attempt in range(self.attempts):
            try:
                return self._request_once(verb, url, params, body, what=what)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if attempt == self.attempts - 1:
                    raise SourceError(f"GitHub kept answering {what} with a body that is not JSON ({exc}) after {self.attempts} "
                                      "attempts; run the collection again later (every full page before this one is committed)") from None
                self.telemetry.sleep(min(self.backoff * 2 ** attempt, 8.0), f"GitHub body for {what} is not JSON (cut short?): retrying")
        raise AssertionError("unreachable")

    def _request_once(self, verb: str, url: str, params: dict[str, Any] | None, body: Any, *, what: str) -> tuple[dict[str, Any], Any]:
        self._respect_primary_limit()
        self.telemetry.count_request()
        try:
            return self.requester.requestJsonAndCheck(verb, url, parameters=params, input=body)
        except BadCredentialsException:
            raise SourceAuthError(f"GitHub rejected GITHUB_TOKEN (401 Bad credentials) while reading {what}: set GITHUB_TOKEN to a valid token") from None
        except RateLimitExceededExceedsMaxWait as exc:
            retry_at = datetime.now(UTC) + timedelta(seconds=exc.wait)
            raise RateLimitTooLong(_too_long("GitHub asks us to wait", exc.wait), retry_at) from None
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
            if exc.status == 403:
                raise SourceAuthError(f"GITHUB_TOKEN may not read {what} (403: {message}); grant it read access to "
                                      f"{what.split(':')[-1]} (classic: repo scope; fine-grained: Metadata, Pull requests and Issues read)") from None
            if exc.status == 404:
                raise SourceError(f"GitHub says {what} does not exist (404): check the repo name in the policy, "
                                  "and that GITHUB_TOKEN can see it (private repos answer 404 to tokens without access)") from None
            if exc.status == 400 and isinstance(exc.data, dict) and exc.data.get("errors"):
                raise  # GraphQL errors are handled by the caller
            raise SourceError(f"GitHub answered {exc.status} for {what}: {message}") from None
        except requests.exceptions.RetryError as exc:
            raise SourceError(f"GitHub kept failing for {what} after every retry ({exc}); run the collection again later "
                              "(every full page before this one is committed)") from None
        except requests.exceptions.ConnectionError as exc:
            raise SourceError(f"cannot reach GitHub at {self.api_url} for {what}: {exc}") from None

    def _graphql(self, query: str, variables: dict[str, Any], what: str, *, missing_ok: bool = False) -> dict[str, Any]:
        """POST a GraphQL query; waits out ``RATE_LIMITED`` errors inside HTTP 200. With ``missing_ok`` an answer
        whose only errors are ``NOT_FOUND`` (an aliased item that is gone) is returned with its partial data."""
        for _ in range(5):
            try:
                _, data = self._request("POST", f"{self.api_url}/graphql", body={"query": query, "variables": variables}, what=what)
            except GithubException as exc:
                data = exc.data if isinstance(exc.data, dict) else {"errors": [{"message": str(exc.data)}]}
            errors = data.get("errors") or []
            if not errors or (missing_ok and data.get("data") and all(e.get("type") == "NOT_FOUND" for e in errors)):
                return data
            if any(e.get("type") == "RATE_LIMITED" for e in errors):
                # The RATE_LIMITED answer carries x-ratelimit-reset; PyGithub has just recorded it.
                reset = self.requester.rate_limiting_resettime
                wait = reset - datetime.now(UTC).timestamp() + 1 if reset else self.graphql_rate_wait
                wait = max(wait, 1.0)
                if wait > self.max_wait:
                    raise RateLimitTooLong(_too_long("GitHub GraphQL is rate limited", wait), datetime.now(UTC) + timedelta(seconds=wait))
                self.telemetry.sleep(wait, "GitHub GraphQL RATE_LIMITED")
                continue
            messages = "; ".join(str(e.get("message")) for e in errors)
            if any(e.get("type") in ("FORBIDDEN", "INSUFFICIENT_SCOPES") for e in errors):
                raise SourceAuthError(f"GITHUB_TOKEN may not read {what} through GraphQL: {messages}")
            raise SourceError(f"GitHub GraphQL refused the query for {what}: {messages}")
        raise SourceError(f"GitHub GraphQL stayed rate limited for {what}; run the collection again later")


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MalformedItem) else f"{type(exc).__name__}: {exc}"


def _review_key(repo: str, number: int, review: Any) -> str | None:
    """The event id a review would have had, when its id is readable."""
    try:
        return github_review_event_id(repo, number, review.get("fullDatabaseId"))
    except (AttributeError, TypeError, ValueError):
        return None


def _too_long(what: str, wait: float) -> str:
    at = (datetime.now(UTC) + timedelta(seconds=wait)).replace(microsecond=0)
    return f"{what} for {wait:.0f} s, more than the configured maximum; retry after {iso(at)} (every full page so far is committed)"


def _path(data: Any, keys: tuple[str, ...], what: str) -> Any:
    for key in keys:
        data = field(data, key, what)
        if data is None:
            raise SourceError(f"{what}: GitHub returned no {key} (does the repository exist, and can GITHUB_TOKEN see it?)")
    return data


def _next_link(headers: dict[str, Any]) -> str | None:
    link = next((v for k, v in headers.items() if k.lower() == "link"), None)
    for part in (link or "").split(","):
        section = part.split(";")
        if len(section) >= 2 and section[1].strip() == 'rel="next"':
            return section[0].strip().strip("<>")
    return None


def _cursor(previous: dict[str, Any], head: str | None, stop: datetime, last: bool) -> dict[str, Any]:
    """The position after a page: ``through`` advances only when the pass is complete."""
    through = previous.get("through")
    if last:
        candidates = [t for t in (through, head) if t]
        return {"through": max(candidates)} if candidates else {"through": iso(stop)}
    return {**({"through": through} if through else {}), "pass": {"head": head, "stop": iso(stop)}}
