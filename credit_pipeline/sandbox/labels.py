"""Repository labels as GitHub renders them: REST label objects and GraphQL ``Label`` nodes.

Records carry label names only (``PullRequest.labels``, ``Issue.labels``); the rest of a label
(id, colour, description, whether it is one of GitHub's defaults) comes from this catalogue, and a
name outside it gets a stable id and a grey colour, so any name renders.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from credit_pipeline.sandbox.ids import github_node_id, github_time

# name -> (colour, description); the first nine are the labels GitHub creates in every new repository.
CATALOGUE: dict[str, tuple[str, str]] = {
    "bug": ("d73a4a", "Something isn't working"),
    "documentation": ("0075ca", "Improvements or additions to documentation"),
    "duplicate": ("cfd3d7", "This issue or pull request already exists"),
    "enhancement": ("a2eeef", "New feature or request"),
    "good first issue": ("7057ff", "Good for newcomers"),
    "help wanted": ("008672", "Extra attention is needed"),
    "invalid": ("e4e669", "This doesn't seem right"),
    "question": ("d876e3", "Further information is requested"),
    "wontfix": ("ffffff", "This will not be worked on"),
    "trivial": ("c5def5", "A typo or one-line change"),
    "size/XL": ("b60205", "Changes 1000+ lines"),
}
DEFAULTS = frozenset(list(CATALOGUE)[:9])


def label_id(repo: str, name: str) -> int:
    """A stable database id per (repo, label name), in the range GitHub's label ids live in."""
    return 200_000_000 + int(hashlib.sha1(f"{repo}:{name}".encode()).hexdigest(), 16) % 800_000_000


def _details(name: str) -> tuple[str, str | None]:
    colour, description = CATALOGUE.get(name, ("ededed", None))
    return colour, description


def rest_label(base: str, repo: str, name: str) -> dict[str, Any]:
    """A label object as REST embeds it in pulls and issues (``id, node_id, url, name, color, default, description``)."""
    lid = label_id(repo, name)
    colour, description = _details(name)
    return {"id": lid, "node_id": github_node_id("Label", lid), "url": f"{base}/repos/{repo}/labels/{quote(name, safe='')}",
            "name": name, "color": colour, "default": name in DEFAULTS, "description": description}


def graphql_label(base: str, repo: str, name: str, created: datetime) -> dict[str, Any]:
    """A GraphQL ``Label`` node; ``created`` is when the repository got it (the connection's default order)."""
    lid = label_id(repo, name)
    colour, description = _details(name)
    path = f"/{repo}/labels/{quote(name, safe='')}"
    return {"__typename": "Label", "id": github_node_id("Label", lid), "name": name, "color": colour,
            "description": description, "isDefault": name in DEFAULTS, "url": f"{base}{path}", "resourcePath": path,
            "createdAt": github_time(created), "updatedAt": github_time(created)}


def label_created(repo_created: datetime, name: str) -> datetime:
    """Default labels come with the repository; others were added in catalogue order, a day apart."""
    if name in DEFAULTS:
        return repo_created
    names = list(CATALOGUE)
    return repo_created + timedelta(days=1 + (names.index(name) if name in names else len(names)))
