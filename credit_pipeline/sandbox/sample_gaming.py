"""Realistic gaming in the sample org's first week: what the policy's rules (SPEC §6 "Rules") exist to stop.

GitHub, in the first repo: a PR its own author reviewed twice (COMMENTED: GitHub refuses an author's
APPROVE and REQUEST_CHANGES, "Pull request authors can't approve their own pull request"), one
reviewer's four COMMENTED reviews of one PR, an issue its opener closed as ``not_planned``, an
issue its opener filed and closed through their own merged PR whose body says "Fixes #N", and a
merged one-line PR labelled ``trivial``.

Discord, in the first allow-listed channel (the guild's system channel): a fresh account that joins
and posts 100 messages in the hour around a UTC midnight (one-word ones, a repeated line, and
unique filler: more than a daily cap of 20 on each side of midnight), cross-posted in the second
allow-listed channel when there is one; a member join, a pin notice, a boost (system messages with the
empty content Discord gives them); and replies (type 19) between regular members.

Nothing here draws from the generator's random stream except the snowflakes' worker bits of the
Discord messages, posted after every other message, so every other account's activity is what it
is without the gaming (only PR and issue numbers after the new items shift by one each).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from credit_pipeline.sandbox.ids import make_snowflake, to_ms
from credit_pipeline.sandbox.model import (
    CHANNEL_PINNED_MESSAGE,
    GUILD_BOOST,
    GUILD_MEMBER_JOIN,
    REPLY,
    Channel,
    DiscordUser,
    GitHubUser,
    Issue,
    Message,
    PullRequest,
    Repo,
)

S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
SPAM_WORDS = ["gm", "wagmi", "lol", "+1", "🚀🚀🚀", "nice", "gm", "up"]
SPAM_REPEATED = "wen token? wen airdrop?"
SPAM_PER_SIDE = 50  # messages before and after midnight; 30 of each side are unique and long enough


def github_gaming(b: Any, repo: Repo, humans: list[GitHubUser], w: datetime, out: dict[str, object]) -> list[tuple[PullRequest, Issue]]:
    """Add the GitHub gaming to ``repo`` through the generator's builder ``b``; ``out`` gets the named records.

    Returns (PR, issue) pairs whose body must name the issue's number once numbers are assigned
    (``link_fixes``). Every record is added to ``b.quiet``: its ``updated_at`` jitter is derived,
    not drawn.
    """
    h = lambda i: humans[i % len(humans)]  # noqa: E731
    own = b.pull(repo, h(4), w + D + 2 * H, merged=w + 2 * D + 5 * H, merged_by=h(0), title="[gaming] reviewed by its own author")
    out["self_review"] = (own, b.review(own, h(4), "COMMENTED", w + D + 4 * H))
    out["self_review_again"] = (own, b.review(own, h(4), "COMMENTED", w + 2 * D + H))
    out["review_of_self_reviewed_pr"] = (own, b.review(own, h(0), "APPROVED", w + 2 * D + 3 * H))
    farmed = b.pull(repo, h(6), w + 2 * D, merged=w + 3 * D + 6 * H, merged_by=h(1), title="[gaming] one reviewer, many comments")
    for k in range(4):
        out[f"repeated_review_{k}"] = (farmed, b.review(farmed, h(5), "COMMENTED", w + 2 * D + (k + 1) * H))
    out["self_closed_not_planned"] = dropped = b.issue(repo, h(7), w + 3 * D, closed=w + 3 * D + 20 * M, closed_by=h(7),
                                                       reason="not_planned", title="[gaming] opened and closed by its author")
    fixed = b.issue(repo, h(2), w + 3 * D + 2 * H, closed=w + 4 * D + H, closed_by=h(2), title="[gaming] filed and fixed by one person")
    fixer = b.pull(repo, h(2), w + 3 * D + 3 * H, merged=w + 4 * D + H, merged_by=h(2), title="[gaming] fix for my own issue")
    out["self_closed_referenced"], out["pr_fixing_own_issue"] = fixed, fixer
    trivial = b.pull(repo, h(3), w + 4 * D + 2 * H, merged=w + 4 * D + 3 * H, merged_by=h(0), title="Fix typo in README")
    trivial.labels, trivial.additions, trivial.deletions = ["documentation", "trivial"], 1, 1
    out["trivial_pr"] = trivial
    b.quiet.update(id(item) for item in (own, farmed, dropped, fixed, fixer, trivial))
    return [(fixer, fixed)]


def link_fixes(pairs: list[tuple[PullRequest, Issue]]) -> None:
    """Write "Fixes #N" into each PR's body, N the number its issue was given."""
    for pr, issue in pairs:
        pr.body = f"Fixes #{issue.number}: {pr.title.lower()}."


