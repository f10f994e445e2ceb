"""A local GitHub API (REST + GraphQL) that unmodified PyGithub cannot tell from api.github.com.

Endpoints (``{repo}`` = ``/repos/{owner}/{repo}`` or ``/repositories/{id}``, the form GitHub uses
in Link headers):
``GET /user``, ``GET /users/{login}``, ``GET /rate_limit``, ``GET {repo}``,
``GET {repo}/pulls`` (state, sort, direction, head, base, per_page, page),
``GET {repo}/pulls/{n}``, ``GET {repo}/pulls/{n}/reviews`` (per_page, page),
``GET {repo}/issues`` (state, since, sort, direction, creator, per_page, page; PRs included),
``GET {repo}/issues/{n}``, ``GET /search/issues`` (q, sort, order, per_page, page; first 1000 only),
``POST /graphql`` (also ``/api/graphql``).

Every response carries ``x-ratelimit-*`` headers, an ``x-github-request-id`` and, for GETs, a
weak ``ETag``; a matching ``If-None-Match`` gets 304 without spending rate limit.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Callable

from credit_pipeline.sandbox.faults import Fault, FaultKind, FaultPlan
from credit_pipeline.sandbox.github_connections import GraphQLContext
from credit_pipeline.sandbox.github_graphql import github_schema, run_query
from credit_pipeline.sandbox.github_limits import GitHubRateLimits, exhausted_headers
from credit_pipeline.sandbox.github_payloads import GitHubRenderer, template
from credit_pipeline.sandbox.github_search import SearchError, search_items
from credit_pipeline.sandbox.ids import github_time, parse_time
from credit_pipeline.sandbox.http_base import App, Request, RequestLog, Response, ServerThread
from credit_pipeline.sandbox.model import GHOST, PullRequest, Repo
from credit_pipeline.sandbox.org import SampleOrg
from credit_pipeline.sandbox.paging import page_params, paginate

DOCS = "https://docs.github.com/rest"
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                     "If you reach out to GitHub Support for help, please include the request ID {rid}.")
_REPO = r"/(?:repos/(?P<owner>[^/]+)/(?P<name>[^/]+)|repositories/(?P<id>\d+))"


class HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class GitHubApp(App):
    name = "github"

    def __init__(self, org: SampleOrg, log: RequestLog, faults: FaultPlan, token: str | None = None,
                 rate_limits: dict[str, tuple[int, float]] | None = None) -> None:
        super().__init__(log, faults)
        self.org = org
        self.token = token
        self.limits = GitHubRateLimits(rate_limits)
        self.incomplete_searches = 0  # the next N searches time out on GitHub's side: incomplete_results, half the count
        self._renderers: dict[str, GitHubRenderer] = {}
        self._renderer_lock = threading.Lock()
        self._request_ids = iter(range(1, 10**12))
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("GET", re.compile(r"/user"), self._me),
            ("GET", re.compile(r"/users/(?P<login>[^/]+)"), self._user),
            ("GET", re.compile(r"/rate_limit"), self._rate_limit),
            ("GET", re.compile(r"/search/issues"), self._search),
            ("GET", re.compile(_REPO), self._repo),
            ("GET", re.compile(_REPO + r"/pulls"), self._pulls),
            ("GET", re.compile(_REPO + r"/pulls/(?P<number>\d+)"), self._pull),
            ("GET", re.compile(_REPO + r"/pulls/(?P<number>\d+)/reviews"), self._reviews),
            ("GET", re.compile(_REPO + r"/issues"), self._issues),
            ("GET", re.compile(_REPO + r"/issues/(?P<number>\d+)"), self._issue),
            ("POST", re.compile(r"(?:/api)?/graphql"), self._graphql),
        ]

    # -- plumbing --------------------------------------------------------------------------------
    def renderer(self, request: Request) -> GitHubRenderer:
        with self._renderer_lock:
            if request.base_url not in self._renderers:
                self._renderers[request.base_url] = GitHubRenderer(request.base_url, self.org.org_login, self.org.org_id)
            return self._renderers[request.base_url]

    def _common_headers(self) -> list[tuple[str, str]]:
        rid = f"{next(self._request_ids):04X}:{self.org.seed:04X}:SANDBOX"
        return [("x-github-request-id", rid), ("x-github-api-version-selected", "2022-11-28"),
                ("x-github-media-type", "github.v3; format=json")]

    def _error(self, status: int, message: str, headers: list[tuple[str, str]] | None = None, **extra: Any) -> Response:
        documentation = extra.pop("documentation_url", DOCS)
        body = {"message": message, **extra, "documentation_url": documentation, "status": str(status)}
        return Response(status, body, [*(headers or []), *self._common_headers()],
                        content_type="application/json; charset=utf-8")

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() in ("token", "bearer") and value.strip() == self.token

    @staticmethod
    def _resource(path: str) -> str:
        if path.endswith("/graphql"):
            return "graphql"
        return "search" if path.startswith("/search/") else "core"

    def handle(self, request: Request) -> Response:
        resource = self._resource(request.path)
        if not self._authorized(request):
            return self._error(401, "Bad credentials", self.limits.headers(resource))
        route = self._match(request)
        if route is not None and route[0] in (self._graphql, self._rate_limit):
            try:
                return route[0](request, **route[1])
            except HTTPError as exc:
                return self._error(exc.status, exc.message, self.limits.headers(resource), **exc.extra)
        allowed, rate_headers = self.limits.consume(resource)
        if not allowed:
            return self._error(403, f"API rate limit exceeded for user ID {self.org.viewer.id}.", rate_headers,
                               documentation_url=f"{DOCS}/overview/rate-limits-for-the-rest-api")
        if route is None:
            return self._error(404, "Not Found", rate_headers)
        handler, params = route
        try:
            with self.org.lock:
                response = handler(request, **params)
        except HTTPError as exc:
            response = self._error(exc.status, exc.message, **exc.extra)
        response.headers = [*rate_headers, *self._common_headers(), *response.headers]
        response.content_type = "application/json; charset=utf-8"
        return response

    def _match(self, request: Request) -> tuple[Callable[..., Response], dict[str, str]] | None:
        path = request.path.rstrip("/") or "/"
        for method, pattern, handler in self._routes:
            found = pattern.fullmatch(path)
            if found and method == request.method:
                return handler, {k: v for k, v in found.groupdict().items()}
        return None

    def encode(self, request: Request, response: Response) -> bytes:
        data = super().encode(request, response)
        if request.method == "GET" and response.status == 200:
            etag = f'W/"{hashlib.sha256(data).hexdigest()[:40]}"'
            response.headers.append(("ETag", etag))
            if request.headers.get("if-none-match") == etag:
                if request.path != "/rate_limit":
                    refunded = dict(self.limits.refund(self._resource(request.path)))
                    response.headers = [(k, refunded.get(k, v)) for k, v in response.headers]
                response.status = 304
                return b""
        return data

    def fault_response(self, fault: Fault, request: Request) -> Response:
        resource = self._resource(request.path)
        rate = self.limits.headers(resource)
        kind = fault.kind
        if kind is FaultKind.GITHUB_SECONDARY_LIMIT:
            extra = [("Retry-After", str(math.ceil(fault.retry_after)))] if fault.retry_after is not None else []
            return self._error(403, SECONDARY_MESSAGE.format(rid=self._common_headers()[0][1]), [*rate, *extra],
                               documentation_url="https://docs.github.com/free-pro-team@latest/rest/overview/"
                                                 "rate-limits-for-the-rest-api#about-secondary-rate-limits")
        if kind is FaultKind.GITHUB_PRIMARY_LIMIT:
            limit = self.limits.snapshot(resource)["limit"]
            return self._error(fault.status or 403, f"API rate limit exceeded for user ID {self.org.viewer.id}.",
                               exhausted_headers(resource, limit, fault.reset_in),
                               documentation_url=f"{DOCS}/overview/rate-limits-for-the-rest-api")
        if kind is FaultKind.GRAPHQL_RATE_LIMITED:
            limit = self.limits.snapshot("graphql")["limit"]
            body = {"data": None, "errors": [{"type": "RATE_LIMITED", "code": "graphql_rate_limit",
                                              "message": f"API rate limit exceeded for user ID {self.org.viewer.id}."}]}
            return Response(200, body, [*exhausted_headers("graphql", limit, fault.reset_in), *self._common_headers()],
                            content_type="application/json; charset=utf-8")
        if kind is FaultKind.GITHUB_FORBIDDEN:
            return self._error(403, "Resource not accessible by personal access token", rate,
                               documentation_url=f"{DOCS}/pulls/pulls#list-pull-requests")
        if kind in (FaultKind.HTTP_429, FaultKind.DISCORD_429, FaultKind.DISCORD_CLOUDFLARE_BAN):
            extra = [("Retry-After", str(math.ceil(fault.retry_after)))] if fault.retry_after is not None else []
            return self._error(429, "Too Many Requests", [*rate, *extra])
        return self._error(fault.status or 502, HTTPStatus(fault.status or 502).phrase, rate)

    # -- endpoints -------------------------------------------------------------------------------
    def _find_repo(self, owner: str | None, name: str | None, id: str | None) -> Repo:  # noqa: A002
        try:
            return self.org.repo_by_id(int(id)) if id else self.org.repo(f"{owner}/{name}")
        except KeyError:
            raise HTTPError(404, "Not Found") from None

    def _me(self, request: Request) -> Response:
        return Response(200, self.renderer(request).private_user(self.org.viewer))

    def _user(self, request: Request, login: str) -> Response:
        if login == GHOST.login:
            return Response(200, self.renderer(request).public_user(GHOST))
        user = next((u for u in self.org.github_users if u.login == login and not u.deleted), None)
        if user is None:
            raise HTTPError(404, "Not Found")
        return Response(200, self.renderer(request).public_user(user))

    def _rate_limit(self, request: Request) -> Response:
        body = json.loads(json.dumps(template("rate-limit-overview")))
        for name in self.limits.resources():
            body["resources"][name] = self.limits.snapshot(name)
        body["rate"] = body["resources"]["core"]
        return Response(200, body, [*self.limits.headers("core"), *self._common_headers()],
                        content_type="application/json; charset=utf-8")

    def _repo(self, request: Request, owner: str | None, name: str | None, id: str | None) -> Response:  # noqa: A002
        return Response(200, self.renderer(request).repo(self._find_repo(owner, name, id)))

    def _page(self, request: Request, items: list[Any], link_path: str, render: Callable[[Any], Any],
              cap: int | None = None) -> Response:
        page = paginate(items, request.query, request.query_pairs, f"{request.base_url}{link_path}", cap)
        headers = [("Link", page.link)] if page.link else []
        return Response(200, [render(i) for i in page.items], headers)

    def _sorted(self, items: list[Any], query: dict[str, str], sorts: dict[str, Callable[[Any], Any]],
                pulls: bool) -> list[Any]:
        sort = query.get("sort") or "created"
        if sort not in sorts:
            raise HTTPError(422, "Validation Failed", errors=[{"resource": "Issue", "field": "sort", "code": "invalid"}])
        # Pulls: direction defaults to desc for sort=created, asc otherwise; issues: always desc.
        default = "desc" if (sort == "created" or not pulls) else "asc"
        direction = query.get("direction") or default
        if direction not in ("asc", "desc"):
            raise HTTPError(422, "Validation Failed", errors=[{"field": "direction", "code": "invalid"}])
        return sorted(items, key=sorts[sort], reverse=direction == "desc")

    @staticmethod
    def _state(query: dict[str, str]) -> str:
        state = query.get("state") or "open"
        if state not in ("open", "closed", "all"):
            raise HTTPError(422, "Validation Failed", errors=[{"field": "state", "code": "invalid"}])
        return state

    def _pulls(self, request: Request, owner: str | None, name: str | None, id: str | None) -> Response:  # noqa: A002
        repo = self._find_repo(owner, name, id)
        state, head = self._state(request.query), request.query.get("head")
        items = [p for p in repo.pulls if state in ("all", p.state)
                 and (not head or head in (f"{repo.owner}:change-{p.number}", f"change-{p.number}"))
                 and request.query.get("base") in (None, "", "main")]
        by_created = lambda p: (p.created_at, p.number)  # noqa: E731
        sorts = {"created": by_created, "updated": lambda p: (p.updated_at, p.number), "popularity": by_created,
                 "long-running": by_created}
        items = self._sorted(items, request.query, sorts, pulls=True)
        render = self.renderer(request)
        return self._page(request, items, f"/repositories/{repo.id}/pulls", lambda p: render.pull(p, repo))

    def _find_pull(self, repo: Repo, number: str) -> PullRequest:
        pr = next((p for p in repo.pulls if p.number == int(number)), None)
        if pr is None:
            raise HTTPError(404, "Not Found")
        return pr

    def _pull(self, request: Request, number: str, **where: str | None) -> Response:
        repo = self._find_repo(**where)
        return Response(200, self.renderer(request).pull(self._find_pull(repo, number), repo, full=True))

    def _reviews(self, request: Request, number: str, **where: str | None) -> Response:
        repo = self._find_repo(**where)
        pr = self._find_pull(repo, number)
        visible = [r for r in pr.reviews if r.state != "PENDING" or r.author.id == self.org.viewer.id]
        render = self.renderer(request)
        return self._page(request, visible, f"/repositories/{repo.id}/pulls/{pr.number}/reviews", render.review)

    def _issues(self, request: Request, owner: str | None, name: str | None, id: str | None) -> Response:  # noqa: A002
        repo = self._find_repo(owner, name, id)
        state, query = self._state(request.query), request.query
        since = None
        if query.get("since"):
            try:
                since = parse_time(query["since"])
            except ValueError:
                raise HTTPError(422, "Validation Failed", errors=[{"field": "since", "code": "invalid"}]) from None
        creator = query.get("creator")
        items = [i for i in [*repo.issues, *repo.pulls] if state in ("all", i.state)
                 and (since is None or i.updated_at >= since)
                 and (not creator or (i.author.login == creator and not i.author.deleted))]
        sorts = {"created": lambda i: (i.created_at, i.number), "updated": lambda i: (i.updated_at, i.number),
                 "comments": lambda i: (0, i.number)}
        items = self._sorted(items, query, sorts, pulls=False)
        render = self.renderer(request)
        return self._page(request, items, f"/repositories/{repo.id}/issues", lambda item: render.issue(item, listed=True))

    def _issue(self, request: Request, number: str, **where: str | None) -> Response:
        repo = self._find_repo(**where)
        item = next((i for i in [*repo.issues, *repo.pulls] if i.number == int(number)), None)
        if item is None:
            raise HTTPError(404, "Not Found")
        return Response(200, self.renderer(request).issue(item))

    def _search(self, request: Request) -> Response:
        query = request.query
        try:
            found = search_items(self.org, query.get("q", ""), query.get("sort"), query.get("order"))
        except SearchError as exc:
            raise HTTPError(422, "Validation Failed",
                            errors=[{"message": str(exc), "resource": "Search", "field": "q", "code": "invalid"}],
                            documentation_url="https://docs.github.com/v3/search/") from None
        per_page, page_number = page_params(query)
        if (page_number - 1) * per_page >= 1000 and found:
            raise HTTPError(422, "Only the first 1000 search results are available",
                            documentation_url="https://docs.github.com/v3/search/")
        render = self.renderer(request)
        page = paginate(found, query, request.query_pairs, f"{request.base_url}/search/issues", cap=1000)
        incomplete = self.incomplete_searches > 0
        if incomplete:  # GitHub timed out: a partial count (here: half), flagged as such
            self.incomplete_searches -= 1
            found = found[: len(found) // 2]
        body = {"total_count": len(found), "incomplete_results": incomplete,
                "items": [render.issue(i, search=True) for i in page.items]}
        return Response(200, body, [("Link", page.link)] if page.link else [])

    def _graphql(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            raise HTTPError(400, "Problems parsing JSON") from None
        ctx = GraphQLContext(self.org, request.base_url, self.org.viewer)
        state: dict[str, list[tuple[str, str]]] = {"headers": self.limits.headers("graphql")}

        def charge(cost: int) -> dict[str, Any] | None:
            allowed, headers = self.limits.consume("graphql", cost)
            state["headers"] = headers
            if not allowed:
                return None
            snap = self.limits.snapshot("graphql")
            return {"limit": snap["limit"], "remaining": snap["remaining"], "used": snap["used"],
                    "resetAt": github_time(datetime.fromtimestamp(snap["reset"], timezone.utc))}

        with self.org.lock:
            outcome = run_query(ctx, body, charge)
        return Response(outcome.status, outcome.payload, [*state["headers"], *self._common_headers()],
                        content_type="application/json; charset=utf-8")


class GitHubSandboxServer:
    """A running GitHub sandbox: ``url`` is the PyGithub ``base_url``."""

    def __init__(self, org: SampleOrg, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 log: RequestLog | None = None, faults: FaultPlan | None = None,
                 rate_limits: dict[str, tuple[int, float]] | None = None) -> None:
        self.log = log if log is not None else RequestLog()
        self.faults = faults if faults is not None else FaultPlan()
        self.app = GitHubApp(org, self.log, self.faults, token, rate_limits)
        self._thread = ServerThread(self.app, host, port)
        # Build GitHub's schema (~0.6 s, once per process) now rather than inside the first query.
        threading.Thread(target=github_schema, name="github-schema", daemon=True).start()

    @property
    def url(self) -> str:
        return self._thread.url

    @property
    def port(self) -> int:
        return self._thread.port

    def stop(self) -> None:
        self._thread.stop()

    def __enter__(self) -> "GitHubSandboxServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

