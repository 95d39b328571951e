"""The sandbox's reading of request bodies: Google's error shape and the checks Data Manager applies to members.

Split from `sandbox.py` so the emulator's state and routes stay readable; every function here raises a
`SandboxError` carrying Google's JSON error (`ErrorInfo` plus a `BadRequest` field violation whose `reason` is a
Data Manager `ErrorReason`, as in Google's quickstart: `audience_members.audience_members[0]...` with
`INVALID_HEX_ENCODING` or `INVALID_SHA256_FORMAT`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from crm_activation import SandboxError, member_key

from .settings import (
    ADDRESS_FIELDS,
    HEX,
    MAX_IDENTIFIERS_PER_MEMBER,
    POSTAL_CODE,
    REGION_SHAPE,
    SHA256_HEX,
    ConsentStatus,
)

CODES = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
         "ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503}
_HASHED = ("emailAddress", "phoneNumber")
#: A member as the sandbox keeps it: the `member_key`s of its UserIdentifier objects, sorted (by kind, then value).
Identity = tuple[Hashable, ...]
_CONSENTS = ("adUserData", "adPersonalization")
_STATUSES = frozenset(s.value for s in ConsentStatus)
_MEMBER_FIELDS = frozenset({"userData", "consent", "pairData", "mobileData"})
_IDENTIFIER_FIELDS = frozenset({*_HASHED, "address"})


def google_error(status: str, message: str, reason: str | None = None, field_path: str = "") -> SandboxError:
    """A Google JSON error with Data Manager's ErrorInfo and, given a reason, one BadRequest field violation."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason or status,
         "domain": "datamanager.googleapis.com"}
    ]
    if reason:
        violation = {"field": field_path, "description": message, "reason": reason}
        details.append({"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]})
    body = {"error": {"code": CODES[status], "message": message, "status": status, "details": details}}
    return SandboxError(CODES[status], body)


def bad(reason: str, field_path: str, message: str) -> SandboxError:
    """400 INVALID_ARGUMENT with one field violation."""
    return google_error("INVALID_ARGUMENT", message, reason, field_path)


def obj(value: Any, where: str, allowed: Iterable[str]) -> dict[str, Any]:
    """`value` as a JSON object with only `allowed` keys (Google refuses unknown names), else 400."""
    if not isinstance(value, dict):
        raise bad("INVALID_FORMAT", where, f"Invalid JSON payload received. {where} must be an object.")
    unknown = sorted(value.keys() - allowed)
    if unknown:
        message = f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at '{where}': Cannot find field."
        raise bad("INVALID_ARGUMENT", where, message)
    return value


def consent(value: Any, where: str) -> dict[str, str]:
    """A `Consent` object's stated statuses ({} when absent)."""
    if value is None:
        return {}
    stated = obj(value, where, _CONSENTS)
    if not _STATUSES.issuperset(stated.values()):
        raise bad("INVALID_ENUM_VALUE", where, "Enum value cannot be used.")
    return stated


def member(value: Any, where: str, default: dict[str, str], ingest: bool) -> tuple[Identity, str]:
    """An AudienceMember's identity (its identifiers, in a stable order) and its effective consent label.

    Member consent overrides request consent, field by field. On ingest both must end up stated: Google would read
    a missing one as unspecified, but the connector promises to always say.
    """
    item = obj(value, where, _MEMBER_FIELDS)
    if "userData" not in item or len(item) - ("consent" in item) != 1:
        raise bad("INVALID_USER_LIST_TYPE", where, "A contact-information list takes userData only.")
    data = obj(item["userData"], f"{where}.user_data", {"userIdentifiers"})
    ids_at = f"{where}.user_data.user_identifiers"
    identifiers = data.get("userIdentifiers")
    if not isinstance(identifiers, list) or not identifiers:
        raise bad("REQUIRED_FIELD_MISSING", ids_at, "At least one user identifier is required.")
    if len(identifiers) > MAX_IDENTIFIERS_PER_MEMBER:
        raise bad(
            "TOO_MANY_USER_IDENTIFIERS",
            ids_at,
            f"Maximum number of user identifiers allowed per audience member is {MAX_IDENTIFIERS_PER_MEMBER}.",
        )
    identity = tuple(sorted(identifier(i, ids_at) for i in identifiers))
    effective = {**default, **(consent(item.get("consent"), f"{where}.consent") if ingest else {})}
    if ingest and len(effective) != len(_CONSENTS):
        raise bad("REQUIRED_FIELD_MISSING", f"{where}.consent", "State both adUserData and adPersonalization.")
    label = "/".join(effective[k].removeprefix("CONSENT_") for k in _CONSENTS if k in effective)
    return identity, label


def identifier(value: Any, where: str) -> Any:
    """One UserIdentifier's `member_key` (a sortable tuple): a hashed e-mail or phone, or a complete AddressInfo."""
    item = obj(value, where, _IDENTIFIER_FIELDS)
    if len(item) != 1:
        raise bad("INVALID_FORMAT", where, "Exactly one identifier must be specified.")
    name, content = next(iter(item.items()))
    if name != "address":
        hashed(content, where)
        return member_key(item)
    address = obj(content, f"{where}.address", ADDRESS_FIELDS)
    missing = [f for f in ADDRESS_FIELDS if not isinstance(address.get(f), str) or not address[f]]
    if missing:
        raise bad("REQUIRED_FIELD_MISSING", f"{where}.address", f"AddressInfo needs {missing[0]}.")
    hashed(address["givenName"], f"{where}.address")
    hashed(address["familyName"], f"{where}.address")
    if not REGION_SHAPE.match(address["regionCode"]):
        raise bad("INVALID_FORMAT", f"{where}.address", "regionCode must be an ISO 3166-1 alpha-2 code.")
    if SHA256_HEX.match(address[POSTAL_CODE].lower()):
        raise bad("INVALID_POSTAL_CODE", f"{where}.address", "Postal code is not valid.")
    return member_key(item)


def hashed(value: Any, where: str) -> None:
    """A hex SHA-256 digest; lowercase, as the connector promises (Google itself also takes uppercase hex)."""
    if not isinstance(value, str) or not value or not HEX.match(value) or len(value) % 2:
        raise bad("INVALID_HEX_ENCODING", where, "Value is not hex encoded.")
    if not SHA256_HEX.match(value):
        raise bad("INVALID_SHA256_FORMAT", where, "The SHA256 encoded value is malformed.")
