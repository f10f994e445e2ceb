"""Approval: an approver signs the exact allocation set of an epoch in review (SPEC §10).

Refused, with nothing written, unless the epoch is in review, the hash the approver
reviewed is the current allocation set, and the address recovered from the EIP-191
signature is in the epoch's *pinned* approver list. The message names the epoch, so
a signature from another epoch recovers a different address and is refused too.
"""

from __future__ import annotations

from dataclasses import dataclass

from credit_pipeline.core.hashing import SignatureError, recover_signer
from credit_pipeline.core.policy import Policy
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.allocate import allocation_state


class ApprovalRefused(LedgerError):
    """An approval that cannot be recorded; the message says why."""


@dataclass(frozen=True)
class ApprovalRecord:
    epoch_key: str
    signer: str
    allocation_set_hash: str
    pool_total: int
    message: str


def approve_epoch(store: LedgerStore, key: str, reviewed_hash: str, signature: str, policy: Policy) -> ApprovalRecord:
    """Check and record one approval; ApprovalRefused says what is wrong."""
    epoch = store.get_epoch(key)
    if epoch is None:
        raise ApprovalRefused(f"epoch {key} does not exist; nothing to approve")
    if epoch.status != "review":
        why = {
            "open": "it enters review after its window has closed and the final collection has run (materialize epoch_allocations)",
            "finalized": "it is already finalized",
        }[epoch.status]
        raise ApprovalRefused(f"epoch {key} is {epoch.status}, not in review: {why}")
    state = allocation_state(store, key, policy)
    reviewed = reviewed_hash.strip().lower()
    if reviewed != state.allocation_set_hash:
        raise ApprovalRefused(
            f"you reviewed allocation set {reviewed[:16]}…, but epoch {key}'s current allocation set is "
            f"{state.allocation_set_hash[:16]}… (it changed since); review the current set and sign its message again"
        )
    try:
        signer = recover_signer(state.approval_message, signature.strip())
    except SignatureError as exc:
        raise ApprovalRefused(f"{exc}; sign the approval message with EIP-191 personal_sign") from None
    pinned = [a.lower() for a in (epoch.approvers or [])]
    if signer not in pinned:
        raise ApprovalRefused(
            f"the signature recovers to {signer}, which is not an approver pinned on epoch {key} "
            f"({', '.join(pinned) or 'none'}); it was signed by another key or over another message "
            "(another epoch, policy, allocation set or pool)"
        )
    store.record_approval(key, allocation_set_hash=state.allocation_set_hash, policy_hash=state.policy_hash,
                          pool_total=state.pool_total, message=state.approval_message, signer=signer, signature=signature.strip())
    return ApprovalRecord(key, signer, state.allocation_set_hash, state.pool_total, state.approval_message)
