"""The audiences a sandbox holds, and the one shape `SandboxApp.state()` shows them in.

Every sandbox keeps the same bookkeeping: audiences by remote id, each with a name, its members and a few
platform settings. Keeping it here gives every sandbox, built in or from a plugin, one state shape that tests,
the contract kit and `GET /_sandbox/state` read without knowing the platform::

    {"audiences": {"<remote id>": {"name": "...", "members": [<member>, ...], <other fields>}}}

A member is what the platform matches on, as JSON: an id string (Amazon's `externalUserId`, a Xandr uid) or an
object of identifiers (a Meta payload row, a DV360 ContactInfo). Members are listed sorted, without duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from typing import Any


class Row(tuple[tuple[str, Any], ...]):
    """A JSON object as a member key: its (name, value) pairs sorted by name, so key order never matters.

    A tuple, so a plain `tuple(sorted(fields.items()))` equals it (and hashes alike); the subclass only tells
    `member_json` to give an object back rather than a list.
    """

    __slots__ = ()


def member_key(member: Any) -> Hashable:
    """The hashable form of a member as JSON holds it: objects become `Row`s, lists tuples, the rest stays.

    Sandboxes key their members with it, and contract tests spell `member_keys` with it, so both sides agree.
    """
    if isinstance(member, Row):
        return member
    if isinstance(member, dict):
        return Row(sorted((str(name), member_key(value)) for name, value in member.items()))
    if isinstance(member, list | tuple):
        return tuple(member_key(value) for value in member)
    return member


def member_json(key: Any) -> Any:
    """A member key back as JSON (the inverse of `member_key`)."""
    if isinstance(key, Row):
        return {name: member_json(value) for name, value in key}
    if isinstance(key, tuple):
        return [member_json(value) for value in key]
    return key


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass(kw_only=True)
class SandboxAudience:
    """One audience of a sandbox: its name, its members, and in a subclass's fields what else the platform keeps.

    Subclass it (a dataclass) for the platform's settings; `state()` shows every field. `members` maps each
    member's key to what the platform keeps with the member (a consent label, an expiry) or None: a mapping, so
    re-adding is idempotent, removing by the same payload is exact and the end state compares member for member.
    """

    name: str
    members: dict[Hashable, Any] = field(default_factory=dict)

    def add(self, member: Any, data: Any = None) -> None:
        """Hold `member` (JSON or a key from `member_key`), keeping `data` with it; adding again replaces `data`."""
        self.members[member_key(member)] = data

    def remove(self, member: Any) -> None:
        """Drop `member` if held; removing a non-member is no error on any platform emulated here."""
        self.members.pop(member_key(member), None)

    def view(self) -> dict[str, Any]:
        """The audience in `state()`: name, members (JSON, sorted), then the subclass's fields; extend for more."""
        listed = sorted((member_json(key) for key in self.members), key=_canonical)
        extra = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "members")}
        return {"name": self.name, "members": listed, **extra}
