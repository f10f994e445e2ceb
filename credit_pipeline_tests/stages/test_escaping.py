"""Text from outside is inert in every Markdown table and CSV the UI or an export shows."""

import re

from hypothesis import given
from hypothesis import strategies as st

from credit_pipeline.stages.escaping import MAX_CELL, markdown_cell, spreadsheet_cell
from credit_pipeline.stages.export import export_statement

DANGEROUS = set("\\`*_[]()!|<>~")


@given(st.text(max_size=300))
def test_a_markdown_cell_is_one_line_and_every_markup_character_is_escaped(text):
    cell = markdown_cell(text)
    assert "\n" not in cell and "\r" not in cell
    i = 0
    while i < len(cell):
        if cell[i] == "\\":
            assert i + 1 < len(cell) and cell[i + 1] in DANGEROUS, cell
            i += 2
            continue
        assert cell[i] not in DANGEROUS, cell
        i += 1
    unescaped = re.sub(r"\\(.)", r"\1", cell)
    collapsed = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", text).strip()
    assert unescaped == (collapsed if len(collapsed) <= MAX_CELL else collapsed[: MAX_CELL - 1] + "…")


def test_links_images_and_pipes_are_literal():
    assert markdown_cell("a|b") == "a\\|b"
    assert markdown_cell("![x](javascript:alert(1))") == "\\!\\[x\\]\\(javascript:alert\\(1\\)\\)"
    assert markdown_cell("<img src=x onerror=y>") == "\\<img src=x onerror=y\\>"
    assert markdown_cell("line\nbreak") == "line break"


def test_the_md_export_escapes_what_it_did_not_write():
    bundle = {"epoch": {"key": "2026-02-16", "start": "s", "end": "e", "finalized_at": "f"}, "pool": {"total": 5, "components": []},
              "events": [], "algorithm": "weight-sum-v1", "policy_hash": "p", "statement_hash": "h", "allocation_set_hash": "a",
              "payouts": [{"recipient_id": "x|y", "total_units": 1, "share": "1.000000", "amount_credits": 5}],
              "allocations": [{"recipient_id": "x|y", "proposed_units": 1, "final_units": 2, "reason": "[click](http://evil)\n| x |"}],
              "approvals": [{"signer": "0xabc", "approved_at": "t"}]}
    text = export_statement(bundle, "md").decode()
    assert "| x\\|y |" in text and "\\[click\\]\\(http://evil\\) \\| x \\|" in text
    assert "--epoch 2026-02-16" in text and "--expect-approver 0xabc" in text and "KEY" not in text
    assert spreadsheet_cell("=1+1") == "'=1+1" and spreadsheet_cell("alice") == "alice"
