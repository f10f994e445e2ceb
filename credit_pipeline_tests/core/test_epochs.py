from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from credit_pipeline.core.epochs import (
    EpochKeyError,
    epoch_key,
    epoch_keys,
    epoch_window,
    in_window,
    parse_epoch_key,
    status_can_move,
    window_for_key,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


W_0216 = (utc(2026, 2, 16), utc(2026, 2, 23))


@pytest.mark.parametrize(
    "ts, window",
    [
        (utc(2026, 2, 22, 6), W_0216),
        (utc(2026, 2, 16), W_0216),
        (utc(2026, 2, 18, 12), W_0216),
        (utc(2026, 2, 22, 23, 59, 59), W_0216),
        (utc(2026, 2, 23), (utc(2026, 2, 23), utc(2026, 3, 2))),
    ],
)
def test_spec_parity_vectors(ts, window):
    assert epoch_window(ts) == window


def test_window_is_half_open():
    start, end = W_0216
    assert in_window(start, W_0216)
    assert not in_window(end, W_0216)
    assert in_window(end - timedelta(microseconds=1), W_0216)
    assert epoch_key(end) == "2026-02-23"


def test_other_time_zones_are_converted_to_utc():
    # Monday 01:00 in UTC+2 is Sunday 23:00 UTC: still the previous week.
    ts = datetime(2026, 2, 23, 1, tzinfo=timezone(timedelta(hours=2)))
    assert epoch_key(ts) == "2026-02-16"


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError, match="no time zone"):
        epoch_window(datetime(2026, 2, 16))


def test_key_round_trip():
    assert window_for_key("2026-02-16") == W_0216
    assert epoch_key(window_for_key("2026-02-16")[0]) == "2026-02-16"


@pytest.mark.parametrize("key, hint", [("2026-02-17", "did you mean 2026-02-16"), ("yesterday", "YYYY-MM-DD"), ("2026-2-16", "YYYY-MM-DD")])
def test_bad_keys_are_explained(key, hint):
    with pytest.raises(EpochKeyError, match=hint):
        parse_epoch_key(key)


def test_epoch_keys_from_anchor():
    assert list(epoch_keys(date(2026, 1, 5), utc(2026, 1, 19))) == ["2026-01-05", "2026-01-12", "2026-01-19"]


def test_status_moves_forward_only():
    assert status_can_move("open", "review") and status_can_move("review", "finalized")
    assert not status_can_move("review", "open") and not status_can_move("finalized", "review")
