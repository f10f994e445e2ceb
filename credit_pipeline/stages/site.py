"""A static transparency site of finalized statement bundles: plain files, no server, no build step.

``build_site`` writes an index of epochs (the latest revision of each, newest first), one page per
epoch (payouts, per-source split, hashes, approvers, revision chain, Merkle root, verify commands),
every revision's canonical bundle bytes, the weekly report and chart, and a contributor lookup that
works from ``file://`` (its data is a script, ``contributors.js``, not fetched JSON). Nothing refers
to another host; every value from a bundle is HTML-escaped.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from credit_pipeline.core.distribution import merkle_dump
from credit_pipeline.core.recipients import is_claimant
from credit_pipeline.core.statement import counted_events, statement_bytes
from credit_pipeline.stages.export import payout_order, recipient_logins
from credit_pipeline.stages.weekly_report import (
    credits_by_source, credits_paid, distribution_lines, line_credits_by_source, report_chart_png, verify_commands,
    weekly_report_markdown,
)

_SAFE_KEY = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # an epoch key used as a file name
ASSETS = ("style.css", "lookup.js")


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def epoch_chains(bundles: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Bundles per epoch key, by revision ascending; refuses an unsafe key or two different bundles of one revision."""
    chains: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for b in bundles:
        key, revision = str(b["epoch"]["key"]), int(b.get("revision", 1))
        if not _SAFE_KEY.fullmatch(key):
            raise ValueError(f"epoch key {key!r} cannot name a file: expected letters, digits, '.', '_' or '-'")
        seen = chains[key].get(revision)
        if seen is not None and seen["statement_hash"] != b["statement_hash"]:
            raise ValueError(f"epoch {key} revision {revision}: two different statements "
                             f"({seen['statement_hash']} and {b['statement_hash']}); pass one bundle per revision")
        chains[key][revision] = b
    return {k: [revs[r] for r in sorted(revs)] for k, revs in sorted(chains.items(), reverse=True)}


def page(title: str, body: str, *, root: str = "", scripts: tuple[str, ...] = ()) -> str:
    """A complete HTML page; ``root`` is the relative path to the site root ('' or '../')."""
    tags = "".join(f'<script src="{root}{s}"></script>\n' for s in scripts)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        # Nothing from another host, even if a value slipped through: the browser refuses it.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; connect-src 'none'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'\">\n"
        f"<title>{e(title)}</title>\n<link rel=\"stylesheet\" href=\"{root}style.css\">\n{tags}</head>\n<body>\n"
        f"<nav><a href=\"{root}index.html\">Epochs</a><a href=\"{root}lookup.html\">Contributor lookup</a></nav>\n"
        f"{body}\n</body>\n</html>\n"
    )


def table(headers: list[str], rows: list[list[Any]], numeric: frozenset[int] = frozenset()) -> str:
    """An HTML table; cells are escaped unless given as ``Markup``."""
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="num"' if i in numeric else ""
        return f"<{tag}{cls}>{value if isinstance(value, Markup) else e(value)}</{tag}>"
    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(headers)) + "</tr>"
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


class Markup(str):
    """HTML this module built itself (already escaped)."""


def link(href: str, text: Any) -> Markup:
    return Markup(f'<a href="{e(href)}">{e(text)}</a>')


def code(value: Any) -> Markup:
    return Markup(f"<code>{e(value)}</code>")


def bundle_name(bundle: dict[str, Any]) -> str:
    return f"statement-r{int(bundle.get('revision', 1))}.json"


def distribution_html(bundle: dict[str, Any], key: str) -> str:
    dist = bundle.get("distribution")
    if dist is None:
        return ""
    token, merkle = dist.get("token"), dist.get("merkle")
    items = [f"<li>Payable: {int(dist.get('payable_credits') or 0)} credits; held: {int(dist.get('held_credits') or 0)} credits.</li>",
             "<li>Token: " + (f"{code(token.get('token_address'))}, {e(token.get('decimals'))} decimals, "
                              f"{e(token.get('token_units_per_credit'))} base units per credit" if token else "none (credits only)") + "</li>"]
    if merkle:
        items.append(f"<li>Merkle root: {code(merkle.get('root'))} ({e(merkle.get('format'))}, leaves "
                     f"{e(', '.join(map(str, merkle.get('leaf_encoding') or [])))}, {e(merkle.get('claims'))} claims, "
                     f"{e(merkle.get('total_token_amount'))} token base units); each line's proof: {link(f'{key}/proofs.json', 'proofs.json')}; "
                     f"the tree as OpenZeppelin's StandardMerkleTree.load reads it: {link(f'{key}/merkle.json', 'merkle.json')}</li>")
    return "<h2>Distribution</h2>\n<ul>\n" + "\n".join(items) + "\n</ul>"


