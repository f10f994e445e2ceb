"""Statement exports: the canonical JSON bundle, CSV, spreadsheet-safe CSV and a Markdown report."""

from __future__ import annotations

import csv
import io
from typing import Any

from credit_pipeline.core.statement import statement_bytes
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


def markdown_report(bundle: dict[str, Any]) -> str:
    """The statement as Markdown for people; every value from outside is escaped."""
    m = markdown_cell
    epoch = bundle["epoch"]
    components = ", ".join(f"{c['component_id']} {c['amount']}" for c in bundle["pool"]["components"])
    lines = [
        f"# Payout statement, epoch {epoch['key']}",
        "",
        f"Window `[{epoch['start']}, {epoch['end']})`, finalized {epoch['finalized_at']}.",
        f"Pool: **{bundle['pool']['total']}** credits ({components}).",
        f"{len(bundle['events'])} credited events, algorithm `{bundle['algorithm']}`, policy `{bundle['policy_hash']}`.",
        "",
        "| recipient | units | share | credits |",
        "|---|---:|---:|---:|",
        *(f"| {m(p['recipient_id'])} | {p['total_units']} | {p['share']} | {p['amount_credits']} |" for p in bundle["payouts"]),
        "",
    ]
    adjusted = [a for a in bundle["allocations"] if a["final_units"] != a["proposed_units"]]
    if adjusted:
        lines += ["Adjustments:", "", *(f"- {m(a['recipient_id'])}: {a['proposed_units']} → {a['final_units']} ({m(a['reason'])})" for a in adjusted), ""]
    lines += [
        "Approved by " + ", ".join(f"`{a['signer']}` at {a['approved_at']}" for a in bundle["approvals"]) + ".",
        "",
        f"Allocation set hash `{bundle['allocation_set_hash']}`; statement hash `{bundle['statement_hash']}`.",
        f"Revision {bundle.get('revision', 1)}" + (f", superseding `{bundle['supersedes']}`." if bundle.get("supersedes") else "."),
        f"Recompute it: `credit-pipeline export --epoch {epoch['key']} --format json -o s.json && credit-pipeline verify s.json "
        + " ".join(f"--expect-approver {a['signer']}" for a in bundle["approvals"]) + "`.",
        "",
    ]
    return "\n".join(lines)
