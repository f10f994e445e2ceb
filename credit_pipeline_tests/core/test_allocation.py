from credit_pipeline.core.allocation import (
    BOT,
    BOUND,
    CLAIMANT,
    EXCLUDED,
    UNATTRIBUTABLE,
    UNRESOLVED_EXCLUDED,
    CuratedEvent,
    event_weight,
    propose_allocations,
    resolve_recipient,
)
from credit_pipeline.core.policy import parse_policy

from credit_pipeline_tests.core.test_policy import SPEC_POLICY

POLICY = parse_policy(SPEC_POLICY)
WEIGHTS = POLICY.weights


def resolve(**kw):
    base = dict(source="github", platform_user_id="42", login="alice", is_bot=False, bindings={}, policy=POLICY)
    return resolve_recipient(**{**base, **kw})


def test_recipient_resolution_rules():
    assert resolve(bindings={("github", "42"): "alice"}).recipient_id == "alice"
    assert resolve(bindings={("github", "42"): "alice"}).resolution == BOUND
    assert (resolve().recipient_id, resolve().resolution) == ("github:42", CLAIMANT)
    assert resolve(platform_user_id=None).resolution == UNATTRIBUTABLE
    assert resolve(is_bot=True).resolution == BOT
    assert resolve(login="some-app[bot]").resolution == BOT
    assert resolve(login="dependabot[bot]", is_bot=False).recipient_id is None
    excl = parse_policy(SPEC_POLICY.replace('github: ["dependabot[bot]", "renovate[bot]"]', 'github: ["42"]'))
    assert resolve(policy=excl).resolution == EXCLUDED
    strict = parse_policy(SPEC_POLICY.replace("unresolved: claimant", "unresolved: exclude"))
    assert resolve(policy=strict).resolution == UNRESOLVED_EXCLUDED
    # A bound account is still never credited when it is a bot.
    assert resolve(is_bot=True, bindings={("github", "42"): "alice"}).recipient_id is None


def ev(i, rid, etype="pr_merged", source="github", included=True, override=None):
    return CuratedEvent(f"{source}:{etype}:{i}", source, etype, rid, included, override)


def test_weight_sum_v1():
    events = [
        ev(1, "bob"),
        ev(2, "alice", "review_submitted"),
        ev(3, "alice", "review_submitted", override=5000),
        ev(4, "alice", "mystery_type"),  # weighs 0 but counts as activity
        ev(5, "bob", included=False),  # excluded by an admin: counts nothing
        ev(6, None),  # a bot: credits no one
        ev(7, "github:99", "message_sent", source="discord"),
    ]
    assert [(p.recipient_id, p.proposed_units, p.activity_count) for p in propose_allocations(events, WEIGHTS)] == [
        ("alice", 7000, 3),
        ("bob", 8000, 1),
        ("github:99", 500, 1),
    ]


def test_override_zero_means_zero():
    assert event_weight(ev(1, "a", override=0), WEIGHTS) == 0
    assert event_weight(ev(1, "a"), WEIGHTS) == 8000


def test_output_sorted_by_code_point():
    out = propose_allocations([ev(1, "b"), ev(2, "B"), ev(3, "a")], WEIGHTS)
    assert [p.recipient_id for p in out] == ["B", "a", "b"]
