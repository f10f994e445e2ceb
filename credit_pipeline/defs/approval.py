"""``approve_epoch``: the manual-approval op job an admin launches from the Launchpad.

The job explains itself: when the definitions load, the ledger is asked (read-only, a 2 s connect
timeout) which epochs are in review; the first becomes the default ``epoch_key`` and
``allocation_set_hash``, and the job's description shows each one's approval message and the
command that signs it. A ledger that does not answer, or has nothing in review, leaves the defaults
empty and the descriptions say how to find the values: the definitions always load.

A bad or missing value fails the run with one line that names the config field (``dg.Failure``
with that line as its description and the field in its metadata), before the ledger is touched.
"""

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import hexdigits
from typing import Any

import dagster as dg
from pydantic import Field

from credit_pipeline.core.epochs import EpochKeyError, parse_epoch_key
from credit_pipeline.core.hashing import SignatureError, normalize_signature
from credit_pipeline.core.policy import PolicyError
from credit_pipeline.defs.resources import LedgerResource, PolicyResource
from credit_pipeline.ledger.store import LedgerError
from credit_pipeline.stages.approve import ApprovalRefused, approve_epoch

LOAD_CONNECT_TIMEOUT_S = 2
LOAD_STATEMENT_TIMEOUT_MS = 3000
MAX_LISTED = 5  # epochs in review described on the job page
SIGN_COMMAND = "credit-pipeline approve --epoch {key} --sign-only --key-env APPROVER_KEY"
FIELDS = ("epoch_key", "allocation_set_hash", "signature")


@dataclass(frozen=True)
class InReview:
    """One epoch an approver could sign when the definitions loaded."""

    epoch_key: str
    revision: int
    allocation_set_hash: str
    approval_message: str
    recipients: int
    pool_total: int
    problem: str | None = None  # why it cannot be signed yet (stored allocations drifted from the rows)


@dataclass(frozen=True)
class ReviewSnapshot:
    """What the ledger said about epochs in review when the definitions loaded."""

    read_at: datetime
    epochs: list[InReview] = field(default_factory=list)
    unread: str | None = None  # why the ledger could not be read (no secret: never the URL or the server's text)

    @property
    def default(self) -> InReview | None:
        signable = [e for e in self.epochs if e.problem is None]
        return signable[0] if signable else None


def _ledger_url(ledger: LedgerResource | None) -> str | None:
    """The ledger URL the resource will use, or None when reading it now would start a server."""
    from credit_pipeline.ledger.engine import ENV_DATABASE_URL, credit_home

    url: Any = ledger.database_url if ledger is not None else None
    if isinstance(url, dg.EnvVar):
        url = url.get_value()
    url = url or os.environ.get(ENV_DATABASE_URL)
    if url:
        return str(url)
    # The embedded default: read it only if it is already running (starting a server is not a definition load's job).
    data_dir = credit_home() / "pgdata"
    if not (Path(data_dir) / "postmaster.pid").exists():
        return None
    from credit_pipeline.ledger.engine import LEDGER_DATABASE, embedded_server_url, with_database

    return with_database(embedded_server_url(data_dir), LEDGER_DATABASE)


