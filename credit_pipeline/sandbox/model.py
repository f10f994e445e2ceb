"""Plain records of a sample organisation, independent of any wire format.

The servers render these into GitHub / Discord payloads on each request; the generator and the
ground truth read them directly. Times are timezone-aware UTC; GitHub times are whole seconds,
Discord message times are the milliseconds encoded in the snowflake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from credit_pipeline.sandbox.ids import snowflake_time

GHOST_ID = 10137
"""GitHub's placeholder account that REST shows for content of deleted users."""
GHOST_LOGIN = "ghost"


@dataclass(frozen=True, slots=True)
class GitHubUser:
    """A GitHub account. ``login`` is the current login; ``former_login`` was used before ``renamed_at``."""

    id: int
    login: str
    type: str = "User"  # "User" | "Bot"
    name: str | None = None
    former_login: str | None = None
    renamed_at: datetime | None = None
    deleted: bool = False

    @property
    def is_bot(self) -> bool:
        return self.type == "Bot" or self.login.endswith("[bot]")

    def login_at(self, moment: datetime | None) -> str:
        """Login shown on an item whose event happened at ``moment`` (the rename simulation)."""
        if self.former_login and self.renamed_at and moment is not None and moment < self.renamed_at:
            return self.former_login
        return self.login


GHOST = GitHubUser(id=GHOST_ID, login=GHOST_LOGIN, name=None)


@dataclass(slots=True)
class Review:
    """A pull-request review. PENDING reviews have no ``submitted_at`` and are visible only to their author."""

    id: int
    repo: str
    pr_number: int
    author: GitHubUser
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    created_at: datetime
    submitted_at: datetime | None
    body: str = ""
    commit_id: str = ""


@dataclass(slots=True)
class PullRequest:
    """A pull request. ``issue_id`` is the id it has when listed through the issues endpoint.

    ``labels`` are label names (rendered as GitHub's label objects, see ``labels.py``); ``additions``
    and ``deletions`` are its changed lines; ``body`` None renders the generated description.
    """

    repo: str
    number: int
    id: int
    issue_id: int
    title: str
    author: GitHubUser
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    merged_by: GitHubUser | None = None
    reviews: list[Review] = field(default_factory=list)
    head_sha: str = ""
    merge_commit_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    additions: int = 10
    deletions: int = 2
    body: str | None = None

    @property
    def state(self) -> str:
        return "closed" if self.closed_at else "open"

    @property
    def description(self) -> str:
        """The body GitHub shows: ``body``, else the generated one."""
        return self.body if self.body is not None else f"Implements {self.title.lower()}."

    @property
    def graphql_state(self) -> str:
        return "MERGED" if self.merged_at else ("CLOSED" if self.closed_at else "OPEN")

    @property
    def event_time(self) -> datetime:
        """Time that decides which login the author shows (see ``GitHubUser.login_at``)."""
        return self.merged_at or self.closed_at or self.created_at


@dataclass(slots=True)
class Issue:
    """A real issue (not a pull request)."""

    repo: str
    number: int
    id: int
    title: str
    author: GitHubUser
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    closed_by: GitHubUser | None = None
    state_reason: str | None = None  # completed | not_planned | None
    labels: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "closed" if self.closed_at else "open"

    @property
    def event_time(self) -> datetime:
        return self.closed_at or self.created_at


