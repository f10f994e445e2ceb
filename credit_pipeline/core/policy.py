"""The weight policy: a versioned YAML document, validated strictly (SPEC §6).

Weights are integer milli-units (``8000`` = 8.000 units) keyed ``source:event_type``.
Anything that is not exactly right is refused with one message per problem that
names the key and the rule: a float, a negative, a boolean, an unknown key, an
approver that is not an address. The policy's hash is the SHA-256 of the canonical
JSON of the *validated* document, so formatting and comments never change it;
once pinned on an epoch, ``policy_hash_of`` hashes the stored document itself.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from eth_utils import to_checksum_address
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.events import EVENT_TYPES
from credit_pipeline.core.policy_yaml import PolicyYamlError, excerpt, load_policy_yaml

WEIGHT_KEY = re.compile(r"^(github|discord):[a-z][a-z_]*$")
REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
GITHUB_STREAMS = ("pull_requests", "reviews", "issues")
ORGANIZATION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
# Exclusions are ``-repo:`` qualifiers in every search query; GitHub's search takes a handful of those (to keep
# more out, name the repos to keep in ``repos`` instead: those are split over several queries).
MAX_EXCLUDED_REPOS = 20
POOL_COMPONENTS = ("base_issuance", "kpi_bonus", "top_up")
# Bounds that keep every value storable: a week's summed weights must fit PostgreSQL bigint
# (10**6 events * 10**12 milli-units < 2**63), and pool amounts numeric(78, 0) after payouts
# multiply them by units.
MAX_WEIGHT = 10**12  # milli-units per weight
MAX_POOL_AMOUNT = 10**60  # credits of pool.base_issuance


class PolicyError(ValueError):
    """A policy document that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], source: str = "policy"):
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))


def _snowflake(value: Any) -> Any:
    # YAML may give an unquoted snowflake as an int; PyYAML reads it exactly.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Snowflake = Annotated[str, BeforeValidator(_snowflake), Field(pattern=r"^[0-9]{1,20}$")]
MilliUnits = Annotated[StrictInt, Field(ge=0, le=MAX_WEIGHT)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EpochSection(_Strict):
    anchor: date

    @field_validator("anchor")
    @classmethod
    def _monday(cls, value: date) -> date:
        if value.weekday() != 0:
            raise ValueError(f"{value.isoformat()} is a {value.strftime('%A')}; the anchor must be a Monday")
        return value


class GithubSection(_Strict):
    repos: list[Annotated[str, Field(pattern=REPO.pattern)]] = Field(default_factory=list)
    streams: list[Literal["pull_requests", "reviews", "issues"]] = Field(default_factory=lambda: list(GITHUB_STREAMS))
    issue_credit: Literal["author", "closer"] = "author"
    # Every repo of an organization, collected through GitHub's search (cost follows events, not repos);
    # ``repos`` then narrows it and ``exclude_repos`` drops some. Both absent (None) keep a policy's hash.
    organization: Annotated[str, Field(pattern=ORGANIZATION.pattern)] | None = None
    exclude_repos: Annotated[list[Annotated[str, Field(pattern=REPO.pattern)]], Field(max_length=MAX_EXCLUDED_REPOS)] | None = None

    @model_validator(mode="after")
    def _scope(self) -> GithubSection:
        if self.exclude_repos is not None and self.organization is None:
            raise ValueError("exclude_repos narrows an organization: set organization, or list only the repos to collect in repos")
        if self.organization is not None:
            owner = self.organization.lower()
            for key, names in (("repos", self.repos), ("exclude_repos", self.exclude_repos or [])):
                outside = [r for r in names if r.split("/", 1)[0].lower() != owner]
                if outside:
                    raise ValueError(f"{key} lists {excerpt(outside[0])}, which is not a repo of organization "
                                     f"{self.organization}; list only {self.organization}/... repos there")
            both = sorted({r.lower() for r in self.repos} & {r.lower() for r in self.exclude_repos or []})
            if both:
                raise ValueError(f"{both[0]} is in both repos and exclude_repos; keep it in one of them")
        return self


class DiscordSection(_Strict):
    guild_id: Snowflake
    channels: list[Snowflake] = Field(default_factory=list)
    # The threads (and forum posts) under the allow-listed channels count; false turns them off. Absent (None)
    # means on, and is left out of the canonical document, so a policy written before the key keeps its hash.
    threads: StrictBool | None = None


class SourcesSection(_Strict):
    github: GithubSection | None = None
    discord: DiscordSection | None = None


class ExcludeSection(_Strict):
    github: list[Annotated[str, BeforeValidator(_snowflake)]] = Field(default_factory=list)
    discord: list[Snowflake] = Field(default_factory=list)


class PoolSection(_Strict):
    base_issuance: Annotated[StrictInt, Field(ge=0, le=MAX_POOL_AMOUNT)]


ReviewState = Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED"]
IssueReason = Literal["completed", "not_planned", "duplicate"]
MAX_COUNT = 10**6  # lines, message lengths and daily caps: far above anything real, well inside a bigint


class PrLabelRule(_Strict):
    label: Annotated[str, Field(min_length=1, max_length=100)]
    weight: MilliUnits


class PrSizeFloor(_Strict):
    """A merged PR with fewer changed lines (additions + deletions) than ``min_lines`` weighs ``weight``."""

    min_lines: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)]
    weight: MilliUnits


