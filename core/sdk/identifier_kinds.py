"""The identifier kinds a contact may carry and that connectors declare they accept."""

from __future__ import annotations

import re
from enum import StrEnum


class IdentifierKind(StrEnum):
    """Every identifier kind the onboarding step knows; connectors pick the ones their platform accepts."""

    EMAIL = "email"
    PHONE = "phone"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    CITY = "city"
    STATE = "state"
    ZIP = "zip"
    COUNTRY = "country"
    #: As the CRM writes it ("F", "male", "Woman"); Meta's GEN takes `f` or `m` (see `normalization.gender_meta`).
    GENDER = "gender"
    #: `YYYY-MM-DD`, `YYYYMMDD` or an unambiguous `DD/MM/YYYY` (see `normalization.dob_year_meta`).
    DATE_OF_BIRTH = "date_of_birth"
    MAID = "maid"
    EXTERNAL_ID = "external_id"
    UID2 = "uid2"
    RAMPID = "rampid"
    XANDR_UID = "xandr_uid"


#: Kinds that are personal data: they may arrive already SHA-256 hashed, and are never logged.
PERSONAL_KINDS = frozenset(
    {
        IdentifierKind.EMAIL,
        IdentifierKind.PHONE,
        IdentifierKind.FIRST_NAME,
        IdentifierKind.LAST_NAME,
        IdentifierKind.CITY,
        IdentifierKind.STATE,
        IdentifierKind.ZIP,
        IdentifierKind.GENDER,
        IdentifierKind.DATE_OF_BIRTH,
    }
)

SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def is_sha256_hex(value: str) -> bool:
    """Whether a value already is a SHA-256 digest in hex, as a CRM export of pre-hashed data would carry it."""
    return len(value) == 64 and SHA256_HEX.match(value) is not None
