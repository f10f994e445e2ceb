"""Activity events: one row per source fact, with deterministic ids (SPEC §3).

An event is built once by a source adapter and never changes. Its id is a pure
function of the source fact, so re-ingesting the same fact is a no-op, and its
``payload_hash`` pins the raw API payload it was read from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from credit_pipeline.core.canonical import canonical_hash

Source = Literal["github", "discord"]

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "github": ("pr_merged", "review_submitted", "issue_closed"),
    "discord": ("message_sent",),
}

# GitHub shows a deleted account as this user on every item it authored.
GITHUB_GHOST_ID = "10137"
GITHUB_GHOST_LOGIN = "ghost"


def _part(name: str, value: object) -> str:
    text = str(value)
    if not text or ":" in text:
        raise ValueError(f"event id part {name}={value!r} must be non-empty and contain no ':'")
    return text


def github_pr_event_id(repo: str, number: int) -> str:
    """``github:pr:{owner}/{repo}:{number}``"""
    return f"github:pr:{_part('repo', repo)}:{int(number)}"


def github_review_event_id(repo: str, pr_number: int, review_id: int | str) -> str:
    """``github:review:{owner}/{repo}:{pr_number}:{review_id}``"""
    return f"github:review:{_part('repo', repo)}:{int(pr_number)}:{int(review_id)}"


def github_issue_event_id(repo: str, number: int) -> str:
    """``github:issue:{owner}/{repo}:{number}``"""
    return f"github:issue:{_part('repo', repo)}:{int(number)}"


def discord_message_event_id(guild_id: int | str, channel_id: int | str, message_id: int | str) -> str:
    """``discord:message:{guild_id}:{channel_id}:{message_id}`` (snowflakes written as integers)."""
    return f"discord:message:{int(guild_id)}:{int(channel_id)}:{int(message_id)}"


def payload_hash(payload: Any) -> str:
    """SHA-256 (lowercase hex) of the canonical JSON of a stored payload."""
    return canonical_hash(payload)


class ActivityEvent(BaseModel):
    """A normalized source fact, exactly as it is stored in ``activity_events``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1)
    source: Source
    event_type: str = Field(pattern=r"^[a-z][a-z_]*$")
    # GitHub numeric user id or Discord snowflake, as text; None when the account
    # is gone (GitHub's ghost) and the fact cannot be attributed to anyone.
    platform_user_id: str | None
    platform_login: str | None = None
    is_bot: bool = False
    artifact_url: str | None = None
    event_time: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)
    payload: dict[str, Any]
    payload_hash: str = ""
    producer: str
    producer_version: str
    retrieved_at: datetime

    @field_validator("event_time", "retrieved_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (UTC)")
        return value.astimezone(UTC)

    @field_validator("platform_user_id")
    @classmethod
    def _numeric_id(cls, value: str | None) -> str | None:
        if value is not None and not value.isdigit():
            raise ValueError(f"platform user id {value!r} must be a numeric id written as text")
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_hash(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("payload_hash") and "payload" in data:
            data = {**data, "payload_hash": payload_hash(data["payload"])}
        return data

    @model_validator(mode="after")
    def _check_hash(self) -> ActivityEvent:
        expected = payload_hash(self.payload)
        if self.payload_hash != expected:
            raise ValueError(f"payload_hash of {self.event_id} is {self.payload_hash}, but the payload hashes to {expected}")
        if not self.event_id.startswith(f"{self.source}:"):
            raise ValueError(f"event id {self.event_id!r} does not start with its source {self.source!r}")
        return self

    @property
    def account_key(self) -> str | None:
        """``provider:external_id`` of the account, the claimant id when unresolved."""
        return None if self.platform_user_id is None else f"{self.source}:{self.platform_user_id}"