class GithubRules(_Strict):
    review_weights: dict[ReviewState, MilliUnits] | None = None
    self_review: StrictBool = True
    one_review_per_pr: StrictBool = False
    pr_labels: list[PrLabelRule] = Field(default_factory=list)
    pr_size_floor: PrSizeFloor | None = None
    issue_reasons: list[IssueReason] | None = None
    self_closed_issues: Literal["all", "referenced", "none"] = "all"

    @field_validator("pr_labels")
    @classmethod
    def _labels_once(cls, value: list[PrLabelRule]) -> list[PrLabelRule]:
        seen = [r.label for r in value]
        repeated = next((label for label in seen if seen.count(label) > 1), None)
        if repeated is not None:  # the later rule could never match: the first match wins
            raise ValueError(f"label {excerpt(repeated)} is listed twice; the first matching rule wins, so list each label once")
        return value


class DiscordRules(_Strict):
    message_types: list[Annotated[StrictInt, Field(ge=0, le=255)]] | None = None
    min_length: Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)] = 0
    dedupe: StrictBool = False
    daily_cap: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)] | None = None


class CapsSection(_Strict):
    units_per_person: dict[Literal["github", "discord"], MilliUnits] = Field(default_factory=dict)
    # percent of the epoch's units a source may earn, measured against the other sources (see core.rules)
    pool_share: dict[Literal["github", "discord"], Annotated[StrictInt, Field(ge=1, le=99)]] = Field(default_factory=dict)


class RulesSection(_Strict):
    """Rules that resist gaming (SPEC §6 "Rules"); each is applied per event in ``core.rules``."""

    github: GithubRules = Field(default_factory=GithubRules)
    discord: DiscordRules = Field(default_factory=DiscordRules)
    caps: CapsSection = Field(default_factory=CapsSection)


def _checksummed(value: Any) -> Any:
    """An EIP-55 address exactly as checksummed (a lower-case or mis-cased address is refused: it may be a typo)."""
    if isinstance(value, str) and ADDRESS.fullmatch(value) and to_checksum_address(value) != value:
        raise ValueError(f"{excerpt(value)} is not EIP-55 checksummed; write it as {to_checksum_address(value)}")
    return value


class PayoutSection(_Strict):
    """The token a statement pays (SPEC §6 ``payout:``): needed for the Safe airdrop CSV and Merkle claims."""

    token_address: Annotated[str, Field(pattern=ADDRESS.pattern), BeforeValidator(_checksummed)]
    decimals: Annotated[StrictInt, Field(ge=0, le=36)]
    token_units_per_credit: Annotated[StrictInt, Field(ge=1, le=10**40)]  # integer base units of the token per credit


