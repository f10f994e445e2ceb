"""Offline verification of a statement bundle (SPEC §9, §10).

Everything is recomputed from the bundle alone: weights, proposals, corrections,
the pool, the payout lines, the allocation set hash, the approval message and the
signers it recovers to, and ``statement_hash``. The walk is in a fixed order —
the epoch and its policy, then the events, the allocations, the pool, the payout
lines and their distribution (v3: payout wallets proven by their binding signatures,
token amounts, held credit, the Merkle root and proofs), and only then the hashes and signatures — and each part is recomputed from
the statement's own parts before it, so a FAIL names the first *semantic*
difference as a path keyed by the natural id of its line, for example
``payouts[recipient_id=github:200].amount_credits: statement says 3266, recomputed 3265``,
rather than only "the hash differs".

What an offline verify proves is that the bundle is internally consistent and was
signed by keys its own policy names. It cannot know on its own whether that policy
or those keys are the DAO's: ``Expectations`` (the approver addresses, policy hash
and ledger id the auditor trusts) turn that into a check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from credit_pipeline.core.allocation import ALGORITHM_VERSION, ProposedAllocation, event_weight, propose_allocations
from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.distribution import distribution
from credit_pipeline.core.epochs import window_for_key
from credit_pipeline.core.hashing import SignatureError, allocation_set_hash, approval_message, recover_signer
from credit_pipeline.core.payouts import compute_payouts
from credit_pipeline.core.policy import POOL_COMPONENTS, PolicyError, validate_policy
from credit_pipeline.core.recipients import RecipientIdError, check_recipient_id
from credit_pipeline.core.rules import RULES_ALGORITHM_VERSION, decide
from credit_pipeline.core.rules import totals as rule_totals
from credit_pipeline.core.statement import (BUNDLE_FORMAT_V1, BUNDLE_FORMAT_V2, BUNDLE_FORMAT_V3, curated_of, effective_corrections,
                                            iso_utc, rule_event_of)
from credit_pipeline.core.wallets import PayoutWallet, check_payout_wallet

HEX64 = re.compile(r"[0-9a-f]{64}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Expectations:
    """What the auditor trusts, independent of the bundle; empty means "not checked"."""

    approvers: frozenset[str] = frozenset()
    policy_hash: str | None = None
    ledger_id: str | None = None

    @classmethod
    def of(cls, approvers: Iterable[str] = (), policy_hash: str | None = None, ledger_id: str | None = None) -> Expectations:
        return cls(frozenset(a.strip().lower() for a in approvers), (policy_hash or "").strip().lower() or None,
                   (ledger_id or "").strip().lower() or None)


@dataclass
class VerificationReport:
    """``ok`` when every recomputed value matches; ``mismatch`` names the first that does not.

    ``proved`` says what was established and from what (epoch, revision, ledger,
    policy hash, approvers, recovered signers), for the auditor to read.
    """

    ok: bool
    checks: list[str] = field(default_factory=list)
    mismatch: str | None = None
    proved: dict[str, Any] = field(default_factory=dict)


class Mismatch(Exception):
    """A recomputed value that differs; the message names it."""


# -- the walk: the first differing leaf of two JSON values ------------------------------


@dataclass(frozen=True)
class Side:
    """How a difference names the value the statement is compared with."""

    says: str  # "statement says X, <says> Y"
    name: str
    has_none: str  # a line only the statement has
    has_one: str  # a line only the other side has


RECOMPUTED = Side("recomputed", "the recomputation", "the recomputation has none", "the recomputation has one")
LEDGER_ROWS = Side("ledger rows give", "the ledger rows", "the ledger rows have none", "the ledger rows have one")

# The walk's order: what a statement is computed from, then what is computed from it, hashes and signatures last.
WALK_FIRST = ("format", "ledger_id", "revision", "supersedes", "epoch", "algorithm", "policy", "policy_hash",
              "completeness", "completeness_waiver", "identity", "events", "corrections", "allocations", "pool", "payouts",
              "distribution", "token", "wallets", "lines",
              # fields of a line: what it is computed from before what is computed from it
              "key", "start", "end", "source", "event_type", "platform_user_id", "platform_login", "event_time", "resolution",
              "recipient_id", "weight_override", "weight", "proposed_units", "activity_count", "final_units", "reason",
              "components", "amount", "total", "total_units", "share", "amount_credits",
              "wallet", "token_amount", "status", "held_reason", "proof", "merkle")
WALK_LAST = ("allocation_set_hash", "approvals", "statement_hash")
# The field that names each line of a list, in the order tried.
ROW_KEYS = ("event_id", "recipient_id", "component_id", "signature")
MAX_SHOWN = 100


def shown(value: Any) -> str:
    """A value as JSON on one line, shortened past MAX_SHOWN characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _id_shown(value: str) -> str:
    """A line's id in a path; only a signature (130 hex digits) is shortened."""
    return value[:14] + "…" if re.fullmatch(r"0x[0-9a-fA-F]{64,}", value) else value


