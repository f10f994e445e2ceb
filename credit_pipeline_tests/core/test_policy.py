from pathlib import Path

import pytest

from credit_pipeline.core.policy import PolicyError, parse_policy, validate_policy

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


def test_sample_policy_shipped_with_the_project_is_valid():
    path = Path(__file__).resolve().parents[2] / "policy.yaml"
    assert parse_policy(path.read_text(), str(path)).version >= 1