class Policy(_Strict):
    """A validated weight policy."""

    version: Annotated[StrictInt, Field(ge=1)]
    epoch: EpochSection
    sources: SourcesSection = Field(default_factory=SourcesSection)
    weights: dict[Annotated[str, Field(pattern=WEIGHT_KEY.pattern)], MilliUnits]
    exclude: ExcludeSection = Field(default_factory=ExcludeSection)
    unresolved: Literal["claimant", "exclude"] = "claimant"
    pool: PoolSection
    # validate_default: leaving approvers out is refused with the same message as listing none.
    approvers: list[str] = Field(default_factory=list, validate_default=True)
    # Absent in every policy written before the rules: such a policy keeps its hash and its allocations.
    rules: RulesSection | None = None
    # Absent in every policy written before payouts in tokens: such a policy keeps its hash.
    payout: PayoutSection | None = None

    @field_validator("weights")
    @classmethod
    def _known_event_types(cls, value: dict[str, int]) -> dict[str, int]:
        known = [f"{source}:{kind}" for source, kinds in EVENT_TYPES.items() for kind in kinds]
        unknown = [k for k in value if k not in known]
        if unknown:  # a misspelt key would otherwise weigh nothing, silently
            raise ValueError(f"{excerpt(unknown[0])} is not an event type the pipeline collects; use one of {', '.join(known)}")
        return value

    @field_validator("approvers", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not ADDRESS.fullmatch(item):
                raise ValueError(f"approvers[{i}] = {excerpt(item)} is not an Ethereum address (0x followed by 40 hex digits)")
            address = item.lower()  # EIP-55 case is only a checksum: 0xAB.. and 0xab.. are one wallet
            if address in out:
                raise ValueError(f"approvers[{i}] = {item!r} repeats approvers[{out.index(address)}]; list each approver once")
            out.append(address)
        if not out:
            raise ValueError("list at least one approver address; an epoch with none can never be approved")
        return out

    def weight(self, source: str, event_type: str) -> int:
        """The policy weight of an event type; unknown types weigh 0."""
        return self.weights.get(f"{source}:{event_type}", 0)

    def is_excluded_account(self, source: str, platform_user_id: str | None, login: str | None) -> bool:
        """True for accounts the policy never credits (GitHub by login or numeric id)."""
        listed = set(getattr(self.exclude, source, []))
        return (platform_user_id is not None and platform_user_id in listed) or (login is not None and login in listed)

    def canonical(self) -> dict[str, Any]:
        """The validated document as plain JSON values (what is hashed and pinned).

        ``rules`` and ``payout`` are left out when absent, so a policy without them hashes as it did before
        those keys existed.
        """
        document = self.model_dump(mode="json")
        for optional in ("rules", "payout"):
            if document.get(optional) is None:
                document.pop(optional, None)
        discord = (document.get("sources") or {}).get("discord")
        if isinstance(discord, dict) and discord.get("threads") is None:
            discord.pop("threads", None)
        github = (document.get("sources") or {}).get("github")
        for optional in ("organization", "exclude_repos"):
            if isinstance(github, dict) and github.get(optional) is None:
                github.pop(optional, None)
        return document

    @property
    def policy_hash(self) -> str:
        return canonical_hash(self.canonical())


def _explain(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "(document)"
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key; remove it or check its spelling"
    if kind == "missing":
        return f"{loc}: required key is missing"
    if loc.startswith("weights.") and loc.endswith(".[key]"):
        return f"{loc.removesuffix('.[key]')}: weight keys look like source:event_type, source github or discord (for example github:pr_merged)"
    if kind in ("int_type", "int_from_float", "int_parsing") or isinstance(value, bool):
        unit = {"weights": " of milli-units; write 8500 for 8.5 units", "pool": " of credits"}.get(loc.split(".")[0], "")
        hint = ""
        if isinstance(value, str) and re.fullmatch(r"[-+0-9._:xXoObBeE]+", value.strip()):
            hint = "; only plain decimal integers are numbers in a policy (write 10, not 010, 0x10, 1_000 or 1:30)"
        return f"{loc}: must be a whole number{unit} (got {excerpt(value)}){hint}"
    if kind == "greater_than_equal":
        return f"{loc}: must be >= {error.get('ctx', {}).get('ge', 0)} (got {excerpt(value)})"
    if kind == "less_than_equal" and loc.startswith("rules.") and error.get("ctx", {}).get("le") != MAX_WEIGHT:
        return f"{loc}: must be at most {error['ctx']['le']} (got {excerpt(value)})"
    if kind == "bool_type":
        return f"{loc}: must be true or false (got {excerpt(value)})"
    if kind == "less_than_equal":
        bound = ("10**12 milli-units (MAX_WEIGHT), so the sum of millions of events fits a bigint" if loc.startswith("weights")
                 else "10**60 credits (MAX_POOL_AMOUNT), so payouts fit the ledger's numeric(78,0)")
        return f"{loc}: must be at most {bound} (got a number of {len(str(value))} digits)"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "value_error":  # our own validators already name the value
        return f"{loc}: {message}"
    return f"{loc}: {message} (got {excerpt(value)})"


def policy_hash_of(document: dict[str, Any]) -> str:
    """The hash of a pinned policy document exactly as stored.

    Never re-serialized through ``Policy``: a later code version (a new key with a
    default, another normalization) would otherwise change the hash of an old epoch.
    """
    return canonical_hash(document)


def validate_policy(document: Any, source: str = "policy") -> Policy:
    """Validate a parsed policy document, raising PolicyError with every problem."""
    if not isinstance(document, dict):
        raise PolicyError([f"the document must be a mapping of keys (got {type(document).__name__})"], source)
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError([_explain(e) for e in exc.errors()], source) from None


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse policy YAML text and validate it."""
    try:
        document = load_policy_yaml(text)
    except PolicyYamlError as exc:
        raise PolicyError([str(exc)], source) from None
    return validate_policy(document, source)
