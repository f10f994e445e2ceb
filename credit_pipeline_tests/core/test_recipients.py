"""One grammar for recipient ids (SPEC §5), in Python and in the SQL strings migrations use."""

import re

import pytest

from credit_pipeline.core.recipients import (
    CLAIMANT_ID,
    PERSON_ID,
    PERSON_ID_SQL,
    RECIPIENT_ID_SQL,
    RecipientIdError,
    check_person_id,
    check_recipient_id,
    is_claimant,
)

PERSONS = ["alice", "alice.smith", "a", "0", "bob-2", "x_y", "a" * 64, "1.2.3", "a-", "a."]
CLAIMANTS = ["github:1", "github:49699333", "discord:81384788765712384"]
NEITHER = ["", "Alice", "-alice", ".alice", "_a", "a" * 65, "alice smith", "alice\n", "\nalice", "al\tice", "alice\x00",
           "a:b", "alice:1", "github:", "github:x", "gitlab:1", "GitHub:1", "github:1\n", "github: 1", "discord:-1",
           "élodie", "аlice", "alice２", "github:１２"]


@pytest.mark.parametrize("value", PERSONS)
def test_person_ids(value):
    assert check_person_id(value) == value == check_recipient_id(value)
    assert not is_claimant(value)


@pytest.mark.parametrize("value", CLAIMANTS)
def test_claimant_ids(value):
    assert is_claimant(value) and check_recipient_id(value) == value
    with pytest.raises(RecipientIdError, match="is not a person id"):
        check_person_id(value)


@pytest.mark.parametrize("value", NEITHER + [None, 7, b"alice"])
def test_everything_else_is_refused(value):
    assert not is_claimant(value)
    with pytest.raises(RecipientIdError) as caught:
        check_recipient_id(value)
    assert repr(value) in str(caught.value)
    with pytest.raises(RecipientIdError):
        check_person_id(value)


def test_the_message_quotes_the_value_and_says_the_rule():
    with pytest.raises(RecipientIdError) as caught:
        check_person_id("Alice Smith\n")
    message = str(caught.value)
    assert "'Alice Smith\\n' is not a person id" in message
    assert "1-64 characters of a-z, 0-9" in message and "alice.smith" in message
    assert isinstance(caught.value, ValueError)


def test_the_python_patterns_are_the_sql_patterns():
    # Migrations use the *_SQL strings in CHECK constraints (POSIX ~): both sides must agree.
    assert PERSON_ID.pattern == PERSON_ID_SQL
    sql = re.compile(RECIPIENT_ID_SQL)
    for value in PERSONS + CLAIMANTS:
        assert sql.fullmatch(value), value
    for value in NEITHER:
        assert not sql.fullmatch(value), value
    assert CLAIMANT_ID.fullmatch("github:1") and not CLAIMANT_ID.fullmatch("github:1\n")
