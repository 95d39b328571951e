"""Xandr account settings, credentials and the contract constants the connector and its sandbox share.

The constants are the facts of Xandr's Batch Segment Service (BSS), Segment Service and Authentication Service
(learn.microsoft.com/en-us/xandr/digital-platform-api/...) in one place, so the connector and the sandbox cannot
drift apart. Where the documentation is silent the value is our conservative reading and says so.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from crm_activation import AccountConfig, Credentials, InvalidIdentifier, is_sha256_hex

#: Members per upload. Xandr's limits are per file (0.5 GB) and per member per day/hour (set by Xandr support);
#: 100,000 members make at most 300,000 lines (Xandr uid + a device id under two schemes), some 15 MB, which
#: stays far below the file limit and keeps one failed job cheap to repeat.
MAX_MEMBERS_PER_UPLOAD = 100_000
#: "Your segment file should not be larger than 0.5GB" (batch-segment-service).
MAX_FILE_BYTES = 500_000_000
#: "You must begin your upload to the given Upload URL within five (5) minutes" (batch-segment-service).
UPLOAD_URL_LIFETIME_SECONDS = 300.0
#: "You can authenticate successfully 10 times within a 5-minute period" (authentication-service).
AUTH_LIMIT = 10
AUTH_WINDOW_SECONDS = 300.0
#: A token "remains active for 2 hours following your most recent call", with "a 24-hour hard expiry".
TOKEN_IDLE_SECONDS = 2 * 3600.0
TOKEN_MAX_SECONDS = 24 * 3600.0
#: EXPIRATION is in minutes; 0 means the 180-day maximum and -1 removes the user (legacy-bss-file-format).
MAX_EXPIRATION_MINUTES = 180 * 24 * 60
REMOVE_EXPIRATION = -1
#: Segment Service: `code` is string(50), unique per member regardless of case; `short_name` is string(255).
MAX_CODE_LENGTH = 50
MAX_SHORT_NAME_LENGTH = 255
#: Job phases in the order the service reports them ("error" can replace any of them).
PHASES = ("starting", "uploading", "validating", "processing", "completed")
#: The job counters that count refused lines or segments (batch-segment-service, JSON fields).
INVALID_COUNTERS = (
    "num_invalid_format",
    "num_invalid_user",
    "num_invalid_segment",
    "num_invalid_timestamp",
    "num_unauth_segment",
    "num_past_expiration",
    "num_inactive_segment",
    "num_other_error",
)

# Xandr `error_id` values (api-semantics, "Error messages") and `error_code` values (batch-segment-service).
NOAUTH = "NOAUTH"
CONFIG_ERROR_IDS = frozenset({"NOAUTH_DISABLED", "NOAUTH_EXPIRED", "UNAUTH"})
TRANSIENT_ERROR_IDS = frozenset({"SYSTEM"})
#: The legacy throttle code (open-source clients such as numberly/appnexus-client sleep and retry on it).
RATE_EXCEEDED = "RATE_EXCEEDED"
#: Upload refusals a new job cannot cure: the file is too big, or a daily/hourly quota is spent.
FINAL_UPLOAD_CODES = frozenset({"FILESIZE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED"})

_SEPARATOR_FORBIDDEN = frozenset("[](){}$\\/|?*+-") | {"\n", "\r"}  # the docs' list, plus line ends
_UINT64_MAX = 2**64 - 1


class SegField(StrEnum):
    """The fields a member's SEG block may carry, in the order Xandr support configured (legacy format)."""

    SEG_ID = "SEG_ID"
    SEG_CODE = "SEG_CODE"
    EXPIRATION = "EXPIRATION"
    TIMESTAMP = "TIMESTAMP"
    VALUE = "VALUE"
    MEMBER_ID = "MEMBER_ID"


class DeviceDomain(StrEnum):
    """Mobile/CTV device-id schemes the legacy format marks with SEPARATOR5 and a number."""

    IDFA = "idfa"
    SHA1UDID = "sha1udid"
    MD5UDID = "md5udid"
    OPENUDID = "openudid"
    AAID = "aaid"
    WINDOWSADID = "windowsadid"
    RIDA = "rida"
    TIFA = "tifa"
    VIDA = "vida"
    LGUDID = "lgudid"


#: "Mobile Device ID Data Fields" (legacy-bss-file-format); 6 (sha1mac) is deprecated and refused.
DOMAIN_NUMBERS: dict[DeviceDomain, int] = {
    DeviceDomain.IDFA: 3, DeviceDomain.SHA1UDID: 4, DeviceDomain.MD5UDID: 5, DeviceDomain.OPENUDID: 7,
    DeviceDomain.AAID: 8, DeviceDomain.WINDOWSADID: 9, DeviceDomain.RIDA: 10, DeviceDomain.TIFA: 11,
    DeviceDomain.VIDA: 12, DeviceDomain.LGUDID: 13,
}
DOMAINS_BY_NUMBER = {number: domain for domain, number in DOMAIN_NUMBERS.items()}
#: Schemes whose ids are UUIDs: the ones a CRM's `maid` column (IDFA or AAID) can fill.
UUID_DOMAINS = frozenset({DeviceDomain.IDFA, DeviceDomain.AAID, DeviceDomain.RIDA, DeviceDomain.TIFA})


