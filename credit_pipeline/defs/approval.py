"""``approve_epoch``: the manual-approval op job an admin launches from the Launchpad."""


from string import hexdigits

import dagster as dg
from pydantic import Field

from credit_pipeline.core.epochs import EpochKeyError, parse_epoch_key
from credit_pipeline.core.hashing import SignatureError, normalize_signature
from credit_pipeline.core.policy import PolicyError
from credit_pipeline.defs.resources import LedgerResource, PolicyResource
from credit_pipeline.ledger.store import LedgerError
from credit_pipeline.stages.approve import approve_epoch


class ApprovalConfig(dg.Config):
    """What the approver reviewed and signed (EIP-191 ``personal_sign`` of the approval message)."""

    epoch_key: str = Field(description="The epoch (partition key), a Monday written YYYY-MM-DD, e.g. 2026-02-16")
    allocation_set_hash: str = Field(description="The allocation_set_hash you reviewed (epoch_allocations metadata, or "
                                                 "credit-pipeline approve --epoch KEY --print-message); 64 hex digits")
    signature: str = Field(description="Your EIP-191 personal_sign signature of the approval message shown in the "
                                       "epoch_allocations metadata (0x + 130 hex digits)")


def config_problem(config: ApprovalConfig) -> str | None:
    """The first Launchpad field that cannot be right, named, with what to put there (None: all well-formed).

    The same rules as ``credit-pipeline approve``; checked before the ledger is touched."""
    try:
        parse_epoch_key(config.epoch_key.strip())
    except EpochKeyError as exc:
        return f"config field epoch_key: {exc}"
    digest = config.allocation_set_hash.strip().lower()
    if len(digest) != 64 or not set(digest) <= set(hexdigits.lower()):
        shown = repr(config.allocation_set_hash[:20]) + ("…" if len(config.allocation_set_hash) > 20 else "")
        return (f"config field allocation_set_hash: {shown} ({len(config.allocation_set_hash)} characters) is not 64 hex digits; "
                "copy allocation_set_hash from the epoch_allocations metadata of this partition")
    try:
        normalize_signature(config.signature.strip())
    except SignatureError as exc:
        return f"config field signature: {exc}; paste the EIP-191 personal_sign signature of the approval message"
    return None


@dg.op(tags={"credit_pipeline/stage": "approve"})
def record_approval(context: dg.OpExecutionContext, config: ApprovalConfig, ledger: LedgerResource, policy: PolicyResource) -> None:
    """Check the signature against the epoch's current allocation set and pinned approvers; record it."""
    problem = config_problem(config)
    if problem:
        raise dg.Failure(description=f"approval refused, nothing recorded: {problem}", allow_retries=False)
    try:
        record = approve_epoch(ledger.store(), config.epoch_key.strip(), config.allocation_set_hash, config.signature, policy.load())
    except (LedgerError, EpochKeyError, PolicyError) as exc:  # ApprovalRefused included
        raise dg.Failure(description=f"approval refused, nothing recorded: {exc}", allow_retries=False) from None
    context.log.info(f"epoch {record.epoch_key}: approval by {record.signer} recorded for revision {record.revision}, "
                     f"allocation set {record.allocation_set_hash}")
    context.log_event(dg.AssetObservation(asset_key="epoch_allocations", partition=record.epoch_key,
                                          metadata={"approved_by": record.signer, "allocation_set_hash": record.allocation_set_hash, "revision": record.revision,
                                                    "pool_total": record.pool_total}))


@dg.job(name="approve_epoch", tags={"credit_pipeline/stage": "approve"},
        description="Record an approver's EIP-191 signature over an epoch's allocation set. Launch it from the "
                    "Launchpad with the epoch key, the allocation_set_hash you reviewed (epoch_allocations metadata) "
                    "and the signature of the approval message; it is refused, with nothing written, unless the "
                    "epoch is in review, the hash is current and the signer is a pinned approver.")
def approve_epoch_job() -> None:
    record_approval()
