"""The strict policy loader: what a reader of the file sees is what the pipeline gets."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from credit_pipeline.core.policy import MAX_WEIGHT, PolicyError, parse_policy, validate_policy
from credit_pipeline.core.policy_yaml import MAX_POLICY_BYTES

ROOT_POLICY = (Path(__file__).resolve().parents[2] / "policy.yaml").read_text()
LINE = "  github:pr_merged: 8000\n"


def with_weight(text: str) -> str:
    return ROOT_POLICY.replace(LINE, f"  github:pr_merged: {text}\n")


def problems(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    return str(caught.value)


def test_the_shipped_policy_reads_as_before_and_hashes_the_same():
    assert LINE in ROOT_POLICY
    assert parse_policy(ROOT_POLICY).policy_hash == validate_policy(yaml.safe_load(ROOT_POLICY)).policy_hash
    assert parse_policy(ROOT_POLICY).weights["github:pr_merged"] == 8000


def test_a_duplicated_key_is_refused_naming_both_lines():
    message = problems(ROOT_POLICY.replace(LINE, LINE + "  github:pr_merged: 1\n"))
    assert "key 'github:pr_merged' is given twice" in message and "first on line" in message


@pytest.mark.parametrize("written", ["010", "0o10", "0x10", "1:30", "1_000", "0b11", "+8", "8_000"])
def test_yaml_1_1_number_forms_are_not_numbers(written):
    message = problems(with_weight(written))
    assert "weights.github:pr_merged: must be a whole number" in message and "only plain decimal integers" in message


@pytest.mark.parametrize("written, expected", [("8.5", "whole number"), ("1e20", "whole number"), ("-5", ">= 0"),
                                               ("100000000000000000000", "at most 10**12"), ("yes", "whole number"),
                                               ("true", "whole number"), ("", "whole number"), (".inf", "whole number")])
def test_other_bad_weights_name_the_key(written, expected):
    message = problems(with_weight(written))
    assert "weights.github:pr_merged" in message and expected in message


def test_anchors_aliases_and_tags_are_refused_with_a_short_message():
    bomb = ("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
            + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)))
    assert len(bomb.encode()) < 700
    message = problems(bomb)
    assert "anchors and aliases" in message and len(message) < 300
    assert "tag" in problems(with_weight("!!int 010"))
    assert "tag" in problems(with_weight("!!python/object:os.system x"))


def test_size_is_capped_and_bad_values_are_excerpted():
    assert f"at most {MAX_POLICY_BYTES} bytes" in problems(ROOT_POLICY + "#" + "x" * MAX_POLICY_BYTES)
    long_value = "z" * 100_000
    message = problems(ROOT_POLICY.replace('approvers: ["0x1111111111111111111111111111111111111111"]', f'approvers: ["{long_value}"]'))
    assert len(message) < 400 and "…" in message


def test_unquoted_snowflakes_and_dates_still_read_exactly():
    text = ROOT_POLICY.replace('guild_id: "81384788765712384"', "guild_id: 81384788765712384")
    assert parse_policy(text).sources.discord.guild_id == "81384788765712384"
    assert parse_policy(ROOT_POLICY).epoch.anchor.isoformat() == "2026-01-05"


@given(st.integers(0, MAX_WEIGHT))
def test_every_plain_decimal_weight_reads_as_itself(n):
    assert parse_policy(with_weight(str(n))).weights["github:pr_merged"] == n


@given(st.integers(1, 10**9), st.sampled_from(["0{:d}", "{:#x}", "{:#o}", "{:_d}", "0{:d}:00"]))
def test_no_other_spelling_of_a_number_is_silently_converted(n, form):
    written = form.format(n)
    if written == str(n):  # {:_d} of a small number is plain decimal
        assert parse_policy(with_weight(written)).weights["github:pr_merged"] == n
    else:
        with pytest.raises(PolicyError):
            parse_policy(with_weight(written))


APPROVER = 'approvers: ["0x1111111111111111111111111111111111111111"]'
BASE = "  base_issuance: 10000          # credits per epoch\n"


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p.replace(APPROVER, 'approvers: ["alice"]'), "approvers"),
    (lambda p: p.replace(APPROVER, 'approvers: ["0x11111111111111111111111111111111111111"]'), "approvers"),  # 38 hex digits
    (lambda p: p.replace(APPROVER, "approvers: []"), "approvers"),
    (lambda p: p.replace(APPROVER, "approvers: true"), "approvers"),
    (lambda p: p.replace("pool:\n" + BASE, ""), "pool"),
    (lambda p: p.replace(BASE, "  base_issuance: -1\n"), "base_issuance"),
    (lambda p: p.replace(BASE, "  base_issuance: 1.5\n"), "base_issuance"),
    (lambda p: p.replace(BASE, "  base_issuance: true\n"), "base_issuance"),
    (lambda p: p.replace(BASE, "  base_issuance: 1" + "0" * 61 + "\n"), "base_issuance"),
    (lambda p: p + "bonus_weights: {}\n", "bonus_weights"),
    (lambda p: p.replace("version: 2", "version: true"), "version"),
    (lambda p: p.replace("  anchor: 2026-01-05", "  anchor: 2026-01-06"), "anchor"),
    (lambda p: p.replace("  anchor: 2026-01-05", '  anchor: "2026-01-05\\u0000"'), "anchor"),
    (lambda p: p.replace(LINE, "  github:pr_merged: 8000\n  github:stars: 5\n"), "github:stars"),
], ids=["approver not an address", "approver too short", "no approvers", "approvers a boolean", "no base issuance",
        "negative base issuance", "float base issuance", "boolean base issuance", "base issuance too large", "unknown key",
        "boolean version", "anchor not a Monday", "anchor with NUL", "unknown event type"])
def test_every_other_bad_policy_names_the_key(edit, expected):
    assert expected in problems(edit(ROOT_POLICY))


def test_a_bad_policy_file_exits_2_with_one_line(tmp_path, capsys):
    from credit_pipeline.cli import main

    bad = tmp_path / "policy.yaml"
    bad.write_text(ROOT_POLICY.replace(APPROVER, 'approvers: ["alice"]'))
    assert main(["policy", "check", "--policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "approvers" in err, err
