"""Values from the network as the ledger can store them, with nothing silently lost (SPEC §3).

PostgreSQL refuses three things a JSON API can send: U+0000 anywhere in text or jsonb, a lone
UTF-16 surrogate (``"\\ud800"`` is valid JSON text but not encodable as UTF-8), and non-finite
numbers (``NaN``, ``Infinity``: accepted by Python's JSON reader, refused by jsonb); and it rewrites
some numbers (``1e16`` comes back as an integer, ``-0.0`` as ``0.0``), which would change a hash. One such value in
one item used to fail its page's insert on every run, so the stream never completed.

- :func:`bounded` replaces any string longer than ``MAX_STRING_CHARS`` with an omission marker
  naming its length and SHA-256 (no legitimate field of a PR, review, issue or message is that long;
  GitHub caps bodies at 65,536 characters, Discord messages at 4,000).
- :func:`storable_payload` keeps a payload that PostgreSQL can store as it is; otherwise it wraps it
  losslessly: ``{"credit_pipeline:escaped": 1, "json": <the item as ASCII-escaped JSON text>,
  "sha256": <SHA-256 of that text>}``. ``json.loads(wrapper["json"])`` gives back the exact item.
- :func:`unwrap_payload` is the inverse, used by everything that re-reads a stored payload.
- :func:`storable_text` makes a derived column (a login, a display name) storable: each refused
  character becomes U+FFFD and the text is cut at ``limit`` characters. The payload keeps the original.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

ESCAPED_KEY = "credit_pipeline:escaped"
OMITTED_KEY = "credit_pipeline:omitted"
MAX_STRING_CHARS = 262_144
MAX_COLUMN_CHARS = 256
_REFUSED = re.compile("[\x00\ud800-\udfff]")


def bounded(value: Any, limit: int = MAX_STRING_CHARS) -> Any:
    """``value`` with every string longer than ``limit`` replaced by ``{OMITTED_KEY: {chars, sha256}}``."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return {OMITTED_KEY: {"chars": len(value), "sha256": digest}}
    if isinstance(value, dict):
        return {k: bounded(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [bounded(v, limit) for v in value]
    return value


def is_storable(value: Any) -> bool:
    """True when PostgreSQL stores ``value`` as jsonb and gives back the same JSON (no NUL, no lone surrogate,
    no number that ``numeric`` refuses or rewrites)."""
    if isinstance(value, str):
        return _REFUSED.search(value) is None
    if isinstance(value, float):
        return _float_round_trips(value)
    if isinstance(value, dict):
        return all(is_storable(k) and is_storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_storable(v) for v in value)
    return True


def _float_round_trips(value: float) -> bool:
    """jsonb stores numbers as ``numeric``: it refuses NaN and the infinities, writes 1e16 back as the integer
    10000000000000000 and -0.0 as 0.0. Those would change the payload's hash between writing and reading."""
    if not math.isfinite(value):
        return False
    if value == 0:
        return math.copysign(1.0, value) > 0
    return not (value.is_integer() and abs(value) >= 1e16)


def storable_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` itself when storable, else its lossless escaped wrapper."""
    if is_storable(payload):
        return payload
    text = json.dumps(payload, ensure_ascii=True, allow_nan=True, separators=(",", ":"))
    return {ESCAPED_KEY: 1, "json": text, "sha256": hashlib.sha256(text.encode("ascii")).hexdigest()}


def unwrap_payload(stored: Any) -> Any:
    """The item a stored payload holds (the inverse of :func:`storable_payload`)."""
    if isinstance(stored, dict) and stored.get(ESCAPED_KEY) == 1 and isinstance(stored.get("json"), str):
        return json.loads(stored["json"])
    return stored


def is_escaped(stored: Any) -> bool:
    return isinstance(stored, dict) and stored.get(ESCAPED_KEY) == 1


def storable_text(value: str | None, limit: int = MAX_COLUMN_CHARS) -> str | None:
    """A text column PostgreSQL accepts: refused characters become U+FFFD; cut at ``limit`` characters."""
    if value is None:
        return None
    text = _REFUSED.sub("\ufffd", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def storable_value(value: Any, limit: int = 1024) -> Any:
    """A derived JSON value (event metadata) made storable: :func:`storable_text` on every string,
    ``None`` for a non-finite number."""
    if isinstance(value, str):
        return storable_text(value, limit)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {storable_text(str(k), limit): storable_value(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_value(v, limit) for v in value]
    return value


@dataclass(frozen=True)
class QuarantinedItem:
    """An item of a page that cannot be read: kept aside with the reason, so the stream moves on."""

    reason: str
    raw_sha256: str
    excerpt: str
    item_key: str | None = None  # the event id it would have had, when that much is readable

    @classmethod
    def of(cls, item: Any, reason: str, item_key: str | None = None) -> QuarantinedItem:
        text = json.dumps(item, ensure_ascii=True, allow_nan=True, sort_keys=True, separators=(",", ":"), default=repr)
        return cls(reason=storable_text(reason, 2000) or "", raw_sha256=hashlib.sha256(text.encode("ascii")).hexdigest(), excerpt=text[:2000],
                   item_key=item_key)
