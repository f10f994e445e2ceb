import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credit_pipeline.core.payouts import compute_payouts


def credits(rows, pool):
    return [(line.recipient_id, line.amount_credits) for line in compute_payouts(rows, pool)]


@pytest.mark.parametrize(
    "rows, pool, expected",
    [
        ([("a", 50)], 1000, [("a", 1000)]),
        ([("a", 50), ("b", 50)], 1000, [("a", 500), ("b", 500)]),
        ([("user-a", 1), ("user-b", 1), ("user-c", 1)], 100, [("user-a", 34), ("user-b", 33), ("user-c", 33)]),
        ([("a", 30), ("a", 20), ("b", 50)], 1000, [("a", 500), ("b", 500)]),
        ([("a", 7500), ("b", 2500)], 10_000_000_000_000, [("a", 7_500_000_000_000), ("b", 2_500_000_000_000)]),
        ([("a", 1), ("b", 2)], 10, [("a", 3), ("b", 7)]),
        ([("a", 1), ("b", 2)], 300, [("a", 100), ("b", 200)]),
        ([], 1000, []),
        ([("a", 100)], 0, []),
        ([("a", 0), ("b", 0)], 1000, []),
    ],
)
def test_spec_parity_vectors(rows, pool, expected):
    assert credits(rows, pool) == expected


def test_full_lines_of_the_spec():
    lines = compute_payouts([("a", 1), ("b", 2)], 300)
    assert [l.to_dict() for l in lines] == [
        {"recipient_id": "a", "total_units": 1, "share": "0.333333", "amount_credits": 100},
        {"recipient_id": "b", "total_units": 2, "share": "0.666666", "amount_credits": 200},
    ]
    only = compute_payouts([("a", 50)], 1000)[0]
    assert (only.share, only["amount_credits"]) == ("1.000000", 1000)
    summed = compute_payouts([("a", 30), ("a", 20), ("b", 50)], 1000)[0]
    assert summed.total_units == 50


def test_mapping_input_and_zero_unit_recipient():
    lines = compute_payouts({"b": 0, "a": 5}, 7)
    assert [(l.recipient_id, l.amount_credits, l.share) for l in lines] == [("a", 7, "1.000000"), ("b", 0, "0.000000")]


def test_negative_units_are_an_error():
    with pytest.raises(ValueError, match="negative"):
        compute_payouts([("a", 10), ("b", -5)], 100)


@pytest.mark.parametrize("bad", [1.5, True, "3"])
def test_non_integer_units_are_refused(bad):
    with pytest.raises(TypeError):
        compute_payouts([("a", bad)], 100)


def test_ties_go_to_the_lower_recipient_id_in_code_point_order():
    # 'B' (0x42) sorts before 'a' (0x61) in code-point order.
    assert credits([("a", 1), ("B", 1)], 3) == [("B", 2), ("a", 1)]


rows_strategy = st.lists(
    st.tuples(st.text(min_size=1, max_size=6), st.integers(min_value=0, max_value=10**12)), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(rows=rows_strategy, pool=st.integers(min_value=1, max_value=10**30))
def test_credits_always_sum_to_the_pool(rows, pool):
    lines = compute_payouts(rows, pool)
    if sum(u for _, u in rows) > 0:
        assert sum(l.amount_credits for l in lines) == pool
        assert all(l.amount_credits >= 0 for l in lines)
    else:
        assert lines == []


@settings(max_examples=200, deadline=None)
@given(rows=rows_strategy, pool=st.integers(min_value=0, max_value=10**30), data=st.data())
def test_output_is_independent_of_input_order(rows, pool, data):
    shuffled = data.draw(st.permutations(rows))
    assert compute_payouts(rows, pool) == compute_payouts(shuffled, pool)


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy.filter(lambda r: sum(u for _, u in r) > 0), pool=st.integers(min_value=1, max_value=10**30))
def test_each_recipient_gets_floor_or_floor_plus_one(rows, pool):
    total = sum(u for _, u in rows)
    for line in compute_payouts(rows, pool):
        exact_floor = line.total_units * pool // total
        assert line.amount_credits in (exact_floor, exact_floor + 1)


def test_large_pool_and_many_recipients():
    rows = [(f"user-{i:06d}", (i * 7919) % 10_007) for i in range(100_000)]
    pool = 10**30 + 17
    lines = compute_payouts(rows, pool)
    assert len(lines) == 100_000
    assert sum(l.amount_credits for l in lines) == pool
