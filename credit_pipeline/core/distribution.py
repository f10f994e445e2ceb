"""From payout lines in credits to what a treasury pays (issue 11): wallets, token amounts, Merkle claims.

``distribution`` is a pure function of a statement's payout lines, the pinned policy's ``payout`` token and
the payout wallets its identity log prefix leaves (``core.wallets.payout_wallets``), so verify recomputes it
from the bundle alone. A line is *payable* when it pays a person with a payout wallet and more than 0
credits; a claimant (an unresolved account, paid to ``github:…``/``discord:…``) or a person without a
wallet is *held*: the credit stays theirs, carried in the statement, until a wallet is bound and a later
statement pays it. Token amounts are integers of the token's base units (credits × token_units_per_credit),
written as decimal strings (they pass 2**53). The Merkle tree (OpenZeppelin ``StandardMerkleTree``,
``core.merkle``) covers the payable lines, in recipient order, and needs a payout token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from credit_pipeline.core.merkle import FORMAT, LEAF_ENCODING, merkle_tree
from credit_pipeline.core.recipients import is_claimant
from credit_pipeline.core.wallets import PayoutWallet

HELD_CLAIMANT = "unresolved account: held until it is bound to a person with a payout wallet"
HELD_NO_WALLET = "no payout wallet bound: held until one is (credit-pipeline identity bind wallet ADDRESS USER)"


def distribution(payouts: Sequence[Mapping[str, Any]], token: Mapping[str, Any] | None,
                 wallets: Mapping[str, PayoutWallet]) -> dict[str, Any]:
    """The ``distribution`` section of a v3 statement bundle."""
    per_credit = int(token["token_units_per_credit"]) if token else None
    lines, used = [], []
    for p in sorted(payouts, key=lambda p: p["recipient_id"]):
        rid, credits = p["recipient_id"], int(p["amount_credits"])
        wallet = None if is_claimant(rid) else wallets.get(rid)
        status = "nothing" if credits == 0 else "payable" if wallet is not None else "held"
        lines.append({
            "recipient_id": rid, "amount_credits": credits, "wallet": wallet.wallet if wallet else None,
            "token_amount": str(credits * per_credit) if per_credit is not None else None, "status": status,
            "held_reason": None if status != "held" else HELD_CLAIMANT if is_claimant(rid) else HELD_NO_WALLET, "proof": None,
        })
        if wallet is not None:
            used.append(wallet.to_dict())
    payable = [line for line in lines if line["status"] == "payable"]
    merkle = None
    if per_credit is not None and payable:
        tree = merkle_tree([(line["wallet"], int(line["token_amount"])) for line in payable])
        for k, line in enumerate(payable):
            line["proof"] = tree.proof(k)
        merkle = {"format": FORMAT, "leaf_encoding": list(LEAF_ENCODING), "root": tree.root, "claims": len(payable),
                  "total_token_amount": str(sum(int(line["token_amount"]) for line in payable))}
    return {
        "token": dict(token) if token else None,
        "lines": lines,
        "wallets": used,
        "merkle": merkle,
        "payable_credits": sum(line["amount_credits"] for line in payable),
        "held_credits": sum(line["amount_credits"] for line in lines if line["status"] == "held"),
    }


def merkle_dump(dist: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON OpenZeppelin's ``StandardMerkleTree.load`` reads, for the payable lines (None without claims)."""
    payable = [line for line in dist["lines"] if line["status"] == "payable"]
    if dist.get("merkle") is None or not payable:
        return None
    return merkle_tree([(line["wallet"], int(line["token_amount"])) for line in payable]).dump()
