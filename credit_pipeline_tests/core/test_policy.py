from pathlib import Path

import pytest

from credit_pipeline.core.canonical import canonical_hash
from credit_pipeline.core.policy import MAX_POOL_AMOUNT, MAX_WEIGHT, PolicyError, parse_policy, policy_hash_of, validate_policy

SPEC_POLICY = """
version: 1
epoch:
  anchor: 2026-01-05            # a Monday
sources:
  github:
    repos: [acme/widgets, acme/docs]
    streams: [pull_requests, reviews, issues]
    issue_credit: author
  discord:
    guild_id: "81384788765712384"
    channels: ["381870553235193857", "381870553235193858"]
weights:
  github:pr_merged: 8000
  github:review_submitted: 2000
  github:issue_closed: 1000
  discord:message_sent: 500
exclude:
  github: ["dependabot[bot]", "renovate[bot]"]
  discord: []
unresolved: claimant
pool:
  base_issuance: 10000
approvers: ["0x1111111111111111111111111111111111111111"]
"""


def test_the_spec_example_is_valid():
    policy = parse_policy(SPEC_POLICY)
    assert policy.weight("github", "pr_merged") == 8000
    assert policy.weight("github", "unknown_type") == 0
    assert policy.sources.discord.channels == ["381870553235193857", "381870553235193858"]
    assert policy.is_excluded_account("github", "49699333", "dependabot[bot]")
    assert not policy.is_excluded_account("github", "1", "alice")


def test_zero_stays_zero():
    policy = parse_policy(SPEC_POLICY.replace("discord:message_sent: 500", "discord:message_sent: 0"))
    assert policy.weight("discord", "message_sent") == 0


def test_hash_ignores_formatting_but_not_content():
    policy = parse_policy(SPEC_POLICY)
    reformatted = parse_policy(SPEC_POLICY.replace("# a Monday", "").replace("  github:pr_merged: 8000", "  'github:pr_merged': 8000"))
    assert policy.policy_hash == reformatted.policy_hash
    assert len(policy.policy_hash) == 64
    assert parse_policy(SPEC_POLICY.replace("8000", "8001")).policy_hash != policy.policy_hash