def _key_order(k: Any) -> tuple[Any, ...]:
    k = str(k)
    if k in WALK_FIRST:
        return (0, WALK_FIRST.index(k), "")
    if k in WALK_LAST:
        return (3, WALK_LAST.index(k), "")
    return (2 if k.endswith("hash") else 1, 0, k)


@dataclass(frozen=True)
class Difference:
    """The first differing leaf: its path (``parts``, e.g. ``events``, ``[event_id=…]``, ``note``) and what differs."""

    parts: tuple[str, ...]
    what: str
    row: str | None = None  # the natural id of the innermost line on the path

    @property
    def path(self) -> str:
        return "".join(p if p.startswith("[") or i == 0 else f".{p}" for i, p in enumerate(self.parts))

    @property
    def section(self) -> str:
        return self.parts[0] if self.parts else ""

    @property
    def leaf(self) -> str:
        names = [p for p in self.parts if not p.startswith("[")]
        return names[-1] if names else ""

    def __str__(self) -> str:
        return f"{self.path}: {self.what}" if self.parts else self.what


def difference(stored: Any, other: Any, parts: tuple[str, ...] = (), side: Side = LEDGER_ROWS) -> Difference | None:
    """The first leaf where ``stored`` (the statement) and ``other`` differ, in the walk's order.

    Dicts are walked key by key (``WALK_FIRST``, other keys, hashes, ``WALK_LAST``); lists of
    rows that carry an id (``ROW_KEYS``) line by line in id order, named ``[event_id=…]``;
    other lists by position.
    """
    if isinstance(stored, dict) and isinstance(other, dict):
        for k in sorted(set(stored) | set(other), key=_key_order):
            here = (*parts, str(k))
            if k not in stored:
                return Difference(here, f"missing from the statement, {side.says} {shown(other[k])}")
            if k not in other:
                return Difference(here, f"statement says {shown(stored[k])}; {side.has_none}")
            found = difference(stored[k], other[k], here, side)
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(other, list):
        key = _row_key(stored, other)
        if key:
            for rows, whose in ((stored, "the statement"), (other, side.name)):
                seen: set[str] = set()
                for r in rows:
                    if r[key] in seen:
                        return Difference((*parts, f"[{key}={_id_shown(r[key])}]"), f"appears more than once in {whose}", r[key])
                    seen.add(r[key])
            a, b = {r[key]: r for r in stored}, {r[key]: r for r in other}
            for rid in sorted(set(a) | set(b)):
                here = (*parts, f"[{key}={_id_shown(rid)}]")
                if rid not in b:
                    return Difference(here, f"statement has this line; {side.has_none}", rid)
                if rid not in a:
                    return Difference(here, f"statement has no such line; {side.has_one}", rid)
                found = difference(a[rid], b[rid], here, side)
                if found:
                    return found if found.row is not None else replace(found, row=rid)
            if [r[key] for r in stored] != [r[key] for r in other]:
                first = next(i for i, (x, y) in enumerate(zip(stored, other)) if x[key] != y[key])
                return Difference(parts, f"lines are out of order: line {first + 1} of the statement is {key} "
                                         f"{_id_shown(stored[first][key])}, {side.says} {_id_shown(other[first][key])}")
            return None
        for i, (x, y) in enumerate(zip(stored, other)):
            found = difference(x, y, (*parts, f"[{i}]"), side)
            if found:
                return found
        if len(stored) != len(other):
            return Difference(parts, f"statement has {len(stored)} entries, {side.says} {len(other)}")
        return None
    if stored == other and isinstance(stored, bool) == isinstance(other, bool):  # True == 1 in Python, not in JSON
        return None
    return Difference(parts, f"statement says {shown(stored)}, {side.says} {shown(other)}")


