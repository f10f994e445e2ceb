"""The weekly forum report of a finalized statement bundle: a chart (PNG) and Markdown.

Pure functions over a bundle (v2, or v3 with an optional ``distribution``): nothing here reads the
ledger. Credits per source are exact integers: each payout line's credits are split over the
sources in proportion to that recipient's counted units per source (largest remainder, ties by
source name), so every line's split sums to its credits and the sources sum to the pool paid.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from credit_pipeline.core.recipients import is_claimant
from credit_pipeline.core.statement import counted_events
from credit_pipeline.stages.escaping import markdown_cell
from credit_pipeline.stages.export import payout_order, recipient_logins

SOURCES = ("github", "discord")
UNATTRIBUTED = "unattributed"  # credits of a recipient with no counted units on any source (a correction alone)
CHART_SIZE_PX = (1200, 600)
CHART_DPI = 100
TOP_PEOPLE = 15
TOP_TABLE = 25
_PLAIN_CODE = re.compile(r"[0-9A-Za-z_.:+\-]+")  # safe inside a Markdown code span (hashes, addresses, keys)


# -- numbers -------------------------------------------------------------------------------


def event_units(e: dict[str, Any]) -> int:
    """An event's units: the rules' decision when present, else its weight; 0 when the rules did not count it."""
    decision = e.get("decision")
    if decision is not None:
        return int(decision.get("units") or 0) if decision.get("counted") else 0
    return int(e.get("weight") or 0)


def units_by_source(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counted units per recipient and source."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in events:
        rid = e.get("recipient_id")
        if rid:
            out[rid][str(e.get("source") or UNATTRIBUTED)] += event_units(e)
    return out


def split_largest_remainder(amount: int, weights: dict[str, int]) -> dict[str, int]:
    """``amount`` over ``weights`` in integers summing to ``amount`` (largest remainder, ties by key)."""
    total = sum(weights.values())
    if amount == 0:
        return {}
    if total <= 0:
        return {UNATTRIBUTED: amount}
    floors = {k: w * amount // total for k, w in weights.items()}
    residual = amount - sum(floors.values())
    for k in sorted(weights, key=lambda k: (-(weights[k] * amount % total), k))[:residual]:
        floors[k] += 1
    return {k: v for k, v in floors.items() if v}


def line_credits_by_source(bundle: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Each payout line's credits split over the sources of its recipient's counted units."""
    units = units_by_source(bundle.get("events") or [])
    return {p["recipient_id"]: split_largest_remainder(int(p["amount_credits"]), dict(units.get(p["recipient_id"], {})))
            for p in bundle["payouts"]}


def credits_by_source(bundle: dict[str, Any]) -> dict[str, int]:
    """Credits paid per source (github and discord always present); sums to the credits paid."""
    out = dict.fromkeys(SOURCES, 0)
    for split in line_credits_by_source(bundle).values():
        for source, credits in split.items():
            out[source] = out.get(source, 0) + credits
    return out


def credits_paid(bundle: dict[str, Any]) -> int:
    return sum(int(p["amount_credits"]) for p in bundle["payouts"])