def read_review_snapshot(ledger: LedgerResource | None, policy: PolicyResource | None) -> ReviewSnapshot:
    """Epochs in review, read once, read-only, with short timeouts; never raises."""
    import sqlalchemy as sa

    from credit_pipeline.ledger.engine import normalize_url
    from credit_pipeline.ledger.store import LedgerStore
    from credit_pipeline.stages.allocate import allocation_state

    now = datetime.now(UTC).replace(microsecond=0)
    try:
        url = _ledger_url(ledger)
    except Exception as exc:  # an unusable URL or an embedded server that will not answer
        return ReviewSnapshot(now, unread=f"the ledger URL could not be used ({type(exc).__name__})")
    if url is None:
        return ReviewSnapshot(now, unread="the embedded ledger server was not running")
    engine = None
    try:
        engine = sa.create_engine(
            normalize_url(url), poolclass=sa.pool.NullPool,
            connect_args={"connect_timeout": LOAD_CONNECT_TIMEOUT_S,
                          "options": f"-c statement_timeout={LOAD_STATEMENT_TIMEOUT_MS} -c default_transaction_read_only=on"})
        store = LedgerStore(engine)
        rules = policy.load() if policy is not None else None
        epochs: list[InReview] = []
        with store.atomic():  # one snapshot
            in_review = [e for e in store.list_epochs() if e.status == "review"]
            for epoch in in_review[:MAX_LISTED]:
                key = epoch.key
                if rules is None:
                    continue
                state = allocation_state(store, key, rules)
                problem = None
                if state.drift:
                    problem = ("its stored allocations are not what its rows derive; materialize resolved_activity and "
                               "epoch_allocations for this partition, then reload the definitions")
                epochs.append(InReview(key, state.revision, state.allocation_set_hash, state.approval_message,
                                       len(state.allocations), state.pool_total, problem))
        return ReviewSnapshot(now, epochs)
    except sa.exc.OperationalError:
        return ReviewSnapshot(now, unread=f"the ledger did not answer (connect timeout {LOAD_CONNECT_TIMEOUT_S} s)")
    except sa.exc.ProgrammingError as exc:
        if getattr(exc.orig, "pgcode", None) == "42P01":  # undefined_table
            return ReviewSnapshot(now, unread="the ledger has no tables yet (credit-pipeline db upgrade)")
        return ReviewSnapshot(now, unread=f"the ledger could not be read (SQLSTATE {getattr(exc.orig, 'pgcode', None)})")
    except Exception as exc:  # the definitions must load whatever the ledger says
        return ReviewSnapshot(now, unread=f"the ledger could not be read ({type(exc).__name__})")
    finally:
        if engine is not None:
            engine.dispose()


# --- config -------------------------------------------------------------------------------------

FIND_KEY = ("find the key with `credit-pipeline epochs` (status review) or on the epoch_allocations asset's "
            "partitions, then reload the definitions to have it filled in here")


def _field_descriptions(snapshot: ReviewSnapshot) -> dict[str, str]:
    when = snapshot.read_at.strftime("%Y-%m-%d %H:%M UTC")
    chosen = snapshot.default
    if chosen is not None:
        others = [e.epoch_key for e in snapshot.epochs if e is not chosen]
        key = (f"The epoch (partition key) to approve: a Monday written YYYY-MM-DD. Default: {chosen.epoch_key}, the epoch "
               f"in review when the definitions loaded ({when})"
               + (f"; also in review: {', '.join(others)}" if others else "") + ".")
        digest = (f"The allocation_set_hash you reviewed (64 hex digits; epoch_allocations metadata, or credit-pipeline approve "
                  f"--epoch KEY --print-message). Default: {chosen.allocation_set_hash}, epoch {chosen.epoch_key}'s when the "
                  "definitions loaded; approval is refused if it is no longer the current set.")
    else:
        why = snapshot.unread or "no epoch was in review"
        key = (f"The epoch (partition key) to approve: a Monday written YYYY-MM-DD, e.g. 2026-02-16. Empty by default: "
               f"{why} when the definitions loaded ({when}); {FIND_KEY}.")
        digest = ("The allocation_set_hash you reviewed: 64 hex digits, from the epoch_allocations metadata of the partition "
                  "or `credit-pipeline approve --epoch KEY --print-message`.")
    signature = ("Your EIP-191 personal_sign signature (0x + 130 hex digits) of the epoch's approval message (shown in this "
                 "job's description and the epoch_allocations metadata). Print it with `credit-pipeline approve --epoch KEY "
                 "--sign-only --key-env APPROVER_KEY` (APPROVER_KEY: the variable holding your private key; records nothing) "
                 "or sign the message in any EIP-191 wallet.")
    return {"epoch_key": key, "allocation_set_hash": digest, "signature": signature}


class ApprovalConfigBase(dg.Config):
    """What the approver reviewed and signed (EIP-191 ``personal_sign`` of the approval message).

    ``build_approval_job`` makes the subclass with this load's defaults and descriptions."""

    # ``| None``: Dagster makes a defaulted field nullable in the schema anyway; a null is refused like an empty value.
    epoch_key: str | None = ""
    allocation_set_hash: str | None = ""
    signature: str | None = ""