def first_difference(stored: Any, rebuilt: Any, path: str = "", side: Side = LEDGER_ROWS) -> str | None:
    """``difference`` as one line, e.g. ``events[event_id=x].note: statement says "b", ledger rows give "c"``."""
    found = difference(stored, rebuilt, (path,) if path else (), side)
    return None if found is None else str(found)


def _row_key(stored: list[Any], other: list[Any]) -> str | None:
    """The id field every row of both lists carries as a string and that is unique in the recomputed
    list, if any. A log whose rows repeat an id (the corrections of one recipient, revision after
    revision) is compared by position instead."""
    rows = stored + other
    for key in ROW_KEYS:
        if rows and all(isinstance(r, dict) and isinstance(r.get(key), str) for r in rows):
            ids = [r[key] for r in other]
            return key if len(ids) == len(set(ids)) else None
    return None


def _same(report: VerificationReport, check: str, path: str, stored: Any, recomputed: Any, note: str = "") -> None:
    """Raise the first difference between a part of the statement and its recomputation; else record the check."""
    found = difference(stored, recomputed, (path,), RECOMPUTED)
    if found:
        value = found.what.startswith("statement says") and not found.parts[-1].startswith("[")
        raise Mismatch(f"{found}" + (f" ({note})" if note and value else ""))
    report.checks.append(check)


def _projection(rows: list[Any], like: dict[str, dict[str, Any]], key: str) -> list[Any]:
    """The statement's lines cut down to the fields the recomputation has (the rest is covered by the hash)."""
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise Mismatch(f"a line of the statement is {shown(row)}, not an object")
        want = like.get(row.get(key)) or {}
        out.append({k: row[k] for k in (key, *want) if k in row})
    return out


# -- the bundle, part by part ------------------------------------------------------------


def verify_bundle(bundle: Any, expectations: Expectations | None = None) -> VerificationReport:
    """Recompute every number and hash of a bundle from the bundle alone."""
    report = VerificationReport(ok=False)
    try:
        if not isinstance(bundle, dict):
            raise Mismatch(f"a statement bundle is a JSON object (got {type(bundle).__name__})")
        fmt = bundle.get("format")
        if fmt in (BUNDLE_FORMAT_V2, BUNDLE_FORMAT_V3):
            _verify(bundle, report, v2=True, v3=fmt == BUNDLE_FORMAT_V3)
        elif fmt == BUNDLE_FORMAT_V1:
            _verify(bundle, report, v2=False)
        else:
            raise Mismatch(f"format: {fmt!r} is not a statement bundle format ({BUNDLE_FORMAT_V1}, {BUNDLE_FORMAT_V2} or {BUNDLE_FORMAT_V3})")
        _check_expectations(report, expectations or Expectations())
    except Mismatch as exc:
        report.mismatch = str(exc)
        return report
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        report.mismatch = f"bundle is malformed: {type(exc).__name__}: {exc}"
        return report
    report.ok = True
    return report


