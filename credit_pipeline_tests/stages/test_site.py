"""The static transparency site from real finalized bundles: plain files, local only, escaped, and what a browser shows."""

import copy
import fcntl
import json
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from credit_pipeline.core.merkle import load
from credit_pipeline.core.statement import statement_bytes
from credit_pipeline.stages.site import build_site
from credit_pipeline.stages.verify import verify_file_bytes

from credit_pipeline_tests.stages.test_flow import KEY, week  # noqa: F401
from credit_pipeline_tests.stages.test_weekly_report import ADDRESS, HOSTILE, bundles, hostile, with_distribution  # noqa: F401

OLDER = "2026-02-09"
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr", "area", "base", "embed", "track"}


class Checker(HTMLParser):
    """Balanced tags, and every src/href local (no scheme, no //host)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.refs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.refs.append(value or "")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}> at {self.getpos()}")

    def handle_data(self, data):
        self.text.append(data)


def check_html(path: Path) -> Checker:
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>"), path
    checker = Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack, (path, checker.errors, checker.stack)
    for ref in checker.refs:
        assert ":" not in ref.split("/")[0] and not ref.startswith("//"), f"{path}: {ref!r} leaves the site"
        assert (path.parent / ref.split("?")[0].split("#")[0]).exists(), f"{path}: {ref!r} is a broken link"
    return checker


def chromium() -> str:
    """The headless browser the site is opened in; on a fresh Debian machine it is installed once (the README's
    test command must work there), and a machine where that fails fails these tests with the command to run."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and shutil.which("apt-get"):
        with open(Path(tempfile.gettempdir()) / "credit_pipeline_chromium.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
            if not shutil.which("chromium"):
                subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed: run `apt-get install -y -qq chromium` (the site tests need a real browser)")
    return found


def dump_dom(url: str) -> str:
    done = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", url], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def site(bundles, tmp_path):  # noqa: F811
    first, second = bundles
    latest = hostile(with_distribution(second))
    older = copy.deepcopy(first)
    older["epoch"] = {**older["epoch"], "key": OLDER}  # a second epoch (hashes not recomputed: the site does not verify)
    older.pop("distribution", None)  # and v2-shaped: no distribution
    older["format"] = "credit_pipeline.statement.v2"
    out = tmp_path / "site"
    written = build_site([older, latest, first], out)
    return out, written, first, latest


def test_files_are_written_and_local(site):
    out, written, first, latest = site
    rel = {p.relative_to(out).as_posix() for p in written}
    assert rel == {
        "index.html", "lookup.html", "lookup.js", "style.css", "contributors.json", "contributors.js",
        f"epochs/{KEY}.html", f"epochs/{KEY}/statement-r1.json", f"epochs/{KEY}/statement-r2.json", f"epochs/{KEY}/merkle.json",
        f"epochs/{KEY}/proofs.json",
        f"epochs/{KEY}/report.md", f"epochs/{KEY}/chart.png",
        f"epochs/{OLDER}.html", f"epochs/{OLDER}/statement-r1.json", f"epochs/{OLDER}/report.md", f"epochs/{OLDER}/chart.png",
    }
    assert all(p.is_file() for p in written)
    for page in out.rglob("*.html"):
        check_html(page)
    for path in (out / "lookup.js", out / "style.css"):  # our code (contributors.js is data: logins may hold URLs)
        text = path.read_text("utf-8")
        assert "http://" not in text and "https://" not in text and "fetch(" not in text, path
    # The canonical bytes: the file verifies offline, exactly as exported.
    r1 = (out / "epochs" / KEY / "statement-r1.json").read_bytes()
    assert r1 == statement_bytes(first) and verify_file_bytes(r1).ok
    proofs = json.loads((out / "epochs" / KEY / "proofs.json").read_text())
    assert proofs["merkle"]["root"] == latest["distribution"]["merkle"]["root"] and proofs["lines"][0]["proof"]
    tree = load(json.loads((out / "epochs" / KEY / "merkle.json").read_text()))  # OpenZeppelin's StandardMerkleTree.load format
    payable = [line for line in latest["distribution"]["lines"] if line["status"] == "payable"]
    assert [(a.lower(), n) for a, n in tree.values] == [(line["wallet"].lower(), int(line["token_amount"])) for line in payable]
    index = json.loads((out / "contributors.json").read_text())
    alice = next(p for p in index["people"] if p["recipient_id"] == "alice")
    assert [line["epoch"] for line in alice["lines"]] == [KEY, OLDER] and alice["wallets"] == [ADDRESS]
    assert {"source": "github", "platform_user_id": "100", "login": HOSTILE} in alice["accounts"]


def test_no_reports_writes_no_report_files(bundles, tmp_path):
    written = build_site(bundles, tmp_path / "s", reports=False)
    assert not [p for p in written if p.name in ("report.md", "chart.png")]
    assert "report.md" not in (tmp_path / "s" / "epochs" / f"{KEY}.html").read_text()


def test_pages_escape_outside_text(site):
    out, _, _, _ = site
    page = (out / "epochs" / f"{KEY}.html").read_text("utf-8")
    assert HOSTILE in page  # plain text in a cell; never a link
    evil = copy.deepcopy(json.loads((out / "epochs" / KEY / "statement-r2.json").read_bytes()))
    for e in evil["events"]:
        e["platform_login"] = '<script>alert(1)</script>"'
    build_site([evil], out / "evil")
    text = (out / "evil" / "epochs" / f"{KEY}.html").read_text("utf-8")
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in text
    assert "</script>" not in (out / "evil" / "contributors.js").read_text()


def test_refuses_an_epoch_key_that_is_not_a_file_name(bundles, tmp_path):
    bad = copy.deepcopy(bundles[0])
    bad["epoch"]["key"] = "../../etc"
    with pytest.raises(ValueError, match="cannot name a file"):
        build_site([bad], tmp_path)


def test_browser_lists_epochs_newest_first(site):
    out, _, _, latest = site
    dom = dump_dom((out / "index.html").as_uri())
    assert f'href="epochs/{KEY}.html"' in dom and dom.index(KEY) < dom.index(OLDER)
    assert latest["statement_hash"] in dom


def test_browser_shows_the_epoch_payouts_hashes_and_verify_command(site):
    out, _, first, latest = site
    dom = dump_dom((out / "epochs" / f"{KEY}.html").as_uri())
    assert "<h2>Payouts</h2>" in dom and latest["statement_hash"] in dom and first["statement_hash"] in dom
    for p in latest["payouts"]:
        assert f"<td>{p['recipient_id']}</td>" in dom and f'<td class="num">{p["amount_credits"]}</td>' in dom
    signer = latest["approvals"][0]["signer"]
    assert f"credit-pipeline verify statement-r2.json --expect-approver {signer}" in dom
    assert f"credit-pipeline verify statement-r1.json --expect-approver {signer}" in dom
    assert latest["distribution"]["merkle"]["root"] in dom and 'href="2026-02-16/statement-r1.json"' in dom


def test_browser_lookup_by_login_account_and_wallet(site):
    out, _, _, latest = site
    credits = {p["recipient_id"]: p["amount_credits"] for p in latest["payouts"]}
    dom = dump_dom((out / "lookup.html").as_uri() + "?q=bob")  # bob is unclaimed: github account 200
    assert "1 contributor found." in dom and "<h2>github:200 (bob)</h2>" in dom
    assert f'<td class="num">{credits["github:200"]}</td>' in dom and f'href="epochs/{KEY}.html"' in dom
    dom = dump_dom((out / "lookup.html").as_uri() + "?q=" + ADDRESS.upper()[2:])
    assert "<h2>alice" in dom and "payable" in dom and f'<td class="num">{credits["alice"]}</td>' in dom
    assert dom.count("<tr>") == 3  # header + this epoch + the older one
    dom = dump_dom((out / "lookup.html").as_uri() + "?q=nobody-at-all")
    assert "0 contributors found." in dom
