"""The data types of the connector contract: what a connector declares and what flows through its operations.

Kept apart from the `Connector` base class so that the sandbox base, the engine and the run summary can share
these types without importing the class that drives HTTP.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .identifier_kinds import IdentifierKind

#: Normalizes one raw value; gets the contact's ISO country (upper case) or None for region-dependent rules.
#: Raises `InvalidIdentifier` with a human reason when the value is unusable.
Normalizer = Callable[[str, str | None], str]


class Capability(StrEnum):
    """Optional abilities; the engine only uses what a connector declares."""

    REPLACE = "replace"  # replace_members swaps the whole audience in one session
    REMOVE = "remove"  # remove_members is supported (every built-in connector has it)


@dataclass(frozen=True, slots=True)
class IdentifierRule:
    """How one identifier kind becomes one field of a platform's payload.

    Attributes:
        kind: which contact identifier feeds the field.
        key: the platform's own field name (Meta `EMAIL`, LinkedIn `SHA256_EMAIL`, ...).
        normalize: the platform's published normalization for the kind.
        hashed: whether the platform wants the normalized value SHA-256 hashed (lowercase hex); keyword only,
            like `source`, so that `True` never lands in the wrong place.
        source: where the rule is documented, so a reviewer can check it.
        whole_value: whether the field is the hash of the whole normalized value (the default), so that a value
            the CRM already hashed can be sent as it is. False for fields made from part of the value (Meta's FI
            from the first name, DOBY/DOBM/DOBD from the date of birth): a pre-hashed value cannot give them, and
            the field is left out.
    """

    kind: IdentifierKind
    key: str
    normalize: Normalizer
    _: KW_ONLY
    hashed: bool
    source: str = ""
    whole_value: bool = True


@dataclass(frozen=True, slots=True)
class Member:
    """One contact as a platform will receive it: payload fields already normalized and hashed.

    A dataclass with slots rather than a pydantic model: a campaign pushes millions of these and the engine
    builds them itself, so validation would only cost time.
    """

    contact_id: str
    fields: Mapping[str, str]
    country: str | None = None
    consent: Mapping[str, bool | None] = field(default_factory=dict)


def member_payload(member: Member) -> str:
    """The member as the state database stores it: JSON text, keys sorted, so one member always reads the same.

    The stored text is what a removal must repeat and what the fingerprint of the next run's diff is taken of,
    so this spelling never changes: `{"c": country, "f": fields, "k": consent}`.
    """
    data = {"f": dict(member.fields), "c": member.country, "k": dict(member.consent)}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


_FIELDS = ',"f":'  # in `member_payload`'s text: where the fields' object starts (after the country)
_NO_CONSENT = ',"k":{}}'  # and how the text ends when the member carries no consent


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """One batch of members as the state database holds them: contact ids and stored payloads, position by position.

    What `Connector.add_staged` and `remove_staged` receive. A connector that builds its request from the
    payloads' fields (`fields()` parses the whole batch in one call) skips a `Member` per contact, which at
    millions of members is most of the push's own time; `members()` gives the `Member`s for everything else.
    """

    contact_ids: Sequence[str]
    payloads: Sequence[str]

    def __len__(self) -> int:
        return len(self.contact_ids)

    def decoded(self) -> list[dict[str, Any]]:
        """Every stored payload parsed (`{"c", "f", "k"}`, see `member_payload`), in one `json.loads` call."""
        return list(json.loads("[" + ",".join(self.payloads) + "]")) if self.payloads else []

    def fields(self) -> list[dict[str, str]]:
        """Each member's payload fields (platform field name to value), in batch order.

        When no member carries consent (the stored text then ends `,"k":{}}`), only the fields' object of each
        payload is parsed: the text between `,"f":` and that end. `member_payload`'s fixed spelling makes the cut
        exact: a JSON string cannot hold an unescaped `"`, so `,"f":` first occurs after the country, and the
        fields end where the empty consent begins. Half the parsing, a third of the objects.
        """
        texts = []
        for payload in self.payloads:
            if not payload.endswith(_NO_CONSENT):
                return [data["f"] for data in self.decoded()]
            texts.append(payload[payload.index(_FIELDS) + len(_FIELDS) : -len(_NO_CONSENT)])
        return list(json.loads("[" + ",".join(texts) + "]")) if texts else []

    def members(self) -> list[Member]:
        """The batch as `Member`s, exactly as they were staged (a removal must repeat the added payload)."""
        return [
            Member(contact_id, data["f"], data["c"], data["k"])
            for contact_id, data in zip(self.contact_ids, self.decoded(), strict=True)
        ]


#: The most requests one platform may have in flight at once (`AccountConfig.requests_in_flight`); the HTTP
#: client keeps as many connections open to a platform.
MAX_REQUESTS_IN_FLIGHT = 16


#: How every audience marker starts: a person browsing a platform's UI sees which tool wrote it, and the marker's
#: characters (`[a-z0-9-]`) and length (47) fit every place platforms offer for one (Xandr codes take 50).
AUDIENCE_MARKER_PREFIX = "crm-activation-"
_MARKER_DIGEST_CHARS = 32  # 128 bits of SHA-256: no two campaigns' audiences ever share a marker by chance


class AudienceSpec(BaseModel):
    """The audience the engine wants to exist on a platform (one per campaign, platform and funnel stage).

    Attributes:
        key: the engine's stable key (`<campaign>/<stage>`), under which the state database keeps the remote id.
        name: the display name. Names are a person's choice and two campaigns may well share one, so a connector
            never takes an audience for its own because of its name: see `marker`.
        campaign: the campaign id the audience belongs to (part of `marker`).
    """

    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    campaign: str = ""
    description: str = ""
    funnel_stage: str | None = None
    creative: str | None = None
    settings: dict[str, Any] = {}

    @property
    def marker(self) -> str:
        """This campaign's unique tag for this audience, to store on the platform where it offers a place.

        A connector writes it when it creates the audience (a description, an external id or code, an integration
        code) and, with no recorded id, adopts only an audience carrying it: the recorded id and the marker are the
        only proofs that an audience is this campaign's, never its name. Derived from the campaign id and the key
        (SHA-256), so every connector, built in or third-party, computes the same one, and a run that lost its
        state database, or a create that timed out after the platform applied it, finds the audience again.
        """
        digest = hashlib.sha256(f"{self.campaign}\n{self.key}".encode()).hexdigest()
        return AUDIENCE_MARKER_PREFIX + digest[:_MARKER_DIGEST_CHARS]

    def described_with_marker(self, max_length: int | None = None) -> str:
        """The description with the marker appended: `"<description> (<marker>)"`, or the marker alone.

        For platforms whose only place for a marker is the audience's description; the description is cut so the
        whole fits `max_length`, never the marker.
        """
        marker = self.marker
        if max_length is not None and max_length < len(marker):
            raise ValueError(f"a description of at most {max_length} characters cannot hold the audience marker")
        room = len(marker) + 3 if self.description else len(marker)
        text = self.description if max_length is None else self.description[: max(0, max_length - room)]
        return f"{text.rstrip()} ({marker})" if text.strip() else marker

    def is_marked(self, text: object) -> bool:
        """Whether `text` (a description, code or id a platform returned; anything else is False) carries the marker."""
        return isinstance(text, str) and self.marker in text


class AudienceRef(BaseModel):
    """A platform's handle for an audience that exists; the engine stores it in the state database."""

    model_config = ConfigDict(frozen=True)

    key: str
    remote_id: str


