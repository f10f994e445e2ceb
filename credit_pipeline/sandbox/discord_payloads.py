"""Discord API v10 payloads built from the developer-docs examples in ``data/discord/``.

Snowflakes are emitted as JSON strings (Discord does: they exceed 2**53), ``timestamp`` is the
instant encoded in the message id, and a message's author shows the username at that instant.
Messages carry their ``type`` (0 default, 19 reply, 7 member join, 6 pin notice, 8 boost, ...).
Threads render as Discord's thread channel objects (``thread_metadata`` with ISO 8601 timestamps);
forum channels (type 15) carry the forum-only fields.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from credit_pipeline.sandbox.ids import discord_timestamp, snowflake_time
from credit_pipeline.sandbox.model import (
    GUILD_FORUM, PRIVATE_THREAD, REPLY, Channel, DiscordUser, Guild, Message, Thread,
)

DATA_DIR = Path(__file__).with_name("data") / "discord"
VIEW_CHANNEL = 1 << 10
GATEWAY_MESSAGE_CONTENT = 1 << 18
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 19
_PRIVATE_USER_FIELDS = ("email", "verified", "premium_type")


@lru_cache(maxsize=None)
def template(name: str) -> Any:
    return json.loads((DATA_DIR / f"{name}.json").read_text(encoding="utf-8"))


def user(account: DiscordUser, moment: Any = None, private: bool = False) -> dict[str, Any]:
    """A user object; ``private`` adds the fields only ``GET /users/@me`` returns."""
    out = copy.deepcopy(template("user-example"))
    out.update(id=str(account.id), username=account.username_at(moment) if moment else account.username,
               global_name=account.global_name, discriminator="0", avatar=None, banner=None, accent_color=None,
               flags=0, public_flags=0, avatar_decoration_data=None, collectibles=None, primary_guild=None)
    if private:
        out.update(verified=True, email=None, premium_type=0, mfa_enabled=False, locale="en-US")
    else:
        for key in _PRIVATE_USER_FIELDS:
            out.pop(key, None)
    if account.bot:
        out["bot"] = True
    return out


def application(bot: DiscordUser, owner: DiscordUser, message_content: bool) -> dict[str, Any]:
    """``GET /oauth2/applications/@me`` (the fields discord.py's ``AppInfo`` reads, plus flags)."""
    return {
        "id": str(bot.id), "name": "Credit Pipeline Sandbox", "icon": None,
        "description": "Local stand-in for the collector's bot application", "summary": "",
        "type": None, "bot": user(bot), "bot_public": False, "bot_require_code_grant": False,
        "verify_key": hashlib.sha256(str(bot.id).encode()).hexdigest(), "owner": user(owner), "team": None,
        "flags": GATEWAY_MESSAGE_CONTENT if message_content else GATEWAY_MESSAGE_CONTENT_LIMITED,
        "interactions_endpoint_url": None, "role_connections_verification_url": None, "tags": [],
        "rpc_origins": [], "redirect_uris": [],
    }


def channel(item: Channel, last_thread_id: int | None = None) -> dict[str, Any]:
    """A guild channel. A forum's ``last_message_id`` is the id of its newest post (``last_thread_id``)."""
    out = copy.deepcopy(template("channel-guild-text-example"))
    overwrites = [] if item.readable else [
        {"id": str(item.guild_id), "type": 0, "allow": "0", "deny": str(VIEW_CHANNEL)}]
    last = last_thread_id if item.type == GUILD_FORUM else (item.message_ids[-1] if item.message_ids else None)
    out.update(id=str(item.id), guild_id=str(item.guild_id), name=item.name, type=item.type, position=item.position,
               permission_overwrites=overwrites, rate_limit_per_user=0, nsfw=False, topic=item.topic,
               last_message_id=str(last) if last else None,
               parent_id=str(item.parent_id) if item.parent_id else None, default_auto_archive_duration=1440)
    out["flags"] = 0
    if item.type == GUILD_FORUM:
        out.update(available_tags=[], default_reaction_emoji=None, default_thread_rate_limit_per_user=0,
                   default_sort_order=None, default_forum_layout=0)
        out.pop("last_pin_timestamp", None)
    return out


def thread(item: Thread, forum: bool = False) -> dict[str, Any]:
    """A thread channel object (``GET /channels/{thread_id}``, the thread lists). ``message_count`` and
    ``total_message_sent`` leave out a forum post's starter message, as Discord counts them."""
    count = len(item.messages) - (1 if forum and item.message_ids[:1] == [item.id] else 0)
    metadata: dict[str, Any] = {
        "archived": item.archived, "auto_archive_duration": item.auto_archive_duration,
        "archive_timestamp": (item.archive_timestamp or item.created).isoformat(), "locked": item.locked,
        "create_timestamp": item.created.isoformat(),
    }
    if item.type == PRIVATE_THREAD:
        metadata["invitable"] = True
    out: dict[str, Any] = {
        "id": str(item.id), "guild_id": str(item.guild_id), "parent_id": str(item.parent_id),
        "owner_id": str(item.owner_id), "name": item.name, "type": item.type,
        "last_message_id": str(item.message_ids[-1]) if item.message_ids else None,
        "message_count": count, "member_count": min(50, len({m.author.id for m in item.messages} | {item.owner_id})),
        "rate_limit_per_user": 0, "flags": 0, "total_message_sent": count, "thread_metadata": metadata,
    }
    if forum:
        out["applied_tags"] = []
    return out


def category(guild: Guild) -> dict[str, Any]:
    return {"id": str(guild.category_id), "type": 4, "guild_id": str(guild.id), "name": "community",
            "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None, "flags": 0}


def guild_object(guild: Guild) -> dict[str, Any]:
    """``GET /guilds/{id}``: the documented guild fields; ``@everyone`` role id = guild id."""
    everyone = {"id": str(guild.id), "name": "@everyone", "color": 0, "colors": {"primary_color": 0,
                "secondary_color": None, "tertiary_color": None}, "hoist": False, "icon": None,
                "unicode_emoji": None, "position": 0, "permissions": "1071698660929", "managed": False,
                "mentionable": False, "flags": 0}
    return {
        "id": str(guild.id), "name": guild.name, "icon": None, "icon_hash": None, "splash": None,
        "discovery_splash": None, "owner_id": str(guild.owner_id), "region": None, "afk_channel_id": None,
        "afk_timeout": 300, "widget_enabled": False, "widget_channel_id": None, "verification_level": 1,
        "default_message_notifications": 1, "explicit_content_filter": 2, "roles": [everyone], "emojis": [],
        "features": [], "mfa_level": 0, "application_id": None, "system_channel_id": str(guild.channels[0].id),
        "system_channel_flags": 0, "rules_channel_id": None, "max_presences": None, "max_members": 500000,
        "vanity_url_code": None, "description": None, "banner": None, "premium_tier": 0,
        "premium_subscription_count": 0, "preferred_locale": "en-US", "public_updates_channel_id": None,
        "max_video_channel_users": 25, "max_stage_video_channel_users": 50, "nsfw_level": 0, "stickers": [],
        "premium_progress_bar_enabled": False, "safety_alerts_channel_id": None, "incidents_data": None,
    }


def message(item: Message, message_content: bool, guild_id: int | None = None, *, nested: bool = False) -> dict[str, Any]:
    """A message as ``GET /channels/{id}/messages`` returns it (no ``guild_id``, as over REST).

    A REPLY carries ``message_reference`` and the message it answers as ``referenced_message`` (one
    level deep, as Discord sends it; here a reply always mentions the author it answers); a pin
    notice carries the ``message_reference`` of the pinned message. ``nested`` renders a referenced
    message, which has no ``referenced_message`` of its own.
    """
    created = snowflake_time(item.id)
    out: dict[str, Any] = {
        "type": item.type, "content": item.content if message_content else "", "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "timestamp": discord_timestamp(item.id),
        "edited_timestamp": item.edited_at.isoformat() if item.edited_at else None, "flags": 0,
        "components": [], "id": str(item.id), "channel_id": str(item.channel_id),
        "author": user(item.author, created), "pinned": item.pinned, "mention_everyone": False, "tts": False,
    }
    ref = item.reference
    if ref is not None:
        out["message_reference"] = {"type": 0, "message_id": str(ref.id), "channel_id": str(ref.channel_id),
                                    **({"guild_id": str(guild_id)} if guild_id is not None else {})}
        if item.type == REPLY:
            out["mentions"] = [user(ref.author, snowflake_time(ref.id))]
            if not nested:
                out["referenced_message"] = message(ref, message_content, guild_id, nested=True)
    return out
