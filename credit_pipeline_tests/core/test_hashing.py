"""Allocation-set hash, approval messages v1/v2, and signature normalization (SPEC §9)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credit_pipeline.core.canonical import sha256_hex
from credit_pipeline.core.hashing import (
    APPROVAL_HEADER,
    APPROVAL_HEADER_V1,
    APPROVAL_HEADER_V2,
    SECP256K1_N,
    SignatureError,
    address_of,
    allocation_set_hash,
    allocation_set_text,
    approval_message,
    message_version,
    normalize_signature,
    recover_signer,
    sign_message,
)
from credit_pipeline.core.recipients import RecipientIdError

KEY = "0x" + "4c" * 32
VECTOR_KEY = "0x" + "11" * 32
VECTOR_ADDRESS = "0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a"
LEDGER = "5b0e8a4c-2f1d-4c3e-9a7b-6d5e4f3a2b1c"
SPEC_HASH = "c29b65545acf6255769a05fbafc5926083b65c738a7adff8254bd2f876ac3fa0"
P, A, S = "ab" * 32, SPEC_HASH, "cd" * 32


# -- allocation set -------------------------------------------------------------------------------


def test_spec_vector():
    assert allocation_set_text({"bob": 2000, "alice": 1000}) == "alice:1000\nbob:2000"
    assert allocation_set_hash([("bob", 2000), ("alice", 1000)]) == SPEC_HASH


def test_empty_set_hashes_the_empty_string():
    assert allocation_set_hash([]) == sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_duplicate_or_negative_rows_are_refused():
    with pytest.raises(ValueError, match="more than once: a"):
        allocation_set_hash([("a", 1), ("a", 2)])
    with pytest.raises(ValueError, match=">= 0"):
        allocation_set_hash([("a", -1)])


def test_claimants_are_hashed_like_persons():
    assert allocation_set_text({"github:2": 6000, "alice": 8700}) == "alice:8700\ngithub:2:6000"


@pytest.mark.parametrize("bad", ["", "a\nb", "bob:2000\nalice", "x:1", "Alice", " alice", "alice\n", "github:", "gitlab:1"])
def test_ids_outside_the_grammar_are_never_hashed(bad):
    # "a:1\nb" + ":2" and "a" + ":1\nb:2" would otherwise be one text, one hash.
    with pytest.raises(RecipientIdError):
        allocation_set_hash({bad: 1})


# -- approval messages ----------------------------------------------------------------------------


def test_v1_message_is_byte_identical_to_the_first_version():
    assert APPROVAL_HEADER == APPROVAL_HEADER_V1 == "Credit Payout Statement v1"
    assert approval_message("2026-02-16", P, A, 10000) == (
        "Credit Payout Statement v1\n"
        "Epoch: 2026-02-16\n"
        f"Policy Hash: {P}\n"
        f"Allocation Hash: {A}\n"
        "Pool Total: 10000"
    )
    # v1 was never validated; old bundles (and old tests) keep producing the same text.
    assert approval_message("2026-02-16", "p" * 64, "a" * 64, 10000).split("\n")[2] == f"Policy Hash: {'p' * 64}"


@pytest.mark.parametrize("extra", [{"revision": 2}, {"supersedes": S}, {"revision": 2, "supersedes": S}])
def test_v1_has_no_revision_or_supersedes(extra):
    with pytest.raises(ValueError, match="pass ledger_id"):
        approval_message("2026-02-16", P, A, 10000, **extra)


def test_v2_vector_revision_1():
    message = approval_message("2026-02-16", P, A, 10000, ledger_id=LEDGER)
    assert message == (
        "Credit Payout Statement v2\n"
        "Ledger: 5b0e8a4c-2f1d-4c3e-9a7b-6d5e4f3a2b1c\n"
        "Epoch: 2026-02-16\n"
        "Revision: 1\n"
        "Policy Hash: abababababababababababababababababababababababababababababababab\n"
        "Allocation Hash: c29b65545acf6255769a05fbafc5926083b65c738a7adff8254bd2f876ac3fa0\n"
        "Pool Total: 10000"
    )
    signature = sign_message(message, VECTOR_KEY)
    assert signature == (
        "0x341a75ed57d0842da4311bd9e51e66ea8b88d0081c0812a6852c40381738d69b"
        "6f950c98fc79fee35ac593c21a172e4dbdaac476571eb6db91aca15f41bf54a61b"
    )
    assert address_of(VECTOR_KEY) == VECTOR_ADDRESS == recover_signer(message, signature)


def test_v2_vector_correction():
    message = approval_message("2026-02-16", P, A, 10000, ledger_id=LEDGER, revision=2, supersedes=S)
    assert message == (
        "Credit Payout Statement v2\n"
        "Ledger: 5b0e8a4c-2f1d-4c3e-9a7b-6d5e4f3a2b1c\n"
        "Epoch: 2026-02-16\n"
        "Revision: 2\n"
        "Policy Hash: abababababababababababababababababababababababababababababababab\n"
        "Allocation Hash: c29b65545acf6255769a05fbafc5926083b65c738a7adff8254bd2f876ac3fa0\n"
        "Pool Total: 10000\n"
        "Supersedes: cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
    )
    signature = sign_message(message, VECTOR_KEY)
    assert signature == (
        "0x99992e4563dd255922090c2ec8a7487012a4d5260cc1bbacdce89baf64b2b0af"
        "418a87f0501c8acad8323df0e5c6b9a1f04eb5cfc670dbceb8777b4421ad36c41c"
    )
    assert recover_signer(message, signature) == VECTOR_ADDRESS


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER.upper()}, "ledger_id"),
        (("2026-02-16", P, A, 1), {"ledger_id": "{" + LEDGER + "}"}, "ledger_id"),
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER.replace("-", "")}, "ledger_id"),
        (("2026-02-16", P, A, 1), {"ledger_id": "ledger-1"}, "ledger_id"),
        (("2026-02-16", P.upper(), A, 1), {"ledger_id": LEDGER}, "policy_hash"),
        (("2026-02-16", P, A[:63], 1), {"ledger_id": LEDGER}, "allocation_hash"),
        (("2026-02-16", P, A + "\n", 1), {"ledger_id": LEDGER}, "allocation_hash"),
        (("2026-02-16", P, A, -1), {"ledger_id": LEDGER}, "pool_total"),
        (("2026-02-16", P, A, 1.0), {"ledger_id": LEDGER}, "pool_total"),
        (("2026-02-16", P, A, True), {"ledger_id": LEDGER}, "pool_total"),
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER, "revision": 0}, "revision"),
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER, "revision": "2", "supersedes": S}, "revision"),
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER, "revision": 2}, "supersedes is required"),
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER, "supersedes": S}, "supersedes must be None"),
        (("2026-02-16", P, A, 1), {"ledger_id": LEDGER, "revision": 3, "supersedes": "x" * 64}, "supersedes"),
        (("2026-02-17", P, A, 1), {"ledger_id": LEDGER}, "epoch key"),
        (("2026-02-16\nPool Total: 0", P, A, 1), {"ledger_id": LEDGER}, "epoch key"),
    ],
)
def test_v2_fields_are_validated(args, kwargs, field):
    with pytest.raises(ValueError, match=field):
        approval_message(*args, **kwargs)


def test_message_version():
    assert message_version(approval_message("2026-02-16", P, A, 1)) == 1
    assert message_version(approval_message("2026-02-16", P, A, 1, ledger_id=LEDGER)) == 2
    assert APPROVAL_HEADER_V2 == "Credit Payout Statement v2"
    for text in ("", "hello", "Credit Payout Statement v3\nEpoch: 2026-02-16", " Credit Payout Statement v1"):
        with pytest.raises(ValueError, match="not an approval message"):
            message_version(text)


# -- signatures -----------------------------------------------------------------------------------


def test_sign_and_recover_round_trip():
    message = approval_message("2026-02-16", P, A, 10000)
    signature = sign_message(message, KEY)
    assert recover_signer(message, signature) == address_of(KEY)
    # The same signature over another epoch's message recovers someone else.
    other = approval_message("2026-02-23", P, A, 10000)
    assert recover_signer(other, signature) != address_of(KEY)


def twins(signature: str) -> list[str]:
    """Every spelling of one signature a wallet or a forger could hand in."""
    raw = bytes.fromhex(signature[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    high_s, flipped = (SECP256K1_N - s).to_bytes(32, "big"), 55 - v
    parity, flipped_parity = v - 27, flipped - 27
    forms = []
    for s_bytes, vs in ((raw[32:64], (v, parity, 35 + parity, 37 + parity, 35 + 2 * 100 + parity)),
                        (high_s, (flipped, flipped_parity, 35 + flipped_parity, 37 + flipped_parity))):
        for v_out in vs:
            body = (r + s_bytes + bytes([v_out])).hex()
            forms += ["0x" + body, body, "0x" + body.upper(), "0X" + body]
    return forms


def test_malleated_twins_normalize_to_one_string_and_recover_one_signer():
    message = approval_message("2026-02-16", P, A, 10000, ledger_id=LEDGER)
    signature = sign_message(message, VECTOR_KEY)
    forms = twins(signature)
    assert len(set(forms)) == len(forms) == 36
    assert {normalize_signature(f) for f in forms} == {signature}
    assert {recover_signer(message, f) for f in forms} == {VECTOR_ADDRESS}
    # The v values the brief lists are all among them: {0, 1, 27, 28, 37, 38}.
    assert {int(f[-2:], 16) for f in forms} >= {0, 1, 27, 28, 37, 38}


def test_normalized_form_is_low_s_lowercase_v27_or_28():
    signature = sign_message("hello", KEY)
    raw = bytes.fromhex(signature.removeprefix("0x"))
    assert signature == signature.lower() and signature.startswith("0x") and len(raw) == 65
    assert int.from_bytes(raw[32:64], "big") <= SECP256K1_N // 2 and raw[64] in (27, 28)


def _with(signature: str, r: int | None = None, s: int | None = None, v: int | None = None) -> str:
    raw = bytes.fromhex(signature[2:])
    r_b = raw[:32] if r is None else r.to_bytes(32, "big")
    s_b = raw[32:64] if s is None else s.to_bytes(32, "big")
    v_b = raw[64:] if v is None else bytes([v])
    return "0x" + (r_b + s_b + v_b).hex()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda sig: "0x1234", "not 65 bytes"),
        (lambda sig: "", "not 65 bytes"),
        (lambda sig: sig[:-2], "not 65 bytes"),
        (lambda sig: sig + "00", "not 65 bytes"),
        (lambda sig: sig[:-1] + "g", "not 65 bytes"),
        (lambda sig: sig + "\n", "not 65 bytes"),
        (lambda sig: " " + sig, "not 65 bytes"),
        (lambda sig: "0x0x" + sig[4:], "not 65 bytes"),
        (lambda sig: "hello world", "not 65 bytes"),
        (lambda sig: _with(sig, r=0), "r is outside"),
        (lambda sig: _with(sig, r=SECP256K1_N), "r is outside"),
        (lambda sig: _with(sig, s=0), "s is outside"),
        (lambda sig: _with(sig, s=SECP256K1_N), "s is outside"),
        (lambda sig: _with(sig, s=2**256 - 1), "s is outside"),
        (lambda sig: _with(sig, v=29), "v = 29"),
        (lambda sig: _with(sig, v=2), "v = 2"),
        (lambda sig: _with(sig, v=34), "v = 34"),
    ],
)
def test_bad_signatures_are_signature_errors(make, match):
    bad = make(sign_message("hello", KEY))
    with pytest.raises(SignatureError, match=match):
        normalize_signature(bad)
    with pytest.raises(SignatureError, match="cannot be recovered"):
        recover_signer("hello", bad)


@pytest.mark.parametrize("bad", [None, 123, b"\x00" * 65])
def test_non_strings_are_signature_errors(bad):
    with pytest.raises(SignatureError):
        normalize_signature(bad)


def test_an_r_off_the_curve_is_a_signature_error():
    # r = 5 is in range but no curve point has that x with this v: recovery itself fails.
    bad = _with(sign_message("hello", KEY), r=5)
    assert normalize_signature(bad) == bad
    with pytest.raises(SignatureError, match="cannot be recovered"):
        recover_signer("hello", bad)


@settings(max_examples=40, deadline=None)
@given(message=st.text(max_size=200), secret=st.integers(min_value=1, max_value=SECP256K1_N - 1))
def test_every_malleation_normalizes_and_recovers_to_the_key(message, secret):
    key = "0x" + secret.to_bytes(32, "big").hex()
    signature = sign_message(message, key)
    assert normalize_signature(signature) == signature
    for form in twins(signature):
        assert normalize_signature(form) == signature
    for form in twins(signature)[::4]:  # one spelling per (s, v) pair keeps the test fast
        assert recover_signer(message, form) == address_of(key)
