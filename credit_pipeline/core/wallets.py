"""Payout wallets: who is paid where, and the proof that they control it (issue 11).

A payout wallet is an account of provider ``wallet`` in the identity log, bound like a GitHub or Discord
account. A bind carries, as evidence, an EIP-191 ``personal_sign`` signature by the wallet over
``binding_message``, which names the ledger and the person: it cannot be replayed on another ledger or for
another person, and anyone can check it offline from the statement bundle. Addresses are stored in lower
case (EIP-55's case is only a checksum) and shown and paid checksummed. One wallet per person at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils import is_hex_address, to_checksum_address

from credit_pipeline.core.hashing import SignatureError, normalize_signature, recover_signer

PROVIDER = "wallet"
SCHEME = "eip191-personal-sign"


class WalletError(ValueError):
    """A wallet or its binding evidence that cannot be accepted; the message names what to fix."""


def parse_wallet(text: str) -> str:
    """The checksummed form of an EIP-55 address; refuses anything else (a lower-case address has no checksum
    to catch a typo, so it is refused too, with the checksummed spelling to use)."""
    if not isinstance(text, str) or not is_hex_address(text):
        raise WalletError(f"{text!r} is not an Ethereum address (0x followed by 40 hex digits)")
    checksummed = to_checksum_address(text)
    if text != checksummed:
        raise WalletError(f"{text} does not match its EIP-55 checksum; check it, then write it exactly as {checksummed}")
    return checksummed


def binding_message(ledger_id: str, user_id: str, wallet: str) -> str:
    """What a wallet signs to become ``user_id``'s payout wallet on ledger ``ledger_id``."""
    return "\n".join(["Credit Pipeline Payout Wallet v1", f"Ledger: {ledger_id}", f"User: {user_id}",
                      f"Wallet: {to_checksum_address(wallet)}"])


def binding_evidence(ledger_id: str, user_id: str, wallet: str, signature: str) -> dict[str, str]:
    """The evidence of a wallet bind, checked: the message and the normalized signature by that wallet."""
    message = binding_message(ledger_id, user_id, wallet)
    check_signature(message, signature, wallet)
    return {"scheme": SCHEME, "message": message, "signature": normalize_signature(signature)}


def check_signature(message: str, signature: str, wallet: str) -> None:
    try:
        signer = recover_signer(message, signature)
    except SignatureError as exc:
        raise WalletError(f"the binding signature for {to_checksum_address(wallet)} {exc}".replace("signature signature", "signature")) from None
    if signer != wallet.lower():
        raise WalletError(f"the binding signature was made by {to_checksum_address(signer)}, not by {to_checksum_address(wallet)}: "
                          "sign the binding message with the wallet being bound (credit-pipeline identity bind wallet ... --print-message)")


@dataclass(frozen=True)
class PayoutWallet:
    """A person's payout wallet as a log prefix leaves it: the address and the bind that proves it."""

    recipient_id: str
    wallet: str  # checksummed
    identity_event_id: int
    message: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        return {"recipient_id": self.recipient_id, "wallet": self.wallet, "identity_event_id": self.identity_event_id,
                "message": self.message, "signature": self.signature}


def payout_wallets(log: Iterable[Mapping[str, Any]]) -> dict[str, PayoutWallet]:
    """Person → payout wallet after the log (in id order), with the evidence of the bind that holds it.

    Only a bind proves a wallet: its signature names the person. A merge moves the wallet's binding to the
    person merged into, but the signature names the person merged from, so that wallet pays no one (the
    line is held) until it is revoked and bound again with a signature naming its new holder.
    """
    held: dict[str, tuple[str, Mapping[str, Any] | None]] = {}  # address -> (person, the bind that proves it)
    for event in sorted(log, key=lambda e: e["identity_event_id"]):
        if event["provider"] != PROVIDER:
            continue
        if event["action"] == "revoke":
            held.pop(event["external_id"], None)
        else:
            held[event["external_id"]] = (event["user_id"], event if event["action"] == "bind" else None)
    out: dict[str, PayoutWallet] = {}
    for address, (person, bind) in sorted(held.items()):
        if bind is None:
            continue
        evidence = bind.get("evidence") or {}
        out[person] = PayoutWallet(person, to_checksum_address(address), int(bind["identity_event_id"]),
                                   str(evidence.get("message", "")), str(evidence.get("signature", "")))
    return out


def check_payout_wallet(w: Mapping[str, Any], ledger_id: str) -> str | None:
    """None when the binding proves that ``w['wallet']`` is ``w['recipient_id']``'s on this ledger, else why not."""
    try:
        wallet = parse_wallet(str(w["wallet"]))
    except WalletError as exc:
        return str(exc)
    if w["message"] != binding_message(ledger_id, w["recipient_id"], wallet):
        return (f"the binding message of {wallet} is not the one for {w['recipient_id']} on ledger {ledger_id}; "
                "bind the wallet again with a signature over its own message")
    try:
        check_signature(w["message"], w["signature"], wallet)
    except WalletError as exc:
        return str(exc)
    return None
