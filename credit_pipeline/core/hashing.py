"""The allocation-set hash, the approval message and its EIP-191 signature (SPEC §9, §10).

An approver signs a short, human-readable message that pins the epoch, the policy,
the exact allocation set and the pool. Anyone can recover the signer's address from
the signature and the message alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eth_account import Account
from eth_account.messages import encode_defunct

from credit_pipeline.core.canonical import sha256_hex

APPROVAL_HEADER = "Credit Payout Statement v1"


class SignatureError(ValueError):
    """A signature that cannot be decoded or recovered."""


def allocation_set_text(rows: Iterable[tuple[str, int]] | Mapping[str, int]) -> str:
    """``recipient_id:final_units`` lines sorted by recipient id, joined by ``\\n``."""
    pairs = list(rows.items() if isinstance(rows, Mapping) else rows)
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


def approval_message(epoch_key: str, policy_hash: str, allocation_hash: str, pool_total: int) -> str:
    """The exact text an approver signs with EIP-191 ``personal_sign``."""
    return "\n".join(
        (
            APPROVAL_HEADER,
            f"Epoch: {epoch_key}",
            f"Policy Hash: {policy_hash}",
            f"Allocation Hash: {allocation_hash}",
            f"Pool Total: {pool_total}",
        )
    )


def sign_message(message: str, private_key: str) -> str:
    """EIP-191 signature (0x-prefixed hex) of ``message`` with ``private_key``."""
    signed = Account.sign_message(encode_defunct(text=message), private_key=private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(message: str, signature: str) -> str:
    """The lowercase address that signed ``message``; SignatureError when undecodable."""
    try:
        address = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception as exc:  # eth-account raises several types for malformed input
        raise SignatureError(f"signature {signature[:20]}... cannot be recovered: {exc}") from None
    return address.lower()


def address_of(private_key: str) -> str:
    """The lowercase address of a private key."""
    return Account.from_key(private_key).address.lower()
