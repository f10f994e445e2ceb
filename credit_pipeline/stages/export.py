"""Statement exports: the canonical JSON bundle, CSV, spreadsheet-safe CSV and a Markdown report."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from credit_pipeline.core.statement import counted_events, statement_bytes
from credit_pipeline.stages.escaping import markdown_cell, spreadsheet_cell

FORMATS = ("json", "csv", "safe-csv", "md")
PAYOUT_COLUMNS = ("recipient_id", "total_units", "share", "amount_credits")


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
