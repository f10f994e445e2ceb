"""Statement exports: the canonical JSON bundle, CSV, spreadsheet-safe CSV, a Markdown report, the Safe CSV
Airdrop file of the payable lines (with the held lines beside it) and the Merkle claims tree."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from credit_pipeline.core.distribution import merkle_dump
from credit_pipeline.core.statement import counted_events, statement_bytes
from credit_pipeline.stages.escaping import markdown_cell, spreadsheet_cell

FORMATS = ("json", "csv", "safe-csv", "md", "safe-airdrop", "merkle")
PAYOUT_COLUMNS = ("recipient_id", "total_units", "share", "amount_credits")
# The Safe{Wallet} CSV Airdrop app's columns; amount is in whole tokens (decimals allowed), id is for NFTs only.
SAFE_AIRDROP_COLUMNS = ("token_type", "token_address", "receiver", "amount", "id")
HELD_COLUMNS = ("epoch", "recipient_id", "amount_credits", "token_amount", "held_reason", "statement_hash")


class ExportRefused(ValueError):
    """The statement cannot be exported in that format; the message says why and what to do."""


def token_decimal(base_units: int, decimals: int) -> str:
    """An exact decimal string of a token amount given in base units (no float ever): 1500000, 6 -> "1.5"."""
    whole, fraction = divmod(base_units, 10**decimals)
    digits = f"{fraction:0{decimals}d}".rstrip("0") if decimals else ""
    return f"{whole}.{digits}" if digits else str(whole)


def _distribution(bundle: dict[str, Any], fmt: str) -> dict[str, Any]:
    dist = bundle.get("distribution")
    key = bundle["epoch"]["key"]
    if dist is None:
        raise ExportRefused(f"epoch {key}'s statement is {bundle['format']}, written before payout wallets: it has no distribution "
                            f"to export as {fmt}; a correction issues a new revision that has one")
    if dist["token"] is None:
        raise ExportRefused(f"epoch {key}'s pinned policy names no payout token, so its statement has no token amounts for {fmt}; "
                            "add a payout: section (token_address, decimals, token_units_per_credit) to the policy of later epochs")
    return dist


def safe_airdrop_csv(bundle: dict[str, Any]) -> bytes:
    """The payable lines in the Safe CSV Airdrop app's format: one erc20 row per wallet-bound line."""
    dist = _distribution(bundle, "safe-airdrop")
    token = dist["token"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SAFE_AIRDROP_COLUMNS)
    for line in dist["lines"]:
        if line["status"] == "payable":
            writer.writerow(["erc20", token["token_address"], line["wallet"], token_decimal(int(line["token_amount"]), token["decimals"]), ""])
    return out.getvalue().encode("utf-8")


def held_csv(bundle: dict[str, Any]) -> bytes:
    """The lines a payout does not pay yet (claimants, people without a wallet), with the credit they keep."""
    dist = bundle.get("distribution") or {"lines": []}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HELD_COLUMNS)
    for line in dist["lines"]:
        if line["status"] == "held":
            writer.writerow([spreadsheet_cell(v) for v in (bundle["epoch"]["key"], line["recipient_id"], line["amount_credits"],
                                                           line["token_amount"] or "", line["held_reason"], bundle["statement_hash"])])
    return out.getvalue().encode("utf-8")


def merkle_json(bundle: dict[str, Any]) -> bytes:
    """OpenZeppelin ``StandardMerkleTree.dump()`` JSON of the payable lines (what ``StandardMerkleTree.load`` reads)."""
    dist = _distribution(bundle, "merkle")
    dump = merkle_dump(dist)
    if dump is None:
        raise ExportRefused(f"epoch {bundle['epoch']['key']}'s statement has no wallet-bound line to claim, so no Merkle tree; "
                            "bind payout wallets (credit-pipeline identity bind wallet ADDRESS USER) before finalizing")
    return (json.dumps(dump, indent=1) + "\n").encode("utf-8")