@dataclass(slots=True)
class Repo:
    """A repository under the org, with its pulls and issues (numbers share one sequence)."""

    owner: str
    name: str
    id: int
    created_at: datetime
    pulls: list[PullRequest] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class DiscordUser:
    """A Discord account; ``former_username`` was shown before ``renamed_at``."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    former_username: str | None = None
    renamed_at: datetime | None = None

    def username_at(self, moment: datetime) -> str:
        if self.former_username and self.renamed_at and moment < self.renamed_at:
            return self.former_username
        return self.username


# Discord message types (developer docs, "Message Types"): conversation and a few system ones.
DEFAULT, CHANNEL_PINNED_MESSAGE, GUILD_MEMBER_JOIN, GUILD_BOOST, REPLY = 0, 6, 7, 8, 19


@dataclass(frozen=True, slots=True)
class Message:
    """A channel message; its creation time is the one encoded in ``id``.

    ``type`` is Discord's message type. ``reference`` is the message a REPLY answers or a
    CHANNEL_PINNED_MESSAGE notice points at (Discord's ``message_reference``); ``pinned`` marks a
    message that was pinned. System messages carry the content Discord gives them (joins, pins
    and single boosts: empty).
    """

    id: int
    channel_id: int
    author: DiscordUser
    content: str
    edited_at: datetime | None = None
    type: int = DEFAULT
    reference: Message | None = None
    pinned: bool = False

    @property
    def created_at(self) -> datetime:
        return snowflake_time(self.id)


# Discord channel types ("Channel Types"): guild channels and the three thread types.
GUILD_TEXT, GUILD_ANNOUNCEMENT, GUILD_FORUM = 0, 5, 15
ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD = 10, 11, 12
THREAD_TYPES = (ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD)


@dataclass(slots=True)
class Channel:
    """A guild channel. ``readable`` False means the bot lacks VIEW_CHANNEL (403 Missing Access).

    ``type`` is Discord's channel type: 0 text, 5 announcement, 15 forum. A forum channel has no
    messages of its own (``GET /channels/{forum}/messages`` is 400, code 50024): its conversation is
    its posts, which are threads (``Guild.threads``).
    """

    id: int
    guild_id: int
    name: str
    position: int
    parent_id: int | None
    allow_listed: bool
    readable: bool = True
    topic: str | None = None
    messages: list[Message] = field(default_factory=list)  # sorted by id ascending
    message_ids: list[int] = field(default_factory=list)  # parallel to messages, for bisect
    type: int = GUILD_TEXT


@dataclass(slots=True)
class Thread:
    """A thread: a channel of its own under ``parent_id`` (a text, announcement or forum channel).

    As on Discord its ``id`` is a snowflake of its creation (``created``) and its messages carry the
    THREAD id as ``channel_id``. A forum post is a thread whose parent is a forum channel; its starter
    message has the thread's id. ``type`` is 11 public, 12 private, 10 announcement thread.
    ``archive_timestamp`` is when the archive status last changed (creation while never archived).
    ``readable`` False means the bot cannot read it (a private thread it was not added to): it is not
    listed and answers 403 Missing Access. ``GET /guilds/{id}/channels`` never lists threads.
    """

    id: int
    guild_id: int
    parent_id: int
    owner_id: int
    name: str
    type: int = PUBLIC_THREAD
    archived: bool = False
    archive_timestamp: datetime | None = None
    readable: bool = True
    locked: bool = False
    auto_archive_duration: int = 1440
    messages: list[Message] = field(default_factory=list)  # sorted by id ascending
    message_ids: list[int] = field(default_factory=list)  # parallel to messages, for bisect

    @property
    def created(self) -> datetime:
        return snowflake_time(self.id)

    @property
    def private(self) -> bool:
        return self.type == PRIVATE_THREAD


@dataclass(slots=True)
class Guild:
    id: int
    name: str
    owner_id: int
    category_id: int
    channels: list[Channel] = field(default_factory=list)
    threads: list[Thread] = field(default_factory=list)  # sorted by id; not in ``channels`` (nor in Discord's list)


@dataclass(frozen=True, slots=True)
class ExpectedEvent:
    """What a correct collector must record for one source fact (SPEC §3).

    ``platform_user_id`` is the GitHub numeric id or Discord snowflake as text. For the deleted GitHub
    user it is the ghost id "10137" on REST-derived items (PRs, issues) and None on GraphQL-derived
    reviews (GitHub returns ``author: null`` there). Review logins are the GraphQL ones, so a bot
    review shows the bot's GraphQL login (without ``[bot]``); ``is_bot`` is what tells bots apart.
    """

    event_id: str
    source: str  # github | discord
    event_type: str  # pr_merged | review_submitted | issue_closed | message_sent
    platform_user_id: str | None
    platform_login: str | None
    is_bot: bool
    event_time: datetime
    artifact_url: str
    repo: str | None = None
    number: int | None = None
    review_id: int | None = None
    review_state: str | None = None
    closer_id: str | None = None
    closer_login: str | None = None
    closer_is_bot: bool = False
    guild_id: str | None = None
    channel_id: str | None = None
    message_id: str | None = None
    # What the policy's rules read (sources.parsing.event_facts): a PR's labels, the author of the PR a
    # review is of (None when deleted), an issue's state_reason, a message's Discord type; a PR's changed lines.
    labels: tuple[str, ...] = ()
    additions: int | None = None
    deletions: int | None = None
    pr_author_id: str | None = None
    state_reason: str | None = None
    message_type: int | None = None
    # A thread message: ``channel_id`` is the thread's id and this its parent channel's (None in a channel).
    parent_channel_id: str | None = None