class RecordRejection(BaseModel):
    """One record a platform refused, with its reason, when the platform says which."""

    model_config = ConfigDict(frozen=True)

    contact_id: str | None
    reason: str


class BatchResult(BaseModel):
    """What a platform reported for one batch.

    Attributes:
        received: records the platform says it received.
        invalid: records it counted as refused, in the platform's own unit (Meta rows, Xandr lines).
        rejections: the refused records it named, with reasons (the engine never records these as members).
        unnamed: refused members the platform counted but named no contact for; None means `invalid` minus the
            batch's contacts `rejections` name, right wherever `invalid` counts members (Meta, LinkedIn, Amazon).
            A connector whose `invalid` counts something else (Xandr's lines) says it here. The engine never
            records a batch with unnamed refusals as it is: it re-sends its unnamed part in halves until every
            refused member is named (see `pipeline.platform_sync`).
    """

    model_config = ConfigDict(frozen=True)

    received: int
    invalid: int = 0
    rejections: tuple[RecordRejection, ...] = ()
    job_id: str | None = None
    unnamed: int | None = None


class AccountConfig(BaseModel):
    """Base of a connector's non-secret account settings (read from the campaign file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = None
    requests_per_second: float | None = None
    #: Batches sent to the platform at once (None: the connector's `default_requests_in_flight`); the rate limit
    #: (`requests_per_second`) still bounds how many start per second.
    requests_in_flight: int | None = Field(default=None, ge=1, le=MAX_REQUESTS_IN_FLIGHT)


class Credentials(BaseModel):
    """Base of a connector's secrets; every field should be `SecretStr` and comes from the environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def secret_values(self) -> list[str]:
        """Every secret this connector holds, for the redaction filter."""
        return [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr) and v]
