"""Canonical JSON and SHA-256, the byte-level basis of every hash in the project.

Canonical JSON: keys sorted at every level, separators ``,`` and ``:``, UTF-8,
non-ASCII kept as is (SPEC §3). Integers of any size are written exactly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialize ``value`` as canonical JSON text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str | bytes) -> str:
    """Lowercase hex SHA-256 of ``text`` (UTF-8 when given a str)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def canonical_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))
