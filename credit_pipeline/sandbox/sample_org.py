"""Seeded sample-org generator: a GitHub org and a Discord guild with the awkward cases built in.

``generate_org(seed)`` is deterministic for a seed and its parameters (one ``random.Random``; no set
ordering or wall clock involved) and fast: 2,000 merged PRs, 6,000 reviews and 50,000 messages take
about a second. Besides bulk activity spread over the weeks (plus 3 days either side), it always
adds the named edge cases listed in ``SampleOrg.scenario`` (name -> event id), for example items
exactly on every week boundary, a renamed user, a deleted (ghost) user, bots, PENDING and
DISMISSED reviews, reviews on PRs merged earlier/later or still open, a PR with more than 100
reviews, issues closed by someone else, and Discord messages exactly at the boundaries; and the first
week's gaming (``sample_gaming``: self-reviews, repeated reviews, self-closed issues, a trivial PR,
a Discord spammer, system messages and replies).
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

from credit_pipeline.sandbox.model import GitHubUser, Issue, PullRequest, Repo, Review
from credit_pipeline.sandbox.org import IdCounters, SampleOrg
from credit_pipeline.sandbox.sample_discord import discord_messages, discord_threads, discord_world
from credit_pipeline.sandbox.sample_gaming import github_gaming, link_fixes

UTC = timezone.utc
DEFAULT_WEEK_START = datetime(2026, 2, 16, tzinfo=UTC)
REPO_NAMES = ["widgets", "docs", "api", "web", "infra", "sdk", "cli", "site", "bots", "data"]
HUMAN_LOGINS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
                "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "wendy"]
REVIEW_STATES = ["APPROVED"] * 10 + ["COMMENTED"] * 6 + ["CHANGES_REQUESTED"] * 3 + ["DISMISSED"]
H = timedelta(hours=1)
D = timedelta(days=1)


class _Builder:
    """Holds the rng and id counters while records are created; numbers are assigned at the end."""

    def __init__(self, seed: int, ids: IdCounters) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.ids = ids
        self.quiet: set[int] = set()  # id() of records whose updated_at jitter is derived, not drawn (sample_gaming)

    def when(self, low: datetime, high: datetime) -> datetime:
        span = int((high - low).total_seconds())
        return low + timedelta(seconds=self.rng.randrange(max(span, 1)))

    def sha(self, *parts: object) -> str:
        return hashlib.sha1(repr((self.seed, *parts)).encode()).hexdigest()

    def pull(self, repo: Repo, author: GitHubUser, created: datetime, *, merged: datetime | None = None,
             closed: datetime | None = None, merged_by: GitHubUser | None = None, title: str = "") -> PullRequest:
        self.ids.pull += 1
        self.ids.issue += 1
        pr = PullRequest(repo.full_name, 0, self.ids.pull, self.ids.issue, title or f"Change {self.ids.pull % 10000}",
                         author, created, created, closed or merged, merged, merged_by if merged else None,
                         head_sha=self.sha("head", self.ids.pull))
        pr.merge_commit_sha = self.sha("merge", pr.id) if merged else None
        repo.pulls.append(pr)
        return pr

    def review(self, pr: PullRequest, author: GitHubUser, state: str, submitted: datetime | None) -> Review:
        self.ids.review += 1
        created = submitted or pr.created_at + H
        review = Review(self.ids.review, pr.repo, 0, author, state, created, submitted,
                        body=f"{state.lower().replace('_', ' ')} review", commit_id=pr.head_sha)
        pr.reviews.append(review)
        return review

    def issue(self, repo: Repo, author: GitHubUser, created: datetime, *, closed: datetime | None = None,
              closed_by: GitHubUser | None = None, reason: str = "completed", title: str = "") -> Issue:
        self.ids.issue += 1
        issue = Issue(repo.full_name, 0, self.ids.issue, title or f"Issue {self.ids.issue % 10000}", author, created,
                      created, closed, (closed_by or author) if closed else None, reason if closed else None)
        repo.issues.append(issue)
        return issue


def generate_org(
    seed: int = 7,
    week_start: datetime = DEFAULT_WEEK_START,
    weeks: int = 2,
    repos: int = 2,
    prs_per_repo: int = 24,
    reviews_per_pr: int = 2,
    issues_per_repo: int = 12,
    channels: int = 3,
    messages_per_channel: int = 120,
    *,
    users: int = 8,
    big_pr_reviews: int = 105,
    large_ids: bool = False,
    org: str = "acme",
    now: datetime | None = None,
    gaming: bool = True,
    threads: bool = False,
) -> SampleOrg:
    """Build a deterministic sample org.

    ``prs_per_repo`` merged PRs per repo (plus ~1/8 closed-unmerged and ~1/10 open ones), each with
    exactly ``reviews_per_pr`` submitted reviews; ``issues_per_repo`` issues (~70 % closed);
    ``channels`` readable text channels (all allow-listed except the last when there are 2+) with
    ``messages_per_channel`` messages each, plus one channel the bot cannot read. ``big_pr_reviews``
    (0 disables) adds one PR with that many reviews. ``large_ids`` puts PR/review/issue database ids
    above 2**31, where GraphQL ``databaseId`` (Int) fails and only ``fullDatabaseId`` works.
    ``now`` is the clock: nothing happens after it (items created later do not exist, merges, closes,
    reviews and edits after it have not happened yet). The same seed gives the same items up to ``now``.
    ``gaming`` adds the first week's gaming of ``sample_gaming`` (self-reviews, a spammer, ...); it leaves
    every other account's activity as it is without it. ``threads`` (opt-in) adds the first week's threads
    and an allow-listed forum channel (``sample_discord.discord_threads``); without it nothing changes.
    """
    week_start = week_start.astimezone(UTC)
    if week_start.weekday() != 0 or week_start.time() != datetime.min.time():
        raise ValueError(f"week_start must be a Monday 00:00 UTC, got {week_start.isoformat()}")
    if weeks < 1 or repos < 1 or channels < 1:
        raise ValueError("weeks, repos and channels must be >= 1")
    base = 1_100_000_000 if large_ids else 0
    ids = IdCounters(repo=700_000_000, pull=1_800_000_000 + base, issue=2_100_000_000 + base,
                     review=2_000_000_000 + base)
    b = _Builder(seed, ids)
    humans, renamed, deleted, bots = _github_users(users, week_start)
    pool = [*humans, renamed, deleted]
    repo_list = [
        Repo(org, REPO_NAMES[k] if k < len(REPO_NAMES) else f"repo-{k}", 700_000_000 + 7_919 * (k + 1),
             datetime(2021, 3, 1, tzinfo=UTC) + timedelta(days=37 * k))
        for k in range(repos)
    ]
    span = (week_start - 3 * D, week_start + 7 * weeks * D + 3 * D)
    for repo in repo_list:
        _bulk_github(b, repo, pool, humans, bots, span, prs_per_repo, reviews_per_pr, issues_per_repo)
    scenario: dict[str, str] = {}
    _github_scenario(b, repo_list[0], humans, renamed, deleted, bots, week_start, weeks, big_pr_reviews, scenario)
    fixes = github_gaming(b, repo_list[0], humans, week_start, scenario) if gaming else []
    for repo in repo_list:
        _finalise_repo(b, repo)
    link_fixes(fixes)
    if now is not None:  # after every random draw and the numbering: the same seed gives the same past
        now = now.astimezone(UTC)
        scenario = {name: ref for name, ref in scenario.items() if _happened(ref, now)}  # judged before the cut
        for repo in repo_list:
            _github_until(repo, now)
    scenario = {name: _event_id(repo_list[0], ref) for name, ref in scenario.items()}

    guild, discord_users, bot_user, app_id = discord_world(b.rng, channels, week_start)
    discord_scenario = discord_messages(b.rng, ids, guild, discord_users, bot_user, span, week_start, weeks,
                                        messages_per_channel, gaming)
    if now is not None:
        _discord_until(guild, now)
        kept = {m.id for channel in guild.channels for m in channel.messages}
        discord_scenario = {name: ref for name, ref in discord_scenario.items() if _message_id(ref) in kept}
    scenario.update(discord_scenario)
    sample = SampleOrg(
        seed=seed, week_start=week_start, weeks=weeks, org_login=org, org_id=9_919_919,
        repos=repo_list, github_users=[*humans, renamed, deleted, *bots], viewer=humans[0],
        guild=guild, discord_users=discord_users, bot_user=bot_user, application_id=app_id,
        ids=ids, scenario=scenario,
    )
    if threads:  # after everything else, drawing nothing from the random stream
        sample.scenario.update(discord_threads(sample, now))
    return sample


def _github_users(count: int, week_start: datetime) -> tuple[list[GitHubUser], GitHubUser, GitHubUser, list[GitHubUser]]:
    count = max(3, count)
    humans = [
        GitHubUser(5_830_000 + 104_729 * (k + 1),
                   HUMAN_LOGINS[k] if k < len(HUMAN_LOGINS) else f"dev-{k}",
                   name=(HUMAN_LOGINS[k] if k < len(HUMAN_LOGINS) else f"dev-{k}").title())
        for k in range(count)
    ]
    renamed = GitHubUser(9_812_345, "kat-frost", name="Kat Frost", former_login="kfrost",
                         renamed_at=week_start + 3 * D + 12 * H)
    deleted = GitHubUser(7_654_321, "leaver", name="Former Member", deleted=True)
    bots = [GitHubUser(49_699_333, "dependabot[bot]", type="Bot"),
            GitHubUser(175_728_472, "copilot-pull-request-reviewer[bot]", type="Bot")]
    return humans, renamed, deleted, bots


def _bulk_github(b: _Builder, repo: Repo, pool: list[GitHubUser], humans: list[GitHubUser], bots: list[GitHubUser],
                 span: tuple[datetime, datetime], merged: int, reviews: int, issues: int) -> None:
    rng = b.rng
    low, high = span
    maintainers = humans[:3]
    kinds = ["merged"] * merged + ["closed"] * max(1, merged // 8) + ["open"] * max(1, merged // 10)
    for kind in kinds:
        author = bots[0] if rng.random() < 0.05 else rng.choice(pool)
        if kind == "open":
            pr = b.pull(repo, author, b.when(low, high))
            limit = high
        else:
            end = b.when(low, high)
            created = end - timedelta(seconds=rng.randrange(3600, 5 * 86400))
            pr = b.pull(repo, author, created, merged=end if kind == "merged" else None,
                        closed=end if kind == "closed" else None, merged_by=rng.choice(maintainers))
            limit = end + (D if rng.random() < 0.1 else timedelta(0))
        for _ in range(reviews):
            reviewer = bots[1] if rng.random() < 0.03 else rng.choice([u for u in pool if u.id != author.id])
            first = pr.created_at + timedelta(minutes=5)
            b.review(pr, reviewer, rng.choice(REVIEW_STATES), b.when(first, max(limit, first + H)))
        if kind == "open" and rng.random() < 0.3 and author.id != humans[0].id:
            b.review(pr, humans[0], "PENDING", None)
    for _ in range(issues):
        author = rng.choice(pool)
        if rng.random() < 0.7:
            closed = b.when(low, high)
            closer = author if rng.random() < 0.6 else rng.choice(humans)
            b.issue(repo, author, closed - timedelta(seconds=rng.randrange(3600, 10 * 86400)), closed=closed,
                    closed_by=closer, reason="not_planned" if rng.random() < 0.1 else "completed")
        else:
            b.issue(repo, author, b.when(low, high))


def _github_scenario(b: _Builder, repo: Repo, humans: list[GitHubUser], renamed: GitHubUser, deleted: GitHubUser,
                     bots: list[GitHubUser], w: datetime, weeks: int, big_reviews: int,
                     out: dict[str, object]) -> None:
    """Named edge cases in the first repo; ``out`` maps a name to the record (ids resolved later)."""
    h = lambda i: humans[i % len(humans)]  # noqa: E731 - tiny local helper
    e = w + 7 * D
    for k in range(weeks + 1):
        edge = w + 7 * k * D
        out[f"pr_merged_at_boundary_{k}"] = b.pull(repo, h(1), edge - 2 * D, merged=edge, merged_by=h(0),
                                                   title=f"[scenario] merged exactly at boundary {k}")
        host = b.pull(repo, h(2), edge - D, merged=edge + D, merged_by=h(0), title=f"[scenario] reviewed at boundary {k}")
        out[f"review_at_boundary_{k}"] = (host, b.review(host, h(3), "APPROVED", edge))
        out[f"issue_closed_at_boundary_{k}"] = b.issue(repo, h(3), edge - 3 * D, closed=edge,
                                                       title=f"[scenario] closed exactly at boundary {k}")
    out["pr_merged_just_before_start"] = b.pull(repo, h(1), w - 2 * D, merged=w - timedelta(seconds=1), merged_by=h(0))
    out["pr_merged_just_before_end"] = b.pull(repo, h(2), e - 2 * D, merged=e - timedelta(seconds=1), merged_by=h(0))
    earlier = b.pull(repo, h(4), w - 4 * D, merged=w - 2 * D, merged_by=h(0), title="[scenario] merged before window")
    out["review_on_pr_merged_earlier"] = (earlier, b.review(earlier, h(5), "COMMENTED", w + D))
    later = b.pull(repo, h(5), w + D, merged=e + D, merged_by=h(0), title="[scenario] merged after window")
    out["review_on_pr_merged_later"] = (later, b.review(later, h(4), "APPROVED", w + 2 * D))
    out["renamed_user_review_before"] = (later, b.review(later, renamed, "COMMENTED", w + 2 * D + H))
    out["renamed_user_review_after"] = (later, b.review(later, renamed, "APPROVED", w + 5 * D))
    still_open = b.pull(repo, h(6), w + 2 * D, title="[scenario] still open")
    out["review_on_open_pr"] = (still_open, b.review(still_open, h(2), "CHANGES_REQUESTED", w + 3 * D))
    out["pending_review"] = (still_open, b.review(still_open, h(0), "PENDING", None))
    out["pr_closed_unmerged"] = unmerged = b.pull(repo, h(3), w + D, closed=w + 4 * D, title="[scenario] closed unmerged")
    out["review_on_closed_unmerged_pr"] = (unmerged, b.review(unmerged, h(1), "COMMENTED", w + 3 * D))
    dismissed = b.pull(repo, h(2), w + D, merged=w + 4 * D, merged_by=h(0), title="[scenario] dismissed review")
    out["dismissed_review"] = (dismissed, b.review(dismissed, h(3), "DISMISSED", w + 2 * D))
    out["bot_pr"] = bot_pr = b.pull(repo, bots[0], w + 2 * D, merged=w + 2 * D + 3 * H, merged_by=h(0),
                                    title="Bump requests from 2.31.0 to 2.32.3")
    out["bot_review"] = (bot_pr, b.review(bot_pr, bots[1], "COMMENTED", w + 2 * D + H))
    out["renamed_user_pr_before"] = b.pull(repo, renamed, w, merged=w + D, merged_by=h(0))
    out["renamed_user_pr_after"] = b.pull(repo, renamed, w + 4 * D, merged=w + 5 * D, merged_by=h(0))
    out["deleted_user_pr"] = ghost_pr = b.pull(repo, deleted, w + D, merged=w + 2 * D, merged_by=h(0))
    out["deleted_user_review"] = (dismissed, b.review(dismissed, deleted, "APPROVED", w + 3 * D))
    out["deleted_user_issue"] = b.issue(repo, deleted, w - D, closed=w + 3 * D, closed_by=h(1))
    out["deleted_user_closed_issue"] = b.issue(repo, h(2), w - D, closed=w + 3 * D + H, closed_by=deleted)
    out["issue_closed_by_other"] = b.issue(repo, h(2), w - D, closed=w + 4 * D, closed_by=h(0),
                                           title="[scenario] closed by a maintainer")
    out["issue_closed_not_planned"] = b.issue(repo, h(4), w, closed=w + 5 * D, reason="not_planned")
    out["open_issue"] = b.issue(repo, h(5), w + D, title="[scenario] still open")
    del ghost_pr
    if big_reviews:
        big = b.pull(repo, h(1), w - D, merged=w + 4 * D, merged_by=h(0), title="[scenario] PR with many reviews")
        reviewers = [u for u in [*humans, renamed] if u.id != h(1).id]
        for i in range(big_reviews):
            b.review(big, reviewers[i % len(reviewers)], REVIEW_STATES[i % len(REVIEW_STATES)],
                     b.when(w - 12 * H, w + 4 * D))
        out["big_pr"] = big


def _github_until(repo: Repo, now: datetime) -> None:
    """Undo what happens after ``now``: later items do not exist (numbers follow creation, so the last
    numbers go), later merges, closes and reviews are still pending, nothing was updated later."""
    repo.pulls = [pr for pr in repo.pulls if pr.created_at <= now]
    repo.issues = [issue for issue in repo.issues if issue.created_at <= now]
    for pr in repo.pulls:
        if (pr.merged_at or pr.closed_at or now) > now:
            pr.merged_at = pr.closed_at = pr.merged_by = pr.merge_commit_sha = None
        pr.reviews = [r for r in pr.reviews if (r.submitted_at or r.created_at) <= now]
        if pr.updated_at > now:  # last touched by what had happened by then (not all at ``now``, as a clamp would say)
            pr.updated_at = max([pr.created_at, *(t for t in (pr.merged_at, pr.closed_at) if t),
                                 *((r.submitted_at or r.created_at) for r in pr.reviews)])
    for issue in repo.issues:
        if issue.closed_at and issue.closed_at > now:
            issue.closed_at = issue.closed_by = issue.state_reason = None
        if issue.updated_at > now:
            issue.updated_at = max(t for t in (issue.created_at, issue.closed_at) if t)


def _happened(ref: object, now: datetime) -> bool:
    if isinstance(ref, tuple):
        pr, review = ref
        return pr.created_at <= now and (review.submitted_at or review.created_at) <= now
    return ref.created_at <= now and ref.event_time <= now


def _discord_until(guild, now: datetime) -> None:
    from dataclasses import replace

    for channel in guild.channels:
        channel.messages = [m if not (m.edited_at and m.edited_at > now) else replace(m, edited_at=None)
                            for m in channel.messages if m.created_at <= now]
        channel.message_ids = [m.id for m in channel.messages]


def _message_id(event_id: str) -> int:
    return int(event_id.rsplit(":", 1)[1])


def _finalise_repo(b: _Builder, repo: Repo) -> None:
    """Number PRs and issues in creation order (one sequence, as on GitHub) and settle updated_at."""
    items: list[PullRequest | Issue] = [*repo.pulls, *repo.issues]
    items.sort(key=lambda item: (item.created_at, item.id))
    for number, item in enumerate(items, 1):
        item.number = number
    for pr in repo.pulls:
        pr.reviews.sort(key=lambda r: r.id)
        times = [pr.created_at, *(t for t in (pr.closed_at, pr.merged_at) if t)]
        times += [r.submitted_at or r.created_at for r in pr.reviews]
        for review in pr.reviews:
            review.pr_number = pr.number
        pr.updated_at = max(times) + timedelta(seconds=_jitter(b, pr))
    for issue in repo.issues:
        issue.updated_at = (issue.closed_at or issue.created_at) + timedelta(seconds=_jitter(b, issue))
    repo.pulls.sort(key=lambda p: p.number)
    repo.issues.sort(key=lambda i: i.number)


def _jitter(b: _Builder, item: PullRequest | Issue) -> int:
    """1-299 s after an item's last activity: drawn for generated items, derived for the gaming ones (which
    so leave every other item's draws as they are)."""
    if id(item) in b.quiet:
        return 1 + int(b.sha("jitter", item.id), 16) % 299
    return b.rng.randrange(1, 300)


def _event_id(repo: Repo, ref: object) -> str:
    if isinstance(ref, tuple):
        pr, review = ref
        return f"github:review:{repo.full_name}:{pr.number}:{review.id}"
    if isinstance(ref, PullRequest):
        return f"github:pr:{repo.full_name}:{ref.number}"
    assert isinstance(ref, Issue)
    return f"github:issue:{repo.full_name}:{ref.number}"
