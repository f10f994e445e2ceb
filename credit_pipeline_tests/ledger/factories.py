"""Small builders of ledger rows for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from credit_pipeline.core.events import ActivityEvent, github_pr_event_id

RETRIEVED = datetime(2026, 2, 24, tzinfo=UTC)


def pr_event(number: int, when: datetime, user_id: str | None = "583231", login: str = "octocat", repo: str = "acme/widgets") -> ActivityEvent:
    return ActivityEvent(
        event_id=github_pr_event_id(repo, number),
        source="github",
        event_type="pr_merged",
        platform_user_id=user_id,
        platform_login=login,
        artifact_url=f"https://github.com/{repo}/pull/{number}",
        event_time=when,
        metadata={"repo": repo, "number": number},
        payload={"number": number, "merged_at": when.isoformat(), "user": {"id": int(user_id) if user_id else 10137, "login": login}, "title": f"PR #{number} ✓"},
        producer="test",
        producer_version="1",
        retrieved_at=RETRIEVED,
    )


def week_of_prs(count: int, start: datetime = datetime(2026, 2, 16, tzinfo=UTC)) -> list[ActivityEvent]:
    step = timedelta(days=7) / count
    return [pr_event(i + 1, start + step * i, user_id=str(1000 + i % 3), login=f"user{i % 3}") for i in range(count)]