def export_statement(bundle: dict[str, Any], fmt: str) -> bytes:
    """The statement in ``fmt``; ``json`` is the exact canonical bytes that ``statement_hash`` covers."""
    if fmt == "json":
        return statement_bytes(bundle)
    if fmt in ("csv", "safe-csv"):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["epoch", *PAYOUT_COLUMNS, "statement_hash"])
        for line in bundle["payouts"]:
            row = [bundle["epoch"]["key"], *(line[c] for c in PAYOUT_COLUMNS), bundle["statement_hash"]]
            writer.writerow([spreadsheet_cell(v) for v in row] if fmt == "safe-csv" else row)
        return out.getvalue().encode("utf-8")
    if fmt == "md":
        return markdown_report(bundle).encode("utf-8")
    if fmt == "safe-airdrop":
        return safe_airdrop_csv(bundle)
    if fmt == "merkle":
        return merkle_json(bundle)
    raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def recipient_logins(events: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Each recipient's last-known login per platform, from its credited events (``alice``, or ``alice (github), al (discord)``).

    The login of the latest event of each account counts (GitHub logins can be renamed; the numeric id stays).
    A recipient whose events all come from one platform shows the bare login.
    """
    latest: dict[str, dict[str, tuple[datetime, str, str]]] = {}
    for e in events:
        rid, login = e.get("recipient_id"), e.get("platform_login")
        if not rid or not login:
            continue
        source = str(e.get("source") or "")
        seen = latest.setdefault(rid, {}).get(source)
        mark = (_instant(e.get("event_time")), str(e.get("event_id") or ""), str(login))
        if seen is None or mark[:2] > seen[:2]:
            latest[rid][source] = mark
    out = {}
    for rid, by_source in latest.items():
        if len(by_source) == 1:
            out[rid] = next(iter(by_source.values()))[2]
        else:
            out[rid] = ", ".join(f"{mark[2]} ({source})" for source, mark in sorted(by_source.items()))
    return out


def payout_order(payouts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Payout lines by credits, largest first; ties by recipient id."""
    return sorted(payouts, key=lambda p: (-p["amount_credits"], p["recipient_id"]))


def markdown_report(bundle: dict[str, Any]) -> str:
    """The statement as Markdown for people; every value from outside is escaped."""
    m = markdown_cell
    epoch = bundle["epoch"]
    key = m(epoch["key"])
    revision = bundle.get("revision", 1)
    logins = recipient_logins(bundle.get("events") or [])
    counted, not_counted, capped = counted_events(bundle)
    components = ", ".join(f"{m(c['component_id'])} {c['amount']}" for c in bundle["pool"]["components"])
    payouts = payout_order(bundle["payouts"])
    lines = [
        f"# Payout statement, epoch {key}",
        "",
        f"Window `[{epoch['start']}, {epoch['end']})`, finalized {m(epoch.get('finalized_at'))}.",
        f"Pool: **{bundle['pool']['total']}** credits ({components}); "
        f"{sum(p['amount_credits'] for p in payouts)} paid to {len(payouts)} recipients.",
        f"{counted} credited events" + (f" ({not_counted} not counted and {capped} milli-units capped by the policy's rules)"
                                         if not_counted or capped else "")
        + f", algorithm `{m(bundle['algorithm'])}`, policy `{m(bundle['policy_hash'])}`.",
        "",
        "| recipient | login | units | share | credits |",
        "|---|---|---:|---:|---:|",
        *(f"| {m(p['recipient_id'])} | {m(logins.get(p['recipient_id']))} | {p['total_units']} | {p['share']} | {p['amount_credits']} |"
          for p in payouts),
        f"| **total** | | {sum(p['total_units'] for p in payouts)} | | **{sum(p['amount_credits'] for p in payouts)}** |",
        "",
    ]
    adjusted = [a for a in bundle["allocations"] if a["final_units"] != a["proposed_units"]]
    if adjusted:
        lines += ["Adjustments:", "", *(f"- {m(a['recipient_id'])}: {a['proposed_units']} → {a['final_units']} ({m(a['reason'])})"
                                        for a in adjusted), ""]
    approvals = bundle["approvals"]
    expect = " ".join(f"--expect-approver {m(a['signer'])}" for a in approvals)
    if bundle.get("ledger_id"):
        expect += f" --expect-ledger {m(bundle['ledger_id'])}"
    lines += [
        "Approved by " + ", ".join(f"`{m(a['signer'])}` at {m(a['approved_at'])}" for a in approvals) + ".",
        "",
        f"Allocation set hash `{m(bundle['allocation_set_hash'])}`; statement hash `{m(bundle['statement_hash'])}`.",
        f"Revision {revision}" + (f", superseding `{m(bundle['supersedes'])}`." if bundle.get("supersedes") else "."),
        f"Recompute it: `credit-pipeline export --epoch {key} --revision {revision} --format json -o s.json && "
        f"credit-pipeline verify s.json {expect} --expect-policy-hash {m(bundle['policy_hash'])}`.",
        f"Against the ledger: `credit-pipeline verify --epoch {key}`.",
        "",
    ]
    return "\n".join(lines)
