"""Declarative identities: an optional ``identities.yaml`` that ``credit-pipeline identity sync`` makes true.

```yaml
people:
  alice:
    github: [1234567]                       # numeric user ids, never logins
    discord: ["81384788765712384"]          # snowflakes
    wallet: {address: "0xAbC…", signature: "0x…"}   # optional: the wallet's signature over its binding message
  bob:
    github: [7654321]
```

The file is validated strictly (pydantic); the sync computes a diff against the current bindings and shows
it before anything is written. Every change is an identity event, as if typed as ``identity bind`` /
``revoke``, and re-derives the epochs it touches, all in one transaction: a refused change leaves nothing
written. Nothing is removed silently: a binding the file does not mention is listed and kept, unless the
sync is run with ``prune``; an account the file gives to another person than the ledger does is moved
(revoke, then bind) and shown as a move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from credit_pipeline.core.policy_yaml import PolicyYamlError, load_policy_yaml
from credit_pipeline.core.recipients import PERSON_ID
from credit_pipeline.core.wallets import PROVIDER as WALLET
from credit_pipeline.core.wallets import WalletError, parse_wallet
from credit_pipeline.ledger.store import LedgerError, LedgerStore

Account = tuple[str, str]


def _digits(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int) else value


Digits = Annotated[str, BeforeValidator(_digits), Field(pattern=r"^[0-9]{1,20}$")]


class WalletEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str
    signature: str

    @field_validator("address")
    @classmethod
    def _checksummed(cls, value: str) -> str:
        try:
            return parse_wallet(value)
        except WalletError as exc:
            raise ValueError(str(exc)) from None


class PersonEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    github: list[Digits] = Field(default_factory=list)
    discord: list[Digits] = Field(default_factory=list)
    wallet: WalletEntry | None = None


class IdentitiesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    people: dict[str, PersonEntry]

    @field_validator("people")
    @classmethod
    def _person_ids(cls, value: dict[str, PersonEntry]) -> dict[str, PersonEntry]:
        for person in value:
            if not PERSON_ID.fullmatch(person):
                raise ValueError(f"{person!r} is not a person id (1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit)")
        seen: dict[Account, str] = {}
        for person, entry in value.items():
            for account in [("github", g) for g in entry.github] + [("discord", d) for d in entry.discord] + \
                           ([(WALLET, entry.wallet.address.lower())] if entry.wallet else []):
                if account in seen:
                    raise ValueError(f"{account[0]} account {account[1]} is listed for both {seen[account]} and {person}; "
                                     "an account belongs to one person")
                seen[account] = person
        return value

    def accounts(self) -> dict[Account, str]:
        out: dict[Account, str] = {}
        for person, entry in self.people.items():
            out.update({("github", g): person for g in entry.github})
            out.update({("discord", d): person for d in entry.discord})
            if entry.wallet:
                out[(WALLET, entry.wallet.address.lower())] = person
        return out


def load_identities(path: str | Path) -> IdentitiesFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}; write an identities file (see docs/payouts.md) or pass --file") from None
    try:
        document = load_policy_yaml(text)  # the same strict YAML as the policy: no anchors, tags or 010-style numbers
        return IdentitiesFile.model_validate(document)
    except PolicyYamlError as exc:
        raise LedgerError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise LedgerError(f"{path}: {problems}") from None


@dataclass
class SyncPlan:
    bind: list[tuple[Account, str]] = field(default_factory=list)
    move: list[tuple[Account, str, str]] = field(default_factory=list)  # account, from, to
    unlisted: list[tuple[Account, str]] = field(default_factory=list)  # bound in the ledger, not in the file
    prune: bool = False

    @property
    def changes(self) -> int:
        return len(self.bind) + len(self.move) + (len(self.unlisted) if self.prune else 0)

    def lines(self) -> list[str]:
        def shown(account: Account) -> str:
            return f"{account[0]}:{parse_wallet_shown(account)}"

        out = [f"+ bind   {shown(a)} -> {p}" for a, p in self.bind]
        out += [f"~ move   {shown(a)}: {old} -> {new}" for a, old, new in self.move]
        out += [f"{'- revoke' if self.prune else '  keep  '} {shown(a)} -> {p} (not in the file"
                f"{'' if self.prune else '; --prune revokes it'})" for a, p in self.unlisted]
        return out


def parse_wallet_shown(account: Account) -> str:
    if account[0] != WALLET:
        return account[1]
    from eth_utils import to_checksum_address

    return to_checksum_address(account[1])


def plan_sync(store: LedgerStore, wanted: IdentitiesFile, *, prune: bool = False) -> SyncPlan:
    """What syncing the file would change, against the current bindings."""
    current = store.bindings()
    plan = SyncPlan(prune=prune)
    for account, person in sorted(wanted.accounts().items()):
        holder = current.get(account)
        if holder is None:
            plan.bind.append((account, person))
        elif holder != person:
            plan.move.append((account, holder, person))
    plan.unlisted = sorted((a, p) for a, p in current.items() if a not in wanted.accounts())
    return plan


def apply_sync(store: LedgerStore, wanted: IdentitiesFile, plan: SyncPlan, policy: Any, *, actor: str) -> list[str]:
    """Make the plan true in one transaction (identity events, epochs re-derived); returns the epochs re-derived."""
    from credit_pipeline.stages.admin import bind_account, bind_wallet, revoke_account

    wallets = {p: e.wallet for p, e in wanted.people.items() if e.wallet}
    keys: set[str] = set()
    note = {"note": "identity sync"}
    with store.atomic():
        revokes = [(a, old) for a, old, _ in plan.move] + (plan.unlisted if plan.prune else [])
        for (provider, external_id), _ in revokes:
            _, touched = revoke_account(store, provider, parse_wallet_shown((provider, external_id)), policy, actor=actor, evidence=note)
            keys.update(touched)
        for (provider, external_id), person in plan.bind + [(a, new) for a, _, new in plan.move]:
            if provider == WALLET:
                w = wallets[person]
                bind_wallet(store, w.address, person, w.signature, actor=actor, note="identity sync")
            else:
                _, touched = bind_account(store, provider, external_id, person, policy, actor=actor, evidence=note)
                keys.update(touched)
    return sorted(keys)
