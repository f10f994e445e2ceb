"""GitHub REST payloads rendered from GitHub's own OpenAPI examples (``data/github/*.json``).

Each builder copies the example's key set and fills in generated values, and every
``https://api.github.com`` / ``https://github.com`` URL is rewritten to the sandbox host: API URLs keep
their paths (``/repos/acme/widgets/pulls/5``), web URLs keep GitHub's web paths
(``/acme/widgets/pull/5``), so the two stay distinguishable and PyGithub's same-host assertion holds.
Deleted users are rendered as GitHub's ``ghost`` account. PRs and issues carry their labels as label
objects; only the single-PR form carries ``additions``/``deletions`` (GitHub's list form has none).
Objects shared by many items (users, repositories) are cached per base URL; the HTTP layer copies
before corrupting any of them.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from credit_pipeline.sandbox.ground_truth import rest_user
from credit_pipeline.sandbox.ids import github_node_id, github_time
from credit_pipeline.sandbox.labels import rest_label
from credit_pipeline.sandbox.model import GitHubUser, Issue, PullRequest, Repo, Review

DATA_DIR = Path(__file__).with_name("data")


@lru_cache(maxsize=None)
def template(name: str) -> Any:
    """An example payload (first element for list examples); callers must copy before editing."""
    data = json.loads((DATA_DIR / "github" / f"{name}.json").read_text(encoding="utf-8"))
    return data[0] if isinstance(data, list) else data


def rewrite_urls(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """Deep copy of ``value`` with every string prefix/substring replaced in order."""
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: rewrite_urls(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_urls(v, pairs) for v in value]
    return value


class GitHubRenderer:
    """Renders org records into REST payloads for one base URL (``http://127.0.0.1:PORT``)."""

    def __init__(self, base: str, org_login: str, org_id: int) -> None:
        self.base = base.rstrip("/")
        self.org_login = org_login
        self.org_id = org_id
        self._users: dict[tuple[int, str], dict[str, Any]] = {}
        self._repos: dict[tuple[int, bool], dict[str, Any]] = {}

    # -- accounts --------------------------------------------------------------------------------
    def user(self, user: GitHubUser | None, moment: Any = None) -> dict[str, Any] | None:
        """A simple-user object as embedded in items (``user``, ``closed_by``, ``merged_by``...)."""
        if user is None:
            return None
        shown = rest_user(user)
        login = shown.login_at(moment)
        key = (shown.id, login)
        if key not in self._users:
            self._users[key] = self._simple_user(shown, login)
        return self._users[key]

    def _simple_user(self, user: GitHubUser, login: str, kind: str | None = None) -> dict[str, Any]:
        api, web = f"{self.base}/users/{quote(login)}", f"{self.base}/{login}"
        if user.type == "Bot":
            web = f"{self.base}/apps/{login.removesuffix('[bot]')}"
        out = rewrite_urls(template("pull-request-review-items")["user"],
                           [("https://api.github.com/users/octocat", api), ("https://github.com/octocat", web)])
        out.update(login=login, id=user.id, node_id=github_node_id(kind or user.type, user.id),
                   avatar_url=f"{self.base}/avatars/u/{user.id}?v=4", type=kind or user.type, site_admin=False)
        return out

    def organization(self) -> dict[str, Any]:
        owner = GitHubUser(self.org_id, self.org_login)
        return self._simple_user(owner, self.org_login, kind="Organization")

    def public_user(self, user: GitHubUser) -> dict[str, Any]:
        """``GET /users/{login}``."""
        out = copy.deepcopy(template("public-user-default-response"))
        out.update(self.user(user) or {})
        shown = rest_user(user)
        out.update(name=shown.name, company=None, blog="", location=None, email=None, hireable=None,
                   bio=None, twitter_username=None, public_repos=0, public_gists=0, followers=0, following=0,
                   created_at="2015-06-01T12:00:00Z", updated_at="2026-01-01T12:00:00Z")
        return out

    def private_user(self, user: GitHubUser) -> dict[str, Any]:
        """``GET /user`` for the token's owner."""
        out = copy.deepcopy(template("private-user"))
        out.update(self.public_user(user))
        out.update(private_gists=0, total_private_repos=0, owned_private_repos=0, disk_usage=0, collaborators=0,
                   two_factor_authentication=True)
        return out

    # -- repositories ----------------------------------------------------------------------------
    def _repo_pairs(self, repo: Repo) -> list[tuple[str, str]]:
        full = repo.full_name
        return [("https://api.github.com/repos/octocat/Hello-World", f"{self.base}/repos/{full}"),
                ("https://github.com/octocat/Hello-World", f"{self.base}/{full}"),
                ("octocat/Hello-World", full), ("https://svn.github.com", self.base),
                ("https://api.github.com", self.base), ("https://github.com", self.base)]

    def repo(self, repo: Repo, full: bool = True) -> dict[str, Any]:
        """Full repository (``GET /repos/o/r``) or the repository object nested in PR head/base."""
        key = (repo.id, full)
        if key in self._repos:
            return self._repos[key]
        source = template("full-repository-default-response") if full else template("pull-request-simple-items")["head"]["repo"]
        out = rewrite_urls(source, self._repo_pairs(repo))
        created = github_time(repo.created_at)
        out.update(id=repo.id, node_id=github_node_id("Repository", repo.id), name=repo.name, full_name=repo.full_name,
                   owner=self.organization(), description=f"The {repo.name} repository", fork=False,
                   homepage=None, default_branch="main", is_template=False, topics=[], visibility="public",
                   created_at=created, updated_at="2026-02-01T00:00:00Z", pushed_at="2026-02-01T00:00:00Z",
                   permissions={"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
                   template_repository=None, mirror_url=None)
        if full:
            out["organization"] = self.organization()
            out.pop("parent", None)  # only forks carry parent/source
            out.pop("source", None)
        self._repos[key] = out
        return out

    # -- pulls -----------------------------------------------------------------------------------
    def pull(self, pr: PullRequest, repo: Repo, full: bool = False) -> dict[str, Any]:
        """A PR as listed (``pull-request-simple``) or fetched alone (``pull-request``, ``full=True``)."""
        api, web, n = f"{self.base}/repos/{pr.repo}", f"{self.base}/{pr.repo}", pr.number
        author = self.user(pr.author, pr.event_time)
        branch = f"change-{n}"
        links = {"self": f"{api}/pulls/{n}", "html": f"{web}/pull/{n}", "issue": f"{api}/issues/{n}",
                 "comments": f"{api}/issues/{n}/comments", "review_comments": f"{api}/pulls/{n}/comments",
                 "review_comment": f"{api}/pulls/comments{{/number}}", "commits": f"{api}/pulls/{n}/commits",
                 "statuses": f"{api}/statuses/{pr.head_sha}"}
        out: dict[str, Any] = {
            "url": links["self"], "id": pr.id, "node_id": github_node_id("PullRequest", pr.id), "html_url": links["html"],
            "diff_url": f"{web}/pull/{n}.diff", "patch_url": f"{web}/pull/{n}.patch", "issue_url": links["issue"],
            "commits_url": links["commits"], "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"], "comments_url": links["comments"],
            "statuses_url": links["statuses"], "number": n, "state": pr.state, "locked": False, "title": pr.title,
            "user": author, "body": pr.description, "labels": self.labels(pr.repo, pr.labels), "milestone": None,
            "active_lock_reason": None, "created_at": github_time(pr.created_at),
            "updated_at": github_time(pr.updated_at), "closed_at": github_time(pr.closed_at),
            "merged_at": github_time(pr.merged_at), "merge_commit_sha": pr.merge_commit_sha, "assignee": None,
            "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": {"label": f"{self.org_login}:{branch}", "ref": branch, "sha": pr.head_sha, "user": self.organization(),
                     "repo": self.repo(repo, full=False)},
            "base": {"label": f"{self.org_login}:main", "ref": "main", "sha": pr.head_sha[::-1],
                     "user": self.organization(), "repo": self.repo(repo, full=False)},
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": _association(pr.author), "auto_merge": None, "draft": False,
        }
        if full:
            out.update(merged=pr.merged_at is not None, mergeable=None if pr.closed_at else True, rebaseable=None,
                       mergeable_state="unknown" if pr.closed_at else "clean",
                       merged_by=self.user(pr.merged_by, pr.merged_at), comments=0, review_comments=0,
                       maintainer_can_modify=False, commits=1, additions=pr.additions, deletions=pr.deletions, changed_files=1)
        return out

    def labels(self, repo: str, names: list[str]) -> list[dict[str, Any]]:
        return [rest_label(self.base, repo, name) for name in names]

    def review(self, review: Review) -> dict[str, Any]:
        api, web = f"{self.base}/repos/{review.repo}", f"{self.base}/{review.repo}"
        html = f"{web}/pull/{review.pr_number}#pullrequestreview-{review.id}"
        pull = f"{api}/pulls/{review.pr_number}"
        out: dict[str, Any] = {
            "id": review.id, "node_id": github_node_id("PullRequestReview", review.id),
            "user": self.user(review.author, review.submitted_at or review.created_at), "body": review.body,
            "state": review.state, "html_url": html, "pull_request_url": pull,
            "_links": {"html": {"href": html}, "pull_request": {"href": pull}},
            "submitted_at": github_time(review.submitted_at), "commit_id": review.commit_id,
            "author_association": _association(review.author),
        }
        if review.state == "PENDING":
            del out["submitted_at"]  # GitHub omits it until the review is submitted
        return out

    # -- issues ----------------------------------------------------------------------------------
    def issue(self, item: Issue | PullRequest, search: bool = False, listed: bool = False) -> dict[str, Any]:
        """A single issue (``issue``), an issue-list item (``listed``) or a search hit (``issue-search-result-item``).

        PRs come back too, with a ``pull_request`` key and ``/pull/`` in ``html_url``, as on GitHub. Only the
        single issue names its closer: list items carry ``closed_by: null`` (as GitHub's do, though its OpenAPI
        example shows one: hub4j/github-api#60, augurlabs/augur#2524) and search hits have no such key; the
        closer is the ``ClosedEvent`` of the issue's GraphQL ``timelineItems``."""
        api, web, n = f"{self.base}/repos/{item.repo}", f"{self.base}/{item.repo}", item.number
        is_pr = isinstance(item, PullRequest)
        # A closed-unmerged PR is taken to be closed by its author.
        closer = ((item.merged_by or item.author) if is_pr else item.closed_by) if item.closed_at else None
        out: dict[str, Any] = {
            "id": item.issue_id if is_pr else item.id,
            "node_id": github_node_id("Issue", item.issue_id if is_pr else item.id),
            "url": f"{api}/issues/{n}", "repository_url": api, "labels_url": f"{api}/issues/{n}/labels{{/name}}",
            "comments_url": f"{api}/issues/{n}/comments", "events_url": f"{api}/issues/{n}/events",
            "html_url": f"{web}/pull/{n}" if is_pr else f"{web}/issues/{n}", "number": n, "state": item.state,
            "title": item.title, "body": item.description if is_pr else f"Details of {item.title.lower()}.",
            "user": self.user(item.author, item.event_time), "labels": self.labels(item.repo, item.labels), "assignee": None,
            "assignees": [], "milestone": None, "locked": False,
            "active_lock_reason": None, "comments": 0, "closed_at": github_time(item.closed_at),
            "created_at": github_time(item.created_at), "updated_at": github_time(item.updated_at),
            "closed_by": None if listed else self.user(closer, item.closed_at), "author_association": _association(item.author),
            "state_reason": None if is_pr else item.state_reason,
        }
        if not search:
            out["pinned_comment"] = None
        if is_pr:
            out["pull_request"] = {"url": f"{api}/pulls/{n}", "html_url": f"{web}/pull/{n}",
                                   "diff_url": f"{web}/pull/{n}.diff", "patch_url": f"{web}/pull/{n}.patch",
                                   "merged_at": github_time(item.merged_at)}
            out["draft"] = False
        if search:
            out.pop("closed_by")
            out.pop("assignees")
            out.pop("active_lock_reason")
            out.update(type=None, score=1.0)
        return out


def _association(user: GitHubUser) -> str:
    if user.deleted:
        return "NONE"
    return "CONTRIBUTOR" if user.is_bot else "MEMBER"
