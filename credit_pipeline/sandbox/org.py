"""The sample organisation the sandbox servers serve: one GitHub org and one Discord guild.

``SampleOrg`` is a mutable container (tests add live activity with ``add_*`` to exercise incremental
syncs); the servers read it under ``lock`` on every request, so additions show up immediately.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from credit_pipeline.sandbox.ids import make_snowflake, snowflake_ms, snowflake_time, to_ms
from credit_pipeline.sandbox.model import (
    ANNOUNCEMENT_THREAD,
    GUILD_ANNOUNCEMENT,
    GUILD_FORUM,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    Channel,
    DiscordUser,
    ExpectedEvent,
    GitHubUser,
    Guild,
    Issue,
    Message,
    PullRequest,
    Repo,
    Review,
    Thread,
)


@dataclass
class IdCounters:
    """Next database ids; PR/review ids stay below 2**31 unless the org was built with large ids."""

    repo: int
    pull: int
    issue: int
    review: int
    increment: int = 0


@dataclass
class SampleOrg:
    seed: int
    week_start: datetime
    weeks: int
    org_login: str
    org_id: int
    repos: list[Repo]
    github_users: list[GitHubUser]
    viewer: GitHubUser
    guild: Guild
    discord_users: list[DiscordUser]
    bot_user: DiscordUser
    application_id: int
    ids: IdCounters
    scenario: dict[str, str] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    # -- lookups -----------------------------------------------------------------------------
    @property
    def windows(self) -> list[tuple[datetime, datetime]]:
        """The generated weekly windows ``[start, end)``."""
        return [
            (self.week_start + timedelta(days=7 * k), self.week_start + timedelta(days=7 * (k + 1)))
            for k in range(self.weeks)
        ]

    def repo(self, full_name: str) -> Repo:
        for repo in self.repos:
            if repo.full_name.lower() == full_name.lower():
                return repo
        raise KeyError(full_name)

    def repo_by_id(self, repo_id: int) -> Repo:
        for repo in self.repos:
            if repo.id == repo_id:
                return repo
        raise KeyError(repo_id)

    def github_user(self, login_or_id: str | int) -> GitHubUser:
        for user in self.github_users:
            if user.id == login_or_id or user.login == login_or_id or user.former_login == login_or_id:
                return user
        raise KeyError(login_or_id)

    def channel(self, channel_id: int) -> Channel | Thread:
        """A guild channel or a thread by id (on Discord a thread is a channel: ``GET /channels/{id}``)."""
        for channel in self.guild.channels:
            if channel.id == int(channel_id):
                return channel
        for thread in self.guild.threads:
            if thread.id == int(channel_id):
                return thread
        raise KeyError(channel_id)

    def threads_of(self, parent_id: int | str) -> list[Thread]:
        """The threads (forum posts included) under one channel, oldest first."""
        return [t for t in self.guild.threads if t.parent_id == int(parent_id)]

    def discord_user(self, user_id_or_name: int | str) -> DiscordUser:
        for user in [*self.discord_users, self.bot_user]:
            if user.id == user_id_or_name or user.username == user_id_or_name:
                return user
        raise KeyError(user_id_or_name)

    @property
    def allow_listed_channels(self) -> list[Channel]:
        return [c for c in self.guild.channels if c.allow_listed]

    def policy_sources(self) -> dict[str, Any]:
        """The ``sources:`` section of a SPEC §6 policy that covers this org."""
        return {
            "github": {
                "repos": [r.full_name for r in self.repos],
                "streams": ["pull_requests", "reviews", "issues"],
                "issue_credit": "author",
            },
            "discord": {
                "guild_id": str(self.guild.id),
                "channels": [str(c.id) for c in self.allow_listed_channels],
            },
        }

    def bot_accounts(self) -> dict[str, list[str]]:
        """Bot logins / snowflakes, handy for a policy ``exclude:`` section."""
        return {
            "github": [u.login for u in self.github_users if u.is_bot],
            "discord": [str(u.id) for u in [*self.discord_users, self.bot_user] if u.bot],
        }

    def stats(self) -> dict[str, int]:
        with self.lock:
            pulls = [p for r in self.repos for p in r.pulls]
            return {
                "repos": len(self.repos),
                "pulls": len(pulls),
                "merged_pulls": sum(1 for p in pulls if p.merged_at),
                "reviews": sum(len(p.reviews) for p in pulls),
                "issues": sum(len(r.issues) for r in self.repos),
                "channels": len(self.guild.channels),
                "messages": sum(len(c.messages) for c in self.guild.channels),
            }

    def ground_truth(
        self,
        start: datetime,
        end: datetime,
        source: str | None = None,
        *,
        channels: list[int | str] | None = None,
        html_base: str = "https://github.com",
    ) -> dict[str, ExpectedEvent]:
        """Expected events in ``[start, end)`` keyed by SPEC §3 event id (see ``ground_truth.py``)."""
        from credit_pipeline.sandbox.ground_truth import expected_events

        with self.lock:
            return expected_events(self, start, end, source, channels=channels, html_base=html_base)

    def fingerprint(self) -> str:
        """A digest of every generated fact; equal for equal seeds and parameters."""
        digest = hashlib.sha256()
        with self.lock:
            for repo in self.repos:
                for pr in repo.pulls:
                    digest.update(repr((pr.repo, pr.number, pr.id, pr.author.id, pr.created_at, pr.merged_at,
                                        pr.closed_at, pr.updated_at, pr.labels, pr.additions, pr.deletions, pr.body)).encode())
                    for rv in pr.reviews:
                        digest.update(repr((rv.id, rv.author.id, rv.state, rv.submitted_at)).encode())
                for issue in repo.issues:
                    digest.update(repr((issue.number, issue.id, issue.author.id, issue.closed_at,
                                        issue.closed_by.id if issue.closed_by else None, issue.state_reason, issue.labels)).encode())
            for channel in self.guild.channels:
                digest.update(repr((channel.id, [(m.id, m.author.id, m.content, m.type, m.reference.id if m.reference else None)
                                                 for m in channel.messages])).encode())
            for thread in self.guild.threads:  # none unless built with threads: the digest stays as it was
                digest.update(repr(("thread", thread.id, thread.parent_id, thread.owner_id, thread.type, thread.archived,
                                    thread.archive_timestamp, thread.readable,
                                    [(m.id, m.author.id, m.content, m.type) for m in thread.messages])).encode())
        return digest.hexdigest()

    # -- live activity ---------------------------------------------------------------------------
    def _next_number(self, repo: Repo) -> int:
        return max([0, *(p.number for p in repo.pulls), *(i.number for i in repo.issues)]) + 1

    def add_pull_request(
        self,
        repo: str,
        author: str | int,
        created_at: datetime,
        *,
        merged_at: datetime | None = None,
        closed_at: datetime | None = None,
        merged_by: str | int | None = None,
        title: str = "Live change",
        labels: list[str] | tuple[str, ...] = (),
        additions: int = 10,
        deletions: int = 2,
        body: str | None = None,
    ) -> PullRequest:
        """Open (and optionally merge/close) a new PR, as if it happened after generation."""
        with self.lock:
            target = self.repo(repo)
            user = self.github_user(author)
            self.ids.pull += 1
            self.ids.issue += 1
            closed = closed_at or merged_at
            pr = PullRequest(
                repo=target.full_name, number=self._next_number(target), id=self.ids.pull, issue_id=self.ids.issue,
                title=title, author=user, created_at=created_at, updated_at=max(t for t in (created_at, closed) if t),
                closed_at=closed, merged_at=merged_at,
                merged_by=self.github_user(merged_by) if merged_by else (self.viewer if merged_at else None),
                head_sha=hashlib.sha1(f"live-{self.ids.pull}".encode()).hexdigest(), labels=list(labels),
                additions=additions, deletions=deletions, body=body,
            )
            pr.merge_commit_sha = hashlib.sha1(f"merge-{pr.id}".encode()).hexdigest() if merged_at else None
            target.pulls.append(pr)
            return pr

    def add_review(
        self, repo: str, pr_number: int, author: str | int, state: str, submitted_at: datetime | None
    ) -> Review:
        """Add a review (PENDING needs ``submitted_at=None``); bumps the PR's ``updated_at``."""
        with self.lock:
            pr = next(p for p in self.repo(repo).pulls if p.number == pr_number)
            self.ids.review += 1
            when = submitted_at or max(pr.created_at, pr.updated_at)
            review = Review(self.ids.review, pr.repo, pr.number, self.github_user(author), state, when, submitted_at,
                            body="Live review", commit_id=pr.head_sha)
            pr.reviews.append(review)
            pr.updated_at = max(pr.updated_at, when)
            return review

    def add_issue(
        self,
        repo: str,
        author: str | int,
        created_at: datetime,
        *,
        closed_at: datetime | None = None,
        closed_by: str | int | None = None,
        title: str = "Live issue",
        state_reason: str | None = "completed",
        labels: list[str] | tuple[str, ...] = (),
    ) -> Issue:
        """Open (and optionally close, as ``state_reason``) a new issue; the closer defaults to its author."""
        with self.lock:
            target = self.repo(repo)
            self.ids.issue += 1
            user = self.github_user(author)
            issue = Issue(
                target.full_name, self._next_number(target), self.ids.issue, title, user, created_at,
                closed_at or created_at, closed_at,
                (self.github_user(closed_by) if closed_by else user) if closed_at else None,
                state_reason if closed_at else None, list(labels),
            )
            target.issues.append(issue)
            return issue

    def add_message(
        self, channel_id: int | str, author: int | str, at: datetime, content: str = "live message", *,
        type: int = 0, reference: Message | None = None, pinned: bool = False,  # noqa: A002 - Discord's name
    ) -> Message:
        """Post a message whose snowflake encodes ``at`` (millisecond precision); ``type`` and ``reference``
        as in ``model.Message`` (a REPLY names the message it answers). ``channel_id`` may be a thread's id:
        the message then belongs to the thread (its ``channel_id`` is the thread id)."""
        with self.lock:
            channel = self.channel(int(channel_id))
            if isinstance(channel, Channel) and channel.type == GUILD_FORUM:
                raise ValueError("a forum channel has no messages of its own; post in one of its threads")
            ms = to_ms(at)
            while True:
                self.ids.increment = (self.ids.increment + 1) % 4096
                snowflake = make_snowflake(ms, 1, 0, self.ids.increment)
                if not _contains(channel.message_ids, snowflake):
                    break
            message = Message(snowflake, channel.id, self.discord_user(author), content, None, type, reference, pinned)
            index = bisect.bisect_left(channel.message_ids, snowflake)
            channel.message_ids.insert(index, snowflake)
            channel.messages.insert(index, message)
            assert snowflake_ms(snowflake) == ms
            return message

    def add_thread(
        self, parent_id: int | str, owner: int | str, at: datetime, name: str = "live thread", *,
        archived_at: datetime | None = None, private: bool = False, readable: bool = True,
        content: str = "forum post", locked: bool = False, auto_archive_duration: int = 1440,
    ) -> Thread:
        """Create a thread under ``parent_id`` whose snowflake encodes ``at``; returns it.

        The type follows the parent, as on Discord: 10 under an announcement channel, 12 with ``private``
        (text channels only), else 11. Under a forum channel the thread is a post and gets its starter
        message (``content``, by ``owner``) with the thread's own id. ``archived_at`` archives it then
        (``archive_timestamp``); ``readable`` False hides it from the bot (a private thread it is not in).
        Add its messages with ``add_message(thread.id, ...)``.
        """
        with self.lock:
            parent = self.channel(int(parent_id))
            if not isinstance(parent, Channel):
                raise ValueError("a thread's parent must be a guild channel, not a thread")
            if private and parent.type != 0:
                raise ValueError("private threads exist only under text channels")
            kind = PUBLIC_THREAD if parent.type != GUILD_ANNOUNCEMENT else ANNOUNCEMENT_THREAD
            kind = PRIVATE_THREAD if private else kind
            author = self.discord_user(owner)
            ms = to_ms(at)
            taken = {c.id for c in self.guild.channels} | {t.id for t in self.guild.threads}
            while True:
                self.ids.increment = (self.ids.increment + 1) % 4096
                snowflake = make_snowflake(ms, 1, 0, self.ids.increment)
                if snowflake not in taken:
                    break
            thread = Thread(snowflake, self.guild.id, parent.id, author.id, name, kind,
                            archived=archived_at is not None, archive_timestamp=archived_at if archived_at is not None else snowflake_time(snowflake),
                            readable=readable, locked=locked, auto_archive_duration=auto_archive_duration)
            if parent.type == GUILD_FORUM:
                thread.messages.append(Message(snowflake, snowflake, author, content))
                thread.message_ids.append(snowflake)
            index = bisect.bisect_left([t.id for t in self.guild.threads], snowflake)
            self.guild.threads.insert(index, thread)
            return thread


def _contains(sorted_ids: list[int], value: int) -> bool:
    index = bisect.bisect_left(sorted_ids, value)
    return index < len(sorted_ids) and sorted_ids[index] == value
