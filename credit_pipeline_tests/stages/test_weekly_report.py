"""The weekly forum report: an exact per-source split, a real PNG and escaped Markdown, from real finalized bundles."""

import copy
import re
import struct

import pytest

from credit_pipeline.stages.admin import bind_account, correct_recipient
from credit_pipeline.stages.finalize import finalize_epoch
from credit_pipeline.stages.weekly_report import (
    credits_by_source, line_credits_by_source, report_chart_png, split_largest_remainder, weekly_report_markdown,
)

from credit_pipeline_tests.stages.test_flow import KEY, POLICY, week  # noqa: F401
from credit_pipeline_tests.stages.test_integrity import approve_current, reviewed

HOSTILE = "evil|name [x](http://e)\n# heading"
ADDRESS = "0x" + "ab" * 20


@pytest.fixture
def bundles(store, week):  # noqa: F811
    """Revision 1 and its correction, revision 2, of a real epoch on PostgreSQL (alice bound, bob and a Discord user unclaimed)."""
    bind_account(store, "github", "100", "alice", POLICY, actor="admin")
    reviewed(store)
    approve_current(store)
    first = finalize_epoch(store, KEY).bundle
    correct_recipient(store, KEY, "github:200", 12000, "the release review was left out", actor="admin")
    approve_current(store)
    return [first, finalize_epoch(store, KEY).bundle]


def with_distribution(bundle: dict) -> dict:
    """A v3-shaped bundle: a real one with a distribution (alice payable with a proof, the rest held)."""
    out = copy.deepcopy(bundle)
    lines = []
    for p in out["payouts"]:
        payable = p["recipient_id"] == "alice"
        lines.append({
            "recipient_id": p["recipient_id"], "amount_credits": p["amount_credits"], "wallet": ADDRESS if payable else None,
            "token_amount": str(p["amount_credits"] * 10**18) if payable else None,
            "status": "payable" if payable else "held", "held_reason": None if payable else "no wallet bound",
            "proof": ["0x" + "cd" * 32] if payable else None,
        })
    payable = sum(line["amount_credits"] for line in lines if line["status"] == "payable")
    out["format"] = "credit_pipeline.statement.v3"
    out["distribution"] = {
        "token": {"token_address": "0x" + "12" * 20, "decimals": 18, "token_units_per_credit": 10**18},
        "lines": lines,
        "merkle": {"format": "standard-v1", "leaf_encoding": ["address", "uint256"], "root": "0x" + "ef" * 32, "claims": 1,
                   "total_token_amount": str(payable * 10**18)},
        "held_credits": sum(p["amount_credits"] for p in out["payouts"]) - payable, "payable_credits": payable,
    }
    return out


def v2_shaped(bundle: dict) -> dict:
    out = copy.deepcopy(bundle)
    out.pop("distribution", None)
    out["format"] = "credit_pipeline.statement.v2"
    return out


def hostile(bundle: dict) -> dict:
    out = copy.deepcopy(bundle)
    for e in out["events"]:
        if e["recipient_id"] == "alice":
            e["platform_login"] = HOSTILE
    return out


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(("amount", "weights", "expected"), [
    (10, {"github": 1, "discord": 1}, {"github": 5, "discord": 5}),
    (1, {"github": 1, "discord": 1}, {"discord": 1}),  # tie: by source name
    (100, {"github": 2, "discord": 1}, {"github": 67, "discord": 33}),
    (7, {"github": 0}, {"unattributed": 7}),
    (0, {"github": 3}, {}),
])
def test_split_is_largest_remainder_and_exact(amount, weights, expected):
    assert split_largest_remainder(amount, weights) == expected


def test_credits_by_source_sum_to_the_credits_paid(bundles):
    for bundle in bundles:
        paid = sum(p["amount_credits"] for p in bundle["payouts"])
        assert paid == bundle["pool"]["total"]
        by_source = credits_by_source(bundle)
        assert sum(by_source.values()) == paid and set(by_source) >= {"github", "discord"}
        assert by_source["discord"] > 0 and by_source["github"] > 0
        for p in bundle["payouts"]:
            assert sum(line_credits_by_source(bundle)[p["recipient_id"]].values()) == p["amount_credits"]


