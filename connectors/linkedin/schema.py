"""What LinkedIn accepts in a DMP segment creation and in a users element, as the sandbox enforces it.

Kept apart from the sandbox's HTTP handling so the rules read as a list: each check returns a Rest.li-style
message (`ERROR :: /path :: problem`, the wording LinkedIn's validation errors use) or None. Sources: LinkedIn's
"DMP Segments" and "DMP Segment Users" pages (fields, idTypes, "64 hex" SHA-256, firstName+lastName when no id)
and the users schema lengths mirrored by HCL Link (names 35, title and company 50, ISO two-letter country).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from crm_activation import member_key

from .settings import ID_TYPES, NAME_MAX_LENGTH, TITLE_MAX_LENGTH

#: A member of a segment as the sandbox keys it: `member_key` of the element's {idType: idValue}, or of its names.
Key = Hashable

CREATE_REQUIRED = ("name", "account", "sourcePlatform", "type", "destinations")
#: `accessPolicy` left the schema in 202406 but older clients still send it; LinkedIn tolerates PRIVATE.
CREATE_OPTIONAL = ("sourceSegmentId", "description", "accessPolicy")
ELEMENT_FIELDS = frozenset({"action", "userIds", "firstName", "lastName", "title", "company", "country"})
SOURCE_PLATFORM = re.compile(r"^[A-Z][A-Z0-9_]*$")

_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_ID_FORMATS = {
    "SHA256_EMAIL": (re.compile(r"^[0-9a-f]{64}$"), "a SHA-256 hex digest (64 lowercase hex digits)"),
    "SHA512_EMAIL": (re.compile(r"^[0-9a-f]{128}$"), "a SHA-512 hex digest (128 lowercase hex digits)"),
    "GOOGLE_AID": (_UUID, "a UUID"),
    "APPLE_IDFA": (_UUID, "a UUID"),
}
_TEXT_LIMITS = (
    ("firstName", NAME_MAX_LENGTH),
    ("lastName", NAME_MAX_LENGTH),
    ("title", TITLE_MAX_LENGTH),
    ("company", TITLE_MAX_LENGTH),
)


def _error(path: str, problem: str) -> str:
    return f"ERROR :: {path} :: {problem}\n"


def create_problem(body: Any) -> str | None:
    """Why a `POST /rest/dmpSegments` body is refused (account access and enum ownership are checked by the caller)."""
    if not isinstance(body, dict):
        return _error("/", "the body must be a JSON object")
    unknown = sorted(set(body) - set(CREATE_REQUIRED) - set(CREATE_OPTIONAL))
    if unknown:
        return _error(f"/{unknown[0]}", "unrecognized field found but not allowed")
    missing = [name for name in CREATE_REQUIRED if name not in body]
    if missing:
        return _error(f"/{missing[0]}", "field is required but not found and has no default value")
    if not isinstance(body["name"], str) or not body["name"].strip():
        return _error("/name", "must be a non-empty string")
    if not isinstance(body["sourcePlatform"], str) or not SOURCE_PLATFORM.match(body["sourcePlatform"]):
        return _error("/sourcePlatform", "must be a sourcePlatform enum symbol")
    if body["type"] not in ("USER", "COMPANY"):
        return _error("/type", "must be USER or COMPANY")
    if body["destinations"] != [{"destination": "LINKEDIN"}]:
        return _error("/destinations", 'must be [{"destination": "LINKEDIN"}]')
    if body.get("accessPolicy", "PRIVATE") != "PRIVATE":
        return _error("/accessPolicy", "must be PRIVATE")
    for name in ("sourceSegmentId", "description"):
        if name in body and not isinstance(body[name], str):
            return _error(f"/{name}", "must be a string")
    return None


def element_problem(element: Any, path: str) -> tuple[str | None, Key]:
    """(why the users element is refused or None, the member key it stands for)."""
    if not isinstance(element, dict):
        return _error(path, "must be an object"), ()
    unknown = sorted(set(element) - ELEMENT_FIELDS)
    if unknown:
        return _error(f"{path}/{unknown[0]}", "unrecognized field found but not allowed"), ()
    if element.get("action") not in ("ADD", "REMOVE"):
        return _error(f"{path}/action", "must be ADD or REMOVE"), ()
    user_ids = element.get("userIds", [])
    if not isinstance(user_ids, list):
        return _error(f"{path}/userIds", "must be an array"), ()
    pairs = []
    for i, user_id in enumerate(user_ids):
        id_type = user_id.get("idType") if isinstance(user_id, dict) else None
        id_value = user_id.get("idValue") if isinstance(user_id, dict) else None
        if id_type not in ID_TYPES:
            return _error(f"{path}/userIds/{i}/idType", f"not one of {sorted(ID_TYPES)}"), ()
        pattern, shape = _ID_FORMATS[id_type]
        if not isinstance(id_value, str) or not pattern.match(id_value):
            return _error(f"{path}/userIds/{i}/idValue", f"{id_type} must be {shape}"), ()
        pairs.append((id_type, id_value))
    for name, limit in _TEXT_LIMITS:
        value = element.get(name)
        if value is not None and (not isinstance(value, str) or not value or len(value) > limit):
            return _error(f"{path}/{name}", f"must be a string of 1 to {limit} characters"), ()
    country = element.get("country")
    if country is not None and not (isinstance(country, str) and len(country) == 2 and country.isalpha()):
        return _error(f"{path}/country", "must be an ISO 3166-1 alpha-2 code"), ()
    if pairs:
        return None, member_key(dict(pairs))
    if element.get("firstName") and element.get("lastName"):
        return None, member_key({"firstName": element["firstName"], "lastName": element["lastName"]})
    return _error(path, "userIds, or firstName and lastName, are required"), ()
