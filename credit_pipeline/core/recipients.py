"""The one grammar of recipient ids (SPEC §5), shared by core and the database.

A recipient is either a person (``alice``, ``alice.smith``) or a claimant holding an
unresolved account's credit (``github:12345``, ``discord:81384788765712384``). Nothing
else is a recipient: no whitespace, control characters, upper case or other ``:``.
That is what keeps the ``recipient_id:final_units`` lines of the allocation-set hash
unambiguous (no two different sets share a text, hence a hash), so the same rule is
checked here and, through the ``*_SQL`` strings, by CHECK constraints in migrations.
"""

from __future__ import annotations

import re

PERSON_ID_SQL = "^[a-z0-9][a-z0-9._-]{0,63}$"
CLAIMANT_ID_SQL = "^(github|discord):[0-9]+$"
RECIPIENT_ID_SQL = "^([a-z0-9][a-z0-9._-]{0,63}|(github|discord):[0-9]+)$"

# Always used with ``fullmatch``: ``re.match`` with ``$`` lets a trailing "\n" through.
# The classes are explicit ASCII ranges, so no other script's letters or digits match.
PERSON_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
CLAIMANT_ID = re.compile(r"^(github|discord):[0-9]+$")

PERSON_ID_RULE = "1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit (for example alice or alice.smith)"
CLAIMANT_ID_RULE = "github:DIGITS or discord:DIGITS (for example github:12345)"


class RecipientIdError(ValueError):
    """A value that is not a person id (or, where allowed, a claimant id)."""


def is_person(value: object) -> bool:
    """True when ``value`` is a person id."""
    return isinstance(value, str) and PERSON_ID.fullmatch(value) is not None


def is_claimant(value: object) -> bool:
    """True when ``value`` is a claimant id ``github:{digits}`` or ``discord:{digits}``."""
    return isinstance(value, str) and CLAIMANT_ID.fullmatch(value) is not None


def check_person_id(value: object) -> str:
    """``value`` when it is a person id; RecipientIdError quoting it and the rule otherwise."""
    if isinstance(value, str) and is_person(value):
        return value
    raise RecipientIdError(f"{value!r} is not a person id: use {PERSON_ID_RULE}")


def check_recipient_id(value: object) -> str:
    """``value`` when it is a person or claimant id; RecipientIdError otherwise."""
    if isinstance(value, str) and (is_person(value) or is_claimant(value)):
        return value
    raise RecipientIdError(f"{value!r} is not a recipient id: use a person id ({PERSON_ID_RULE}) "
                           f"or a claimant id ({CLAIMANT_ID_RULE})")
