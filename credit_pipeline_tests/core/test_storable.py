"""core.storable: any JSON value an API can send comes back exactly from what the ledger stores."""

import json
import math

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.storable import (
    MAX_STRING_CHARS,
    OMITTED_KEY,
    bounded,
    is_storable,
    storable_payload,
    storable_text,
    unwrap_payload,
)

# Every code point, lone surrogates and NUL included, and every float, NaN and infinities included.
text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20)


def _dump(value) -> str:
    return json.dumps(value, allow_nan=True, sort_keys=True, ensure_ascii=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(text, json_values, max_size=5))
def test_storable_payload_is_lossless_and_storable(payload):
    stored = storable_payload(payload)
    assert is_storable(stored)
    assert _dump(unwrap_payload(stored)) == _dump(payload)
    if is_storable(payload):
        assert stored is payload  # nothing to escape: stored as it is


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # read-only queries
@given(st.dictionaries(text, json_values, max_size=5))
def test_postgres_accepts_every_stored_payload_and_returns_it(store, payload):
    stored = storable_payload(payload)
    with store.engine.connect() as conn:
        back = conn.execute(sa.text("SELECT CAST(:p AS jsonb)"), {"p": json.dumps(stored)}).scalar()
    assert canonical_hash(back) == canonical_hash(stored)  # the payload_hash recorded at insert is the one read back
    assert _dump(unwrap_payload(back)) == _dump(payload)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # read-only queries
@given(text)
def test_storable_text_is_accepted_by_postgres_text(store, value):
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT CAST(:v AS text)"), {"v": storable_text(value)}).scalar() == storable_text(value)


def test_storable_text_replaces_and_bounds():
    assert storable_text("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    assert len(storable_text("x" * 1000)) == 256 and storable_text("x" * 1000).endswith("\u2026")
    assert storable_text(None) is None


def test_bounded_omits_only_oversized_strings_and_keeps_their_hash():
    item = {"body": "b" * (MAX_STRING_CHARS + 1), "title": "t", "n": [1, "c" * 10]}
    out = bounded(item)
    assert out["title"] == "t" and out["n"] == [1, "c" * 10]
    assert out["body"][OMITTED_KEY]["chars"] == MAX_STRING_CHARS + 1 and len(out["body"][OMITTED_KEY]["sha256"]) == 64
    assert not is_storable({"x": math.nan}) and not is_storable({"\x00": 1})