class BssFileFormat(BaseModel):
    """A member's legacy BSS file format, exactly as Xandr support configured it for the member.

    Xandr parses every file with the member's configured separators and SEG field order (there is no per-file
    header), so these must match the member's configuration; the connector writes with them and the sandbox
    parses with them. The defaults are the documentation's example: `UID,SEG_ID:EXPIRATION;SEG_ID:EXPIRATION`
    with `^` before a device-id scheme number.

    Attributes:
        separator_1: between the user id and its segment list.
        separator_2: between segments.
        separator_3: between the fields of one segment.
        separator_4: segments after it are removals; only needed when EXPIRATION is not a SEG field.
        separator_5: before a device-id scheme number; without it device ids cannot be uploaded.
        segment_fields: the SEG block's fields in order; exactly one of SEG_ID and SEG_CODE.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    separator_1: str = ","
    separator_2: str = ";"
    separator_3: str = ":"
    separator_4: str | None = None
    separator_5: str | None = "^"
    segment_fields: tuple[SegField, ...] = (SegField.SEG_ID, SegField.EXPIRATION)

    @field_validator("separator_1", "separator_2", "separator_3", "separator_4", "separator_5")
    @classmethod
    def _one_allowed_character(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) != 1 or value in _SEPARATOR_FORBIDDEN or value.isalnum() or ord(value) > 0xFF:
            raise ValueError("a separator is one Latin-1 character, not a letter, digit or one of [](){}$\\/|?*+-")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BssFileFormat:
        # The docs allow SEPARATOR1 == SEPARATOR3; every other pair must differ.
        named = [("separator_1", self.separator_1), ("separator_2", self.separator_2),
                 ("separator_4", self.separator_4), ("separator_5", self.separator_5)]
        present = [value for _, value in named if value is not None]
        if len(set(present)) != len(present) or self.separator_3 in present[1:]:
            raise ValueError("separators must differ from each other (only separator_1 may equal separator_3)")
        fields = self.segment_fields
        if len(set(fields)) != len(fields) or (SegField.SEG_ID in fields) == (SegField.SEG_CODE in fields):
            raise ValueError("segment_fields must name exactly one of SEG_ID and SEG_CODE, each field once")
        if SegField.EXPIRATION not in fields and self.separator_4 is None:
            raise ValueError("without EXPIRATION in segment_fields, separator_4 is needed to remove users")
        return self


class XandrAccount(AccountConfig):
    """The Xandr member that owns the segments, and how this connector uploads to it.

    Attributes:
        member_id: the member (seat) id; every Segment and Batch Segment call names it.
        file_format: the member's legacy BSS format (must match what Xandr support configured).
        expiration_minutes: EXPIRATION written for added users; 0 is Xandr's maximum, 180 days. Users drop out
            of a segment when it passes, so a list kept longer needs a periodic full re-sync.
        device_id_domains: the schemes a `maid` is uploaded under. A CRM's MAID does not say whether an iPhone
            (IDFA) or an Android phone (AAID) issued it, and the legacy format needs the scheme, so by default
            each MAID goes out once per scheme; a random UUID issued as an IDFA matches no AAID, so the other
            line reaches nobody. Name one scheme when the list is single-platform.
        poll_interval_seconds: wait between job status reads.
        poll_timeout_seconds: give up waiting for a job after this much waiting (Xandr's SLA allows 24 h; the
            batch is then reported as failed and re-sent by the next run, which is harmless: uploads are set
            operations).
        min_seconds_between_uploads: Xandr recommends at most one upload a minute; this paces job creation.
        new_segment_wait_seconds: "wait approximately 20 minutes before trying to add users to any newly
            created segments to allow these segments to be propagated to all servers" (segment-service); the
            first upload to a segment this connector created waits until the segment is this old.
            `for_sandbox` sets both waits to 0.
    """

    member_id: int = Field(gt=0)
    file_format: BssFileFormat = BssFileFormat()
    expiration_minutes: int = Field(default=0, ge=0, le=MAX_EXPIRATION_MINUTES)
    device_id_domains: tuple[DeviceDomain, ...] = (DeviceDomain.IDFA, DeviceDomain.AAID)
    poll_interval_seconds: float = Field(default=30.0, gt=0)
    poll_timeout_seconds: float = Field(default=3600.0, gt=0)
    min_seconds_between_uploads: float = Field(default=60.0, ge=0)
    new_segment_wait_seconds: float = Field(default=1200.0, ge=0)

    @field_validator("device_id_domains")
    @classmethod
    def _uuid_domains(cls, value: tuple[DeviceDomain, ...]) -> tuple[DeviceDomain, ...]:
        if not set(value) <= UUID_DOMAINS or len(set(value)) != len(value):
            raise ValueError(f"device_id_domains: distinct values among {sorted(UUID_DOMAINS)} (a MAID is a UUID)")
        return value


class XandrCredentials(Credentials):
    """An API user's login; the connector exchanges it for a session token at `POST /auth`."""

    username: SecretStr
    password: SecretStr


def xandr_uid(value: str, country: str | None) -> str:
    """A Xandr user id (`user_id_64`): a positive integer below 2**64, in canonical decimal, never hashed.

    Legacy BSS file format: `UID` is "the Xandr user ID", type int, e.g. 5727816213491965430; the docs' own
    example 12345678900987654321 exceeds 2**63, so the range is unsigned 64-bit.
    """
    text = value.strip()
    if not text:
        raise InvalidIdentifier("Xandr user id is empty")
    if is_sha256_hex(text):
        raise InvalidIdentifier("Xandr user id looks like a SHA-256 hash; BSS takes the numeric id in clear")
    if not (text.isascii() and text.isdigit()):
        raise InvalidIdentifier("Xandr user id must be digits only (a 64-bit integer)")
    number = int(text)
    if not 0 < number <= _UINT64_MAX:
        raise InvalidIdentifier("Xandr user id must be between 1 and 2**64 - 1")
    return str(number)
