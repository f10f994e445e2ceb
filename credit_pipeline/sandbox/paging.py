"""GitHub REST page-number pagination and its ``Link`` header, formatted as GitHub does.

GitHub answers ``Link: <url?...&page=2>; rel="next", <url?...&page=5>; rel="last"`` (order: prev,
next, last, first), keeping the request's query parameters in their order and replacing ``page``.
Repository lists link to ``/repositories/{id}/...`` rather than ``/repos/{owner}/{repo}/...``.
No Link header is sent when everything fits on one page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Sequence, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def page_params(query: dict[str, str]) -> tuple[int, int]:
    """``(per_page, page)`` with GitHub's defaults: 30 per page, at most 100, pages from 1."""
    per_page = _int(query.get("per_page"), DEFAULT_PER_PAGE)
    per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
    page = max(1, _int(query.get("page"), 1))
    return per_page, page


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    link: str | None
    last_page: int


def link_header(url: str, pairs: list[tuple[str, str]], page: int, last: int) -> str | None:
    """GitHub's Link header for ``page`` of ``last`` pages (None when there is a single page)."""
    if last <= 1 and page <= 1:
        return None

    def to(number: int) -> str:
        kept = [(k, v) for k, v in pairs if k != "page"]
        return f"<{url}?{urlencode([*kept, ('page', str(number))])}>"

    parts: list[str] = []
    if page > 1:
        parts.append(f'{to(min(page - 1, max(last, 1)))}; rel="prev"')
    if page < last:
        parts.append(f'{to(page + 1)}; rel="next"')
        parts.append(f'{to(last)}; rel="last"')
    if page > 1:
        parts.append(f'{to(1)}; rel="first"')
    return ", ".join(parts) or None


def paginate(
    items: Sequence[T], query: dict[str, str], pairs: list[tuple[str, str]], link_url: str, cap: int | None = None
) -> Page[T]:
    """Slice ``items`` for the request's page; ``cap`` limits reachable items (search: 1000)."""
    per_page, page = page_params(query)
    reachable = len(items) if cap is None else min(len(items), cap)
    last = max(1, -(-reachable // per_page))
    start = (page - 1) * per_page
    chunk = list(items[start:min(start + per_page, reachable)])
    return Page(chunk, link_header(link_url, pairs, page, last if reachable else 0), last)