def epoch_page(chain: list[dict[str, Any]], *, reports: bool) -> str:
    latest = chain[-1]
    epoch, key = latest["epoch"], latest["epoch"]["key"]
    logins = recipient_logins(latest.get("events") or [])
    splits = line_credits_by_source(latest)
    by_source = credits_by_source(latest)
    sources = list(by_source)
    dist = distribution_lines(latest)
    counted, not_counted, _ = counted_events(latest)
    headers = ["recipient", "login(s)", "units", "share", "credits", *sources]
    numeric = {2, 4, *range(5, 5 + len(sources))}
    if dist:
        headers += ["status", "wallet", "token amount"]
        numeric.add(len(headers) - 1)
    rows = []
    for p in payout_order(latest["payouts"]):
        rid = p["recipient_id"]
        row = [rid, logins.get(rid, ""), p["total_units"], p["share"], p["amount_credits"], *(splits[rid].get(s, 0) for s in sources)]
        if dist:
            d = dist.get(rid) or {}
            status = d.get("status", "")
            row += [Markup(f'<span class="held">{e(status)}: {e(d.get("held_reason"))}</span>') if status == "held" else status,
                    code(d["wallet"]) if d.get("wallet") else "", d.get("token_amount") or ""]
        rows.append(row)
    chain_rows = [[link(f"{key}/{bundle_name(b)}", f"revision {b.get('revision', 1)}"), code(b["statement_hash"]),
                   code(b["supersedes"]) if b.get("supersedes") else "(first)", b["pool"]["total"], b["epoch"].get("finalized_at"),
                   ", ".join(a["signer"] for a in b["approvals"])] for b in chain]
    broken = [b.get("revision", 1) for prev, b in zip(chain, chain[1:]) if b.get("supersedes") != prev["statement_hash"]]
    commands = "\n".join(cmd for b in chain for cmd in verify_commands(b, bundle_name(b))[:1])
    body = [
        f"<h1>Epoch {e(key)}</h1>",
        f"<p>Window [{e(epoch['start'])}, {e(epoch['end'])}) UTC, finalized {e(epoch.get('finalized_at'))}, "
        f"revision {e(latest.get('revision', 1))} (the one that pays).</p>",
        f"<p>Pool <strong>{e(latest['pool']['total'])}</strong> credits ("
        + ", ".join(f"{e(c['component_id'])} {e(c['amount'])}" for c in latest["pool"]["components"])
        + f"); {credits_paid(latest)} paid to {sum(1 for p in latest['payouts'] if p['amount_credits'] > 0)} recipients; "
        f"{counted} credited events, {not_counted} not counted by the rules.</p>",
        "<h2>Payouts</h2>",
        table(headers, rows, frozenset(numeric)),
        "<h2>Credits per source</h2>",
        table(["source", "credits"], [[s, c] for s, c in by_source.items()], frozenset({1})),
        distribution_html(latest, key),
        "<h2>Hashes and approvals</h2>",
        "<ul>",
        f"<li>Statement hash: {code(latest['statement_hash'])}</li>",
        f"<li>Allocation set hash: {code(latest['allocation_set_hash'])}</li>",
        f"<li>Policy hash: {code(latest['policy_hash'])}</li>",
        f"<li>Ledger: {code(latest.get('ledger_id'))}; format {code(latest.get('format'))}; algorithm {code(latest.get('algorithm'))}</li>",
        "</ul>",
        table(["signer", "approved at", "signature"], [[code(a["signer"]), a["approved_at"], code(a["signature"])] for a in latest["approvals"]]),
        "<h2>Revision chain</h2>",
        table(["statement", "statement hash", "supersedes", "pool", "finalized at", "signers"], chain_rows, frozenset({3})),
        f'<p class="held">The chain is broken at revision(s) {e(broken)}: a revision does not supersede the one before it.</p>' if broken else "",
        "<h2>Verify it yourself</h2>",
        "<p>Download the statement file(s) above and run, offline:</p>",
        f"<pre><code>{e(commands)}</code></pre>",
    ]
    if reports:
        body += ["<h2>Weekly report</h2>", f"<p>{link(f'{key}/report.md', 'report.md')} (Markdown for the forum)</p>",
                 f'<img class="chart" src="{e(quote(key))}/chart.png" width="1200" height="600" alt="Credits per person and per source">']
    return page(f"Epoch {key}", "\n".join(b for b in body if b), root="../")