def distribution_lines(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The v3 distribution lines by recipient ({} for a v2 bundle)."""
    return {line["recipient_id"]: line for line in ((bundle.get("distribution") or {}).get("lines") or [])}


# -- chart ---------------------------------------------------------------------------------


def chart_label(text: Any, limit: int = 28) -> str:
    """Outside text as a literal chart label: one line, no mathtext (``$``), at most ``limit`` characters."""
    label = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", str(text or "")).strip()
    if len(label) > limit:
        label = label[: limit - 1] + "…"
    return label.replace("$", r"\$")


def report_chart_png(bundle: dict[str, Any]) -> bytes:
    """A 1200x600 PNG: credits per person (top 15 + others) on the left, per source on the right."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    logins = recipient_logins(bundle.get("events") or [])
    payouts = [p for p in payout_order(bundle["payouts"]) if p["amount_credits"] > 0]
    people = [(chart_label(logins.get(p["recipient_id"]) or p["recipient_id"]) + (" (unclaimed)" if is_claimant(p["recipient_id"]) else ""),
               int(p["amount_credits"])) for p in payouts[:TOP_PEOPLE]]
    rest = payouts[TOP_PEOPLE:]
    if rest:
        people.append((f"others ({len(rest)})", sum(int(p["amount_credits"]) for p in rest)))
    sources = [(s, c) for s, c in credits_by_source(bundle).items() if c or s in SOURCES]

    fig = Figure(figsize=(CHART_SIZE_PX[0] / CHART_DPI, CHART_SIZE_PX[1] / CHART_DPI), dpi=CHART_DPI)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    key = chart_label(bundle["epoch"]["key"], 40)
    if people:
        names, values = zip(*reversed(people))
        left.bar_label(left.barh(range(len(values)), values, color="#4c72b0"), labels=[str(v) for v in values], fontsize=8)
        left.set_yticks(range(len(values)), labels=names, fontsize=8)
    else:
        left.text(0.5, 0.5, "no credits paid", ha="center", va="center", transform=left.transAxes)
        left.set_yticks([])
    left.set_title(f"Credits per person, epoch {key}")
    left.set_xlabel("credits")
    names, values = zip(*sources)
    bars = right.bar(range(len(values)), values, color=["#55a868", "#8172b3", "#c44e52", "#937860"][: len(values)])
    right.set_xticks(range(len(values)), labels=[chart_label(n) for n in names])
    right.bar_label(bars, labels=[str(v) for v in values], fontsize=9)
    right.set_title(f"Credits per source (pool {int(bundle['pool']['total'])})")
    right.set_ylabel("credits")
    fig.tight_layout()
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a login with glyphs the bundled font lacks draws boxes, not a failure
        fig.savefig(out, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return out.getvalue()


# -- markdown ------------------------------------------------------------------------------


def code(value: Any) -> str:
    """A hash, address or key as a code span when it is plain; otherwise escaped text (a code span has no escapes)."""
    text = "" if value is None else str(value)
    return f"`{text}`" if _PLAIN_CODE.fullmatch(text) else markdown_cell(text)


def verify_commands(bundle: dict[str, Any], file_name: str) -> list[str]:
    """The exact offline commands that recompute ``bundle`` saved as ``file_name``."""
    plain = lambda v: v if _PLAIN_CODE.fullmatch(str(v or "")) else "INVALID"  # noqa: E731 (never shell metacharacters)
    key, revision = plain(bundle["epoch"]["key"]), int(bundle.get("revision", 1))
    expect = "".join(f" --expect-approver {plain(a['signer'])}" for a in bundle["approvals"])
    expect += f" --expect-policy-hash {plain(bundle['policy_hash'])}"
    if bundle.get("ledger_id"):
        expect += f" --expect-ledger {plain(bundle['ledger_id'])}"
    return [f"credit-pipeline verify {file_name}{expect}",
            f"# or, with ledger access: credit-pipeline export --epoch {key} --revision {revision} --format json -o {file_name}"]


def _percent(part: int, whole: int) -> str:
    return f"{part * 100 // whole}.{part * 10000 // whole % 100:02d}%" if whole else "0.00%"


def weekly_report_markdown(bundle: dict[str, Any], *, chart_name: str = "chart.png", extras: dict[str, Any] | None = None) -> str:
    """The forum post of a finalized epoch; every value from outside is escaped."""
    m = markdown_cell
    epoch = bundle["epoch"]
    key, revision = epoch["key"], int(bundle.get("revision", 1))
    logins = recipient_logins(bundle.get("events") or [])
    counted, not_counted, capped = counted_events(bundle)
    payouts = payout_order(bundle["payouts"])
    paid, pool = credits_paid(bundle), int(bundle["pool"]["total"])
    people = [p for p in payouts if not is_claimant(p["recipient_id"])]
    dist = bundle.get("distribution")
    lines_by_rid = distribution_lines(bundle)
    lines = [
        f"# Weekly contributor credits, epoch {m(key)}",
        "",
        f"Window {m(epoch['start'])} to {m(epoch['end'])} (UTC, end exclusive), finalized {m(epoch.get('finalized_at'))}, revision {revision}.",
        "",
        f"- Pool: **{pool}** credits ("
        + ", ".join(f"{m(c['component_id'])} {int(c['amount'])}" for c in bundle["pool"]["components"]) + ")",
        f"- Paid: **{paid}** credits to {sum(1 for p in payouts if p['amount_credits'] > 0)} recipients "
        f"(people: {len(people)}; unclaimed platform accounts: {len(payouts) - len(people)})",
        f"- Credited events: {counted}; events the rules did not count: {not_counted}"
        + (f"; milli-units capped: {capped}" if capped else ""),
        "",
        f"![Credits per person and per source]({quote(chart_name)})",
        "",
        "## Top contributors",
        "",
        "| # | login(s) | recipient | credits | share |",
        "|---:|---|---|---:|---:|",
        *(f"| {i} | {m(logins.get(p['recipient_id']))} | {m(p['recipient_id'])} | {p['amount_credits']} | {_percent(p['amount_credits'], paid)} |"
          for i, p in enumerate(people[:TOP_TABLE], 1)),
    ]
    if len(people) > TOP_TABLE:
        rest = people[TOP_TABLE:]
        lines.append(f"| | {len(rest)} more | | {sum(p['amount_credits'] for p in rest)} | |")
    lines.append("")

    claimants = [p for p in payouts if is_claimant(p["recipient_id"]) and p["amount_credits"] > 0]
    held = [line for line in lines_by_rid.values() if line.get("status") == "held"]
    lines += ["## Unresolved and held credit", ""]
    if claimants:
        lines += ["Credits of platform accounts not yet linked to a person (they stay with the account until it is bound):", "",
                  "| account | login | credits |", "|---|---|---:|",
                  *(f"| {m(p['recipient_id'])} | {m(logins.get(p['recipient_id']))} | {p['amount_credits']} |" for p in claimants), ""]
    people_held = [h for h in held if not is_claimant(h["recipient_id"])]  # the claimants above are held too
    if people_held:
        lines += ["People whose credit is held (besides every account above):", "", "| recipient | login | credits | reason |",
                  "|---|---|---:|---|",
                  *(f"| {m(h['recipient_id'])} | {m(logins.get(h['recipient_id']))} | {int(h['amount_credits'])} | {m(h.get('held_reason'))} |"
                    for h in sorted(people_held, key=lambda h: (-int(h["amount_credits"]), h["recipient_id"]))), ""]
    if dist is not None:
        lines += [f"Payable: {int(dist.get('payable_credits') or 0)} credits; held: {int(dist.get('held_credits') or 0)} credits.", ""]
    if not claimants and not held:
        lines += ["None.", ""]

    by_source = credits_by_source(bundle)
    lines += ["## Credits per source", "", "| source | credits | share |", "|---|---:|---:|",
              *(f"| {m(s)} | {c} | {_percent(c, paid)} |" for s, c in by_source.items()), ""]

    if extras:
        lines += ["## Collection", ""]
        if extras.get("late_events") is not None:
            lines += [f"Late events (arrived after the window closed): {int(extras['late_events'])}.", ""]
        if extras.get("completeness"):
            lines += ["| stream | expected | collected | ok |", "|---|---:|---:|---|",
                      *(f"| {m(c.get('stream'))} | {m(c.get('expected'))} | {m(c.get('collected'))} | {'yes' if c.get('ok') else '**no**'} |"
                        for c in extras["completeness"]), ""]

    lines += ["## Integrity", "",
              f"- Policy hash: {code(bundle['policy_hash'])}",
              f"- Allocation set hash: {code(bundle['allocation_set_hash'])}",
              f"- Statement hash: {code(bundle['statement_hash'])}",
              f"- Revision {revision}" + (f", supersedes {code(bundle['supersedes'])}" if bundle.get("supersedes") else " (first statement)"),
              "- Approved by: " + (", ".join(f"{code(a['signer'])} at {m(a['approved_at'])}" for a in bundle["approvals"]) or "nobody")]
    if dist is not None:
        token = dist.get("token")
        lines.append("- Token: " + (f"{code(token.get('token_address'))}, {int(token.get('decimals'))} decimals, "
                                    f"{int(token.get('token_units_per_credit'))} base units per credit" if token else "none (credits only)"))
        merkle = dist.get("merkle")
        if merkle:
            lines.append(f"- Merkle root: {code(merkle.get('root'))} ({m(merkle.get('format'))}, {int(merkle.get('claims') or 0)} claims, "
                         f"{m(merkle.get('total_token_amount'))} token base units)")
    file_name = f"statement-{key}.json" if _PLAIN_CODE.fullmatch(str(key)) else "statement.json"
    lines += ["", "Verify it yourself, offline, from the statement file:", "", "```sh", *verify_commands(bundle, file_name), "```", ""]
    return "\n".join(lines)
