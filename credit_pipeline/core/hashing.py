"""The allocation-set hash, the approval message and its EIP-191 signature (SPEC §9, §10).

An approver signs a short, human-readable message that pins the ledger, the epoch,
the statement revision, the policy, the exact allocation set and the pool. Anyone can
recover the signer's address from the signature and the message alone.

Signatures are kept in one normalized form (65 bytes, low-s, v in {27, 28}, lowercase
hex) because ECDSA is malleable: from any signature a second valid one is computed
without the key (s -> n - s with v flipped), and wallets write v as 0/1, 27/28 or
EIP-155 style. Without normalization the "same" approval could be stored twice.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping

from eth_account import Account
from eth_account.messages import encode_defunct

from credit_pipeline.core.canonical import sha256_hex
from credit_pipeline.core.epochs import parse_epoch_key
from credit_pipeline.core.recipients import check_recipient_id

APPROVAL_HEADER_V1 = "Credit Payout Statement v1"
APPROVAL_HEADER_V2 = "Credit Payout Statement v2"
APPROVAL_HEADER = APPROVAL_HEADER_V1  # the old name, kept for callers written before v2

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HASH = re.compile(r"[0-9a-f]{64}")
_SIGNATURE_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{130})")


class SignatureError(ValueError):
    """A signature that cannot be decoded or recovered."""


def allocation_set_text(rows: Iterable[tuple[str, int]] | Mapping[str, int]) -> str:
    """``recipient_id:final_units`` lines sorted by recipient id, joined by ``\\n``.

    Every id must follow the recipient grammar: an id holding ``\\n`` or ``:`` (or an
    empty one) could make two different sets produce the same text, hence the same hash.
    """
    pairs = list(rows.items() if isinstance(rows, Mapping) else rows)
    for recipient_id, _ in pairs:
        check_recipient_id(recipient_id)
    ids = [r for r, _ in pairs]
    if len(ids) != len(set(ids)):
        dupes = sorted({r for r in ids if ids.count(r) > 1})
        raise ValueError(f"allocation set lists recipient(s) more than once: {', '.join(dupes)}")
    for recipient_id, units in pairs:
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise ValueError(f"final units of {recipient_id} must be an integer >= 0 (got {units!r})")
    return "\n".join(f"{r}:{u}" for r, u in sorted(pairs))


def allocation_set_hash(rows: Iterable[tuple[str, int]] | Mapping[str, int]) -> str:
    """SHA-256 hex of the allocation-set text (the empty set hashes the empty string)."""
    return sha256_hex(allocation_set_text(rows))


def _check_hash(name: str, value: object) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise ValueError(f"{name} must be 64 lowercase hex digits (a SHA-256), got {value!r}")
    return value


def _check_ledger_id(value: object) -> str:
    # Only the canonical spelling: "{...}", "urn:uuid:" or upper case would sign a different text
    # for the same ledger, and a verifier recomputing the message would not reproduce it.
    if isinstance(value, str):
        try:
            if str(uuid.UUID(value)) == value:
                return value
        except ValueError:
            pass
    raise ValueError(f"ledger_id must be a lowercase UUID like 5b0e8a4c-2f1d-4c3e-9a7b-6d5e4f3a2b1c, got {value!r}")


def approval_message(
    epoch_key: str,
    policy_hash: str,
    allocation_hash: str,
    pool_total: int,
    *,
    ledger_id: str | None = None,
    revision: int = 1,
    supersedes: str | None = None,
) -> str:
    """The exact text an approver signs with EIP-191 ``personal_sign``.

    Without ``ledger_id`` this is the v1 text, byte for byte, so statements signed
    before v2 stay verifiable. With it, the v2 text also names the ledger (a signature
    cannot be replayed on another deployment) and the revision, and a correction
    (revision > 1) names the statement hash it supersedes.
    """
    if ledger_id is None:
        if revision != 1 or supersedes is not None:
            raise ValueError("a v1 approval message has no revision or supersedes; pass ledger_id for a v2 message")
        return "\n".join(
            (
                APPROVAL_HEADER_V1,
                f"Epoch: {epoch_key}",
                f"Policy Hash: {policy_hash}",
                f"Allocation Hash: {allocation_hash}",
                f"Pool Total: {pool_total}",
            )
        )
    _check_ledger_id(ledger_id)
    if not isinstance(epoch_key, str):
        raise ValueError(f"epoch_key must be a string YYYY-MM-DD, got {epoch_key!r}")
    parse_epoch_key(epoch_key)
    _check_hash("policy_hash", policy_hash)
    _check_hash("allocation_hash", allocation_hash)
    if isinstance(pool_total, bool) or not isinstance(pool_total, int) or pool_total < 0:
        raise ValueError(f"pool_total must be an integer >= 0, got {pool_total!r}")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise ValueError(f"revision must be an integer >= 1, got {revision!r}")
    if revision == 1 and supersedes is not None:
        raise ValueError("supersedes must be None for revision 1 (the first statement supersedes nothing)")
    if revision > 1:
        if supersedes is None:
            raise ValueError(f"supersedes is required for revision {revision}: the statement hash of revision {revision - 1}")
        _check_hash("supersedes", supersedes)
    lines = [
        APPROVAL_HEADER_V2,
        f"Ledger: {ledger_id}",
        f"Epoch: {epoch_key}",
        f"Revision: {revision}",
        f"Policy Hash: {policy_hash}",
        f"Allocation Hash: {allocation_hash}",
        f"Pool Total: {pool_total}",
    ]
    if supersedes is not None:
        lines.append(f"Supersedes: {supersedes}")
    return "\n".join(lines)


def message_version(message: str) -> int:
    """1 or 2, read from the header line of an approval message; ValueError otherwise."""
    header = message.split("\n", 1)[0] if isinstance(message, str) else None
    if header == APPROVAL_HEADER_V1:
        return 1
    if header == APPROVAL_HEADER_V2:
        return 2
    raise ValueError(f"not an approval message: the first line {header!r} is neither {APPROVAL_HEADER_V1!r} nor {APPROVAL_HEADER_V2!r}")


def normalize_signature(signature: str) -> str:
    """The one canonical spelling of a 65-byte ECDSA signature: ``0x`` + r, s (low), v in {27, 28}.

    Accepts bare or 0x-prefixed hex in any case, v written 0/1, 27/28 or EIP-155 style
    (>= 35), and high-s twins; all twins of one signature map to the same string.
    """
    match = _SIGNATURE_HEX.fullmatch(signature) if isinstance(signature, str) else None
    if match is None:
        shown = signature[:20] + "..." if isinstance(signature, str) and len(signature) > 20 else signature
        raise SignatureError(f"signature {shown!r} cannot be recovered: it is not 65 bytes of hex (130 hex digits, optionally prefixed 0x)")
    raw = bytes.fromhex(match.group(1))
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v in (0, 1):
        v += 27
    elif v >= 35:  # EIP-155: v = chain_id * 2 + 35 + parity
        v = 27 + (v - 35) % 2
    elif v not in (27, 28):
        raise SignatureError(f"signature cannot be recovered: its recovery byte v = {v} is not 0, 1, 27, 28 or EIP-155 (>= 35)")
    if not 1 <= r < SECP256K1_N:
        raise SignatureError("signature cannot be recovered: its r is outside [1, n-1] of secp256k1")
    if not 1 <= s < SECP256K1_N:
        raise SignatureError("signature cannot be recovered: its s is outside [1, n-1] of secp256k1")
    if s > SECP256K1_N // 2:  # the high-s twin: same signer, mirrored point
        s, v = SECP256K1_N - s, 55 - v
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def sign_message(message: str, private_key: str) -> str:
    """EIP-191 signature of ``message`` with ``private_key``, normalized."""
    signed = Account.sign_message(encode_defunct(text=message), private_key=private_key)
    return normalize_signature(signed.signature.hex())


def recover_signer(message: str, signature: str) -> str:
    """The lowercase address that signed ``message``; SignatureError when undecodable.

    Recovery runs on the normalized form, so every malleated twin gives one signer.
    """
    normalized = normalize_signature(signature)
    try:
        address = Account.recover_message(encode_defunct(text=message), signature=bytes.fromhex(normalized[2:]))
    except Exception as exc:  # eth-account raises several types for malformed input
        raise SignatureError(f"signature {normalized[:20]}... cannot be recovered: {exc}") from None
    return address.lower()


def address_of(private_key: str) -> str:
    """The lowercase address of a private key."""
    return Account.from_key(private_key).address.lower()