def _verify(bundle: dict[str, Any], report: VerificationReport, *, v2: bool, v3: bool = False) -> None:
    key = bundle["epoch"]["key"]
    start, end = window_for_key(key)
    _same(report, "epoch window", "epoch", {"start": bundle["epoch"]["start"], "end": bundle["epoch"]["end"]},
          {"start": iso_utc(start), "end": iso_utc(end)})
    if bundle["algorithm"] not in (ALGORITHM_VERSION, RULES_ALGORITHM_VERSION):
        raise Mismatch(f"algorithm: statement says {shown(bundle['algorithm'])}, this verifier recomputes {ALGORITHM_VERSION} "
                       f"and {RULES_ALGORITHM_VERSION}")
    revision, supersedes, ledger_id = (bundle["revision"], bundle["supersedes"], bundle["ledger_id"]) if v2 else (1, None, None)
    if v2:
        if not isinstance(ledger_id, str) or not UUID.fullmatch(ledger_id):
            raise Mismatch(f"ledger_id: {shown(ledger_id)} is not a ledger id (a lowercase UUID)")
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise Mismatch(f"revision: {shown(revision)} is not a whole number >= 1")
        if (revision == 1) != (supersedes is None) or (supersedes is not None and not HEX64.fullmatch(str(supersedes))):
            raise Mismatch(f"supersedes: revision {revision} supersedes {shown(supersedes)}; revision 1 supersedes nothing, "
                           "later ones a statement hash")
    policy_doc = bundle["policy"]
    if canonical_hash(policy_doc) != bundle["policy_hash"]:
        raise Mismatch(f"policy: the pinned policy does not hash to the statement's policy_hash (statement says "
                       f"{shown(bundle['policy_hash'])}, recomputed {shown(canonical_hash(policy_doc))}): the policy or its hash was changed")
    report.checks.append("policy_hash (SHA-256 of the pinned policy)")
    try:
        policy = validate_policy(policy_doc, "policy")
    except PolicyError as exc:
        raise Mismatch("; ".join(line.strip().removeprefix("- ") for line in str(exc).splitlines() if line.strip())) from None
    want_algorithm = ALGORITHM_VERSION if policy.rules is None else RULES_ALGORITHM_VERSION
    if bundle["algorithm"] != want_algorithm:
        raise Mismatch(f"algorithm: statement says {shown(bundle['algorithm'])}, its policy {'has' if policy.rules else 'has no'} "
                       f"rules, so it is {want_algorithm}")
    report.checks.append("algorithm")
    if policy.rules is not None and not v2:
        raise Mismatch(f"format: a policy with rules needs {BUNDLE_FORMAT_V2}, whose events carry their facts and decisions")

    events = bundle["events"]
    ids = [e["event_id"] for e in events]
    if ids != sorted(set(ids)):
        out_of_place = next((b for a, b in zip(ids, ids[1:]) if not a < b), ids[-1] if ids else "")
        raise Mismatch(f"events[event_id={_id_shown(str(out_of_place))}]: event ids must be unique and in order; this one is not")
    for e in events:
        _check_event(e, start, end, v2)
    if policy.rules is None:
        for e in events:
            _same(report, f"weight of {e['event_id']}", f"events[event_id={_id_shown(e['event_id'])}]", {"weight": e.get("weight")},
                  {"weight": event_weight(curated_of(e), policy.weights)}, "under the bundle's policy")
        proposed = {p.recipient_id: p for p in propose_allocations(map(curated_of, events), policy.weights)}
    else:
        decisions = decide([rule_event_of(e) for e in events], policy)
        for e in events:
            d = decisions[e["event_id"]]
            _same(report, f"decision of {e['event_id']}", f"events[event_id={_id_shown(e['event_id'])}]",
                  {"weight": e.get("weight"), "decision": e.get("decision")},
                  {"weight": d.weight, "decision": {k: v for k, v in d.to_dict().items() if k != "weight"}},
                  "re-derived by the bundle's policy rules from the events' facts")
        report.checks.append("per-event rule decisions, re-derived from the facts")
        proposed = {t.recipient_id: ProposedAllocation(t.recipient_id, t.units, t.counted) for t in rule_totals(decisions)}

    allocations = bundle["allocations"]
    corrections = effective_corrections(bundle.get("corrections") or [], revision) if v2 else {}
    for c in (bundle.get("corrections") or []) if v2 else []:
        if c["revision"] > revision or c["revision"] < 2:
            raise Mismatch(f"corrections: the correction of {c['recipient_id']} names revision {c['revision']}, outside 2..{revision}")
    recomputed: dict[str, dict[str, Any]] = {}
    for rid in sorted({a["recipient_id"] for a in allocations if isinstance(a, dict)} | set(proposed) | set(corrections)):
        p = proposed.get(rid)
        line: dict[str, Any] = {"recipient_id": rid, "proposed_units": p.proposed_units if p else 0,
                                "activity_count": p.activity_count if p else 0}
        if rid in corrections:
            line.update(final_units=corrections[rid]["final_units"], reason=corrections[rid]["reason"])
        recomputed[rid] = line
    found = difference(_projection(allocations, recomputed, "recipient_id"), list(recomputed.values()), ("allocations",), RECOMPUTED)
    if found:
        rid = found.row
        note = f" (set by the correction of revision {corrections[rid]['revision']})" if rid in corrections else \
            " (from the statement's events)" if found.leaf in ("proposed_units", "activity_count") or found.what.endswith("has one") else ""
        raise Mismatch(f"{found}{note}")
    report.checks.append("allocation lines: every credited recipient, proposals, activity counts, corrections")
    finals: dict[str, int] = {}
    for a in allocations:
        rid = _recipient(a["recipient_id"], "allocations")
        where = f"allocations[recipient_id={_id_shown(rid)}]"
        if a["final_units"] != a["proposed_units"] and not (a.get("reason") or "").strip():
            raise Mismatch(f"{where}.reason: final units of {rid} differ from the proposal without a reason")
        units = a["final_units"]
        if isinstance(units, bool) or not isinstance(units, int) or units < 0:
            raise Mismatch(f"{where}.final_units: {shown(units)} is not a whole number >= 0")
        finals[rid] = units

    components = bundle["pool"]["components"]
    for c in components:
        where = f"pool.components[component_id={_id_shown(str(c['component_id']))}]"
        if c["component_id"] not in POOL_COMPONENTS:
            raise Mismatch(f"{where}: {shown(c['component_id'])} is not one of {', '.join(POOL_COMPONENTS)}")
        if isinstance(c["amount"], bool) or not isinstance(c["amount"], int) or c["amount"] < 0:
            raise Mismatch(f"{where}.amount: {shown(c['amount'])} is not an integer >= 0")
    if "base_issuance" not in {c["component_id"] for c in components}:
        raise Mismatch("pool.components: there is no base_issuance component")
    pool_total = sum(c["amount"] for c in components)
    _same(report, "pool total", "pool", {"total": bundle["pool"]["total"]}, {"total": pool_total}, "the sum of the pool components")
    recomputed_payouts = [line.to_dict() for line in compute_payouts(finals, pool_total)]
    # Units first (they come from the allocation lines), then shares, then credits: a changed line is named
    # before the lines whose rounding it moved.
    for name, note in (("total_units", "the final units of its allocation line"), ("share", "of the allocations' final units"),
                       ("amount_credits", "the pool total split by the allocations' final units")):
        want = [{"recipient_id": line["recipient_id"], name: line[name]} for line in recomputed_payouts]
        _same(report, f"payout lines: {name}", "payouts", _projection(bundle["payouts"], {w["recipient_id"]: w for w in want}, "recipient_id"),
              want, note)
    _same(report, "payout lines", "payouts", bundle["payouts"], recomputed_payouts)  # no other field either
    if v3:
        _verify_distribution(bundle, report, ledger_id)
    elif policy.payout is not None:
        raise Mismatch(f"format: a policy with a payout token needs {BUNDLE_FORMAT_V3}, whose distribution pays it")

    allocation_hash = allocation_set_hash(finals)
    _same(report, "allocation_set_hash", "allocation_set_hash", bundle["allocation_set_hash"], allocation_hash,
          "of the allocations' final units")
    if v2:
        message = approval_message(key, bundle["policy_hash"], allocation_hash, pool_total, ledger_id=ledger_id,
                                   revision=revision, supersedes=supersedes)
    else:
        message = approval_message(key, bundle["policy_hash"], allocation_hash, pool_total)
    signers = []
    for a in bundle["approvals"]:
        where = f"approvals[signature={_id_shown(str(a['signature']))}]"
        try:
            signer = recover_signer(message, a["signature"])
        except SignatureError as exc:
            raise Mismatch(f"{where}: {exc}") from None
        if a["signer"] != signer:
            raise Mismatch(f"{where}.signer: statement says {shown(a['signer'])}, the signature over this statement's approval "
                           f"message recovers to {shown(signer)}")
        report.checks.append(f"signer of approval {a['signature'][:12]}…")
        if signer not in policy.approvers:
            raise Mismatch(f"{where}.signer: {signer} is not in the pinned approvers {policy.approvers}")
        signers.append(signer)
    if not signers:
        raise Mismatch("approvals: there is none; a statement needs at least one valid approval")
    report.checks.append("at least one valid approval")

    body = {k: v for k, v in bundle.items() if k != "statement_hash"}
    _same(report, "statement_hash", "statement_hash", bundle.get("statement_hash"), canonical_hash(body),
          "every recomputed value matched, so a field only the hash covers was changed: identity, accounts, notes, authors or times")
    report.proved = {
        "epoch": key, "revision": revision, "supersedes": supersedes, "ledger_id": ledger_id,
        "policy_hash": bundle["policy_hash"], "approvers": list(policy.approvers), "signers": sorted(set(signers)),
        "allocation_set_hash": allocation_hash, "pool_total": pool_total, "recipients": len(finals),
        "credited_events": sum(1 for e in events if (e.get("decision") or {}).get("counted", True)),
        "statement_hash": bundle["statement_hash"],
        "merkle_root": ((bundle.get("distribution") or {}).get("merkle") or {}).get("root"),
    }


