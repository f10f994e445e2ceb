"""Approval: an approver signs the exact allocation set of an epoch's next revision (SPEC §9, §10).

Refused, with nothing written, unless the epoch is in review (revision 1) or is
finalized with a pending correction (revision n+1); the stored allocation set is what
the epoch's rows derive; the hash the approver reviewed is that set's; and the
address recovered from the EIP-191 signature over the v2 message (ledger, epoch,
revision, policy, allocation set, pool, superseded statement) is a *pinned* approver.
Signatures are stored normalized, so a malleated twin of one is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from credit_pipeline.core.hashing import SignatureError, normalize_signature, recover_signer, sign_message
from credit_pipeline.core.policy import Policy
from credit_pipeline.ledger.store import LedgerError, LedgerStore
from credit_pipeline.stages.allocate import AllocationState, allocation_state

HEX = set("0123456789abcdef")


class ApprovalRefused(LedgerError):
    """An approval that cannot be recorded; the message says why.

    ``field`` names the input that is wrong (``epoch_key``, ``allocation_set_hash`` or ``signature``, the
    Launchpad's config fields), or is None when the epoch's state, not an input, is what refuses."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ApprovalRecord:
    epoch_key: str
    revision: int
    signer: str
    allocation_set_hash: str
    pool_total: int
    message: str


def approvable_state(store: LedgerStore, key: str, policy: Policy) -> AllocationState:
    """The state an approver may sign now; ApprovalRefused says why there is none."""
    epoch = store.get_epoch(key)
    if epoch is None:
        raise ApprovalRefused(f"epoch {key} does not exist; nothing to approve (see credit-pipeline epochs)", field="epoch_key")
    if epoch.status == "open":
        raise ApprovalRefused(f"epoch {key} is open, not in review: it enters review after its window has closed and the "
                              "final collection has run (materialize epoch_allocations)", field="epoch_key")
    state = allocation_state(store, key, policy)
    if not state.pending:
        raise ApprovalRefused(f"epoch {key} is finalized (revision {state.revision}) and has no pending correction; to change "
                              f"it, record one: credit-pipeline correct --epoch {key} --recipient R --units N --reason TEXT",
                              field="epoch_key")
    if state.drift:
        raise ApprovalRefused(f"epoch {key}'s stored allocations are not what its rows derive ({'; '.join(state.drift[:5])}); "
                              "materialize resolved_activity and epoch_allocations, then review again")
    return state


def approve_epoch(store: LedgerStore, key: str, reviewed_hash: str, signature: str, policy: Policy,
                  approved_at: datetime | None = None) -> ApprovalRecord:
    """Check and record one approval; ApprovalRefused says what is wrong (``approved_at``: the database clock unless given)."""
    reviewed = (reviewed_hash or "").strip().lower()
    if len(reviewed) != 64 or not set(reviewed) <= HEX:
        shown = repr(reviewed_hash[:20]) + "…" if isinstance(reviewed_hash, str) and len(reviewed_hash) > 20 else repr(reviewed_hash)
        raise ApprovalRefused(f"the reviewed allocation set hash {shown} is not 64 hex digits; "
                              f"copy allocation_set_hash from credit-pipeline approve --epoch {key} --print-message",
                              field="allocation_set_hash")
    try:
        normalized = normalize_signature((signature or "").strip())
    except SignatureError as exc:
        raise ApprovalRefused(f"{exc}; sign the approval message with EIP-191 personal_sign (65 bytes, hex)",
                              field="signature") from None
    with store.atomic():
        if store.get_epoch(key) is not None:
            store.lock_epoch(key)  # no admin write may land between the check and the record
        state = approvable_state(store, key, policy)
        if reviewed != state.allocation_set_hash:
            raise ApprovalRefused(
                f"you reviewed allocation set {reviewed[:16]}…, but epoch {key}'s current allocation set (revision "
                f"{state.revision}) is {state.allocation_set_hash[:16]}… (it changed since); review the current set and sign its message again",
                field="allocation_set_hash",
            )
        try:
            signer = recover_signer(state.approval_message, normalized)
        except SignatureError as exc:
            raise ApprovalRefused(f"{exc}; sign the approval message with EIP-191 personal_sign", field="signature") from None
        epoch = store.get_epoch(key)
        pinned = [a.lower() for a in (epoch.approvers or [])]
        if signer not in pinned:
            raise ApprovalRefused(
                f"the signature recovers to {signer}, which is not an approver pinned on epoch {key} "
                f"({', '.join(pinned) or 'none'}); it was signed by another key or over another message "
                "(another ledger, epoch, revision, policy, allocation set or pool)",
                field="signature",
            )
        store.record_approval(key, allocation_set_hash=state.allocation_set_hash, policy_hash=state.policy_hash,
                              pool_total=state.pool_total, message=state.approval_message, signer=signer, signature=normalized,
                              revision=state.revision, ledger_id=state.ledger_id, supersedes=state.supersedes,
                              approved_at=approved_at)
    return ApprovalRecord(key, state.revision, signer, state.allocation_set_hash, state.pool_total, state.approval_message)


def sign_approval(store: LedgerStore, key: str, private_key: str, policy: Policy, reviewed_hash: str | None = None) -> str:
    """The EIP-191 signature of epoch ``key``'s current approval message with ``private_key``; records nothing.

    With ``reviewed_hash``, refused unless it is the current allocation set's hash (what you sign is what you saw)."""
    state = approvable_state(store, key, policy)
    if reviewed_hash is not None and reviewed_hash.strip().lower() != state.allocation_set_hash:
        raise ApprovalRefused(f"you reviewed allocation set {reviewed_hash.strip()[:16]}…, but epoch {key}'s current allocation set "
                              f"(revision {state.revision}) is {state.allocation_set_hash[:16]}…; review the current set "
                              f"(credit-pipeline approve --epoch {key} --print-message)", field="allocation_set_hash")
    try:
        return sign_message(state.approval_message, private_key)
    except Exception:  # never echo the key: eth_account's errors may quote it
        raise ApprovalRefused("the private key is not a 32-byte hex key (0x + 64 hex digits); nothing was signed") from None