def approval_config_class(snapshot: ReviewSnapshot) -> type[ApprovalConfigBase]:
    chosen = snapshot.default
    described = _field_descriptions(snapshot)

    class ApprovalConfig(ApprovalConfigBase):
        """What the approver reviewed and signed (EIP-191 ``personal_sign`` of the approval message)."""

        epoch_key: str | None = Field(default=chosen.epoch_key if chosen else "", description=described["epoch_key"])
        allocation_set_hash: str | None = Field(default=chosen.allocation_set_hash if chosen else "",
                                                description=described["allocation_set_hash"])
        signature: str | None = Field(default="", description=described["signature"])

    return ApprovalConfig


def _excerpt(value: str, limit: int = 20) -> str:
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


def values(config: ApprovalConfigBase) -> tuple[str, str, str]:
    """The three config values stripped, a null read as empty."""
    return tuple((getattr(config, name) or "").strip() for name in FIELDS)  # type: ignore[return-value]


def config_problem(config: ApprovalConfigBase) -> tuple[str, str] | None:
    """The first Launchpad field that cannot be right and what to put there (None: all well-formed).

    The same rules as ``credit-pipeline approve``; checked before the ledger is touched."""
    key, digest, signature = values(config)
    if not key:
        return "epoch_key", f"empty; give the Monday (YYYY-MM-DD) of the epoch in review: {FIND_KEY}"
    try:
        parse_epoch_key(key)
    except EpochKeyError as exc:
        return "epoch_key", str(exc)
    if not digest:
        return ("allocation_set_hash", "'' (0 characters) is empty; copy allocation_set_hash from the epoch_allocations metadata of partition "
                f"{key} (or credit-pipeline approve --epoch {key} --print-message)")
    if len(digest) != 64 or not set(digest.lower()) <= set(hexdigits.lower()):
        return ("allocation_set_hash", f"{_excerpt(digest)} ({len(digest)} characters) "
                f"is not 64 hex digits; copy allocation_set_hash from the epoch_allocations metadata of partition {key}")
    if not signature:
        return ("signature", f"empty; paste the output of `{SIGN_COMMAND.format(key=key)}` (or your wallet's EIP-191 "
                "personal_sign signature of the approval message in this job's description)")
    try:
        normalize_signature(signature)
    except SignatureError as exc:
        return "signature", f"{exc}; paste the EIP-191 personal_sign signature of the approval message"
    return None


def refusal(problem: str, field_name: str | None) -> dg.Failure:
    """A refused approval: one line (``config field NAME: what is wrong; what to paste``), nothing recorded.

    Dagster 1.13 stores a traceback with every step failure, ``dg.Failure`` included (the run page prints it below the
    metadata); the line is the Failure's message and description, and the field is in its metadata."""
    where = f"config field {field_name}: " if field_name else ""
    line = " ".join(f"approval refused, nothing recorded: {where}{problem}".split())  # one line, whatever the cause said
    metadata: dict[str, Any] = {"refused": "nothing recorded"}
    if field_name:
        metadata["config_field"] = field_name
    return dg.Failure(description=line, metadata=metadata, allow_retries=False)


def _refuse(context: dg.OpExecutionContext, failure: dg.Failure) -> dg.Failure:
    # The line alone, as a log row of its own (no traceback) just above the step failure in the run's log.
    context.log.error(failure.description)
    return failure


def _record(context: dg.OpExecutionContext, config: ApprovalConfigBase, ledger: LedgerResource, policy: PolicyResource) -> None:
    problem = config_problem(config)
    if problem:
        raise _refuse(context, refusal(problem[1], problem[0]))
    try:
        key, digest, signature = values(config)
        record = approve_epoch(ledger.store(), key, digest, signature, policy.load())
    except ApprovalRefused as exc:
        raise _refuse(context, refusal(str(exc), exc.field)) from None
    except (LedgerError, EpochKeyError, PolicyError) as exc:
        raise _refuse(context, refusal(str(exc), "epoch_key" if isinstance(exc, EpochKeyError) else None)) from None
    context.log.info(f"epoch {record.epoch_key}: approval by {record.signer} recorded for revision {record.revision}, "
                     f"allocation set {record.allocation_set_hash}")
    context.log_event(dg.AssetObservation(asset_key="epoch_allocations", partition=record.epoch_key,
                                          metadata={"approved_by": record.signer, "allocation_set_hash": record.allocation_set_hash, "revision": record.revision,
                                                    "pool_total": record.pool_total}))