def _verify_distribution(bundle: dict[str, Any], report: VerificationReport, ledger_id: str) -> None:
    """Every payout wallet is proven by its binding signature; lines, token amounts, held credit, the Merkle root
    and every proof are recomputed from the payout lines, the pinned token and those wallets."""
    dist = bundle["distribution"]
    wallets: dict[str, PayoutWallet] = {}
    for w in dist["wallets"]:
        where = f"distribution.wallets[recipient_id={_id_shown(str(w['recipient_id']))}]"
        problem = check_payout_wallet(w, ledger_id)
        if problem:
            raise Mismatch(f"{where}: {problem}")
        if w["recipient_id"] in wallets:
            raise Mismatch(f"{where}: the recipient has two payout wallets; a person has one at a time")
        wallets[w["recipient_id"]] = PayoutWallet(w["recipient_id"], w["wallet"], w["identity_event_id"], w["message"], w["signature"])
    if wallets:
        report.checks.append(f"payout wallets: {len(wallets)} binding signature(s) by the wallets, naming this ledger and person")
    _same(report, "distribution", "distribution", dist, distribution(bundle["payouts"], bundle["policy"].get("payout"), wallets),
          "recomputed from the payout lines, the pinned payout token and the proven wallets")
    report.checks.append("distribution: wallets, token amounts, held credit" + (", Merkle root and proofs" if dist["merkle"] else ""))


