"""Admin writes: each one re-derives what it changes in the same transaction (SPEC §5-§7, §10).

Curating an event, binding, revoking or merging accounts, adjusting a recipient and
adding to the pool all change what an epoch pays. Each runs inside ``store.atomic()``
with ``rederive_epoch`` for every epoch it touches, so the stored allocation set is
always the one the rows derive; a refused write leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from credit_pipeline.core.policy import MAX_POOL_AMOUNT, MAX_WEIGHT, POOL_COMPONENTS, Policy
from credit_pipeline.core.recipients import RecipientIdError, check_person_id, check_recipient_id
from credit_pipeline.core.wallets import PROVIDER as WALLET
from credit_pipeline.core.wallets import WalletError, binding_evidence, binding_message, parse_wallet
from credit_pipeline.ledger.store import EpochStateError, LedgerError, LedgerStore
from credit_pipeline.stages.derive import rederive_epoch

PROVIDERS = ("github", "discord")
MAX_UNITS = 2**63 - 1  # the ledger's bigint columns


def _units(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UNITS):
        raise LedgerError(f"{what} must be a whole number of milli-units from 0 to 2^63-1 (got {str(value)[:24]})")
    return value


def _recipient(value: str) -> str:
    try:
        return check_recipient_id(value)
    except RecipientIdError as exc:
        raise LedgerError(str(exc)) from None


def _person(value: str) -> str:
    try:
        return check_person_id(value)
    except RecipientIdError as exc:
        raise LedgerError(str(exc)) from None


def _account(provider: str, external_id: str) -> tuple[str, str]:
    if provider == WALLET:
        return WALLET, _wallet(external_id).lower()
    if provider not in PROVIDERS:
        raise LedgerError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    if not external_id.isascii() or not external_id.isdigit() or len(external_id) > 20:
        what = "GitHub numeric user id" if provider == "github" else "Discord user snowflake"
        raise LedgerError(f"{provider} account {external_id!r} is not a {what} (digits only; never a login)")
    return provider, external_id


def _existing_epoch(store: LedgerStore, key: str):
    epoch = store.get_epoch(key)
    if epoch is None:
        raise EpochStateError(f"epoch {key} does not exist yet; collect and resolve its activity first (see credit-pipeline epochs)")
    return epoch


def curate_event(store: LedgerStore, event_id: str, policy: Policy, *, actor: str, included: bool | None = None,
                 weight_override: int | None = None, clear_override: bool = False, note: str | None = None) -> str:
    """Exclude/include an event, override its weight or note it; returns its epoch (re-derived)."""
    if weight_override is not None and (isinstance(weight_override, bool) or not 0 <= weight_override <= MAX_WEIGHT):
        raise LedgerError(f"weight override must be a whole number of milli-units from 0 to 10^12 (got {str(weight_override)[:24]})")
    with store.atomic():
        key = store.curation_epoch(event_id)
        if key is None:
            raise LedgerError(f"event {event_id} is not curated into any epoch yet; run resolution for its epoch first")
        if store.lock_epoch(key).status == "finalized":  # the epoch lock first: every writer of its rows takes it
            raise EpochStateError(f"epoch {key} is finalized; its curation is frozen (record a correction instead)")
        store.set_curation(event_id, actor=actor, included=included, weight_override=weight_override,
                           clear_override=clear_override, note=note)
        rederive_epoch(store, key, policy)
    return key


def adjust_recipient(store: LedgerStore, key: str, recipient_id: str, units: int | None, reason: str | None,
                     policy: Policy, *, actor: str) -> None:
    """Set (or clear) a recipient's final units with a reason, and re-derive the epoch."""
    rid, units = _recipient(recipient_id), _units(units, "final units")
    with store.atomic():
        _existing_epoch(store, key)
        store.lock_epoch(key)
        store.adjust_allocation(key, rid, units, reason, actor)
        rederive_epoch(store, key, policy)


def add_pool(store: LedgerStore, key: str, component: str, amount: int, *, actor: str, note: str | None = None,
             evidence: str | None = None) -> bool:
    """Record a pool component of an existing, not finalized epoch; True when new."""
    if component not in POOL_COMPONENTS:
        raise LedgerError(f"pool component {component!r} is not one of {', '.join(POOL_COMPONENTS)}")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_POOL_AMOUNT:
        raise LedgerError(f"pool amount must be a whole number of credits from 0 to 10^60 (got {amount!r})")
    with store.atomic():
        _existing_epoch(store, key)
        if store.lock_epoch(key).status == "finalized":
            raise EpochStateError(f"epoch {key} is finalized; its pool is frozen")
        return store.add_pool_component(key, component, amount, algorithm_version="manual-v1",
                                        inputs={"note": note} if note else {}, evidence_ref=evidence, actor=actor)


