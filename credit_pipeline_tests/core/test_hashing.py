import pytest

from credit_pipeline.core.hashing import (
    SignatureError,
    address_of,
    allocation_set_hash,
    allocation_set_text,
    approval_message,
    recover_signer,
    sign_message,
)
from credit_pipeline.core.canonical import sha256_hex

KEY = "0x" + "4c" * 32


def test_spec_vector():
    assert allocation_set_text({"bob": 2000, "alice": 1000}) == "alice:1000\nbob:2000"
    assert allocation_set_hash([("bob", 2000), ("alice", 1000)]) == "c29b65545acf6255769a05fbafc5926083b65c738a7adff8254bd2f876ac3fa0"


def test_empty_set_hashes_the_empty_string():
    assert allocation_set_hash([]) == sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_duplicate_or_negative_rows_are_refused():
    with pytest.raises(ValueError, match="more than once: a"):
        allocation_set_hash([("a", 1), ("a", 2)])
    with pytest.raises(ValueError, match=">= 0"):
        allocation_set_hash([("a", -1)])


def test_approval_message_lines():
    assert approval_message("2026-02-16", "p" * 64, "a" * 64, 10000).split("\n") == [
        "Credit Payout Statement v1",
        "Epoch: 2026-02-16",
        f"Policy Hash: {'p' * 64}",
        f"Allocation Hash: {'a' * 64}",
        "Pool Total: 10000",
    ]


def test_sign_and_recover_round_trip():
    message = approval_message("2026-02-16", "p" * 64, "a" * 64, 10000)
    signature = sign_message(message, KEY)
    assert recover_signer(message, signature) == address_of(KEY)
    # The same signature over another epoch's message recovers someone else.
    other = approval_message("2026-02-23", "p" * 64, "a" * 64, 10000)
    assert recover_signer(other, signature) != address_of(KEY)


def test_garbage_signature_is_a_clear_error():
    with pytest.raises(SignatureError, match="cannot be recovered"):
        recover_signer("hello", "0x1234")