# --- the job ------------------------------------------------------------------------------------

JOB_INTRO = ("Record an approver's EIP-191 signature over an epoch's allocation set. It is refused, with nothing written, "
             "unless the epoch is in review (or has a pending correction), the allocation_set_hash is the current one and the "
             "signer is an approver pinned on the epoch; a missing or malformed config value fails with one line naming the field.")


def job_description(snapshot: ReviewSnapshot) -> str:
    when = snapshot.read_at.strftime("%Y-%m-%d %H:%M UTC")
    parts = [JOB_INTRO, ""]
    if not snapshot.epochs:
        why = snapshot.unread or "no epoch was in review"
        parts += [f"When these definitions loaded ({when}) {why}, so the Launchpad's epoch_key and allocation_set_hash are empty.",
                  "",
                  "1. Find the epoch: `credit-pipeline epochs` (status review).",
                  "2. Print its allocation_set_hash and approval message: `credit-pipeline approve --epoch KEY --print-message`.",
                  f"3. Sign it: `{SIGN_COMMAND.format(key='KEY')}` prints only the signature (0x...) and records nothing.",
                  "4. Launch this job with epoch_key, allocation_set_hash and signature.",
                  "",
                  "Reload the code location after an epoch enters review to see its message here and have the fields filled in."]
        return "\n".join(parts)
    parts += [f"In review when these definitions loaded ({when}; reload the code location to refresh):"]
    for epoch in snapshot.epochs:
        default = " (the Launchpad's default)" if epoch is snapshot.default else ""
        parts += ["", f"Epoch {epoch.epoch_key}, revision {epoch.revision}{default}: {epoch.recipients} recipients, "
                      f"pool {epoch.pool_total}",
                  f"allocation_set_hash: {epoch.allocation_set_hash}"]
        if epoch.problem:
            parts += [f"Not signable yet: {epoch.problem}."]
            continue
        parts += ["Approval message (sign exactly this text with EIP-191 personal_sign):", "", "```"]
        parts += epoch.approval_message.split("\n")
        parts += ["```", "",
                  f"Sign it: `{SIGN_COMMAND.format(key=epoch.epoch_key)}` (APPROVER_KEY: the environment variable holding "
                  "your private key) prints only the signature (0x...) and records nothing; paste it as signature and launch."]
    parts += ["", "Check the message and hash again before signing with `credit-pipeline approve --epoch KEY --print-message`; "
                  "the signature binds the ledger, epoch, revision, policy hash, allocation set and pool."]
    return "\n".join(parts)


def build_approval_job(ledger: LedgerResource | None = None, policy: PolicyResource | None = None,
                       snapshot: ReviewSnapshot | None = None) -> dg.JobDefinition:
    """The ``approve_epoch`` job with defaults and descriptions from the ledger as it is now (see the module doc)."""
    snapshot = snapshot if snapshot is not None else read_review_snapshot(ledger, policy)
    config_class = approval_config_class(snapshot)

    def record_approval(context: dg.OpExecutionContext, config, ledger: LedgerResource, policy: PolicyResource) -> None:
        _record(context, config, ledger, policy)

    record_approval.__annotations__["config"] = config_class  # a class made for this load: annotate it directly
    record_approval.__doc__ = "Check the signature against the epoch's current allocation set and pinned approvers; record it."
    op = dg.op(name="record_approval", tags={"credit_pipeline/stage": "approve"})(record_approval)

    @dg.job(name="approve_epoch", tags={"credit_pipeline/stage": "approve"}, description=job_description(snapshot))
    def approve_epoch_job() -> None:
        op()

    return approve_epoch_job