def test_credits_by_source_uses_the_rules_decisions():
    bundle = {"payouts": [{"recipient_id": "a", "amount_credits": 10, "total_units": 3, "share": "1.000000"}], "events": [
        {"recipient_id": "a", "source": "github", "weight": 5, "decision": {"counted": True, "units": 2}},
        {"recipient_id": "a", "source": "discord", "weight": 9, "decision": {"counted": False, "units": 0}},
        {"recipient_id": "a", "source": "discord", "weight": 1, "decision": {"counted": True, "units": 1}},
    ]}
    assert credits_by_source(bundle) == {"github": 7, "discord": 3}


def test_chart_is_a_png_of_the_fixed_size(bundles):
    data = report_chart_png(hostile(bundles[-1]))
    assert png_size(data) == (1200, 600)
    from PIL import Image
    import io

    assert Image.open(io.BytesIO(data)).size == (1200, 600)


def test_chart_of_many_people_groups_the_rest(bundles):
    bundle = copy.deepcopy(bundles[-1])
    bundle["payouts"] = [{"recipient_id": f"p{i:02d}", "total_units": 1, "share": "0.0", "amount_credits": 10 + i} for i in range(30)]
    assert png_size(report_chart_png(bundle)) == (1200, 600)


def test_markdown_has_the_hashes_the_verify_command_and_escapes_logins(bundles):
    first, second = bundles
    text = weekly_report_markdown(hostile(second), extras={"late_events": 2, "completeness": [
        {"stream": "github:acme/widgets|x", "expected": 5, "collected": 5, "ok": True}]})
    for value in (second["statement_hash"], second["allocation_set_hash"], second["policy_hash"], first["statement_hash"]):
        assert f"`{value}`" in text
    signer = second["approvals"][0]["signer"]
    assert f"credit-pipeline verify statement-{KEY}.json --expect-approver {signer}" in text
    assert f"Weekly contributor credits, epoch {KEY}" in text and "![Credits per person and per source](chart.png)" in text
    assert "Revision 2, supersedes" in text and "Late events (arrived after the window closed): 2." in text
    assert HOSTILE not in text and "evil|name" not in text and "[x](http://e)" not in text
    assert r"evil\|name \[x\]\(http://e\) # heading" in text  # one line, literal
    assert "github:acme/widgets\\|x" in text
    assert "| github:200 |" in text and "| discord:300 |" in text  # unclaimed accounts listed
    alice_row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert len(re.findall(r"(?<!\\)\|", alice_row)) == 6  # the login cannot add a column
    assert "Merkle root" not in text


def test_markdown_of_a_distribution_shows_held_lines_root_and_token(bundles):
    bundle = with_distribution(bundles[-1])
    text = weekly_report_markdown(bundle, chart_name="chart 2.png")
    assert "0x" + "ef" * 32 in text and "0x" + "12" * 20 in text and "(chart%202.png)" in text
    held_people = [x for x in bundle["distribution"]["lines"] if x["status"] == "held" and ":" not in x["recipient_id"]]
    assert ("People whose credit is held" in text) == bool(held_people) and ("no wallet bound" in text) == bool(held_people)
    bundle["distribution"]["lines"][0].update(status="held", held_reason="no wallet bound")  # alice, a person
    assert "People whose credit is held" in weekly_report_markdown(bundle) and "no wallet bound" in weekly_report_markdown(bundle)


def test_markdown_of_a_v2_bundle_has_no_distribution_parts(bundles):
    text = weekly_report_markdown(v2_shaped(bundles[0]))
    assert "People whose credit is held" not in text and "Token:" not in text and "Merkle root" not in text
    assert "| github:200 | bob | 3265 |" in text and "(first statement)" in text
    assert png_size(report_chart_png(v2_shaped(bundles[0]))) == (1200, 600)
