"""GitHub primary rate limits per resource, with the ``x-ratelimit-*`` headers GitHub sends.

Defaults are GitHub's for a personal token: ``core`` 5,000/hour, ``search`` 30/minute, ``graphql``
5,000 points/hour. They are enforced: when a resource is spent the server answers as GitHub does
(403 "API rate limit exceeded", or a GraphQL ``RATE_LIMITED`` error) until the window resets.
``GET /rate_limit`` and 304 Not Modified answers do not count, as on GitHub.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

DEFAULT_LIMITS: dict[str, tuple[int, float]] = {"core": (5000, 3600.0), "search": (30, 60.0), "graphql": (5000, 3600.0)}


@dataclass
class _Bucket:
    limit: int
    window: float
    used: int = 0
    reset_at: float = 0.0


class GitHubRateLimits:
    """Thread-safe usage counters; ``limits`` maps resource -> (limit, window seconds)."""

    def __init__(self, limits: dict[str, tuple[int, float]] | None = None) -> None:
        merged = {**DEFAULT_LIMITS, **(limits or {})}
        self._buckets = {name: _Bucket(limit, window) for name, (limit, window) in merged.items()}
        self._lock = threading.Lock()

    def _roll(self, bucket: _Bucket, now: float) -> None:
        if now >= bucket.reset_at:
            bucket.used = 0
            bucket.reset_at = now + bucket.window

    def consume(self, resource: str, cost: int = 1) -> tuple[bool, list[tuple[str, str]]]:
        """Spend ``cost``; returns (allowed, headers). A refused request spends nothing."""
        with self._lock:
            bucket = self._buckets[resource]
            self._roll(bucket, time.time())
            allowed = bucket.used + cost <= bucket.limit
            if allowed:
                bucket.used += cost
            return allowed, self._headers(resource, bucket)

    def refund(self, resource: str, cost: int = 1) -> list[tuple[str, str]]:
        with self._lock:
            bucket = self._buckets[resource]
            bucket.used = max(0, bucket.used - cost)
            return self._headers(resource, bucket)

    def headers(self, resource: str) -> list[tuple[str, str]]:
        with self._lock:
            bucket = self._buckets[resource]
            self._roll(bucket, time.time())
            return self._headers(resource, bucket)

    def snapshot(self, resource: str) -> dict[str, int]:
        with self._lock:
            bucket = self._buckets[resource]
            self._roll(bucket, time.time())
            return {"limit": bucket.limit, "used": bucket.used, "remaining": bucket.limit - bucket.used,
                    "reset": math.ceil(bucket.reset_at)}

    def resources(self) -> list[str]:
        return list(self._buckets)

    @staticmethod
    def _headers(resource: str, bucket: _Bucket) -> list[tuple[str, str]]:
        return [
            ("x-ratelimit-limit", str(bucket.limit)),
            ("x-ratelimit-remaining", str(bucket.limit - bucket.used)),
            ("x-ratelimit-reset", str(math.ceil(bucket.reset_at))),
            ("x-ratelimit-used", str(bucket.used)),
            ("x-ratelimit-resource", resource),
        ]


def exhausted_headers(resource: str, limit: int, reset_in: float) -> list[tuple[str, str]]:
    """Headers of an injected primary-limit exhaustion: nothing remaining until now + reset_in."""
    return [
        ("x-ratelimit-limit", str(limit)),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", str(math.ceil(time.time() + reset_in))),
        ("x-ratelimit-used", str(limit)),
        ("x-ratelimit-resource", resource),
    ]
