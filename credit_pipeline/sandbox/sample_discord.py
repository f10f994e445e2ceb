"""The Discord half of the sample org: a guild, its channels and users, and real-snowflake messages.

Channels: ``channels`` readable text channels (all allow-listed except the last when there are two
or more, named ``off-topic``) and ``mod-private``, which the bot cannot read. Messages are spread
over the span with millisecond timestamps; named edge cases go to the first allow-listed channel, and
so does the gaming of ``sample_gaming`` (its spam is cross-posted to the second). Threads and a forum
channel are opt-in (``discord_threads``, ``generate_org(threads=True)``).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from credit_pipeline.sandbox.ids import make_snowflake, to_ms
from typing import TYPE_CHECKING

from credit_pipeline.sandbox.model import DEFAULT, GUILD_FORUM, Channel, DiscordUser, Guild, Message, Thread
from credit_pipeline.sandbox.org import IdCounters

if TYPE_CHECKING:
    from credit_pipeline.sandbox.org import SampleOrg
from credit_pipeline.sandbox.sample_gaming import discord_gaming

UTC = timezone.utc
CHANNEL_NAMES = ["general", "dev", "design", "support", "ops", "research", "events", "help", "showcase", "grants"]
DISCORD_NAMES = ["mason", "nelly", "kai", "lena", "omar", "priya", "quinn", "rosa", "sam", "tara", "uma", "vik"]
PHRASES = ["shipped the fix", "can someone review?", "LGTM", "docs updated", "nice work", "meeting notes",
           "filed an issue", "benchmarks look good", "deploying now", "question about the API", "gm", "thanks!"]
H = timedelta(hours=1)
D = timedelta(days=1)


def discord_world(rng: random.Random, channels: int, w: datetime) -> tuple[Guild, list[DiscordUser], DiscordUser, int]:
    at = lambda *args: to_ms(datetime(*args, tzinfo=UTC))  # noqa: E731
    guild_id = make_snowflake(at(2016, 3, 1, 12), 0, 0, 0)
    app_id = make_snowflake(at(2019, 6, 1, 9), 0, 0, 0)
    category = make_snowflake(at(2016, 3, 1, 12, 5), 0, 0, 0)
    guild = Guild(guild_id, "Acme DAO", owner_id=0, category_id=category)
    users = [
        DiscordUser(make_snowflake(at(2016, 1, 1) + rng.randrange(6 * 365 * 86_400_000), 0, 0, k),
                    name, name.title())
        for k, name in enumerate(DISCORD_NAMES)
    ]
    users.append(DiscordUser(make_snowflake(at(2018, 8, 8, 8), 0, 0, 1), "pete.codes", "Pete",
                             former_username="pixelpete", renamed_at=w + 3 * D + 12 * H + timedelta(minutes=30)))
    users.append(DiscordUser(make_snowflake(at(2017, 5, 5, 5), 0, 0, 2), "modbot", None, bot=True))
    bot_user = DiscordUser(app_id, "creditbot", None, bot=True)
    guild.owner_id = users[0].id
    names = [CHANNEL_NAMES[k] if k < len(CHANNEL_NAMES) else f"channel-{k}" for k in range(channels)]
    for k in range(channels):
        allow = k < channels - 1 or channels == 1
        guild.channels.append(Channel(make_snowflake(at(2016, 3, 1, 13) + k * 3_600_000, 0, 0, 0), guild_id,
                                      names[k] if allow else "off-topic", k, category, allow_listed=allow,
                                      topic=f"{names[k]} chat"))
    guild.channels.append(Channel(make_snowflake(at(2016, 3, 2, 13), 0, 0, 0), guild_id, "mod-private", channels,
                                  category, allow_listed=False, readable=False, topic="moderators only"))
    return guild, users, bot_user, app_id


def discord_messages(rng: random.Random, ids: IdCounters, guild: Guild, users: list[DiscordUser], bot_user: DiscordUser,
                      span: tuple[datetime, datetime], w: datetime, weeks: int, per_channel: int,
                      gaming: bool = True) -> dict[str, str]:
    """Bulk messages, the named edge cases and, with ``gaming``, ``sample_gaming.discord_gaming`` (whose new
    accounts are appended to ``users``); returns the scenario names of the messages."""
    humans = [u for u in users if not u.bot]
    modbot = next(u for u in users if u.bot)
    low, span_ms = to_ms(span[0]), to_ms(span[1]) - to_ms(span[0])
    seen: set[int] = set()
    staged: dict[int, list[Message]] = {c.id: [] for c in guild.channels}
    scenario: dict[str, str] = {}

    def post(channel: Channel, ms: int, author: DiscordUser, content: str, name: str | None = None,
             edited: bool = False, *, kind: int = DEFAULT, reference: Message | None = None, pinned: bool = False) -> Message:
        ids.increment = (ids.increment + 1) % 4096
        flake = make_snowflake(ms, rng.randrange(32), 0, ids.increment)
        while flake in seen:
            flake += 1  # same ms, next increment: still a valid snowflake for that instant
        seen.add(flake)
        edited_at = datetime.fromtimestamp((ms + rng.randrange(60_000, 3_600_000)) / 1000, UTC) if edited else None
        message = Message(flake, channel.id, author, content, edited_at, kind, reference, pinned)
        staged[channel.id].append(message)
        if name:
            scenario[name] = f"discord:message:{guild.id}:{channel.id}:{flake}"
        return message

    for channel in guild.channels:
        count = per_channel if channel.readable else max(1, per_channel // 4)
        for i in range(count):
            roll = rng.random()
            author = modbot if roll < 0.04 else (bot_user if roll < 0.05 else rng.choice(humans))
            post(channel, low + rng.randrange(span_ms), author, f"{rng.choice(PHRASES)} ({i})",
                 edited=rng.random() < 0.03)
    main = guild.channels[0]
    e = w + 7 * D
    for k in range(weeks + 1):
        post(main, to_ms(w + 7 * k * D), humans[1], f"exactly at boundary {k}", f"message_at_boundary_{k}")
    post(main, to_ms(w) - 1, humans[2], "one millisecond before the window", "message_just_before_start")
    post(main, to_ms(e) - 1, humans[2], "one millisecond before the end", "message_just_before_end")
    post(main, to_ms(w + D), modbot, "automated reminder", "bot_message")
    same = to_ms(w + 2 * D)
    post(main, same, humans[3], "same millisecond (a)", "same_ms_message_a")
    post(main, same, humans[4 % len(humans)], "same millisecond (b)", "same_ms_message_b")
    renamed = next(u for u in users if u.former_username)
    post(main, to_ms(w + 2 * D + H), renamed, "before my rename", "renamed_user_message_before")
    post(main, to_ms(w + 5 * D), renamed, "after my rename", "renamed_user_message_after")
    post(main, to_ms(w + 3 * D), humans[5 % len(humans)], "typo fixed later", "edited_message", edited=True)
    outside = [c for c in guild.channels if c.readable and not c.allow_listed]
    if outside:
        post(outside[0], to_ms(w + D + H), humans[1], "not an allow-listed channel", "non_allow_listed_message")
    hidden = next(c for c in guild.channels if not c.readable)
    post(hidden, to_ms(w + D + 2 * H), humans[0], "secret", "hidden_channel_message")
    if gaming:  # after every other message, so their random draws are what they are without it
        users += discord_gaming(post, [c for c in guild.channels if c.allow_listed], humans, w)
    for channel in guild.channels:
        channel.messages = sorted(staged[channel.id], key=lambda m: m.id)
        channel.message_ids = [m.id for m in channel.messages]
    return scenario


def discord_threads(org: "SampleOrg", now: datetime | None = None) -> dict[str, str]:
    """The opt-in threads of the first week (``generate_org(threads=True)``); returns their scenario names.

    Drawn from no random stream (the rest of the org is what it is without them). In the first
    allow-listed channel: an active thread with messages before, exactly at and just before the window's
    edges (and exactly at its end), a thread archived inside the window, one archived after the window
    closed (its messages are inside), one created mid-week and a private thread the bot cannot read; an
    allow-listed forum channel ``ideas`` (type 15) with three posts and their replies (one post archived);
    a thread under the not allow-listed channel. With ``now``, what happens later has not happened.
    """
    guild = org.guild
    w = org.week_start
    e = w + 7 * D
    humans = [u for u in org.discord_users if not u.bot]
    h = lambda i: humans[i % len(humans)]  # noqa: E731
    main = guild.channels[0]
    forum = Channel(make_snowflake(to_ms(datetime(2016, 3, 3, 13, tzinfo=UTC)), 0, 0, 0), guild.id, "ideas",
                    len(guild.channels), guild.category_id, allow_listed=True, topic="ideas forum", type=GUILD_FORUM)
    guild.channels.append(forum)
    scenario: dict[str, str] = {}
    happened = lambda t: now is None or t <= now  # noqa: E731

    def thread(parent: Channel, owner: DiscordUser, at: datetime, name: str, archived_at: datetime | None = None,
               **kw: object) -> Thread | None:
        if not happened(at):
            return None
        archived = archived_at if archived_at is not None and happened(archived_at) else None
        made = org.add_thread(parent.id, owner.id, at, name, archived_at=archived, content=f"{name}: first post", **kw)
        if parent.type == GUILD_FORUM and "forum_post_starter" not in scenario:
            scenario["forum_post_starter"] = f"discord:message:{guild.id}:{made.id}:{made.id}"
        return made

    def say(where: Thread | None, author: DiscordUser, at: datetime, content: str, name: str | None = None) -> None:
        if where is None or not happened(at):
            return
        message = org.add_message(where.id, author.id, at, content)
        if name:
            scenario[name] = f"discord:message:{guild.id}:{where.id}:{message.id}"

    edges = thread(main, h(0), w - D, "release-planning")
    say(edges, h(0), w - H, "kick-off before the window", "thread_message_before_window")
    say(edges, h(1), w, "exactly at the window start", "thread_message_at_start")
    say(edges, h(2), w + 2 * D, "still going", "thread_active_message")
    say(edges, h(3), e - timedelta(milliseconds=1), "one millisecond before the end", "thread_message_just_before_end")
    say(edges, h(1), e, "exactly at the window end", "thread_message_at_end")
    done = thread(main, h(1), w + D, "bug-triage", archived_at=w + 3 * D)
    say(done, h(1), w + D + 10 * timedelta(minutes=1), "triage starts")
    say(done, h(2), w + D + 2 * H, "fixed, archiving", "thread_archived_message")
    late = thread(main, h(2), w + 4 * D, "retro", archived_at=e + 2 * D)
    say(late, h(2), w + 4 * D + H, "retro notes", "thread_archived_after_window_message")
    say(late, h(4), w + 5 * D, "+1")
    midweek = thread(main, h(3), w + 3 * D + 12 * H, "midweek-sync")
    say(midweek, h(3), w + 3 * D + 13 * H, "sync notes", "thread_created_midweek_message")
    secret = thread(main, h(0), w + 2 * D, "maintainers-only", private=True, readable=False)
    say(secret, h(0), w + 2 * D + H, "private planning", "private_thread_message")
    post = thread(forum, h(4), w + D + 3 * H, "dark mode?")
    say(post, h(5), w + D + 4 * H, "yes please", "forum_post_reply")
    say(post, h(6), w + 2 * D, "seconded")
    closed_post = thread(forum, h(5), w + 2 * D + 5 * H, "plugin api", archived_at=w + 5 * D)
    say(closed_post, h(0), w + 2 * D + 6 * H, "let's do it", "forum_post_archived_reply")
    thread(forum, h(6), w + 5 * D, "weekly showcase")
    outside = [c for c in guild.channels if c.readable and not c.allow_listed and c.type != GUILD_FORUM]
    if outside:
        off = thread(outside[0], h(1), w + D, "memes")
        say(off, h(2), w + D + H, "not an allow-listed channel's thread", "thread_under_unlisted_channel_message")
    return scenario