def _wallet(address: str) -> str:
    try:
        return parse_wallet(address)
    except WalletError as exc:
        raise LedgerError(str(exc)) from None


def wallet_binding_message(store: LedgerStore, address: str, user_id: str) -> str:
    """The message the wallet at ``address`` signs to become ``user_id``'s payout wallet on this ledger."""
    return binding_message(store.ledger_id(), _person(user_id), _wallet(address))


def bind_wallet(store: LedgerStore, address: str, user_id: str, signature: str, *, actor: str, note: str | None = None) -> bool:
    """Bind a payout wallet to a person, with the wallet's EIP-191 signature over ``wallet_binding_message`` as
    evidence (proof of control). Refused, writing nothing: a bad checksum, a signature by another key or over
    another message, a wallet bound to someone else, a person who already has a payout wallet."""
    wallet, person = _wallet(address), _person(user_id)
    try:
        evidence = binding_evidence(store.ledger_id(), person, wallet, signature)
    except WalletError as exc:
        raise LedgerError(str(exc)) from None
    held = next((e for (p, e), u in store.bindings().items() if p == WALLET and u == person and e != wallet.lower()), None)
    if held is not None:
        raise LedgerError(f"{person} already has payout wallet {to_checksum_address(held)}; one at a time: revoke it first "
                          f"(credit-pipeline identity revoke wallet {to_checksum_address(held)})")
    return store.bind(WALLET, wallet.lower(), person, actor=actor, evidence={**evidence, **({"note": note} if note else {})})


def _rederive_accounts(store: LedgerStore, accounts: list[tuple[str, str]], policy: Policy) -> list[str]:
    keys = sorted(store.epochs_holding_accounts(accounts))  # one lock order for every multi-epoch write
    for key in keys:
        rederive_epoch(store, key, policy)
    return keys


def bind_account(store: LedgerStore, provider: str, external_id: str, user_id: str, policy: Policy, *, actor: str,
                 evidence: dict[str, Any] | None = None) -> tuple[bool, list[str]]:
    """Bind an account and re-resolve the epochs holding its activity; (new, epochs re-derived)."""
    account, person = _account(provider, external_id), _person(user_id)
    with store.atomic():
        new = store.bind(*account, person, actor=actor, evidence=evidence)
        return new, _rederive_accounts(store, [account], policy) if new else []


def revoke_account(store: LedgerStore, provider: str, external_id: str, policy: Policy, *, actor: str,
                   evidence: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """Revoke an account's binding and re-resolve; (the person it was bound to, epochs re-derived)."""
    account = _account(provider, external_id)
    with store.atomic():
        user = store.revoke(*account, actor=actor, evidence=evidence)
        return user, _rederive_accounts(store, [account], policy)


def merge_people(store: LedgerStore, from_user: str, into_user: str, policy: Policy, *, actor: str,
                 evidence: dict[str, Any] | None = None) -> tuple[int, list[str]]:
    """Move every account of one person to another and re-resolve; (accounts moved, epochs re-derived)."""
    source, target = _person(from_user), _person(into_user)
    with store.atomic():
        accounts = [a for a, u in store.bindings().items() if u == source]
        moved = store.merge_users(source, target, actor=actor, evidence=evidence)
        return moved, _rederive_accounts(store, accounts, policy)


def waive_shortfall(store: LedgerStore, key: str, reason: str, *, actor: str) -> dict[str, Any]:
    """Record a completeness waiver (who, when, why, which streams) for an open epoch."""
    _existing_epoch(store, key)
    return store.waive_completeness(key, actor, reason)


def correct_recipient(store: LedgerStore, key: str, recipient_id: str, units: int, reason: str, *, actor: str) -> int:
    """Record a correction of a finalized epoch for its next statement revision; returns that revision."""
    rid, units = _recipient(recipient_id), _units(units, "corrected final units")
    _existing_epoch(store, key)
    return store.add_correction(key, rid, units, reason, actor)