Post = Callable[..., Message]


def gaming_accounts(w: datetime) -> tuple[DiscordUser, DiscordUser]:
    """A spam account made two days before the week, and a newcomer made the day before (fixed snowflakes)."""
    spammer = DiscordUser(make_snowflake(to_ms(w - 2 * D + 7 * H), 0, 0, 7), "airdrop.hunter", "Airdrop Hunter")
    newcomer = DiscordUser(make_snowflake(to_ms(w - D + 15 * H), 0, 0, 8), "newcomer42", None)
    return spammer, newcomer


def discord_gaming(post: Post, channels: list[Channel], humans: list[DiscordUser], w: datetime) -> list[DiscordUser]:
    """Post the Discord gaming in the allow-listed ``channels`` (the first is the guild's system channel) with
    the generator's ``post`` (which records the scenario names); returns the new accounts."""
    main = channels[0]
    spammer, newcomer = gaming_accounts(w)
    h = lambda i: humans[i % len(humans)]  # noqa: E731
    ms = to_ms
    post(main, ms(w + 2 * D + 9 * H), newcomer, "", "member_join", kind=GUILD_MEMBER_JOIN)
    notes = post(main, ms(w + D + 10 * H), h(0), "Release notes for v2.4 are up, please read them before Friday's call",
                 "pinned_message", pinned=True)
    post(main, ms(w + D + 10 * H + 2 * M), h(0), "", "pin_notice", kind=CHANNEL_PINNED_MESSAGE, reference=notes)
    answer = post(main, ms(w + D + 11 * H), h(2), "thanks, the migration section is really clear", "reply", kind=REPLY, reference=notes)
    post(main, ms(w + D + 11 * H + 5 * M), h(3), "agreed, the upgrade took me five minutes", "reply_to_reply", kind=REPLY,
         reference=answer)
    post(main, ms(w + 5 * D + 3 * H), h(4), "", "boost", kind=GUILD_BOOST)
    midnight = w + 4 * D
    post(main, ms(midnight - 2 * H), spammer, "", "spam_join", kind=GUILD_MEMBER_JOIN)
    for k, channel in enumerate(channels[:2]):  # the same burst cross-posted, 10 s later, in a second channel
        start = midnight - SPAM_PER_SIDE * 45 * S + k * 10 * S
        unique = 0
        for i in range(2 * SPAM_PER_SIDE):
            if i % 5 == 0:
                content = SPAM_WORDS[(i // 5) % len(SPAM_WORDS)]
            elif i % 5 == 1:
                content = SPAM_REPEATED
            else:
                unique += 1
                content = f"still grinding for the airdrop, message {unique}"
            name = None if k else {0: "spam_first", SPAM_PER_SIDE - 1: "spam_last_before_midnight",
                                   SPAM_PER_SIDE: "spam_first_after_midnight", 2 * SPAM_PER_SIDE - 1: "spam_last"}.get(i)
            post(channel, ms(start + i * 45 * S), spammer, content, name)
    return [spammer, newcomer]