def test_unquoted_snowflakes_are_read_exactly():
    policy = parse_policy(SPEC_POLICY.replace('"381870553235193857"', "381870553235193857"))
    assert policy.sources.discord.channels[0] == "381870553235193857"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("github:pr_merged: 8000", "github:pr_merged: 8.5", "weights.github:pr_merged: must be a whole number of milli-units"),
        ("github:review_submitted: 2000", "github:review_submitted: -1", "weights.github:review_submitted: must be >= 0"),
        ("github:issue_closed: 1000", "github:issue_closed: true", "weights.github:issue_closed: must be a whole number"),
        ("unresolved: claimant", "unresolved: claimant\ncolour: red", "colour: unknown key"),
        ('approvers: ["0x1111111111111111111111111111111111111111"]', 'approvers: ["alice"]', "approvers[0] = 'alice' is not an Ethereum address"),
        ("anchor: 2026-01-05", "anchor: 2026-01-06", "epoch.anchor: 2026-01-06 is a Tuesday"),
        ("github:pr_merged: 8000", "gitlab:pr_merged: 8000", "weights.gitlab:pr_merged: weight keys look like source:event_type"),
        ("base_issuance: 10000", "base_issuance: 10.5", "pool.base_issuance: must be a whole number of credits"),
        ("issue_credit: author", "issue_credit: reviewer", "sources.github.issue_credit"),
    ],
)
def test_each_bad_value_is_named(old, new, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy(SPEC_POLICY.replace(old, new), "policy.yaml")
    assert len(caught.value.problems) == 1, caught.value.problems
    assert message in caught.value.problems[0]
    assert str(caught.value).startswith("policy.yaml: 1 problem(s)")


def test_every_problem_is_reported_at_once():
    text = SPEC_POLICY.replace("8000", "8.5").replace("2000", "-1").replace("unresolved: claimant", "colour: red")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert len(caught.value.problems) == 3


def test_not_a_mapping_or_not_yaml():
    with pytest.raises(PolicyError, match="mapping"):
        parse_policy("- a\n- b\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        parse_policy("weights: [unclosed")
    with pytest.raises(PolicyError, match="version: required key is missing"):
        validate_policy({"epoch": {"anchor": "2026-01-05"}, "weights": {}, "pool": {"base_issuance": 1}})


APPROVER = '["0x1111111111111111111111111111111111111111"]'
NO_APPROVER = "approvers: list at least one approver address; an epoch with none can never be approved"


@pytest.mark.parametrize(
    "old, new, message",
    [
        (APPROVER, "[]", NO_APPROVER),
        (f"approvers: {APPROVER}", "", NO_APPROVER),  # leaving the key out is the same as listing none
        (APPROVER, '["0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222", '
                   '"0x1111111111111111111111111111111111111111"]', "approvers[2] = '0x1111111111111111111111111111111111111111' repeats approvers[0]"),
        (APPROVER, '["0xabcdefabcdefabcdefabcdefabcdefabcdefabcd", "0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD"]', "repeats approvers[0]"),
        (APPROVER, '["0x1111111111111111111111111111111111111111\\n"]', "is not an Ethereum address"),
        (APPROVER, '"0x1111111111111111111111111111111111111111"', "approvers: Input should be a valid list"),
        ("github:pr_merged: 8000", f"github:pr_merged: {MAX_WEIGHT + 1}", "weights.github:pr_merged: must be at most 10**12 milli-units (MAX_WEIGHT)"),
        ("base_issuance: 10000", f"base_issuance: {MAX_POOL_AMOUNT + 1}", "pool.base_issuance: must be at most 10**60 credits (MAX_POOL_AMOUNT)"),
        ("base_issuance: 10000", f"base_issuance: {10**100}", "pool.base_issuance: must be at most 10**60 credits"),
    ],
)
def test_approvers_and_bounds(old, new, message):
    assert old in SPEC_POLICY
    with pytest.raises(PolicyError) as caught:
        parse_policy(SPEC_POLICY.replace(old, new), "policy.yaml")
    assert len(caught.value.problems) == 1, caught.value.problems
    assert message in caught.value.problems[0], caught.value.problems[0]


def test_bounds_are_inclusive_and_approvers_are_lowercased():
    assert (MAX_WEIGHT, MAX_POOL_AMOUNT) == (10**12, 10**60)
    policy = parse_policy(SPEC_POLICY.replace("github:pr_merged: 8000", f"github:pr_merged: {MAX_WEIGHT}")
                          .replace("base_issuance: 10000", f"base_issuance: {MAX_POOL_AMOUNT}")
                          .replace(APPROVER, '["0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD", "0x1111111111111111111111111111111111111111"]'))
    assert policy.weight("github", "pr_merged") == MAX_WEIGHT and policy.pool.base_issuance == MAX_POOL_AMOUNT
    assert policy.approvers == ["0xabcdefabcdefabcdefabcdefabcdefabcdefabcd", "0x1111111111111111111111111111111111111111"]
    # A million events at the largest weight still fit a PostgreSQL bigint.
    assert 10**6 * MAX_WEIGHT < 2**63 - 1


def test_policy_hash_of_hashes_the_pinned_document_as_stored():
    policy = parse_policy(SPEC_POLICY)
    pinned = policy.canonical()
    assert policy_hash_of(pinned) == policy.policy_hash == canonical_hash(pinned)
    # A document pinned by an older version (here: without a key a later model defaults) keeps its own
    # hash; re-validating and dumping it would add the default and change the hash.
    older = {k: v for k, v in pinned.items() if k != "unresolved"}
    assert policy_hash_of(older) == canonical_hash(older) != validate_policy(older).policy_hash


def test_sample_policy_shipped_with_the_project_is_valid():
    path = Path(__file__).resolve().parents[2] / "policy.yaml"
    assert parse_policy(path.read_text(), str(path)).version >= 1


def test_discord_threads_is_optional_true_or_false_and_absent_keeps_the_hash():
    from credit_pipeline.core.policy import PolicyError, validate_policy

    base = parse_policy(SPEC_POLICY).canonical()
    assert "threads" not in base["sources"]["discord"]
    off = {**base, "sources": {**base["sources"], "discord": {**base["sources"]["discord"], "threads": False}}}
    assert validate_policy(off).sources.discord.threads is False and validate_policy(off).policy_hash != parse_policy(SPEC_POLICY).policy_hash
    bad = {**base, "sources": {**base["sources"], "discord": {**base["sources"]["discord"], "threads": "yes"}}}
    with pytest.raises(PolicyError, match="sources.discord.threads"):
        validate_policy(bad)
