"""Coupon codes: HMAC-derived (unguessable without the key), unique, recorded, found again on redemption."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from pydantic import SecretStr

from crm_activation.email.coupons import ALPHABET, CouponIssuer, lookup, normalize_code
from crm_activation.sdk.errors import ConfigError
from crm_activation.state.database import open_database

from .conftest import COUPON_KEY

CODE = re.compile(r"^WB100-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def issuer(db, key: str = COUPON_KEY, campaign: str = "winback") -> CouponIssuer:
    return CouponIssuer(db, campaign, "WB100", SecretStr(key))


def test_codes_are_unique_over_100k_contacts_and_recorded(db):
    codes = issuer(db).issue_many(f"C{i:06d}" for i in range(100_000))
    assert len(codes) == 100_000 and len(set(codes.values())) == 100_000
    assert all(CODE.match(code) for code in codes.values())
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT code) FROM coupons").fetchone() == (100_000, 100_000)


def test_code_is_the_hmac_of_campaign_and_contact(db):
    code = issuer(db).code_for("C42")
    body = code.split("-", 1)[1].replace("-", "")
    value = 0
    for char in body:
        value = value * 32 + ALPHABET.index(char)
    digest = hmac.new(COUPON_KEY.encode(), b"coupon-v1\x1fwinback\x1fC42", hashlib.sha256).digest()
    assert value == int.from_bytes(digest[:8], "big") >> 4  # the top 60 bits
    assert issuer(db, key="another-key-0123456789abcdef").code_for("C42") != code
    assert issuer(db, campaign="other").code_for("C42") != code
    assert issuer(db).code_for("C43") != code


def test_issue_is_stable_even_after_the_key_rotates(db):
    first = issuer(db).issue("C1")
    assert issuer(db).issue("C1") == first
    assert issuer(db, key="rotated-key-0123456789abcdef").issue("C1") == first  # the emailed code stays valid
    assert db.execute("SELECT COUNT(*) FROM coupons").fetchone()[0] == 1


def test_lookup_matches_redemptions_as_customers_type_them(db):
    code = issuer(db).issue("C7")
    prefix, body = code.split("-", 1)
    typed = prefix.lower() + " " + body.lower().replace("-", "").replace("0", "o").replace("1", "l")
    assert normalize_code(typed) == code
    record = lookup(db, typed)
    assert record is not None and (record.campaign, record.contact_id, record.code) == ("winback", "C7", code)
    assert lookup(db, "WB100-0000-0000-0000") is None


def test_lookup_without_any_coupon_table(tmp_path):
    assert lookup(open_database(tmp_path / "empty.sqlite"), "WB100-AAAA-AAAA-AAAA") is None


def test_unique_constraint_refuses_a_collision(db):
    coupons = issuer(db)
    taken = coupons.code_for("C2")
    db.execute("INSERT INTO coupons VALUES ('winback', 'someone-else', ?, 0)", (taken,))
    with pytest.raises(ConfigError, match="collision"):
        coupons.issue("C2")
    assert db.execute("SELECT COUNT(*) FROM coupons WHERE contact_id='C2'").fetchone()[0] == 0  # rolled back


def test_no_key_is_a_configuration_error(db):
    with pytest.raises(ConfigError, match="CRM_ACTIVATION_EMAIL_COUPON_KEY"):
        CouponIssuer(db, "winback", "WB100", None)