def _recipient(value: Any, what: str) -> str:
    try:
        return check_recipient_id(value)
    except RecipientIdError as exc:
        raise Mismatch(f"{what}: {exc}") from None


def _check_event(e: dict[str, Any], start: Any, end: Any, v2: bool) -> None:
    """A credited event names a valid recipient; v2 events lie in the window and name their account."""
    eid = e["event_id"]
    where = f"events[event_id={_id_shown(eid)}]"
    rid = _recipient(e["recipient_id"], f"{where}.recipient_id")
    if not eid.startswith(f"{e['source']}:"):
        raise Mismatch(f"{where}.source: the event id does not name its source {e['source']!r}")
    if not v2:
        return
    try:
        when = datetime.fromisoformat(str(e["event_time"]).replace("Z", "+00:00"))
    except ValueError:
        raise Mismatch(f"{where}.event_time: {shown(e['event_time'])} is not an ISO 8601 timestamp") from None
    if when.tzinfo is None or not (start <= when < end):  # compared as instants, never as strings
        raise Mismatch(f"{where}.event_time: {e['event_time']} is outside the epoch [{iso_utc(start)}, {iso_utc(end)})")
    if e["resolution"] == "claimant" and rid != f"{e['source']}:{e['platform_user_id']}":
        raise Mismatch(f"{where}.recipient_id: a claimant is paid as {e['source']}:{e['platform_user_id']}, not {rid}")
    if e["resolution"] not in ("bound", "claimant"):
        raise Mismatch(f"{where}.resolution: {e['resolution']!r} credits no one, yet the event is credited")


def _check_expectations(report: VerificationReport, want: Expectations) -> None:
    proved = report.proved
    if want.ledger_id and proved.get("ledger_id") != want.ledger_id:
        raise Mismatch(f"ledger id: bundle was issued by ledger {proved.get('ledger_id')}, you expect {want.ledger_id}")
    if want.policy_hash and proved.get("policy_hash") != want.policy_hash:
        raise Mismatch(f"policy hash: bundle pins {proved.get('policy_hash')}, you expect {want.policy_hash}")
    if want.approvers:
        strangers = sorted(set(proved.get("signers", [])) - want.approvers)
        if strangers:
            raise Mismatch(f"approvers: signed by {', '.join(strangers)}, which you do not expect (--expect-approver)")
        if not set(proved.get("signers", [])) & want.approvers:
            raise Mismatch("approvers: none of the approvers you expect signed it")
    report.checks += [f"expected {what}" for what, given in (("ledger id", want.ledger_id), ("policy hash", want.policy_hash),
                                                            ("approvers", want.approvers)) if given]
