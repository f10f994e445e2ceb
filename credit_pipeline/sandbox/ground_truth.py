"""Expected events of a window, straight from the generator's records (no wire format involved).

Choices (the contract the collectors are tested against):

- Windows are half-open ``[start, end)``: an item at exactly ``end`` belongs to the next window.
- PRs count when ``merged_at`` is in the window (closed-unmerged and open PRs never do).
- Reviews count when ``submitted_at`` is in the window, whatever the PR's state; PENDING never counts.
- Issues count when a real issue (not a PR listed by the issues endpoint) has ``closed_at`` in the
  window, including ``state_reason: not_planned``.
- Messages count when their snowflake time is in the window and the channel is allow-listed; so do
  the messages of a thread (a forum post: its starter too) under an allow-listed channel, whenever the
  thread was archived, unless the bot cannot read it (private thread without the bot). Their
  ``channel_id`` is the thread id, ``parent_channel_id`` the allow-listed channel's. A forum channel has
  no messages of its own; threads under other channels never count.
- Deleted GitHub user: PRs/issues (REST) are attributed to the ghost account ("10137", "ghost");
  reviews (GraphQL) have ``platform_user_id`` None and ``platform_login`` None (``author: null``).
- Logins are the login at the event time (renamed users show the old login before the rename);
  review logins are GraphQL logins, so bots show without the ``[bot]`` suffix.
- Closers are GraphQL's (the actor of the issue's ``ClosedEvent``: REST list items name none), so a bot
  closer's login has no ``[bot]`` suffix; a deleted closer is the ghost.
- What the rules read: a PR's labels and changed lines, the id of the author of a review's PR (None when deleted: GraphQL
  ``author: null``), an issue's ``state_reason``, a message's Discord ``type`` (system messages, such as
  joins, are messages of their author too).
"""

from __future__ import annotations

import bisect
from datetime import datetime
from typing import TYPE_CHECKING

from credit_pipeline.sandbox.ids import snowflake_time, time_snowflake
from credit_pipeline.sandbox.model import GHOST, ExpectedEvent, GitHubUser

if TYPE_CHECKING:
    from credit_pipeline.sandbox.org import SampleOrg


def rest_user(user: GitHubUser) -> GitHubUser:
    """The account REST shows: deleted users become GitHub's ghost."""
    return GHOST if user.deleted else user


def graphql_login(user: GitHubUser, moment: datetime | None) -> str:
    """GraphQL ``Bot.login`` has no ``[bot]`` suffix (``dependabot``, not ``dependabot[bot]``)."""
    login = user.login_at(moment)
    return login.removesuffix("[bot]") if user.type == "Bot" else login


def expected_events(
    org: "SampleOrg",
    start: datetime,
    end: datetime,
    source: str | None = None,
    *,
    channels: list[int | str] | None = None,
    html_base: str = "https://github.com",
) -> dict[str, ExpectedEvent]:
    if source not in (None, "github", "discord"):
        raise ValueError(f"unknown source {source!r}; use 'github', 'discord' or None")
    events: dict[str, ExpectedEvent] = {}
    if source in (None, "github"):
        events.update(_github_events(org, start, end, html_base.rstrip("/")))
    if source in (None, "discord"):
        events.update(_discord_events(org, start, end, channels))
    return dict(sorted(events.items()))


def _github_events(org: "SampleOrg", start: datetime, end: datetime, html: str) -> dict[str, ExpectedEvent]:
    events: dict[str, ExpectedEvent] = {}
    for repo in org.repos:
        name = repo.full_name
        for pr in repo.pulls:
            if pr.merged_at and start <= pr.merged_at < end:
                author = rest_user(pr.author)
                event_id = f"github:pr:{name}:{pr.number}"
                events[event_id] = ExpectedEvent(
                    event_id, "github", "pr_merged", str(author.id), author.login_at(pr.event_time), author.is_bot,
                    pr.merged_at, f"{html}/{name}/pull/{pr.number}", repo=name, number=pr.number, labels=tuple(pr.labels),
                    additions=pr.additions, deletions=pr.deletions,
                )
            for review in pr.reviews:
                when = review.submitted_at
                if review.state == "PENDING" or when is None or not start <= when < end:
                    continue
                event_id = f"github:review:{name}:{pr.number}:{review.id}"
                deleted = review.author.deleted
                events[event_id] = ExpectedEvent(
                    event_id, "github", "review_submitted",
                    None if deleted else str(review.author.id),
                    None if deleted else graphql_login(review.author, when),
                    review.author.is_bot, when, f"{html}/{name}/pull/{pr.number}#pullrequestreview-{review.id}",
                    repo=name, number=pr.number, review_id=review.id, review_state=review.state,
                    pr_author_id=None if pr.author.deleted else str(pr.author.id),
                )
        for issue in repo.issues:
            if issue.closed_at and start <= issue.closed_at < end:
                author = rest_user(issue.author)
                closer = rest_user(issue.closed_by) if issue.closed_by else None
                event_id = f"github:issue:{name}:{issue.number}"
                events[event_id] = ExpectedEvent(
                    event_id, "github", "issue_closed", str(author.id), author.login_at(issue.closed_at),
                    author.is_bot, issue.closed_at, f"{html}/{name}/issues/{issue.number}", repo=name,
                    number=issue.number,
                    closer_id=str(closer.id) if closer else None,
                    closer_login=graphql_login(closer, issue.closed_at) if closer else None,
                    closer_is_bot=closer.is_bot if closer else False, state_reason=issue.state_reason,
                )
    return events


def _discord_events(
    org: "SampleOrg", start: datetime, end: datetime, channels: list[int | str] | None
) -> dict[str, ExpectedEvent]:
    """Messages of the wanted channels and of the readable threads (forum posts included) under them;
    a thread message's ``channel_id`` is the thread id and ``parent_channel_id`` its parent's."""
    wanted = {int(c) for c in channels} if channels is not None else {c.id for c in org.allow_listed_channels}
    low, high = time_snowflake(start), time_snowflake(end)
    guild = org.guild.id
    events: dict[str, ExpectedEvent] = {}
    readable = {c.id for c in org.guild.channels if c.readable}
    containers = [(c, None) for c in org.guild.channels if c.id in wanted]
    containers += [(t, t.parent_id) for t in org.guild.threads
                   if t.parent_id in wanted and t.readable and t.parent_id in readable]
    for channel, parent in containers:
        first = bisect.bisect_left(channel.message_ids, low)
        last = bisect.bisect_left(channel.message_ids, high)
        for message in channel.messages[first:last]:
            created = snowflake_time(message.id)
            event_id = f"discord:message:{guild}:{channel.id}:{message.id}"
            events[event_id] = ExpectedEvent(
                event_id, "discord", "message_sent", str(message.author.id), message.author.username_at(created),
                message.author.bot, created, f"https://discord.com/channels/{guild}/{channel.id}/{message.id}",
                guild_id=str(guild), channel_id=str(channel.id), message_id=str(message.id), message_type=message.type,
                parent_channel_id=str(parent) if parent is not None else None,
            )
    return events
