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


@pytest.mark.parametrize(
    "key, meant",
    [
        ("2026-W08-1", "2026-02-16"),  # ISO week date: date.fromisoformat accepts it on 3.11
        ("2026-W08-3", "2026-02-16"),
        ("20260216", "2026-02-16"),  # ISO basic format: accepted by fromisoformat too
        ("2026-02-16 ", "2026-02-16"),
        (" 2026-02-16", "2026-02-16"),
        ("2026-02-16\n", "2026-02-16"),
        ("2026-2-16", "2026-02-16"),
        ("２０２６-02-16", "2026-02-16"),  # full-width digits: str.isdigit and \d say yes
        ("2026-02-18T00:00", "2026-02-16"),
        ("2026-02-16T00:00:00Z", "2026-02-16"),
    ],
)
def test_only_yyyy_mm_dd_is_a_key(key, meant):
    with pytest.raises(EpochKeyError) as caught:
        parse_epoch_key(key)
    message = str(caught.value)
    assert "is not a date written YYYY-MM-DD" in message and repr(key) in message
    assert f"did you mean {meant}?" in message


@pytest.mark.parametrize("key", ["yesterday", "", "2026-02", "2026--16", "99999999999999999999-1-1", "٢٠٢٦-٠٢-١٦x"])
def test_unreadable_keys_get_no_guess(key):
    with pytest.raises(EpochKeyError, match="YYYY-MM-DD") as caught:
        parse_epoch_key(key)
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize("key", ["2026-02-30", "2026-13-02", "0000-01-03"])
def test_impossible_dates_are_refused(key):
    with pytest.raises(EpochKeyError, match="not a calendar date"):
        parse_epoch_key(key)


@pytest.mark.parametrize("key", [None, 20260216, date(2026, 2, 16)])
def test_non_strings_are_refused(key):
    with pytest.raises(EpochKeyError, match="YYYY-MM-DD"):
        parse_epoch_key(key)


def test_a_monday_key_parses():
    assert parse_epoch_key("2026-02-16") == date(2026, 2, 16)
    assert parse_epoch_key("2024-12-30") == date(2024, 12, 30)  # ISO week 1 of 2025; the key is still the date


def test_epoch_keys_from_anchor():
    assert list(epoch_keys(date(2026, 1, 5), utc(2026, 1, 19))) == ["2026-01-05", "2026-01-12", "2026-01-19"]


def test_status_moves_forward_only():
    assert status_can_move("open", "review") and status_can_move("review", "finalized")
    assert not status_can_move("review", "open") and not status_can_move("finalized", "review")