def index_page(chains: dict[str, list[dict[str, Any]]]) -> str:
    rows = [[link(f"epochs/{key}.html", key), chain[-1]["epoch"]["start"], chain[-1].get("revision", 1), chain[-1]["pool"]["total"],
             sum(1 for p in chain[-1]["payouts"] if p["amount_credits"] > 0), code(chain[-1]["statement_hash"])]
            for key, chain in chains.items()]
    body = ("<h1>Finalized epochs</h1>\n<p>Each epoch's latest revision, newest first. Every number can be recomputed from the "
            "statement files linked on each page.</p>\n"
            + table(["epoch", "window start", "revision", "pool", "recipients", "statement hash"], rows, frozenset({2, 3, 4})))
    return page("Contributor credits", body)


def contributors_index(chains: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Everyone paid in an epoch's latest revision, with their accounts, logins, wallets and lines (newest epoch first)."""
    people: dict[str, dict[str, Any]] = {}
    for key, chain in chains.items():
        latest = chain[-1]
        logins = recipient_logins(latest.get("events") or [])
        splits = line_credits_by_source(latest)
        dist = distribution_lines(latest)
        accounts: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
        for ev in latest.get("events") or []:
            if ev.get("recipient_id") and ev.get("platform_user_id"):
                accounts[ev["recipient_id"]].add((str(ev["source"]), str(ev["platform_user_id"]), str(ev.get("platform_login") or "")))
        for p in latest["payouts"]:
            rid = p["recipient_id"]
            person = people.setdefault(rid, {"recipient_id": rid, "claimant": is_claimant(rid), "logins": [], "accounts": [], "wallets": [], "lines": []})
            if logins.get(rid) and logins[rid] not in person["logins"]:
                person["logins"].append(logins[rid])
            for source, user_id, login in sorted(accounts.get(rid, ())):
                account = {"source": source, "platform_user_id": user_id, "login": login}
                if account not in person["accounts"]:
                    person["accounts"].append(account)
            d = dist.get(rid) or {}
            if d.get("wallet") and d["wallet"] not in person["wallets"]:
                person["wallets"].append(d["wallet"])
            person["lines"].append({
                "epoch": key, "revision": latest.get("revision", 1), "statement_hash": latest["statement_hash"],
                "total_units": p["total_units"], "share": p["share"], "amount_credits": p["amount_credits"], "by_source": splits[rid],
                "status": d.get("status") or ("unclaimed" if is_claimant(rid) else "credited"), "held_reason": d.get("held_reason"),
                "wallet": d.get("wallet"), "token_amount": d.get("token_amount"),
            })
    return {"format": "credit_pipeline.site.contributors.v1", "people": [people[r] for r in sorted(people)]}


def lookup_page() -> str:
    body = ("<h1>Contributor lookup</h1>\n"
            '<form id="lookup" role="search"><label for="q">Name, login, account id, recipient id or wallet</label><br>\n'
            '<input type="search" id="q" name="q" autocomplete="off"> <button type="submit">Search</button></form>\n'
            '<noscript><p>The lookup needs JavaScript; without it, read contributors.json or the epoch pages.</p></noscript>\n'
            '<div id="results"></div>')
    return page("Contributor lookup", body, scripts=("contributors.js", "lookup.js"))


def build_site(bundles: list[dict[str, Any]], out_dir: Path, *, reports: bool = True) -> list[Path]:
    """Write the static site of ``bundles`` (finalized statements, any revisions) into ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    chains = epoch_chains(bundles)
    written: list[Path] = []

    def write(rel: str, data: str | bytes) -> None:
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        written.append(path)

    for name in ASSETS:
        write(name, resources.files("credit_pipeline.stages").joinpath("site_assets", name).read_bytes())
    write("index.html", index_page(chains))
    for key, chain in chains.items():
        for b in chain:
            write(f"epochs/{key}/{bundle_name(b)}", statement_bytes(b))
        latest = chain[-1]
        if latest.get("distribution") is not None:
            write(f"epochs/{key}/proofs.json", json.dumps(latest["distribution"], indent=2, sort_keys=True) + "\n")
            dump = merkle_dump(latest["distribution"])
            if dump is not None:  # what OpenZeppelin's StandardMerkleTree.load reads
                write(f"epochs/{key}/merkle.json", json.dumps(dump, indent=1) + "\n")
        if reports:
            write(f"epochs/{key}/report.md", weekly_report_markdown(latest, chart_name="chart.png"))
            write(f"epochs/{key}/chart.png", report_chart_png(latest))
        write(f"epochs/{key}.html", epoch_page(chain, reports=reports))
    index = contributors_index(chains)
    write("contributors.json", json.dumps(index, indent=1, sort_keys=True) + "\n")
    # A script, not fetched JSON, so the lookup works from file://; '<' escaped so the data can never close a tag.
    write("contributors.js", "window.CREDIT_CONTRIBUTORS = " + json.dumps(index, sort_keys=True).replace("<", "\\u003c") + ";\n")
    write("lookup.html", lookup_page())
    return written
