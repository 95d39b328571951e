"""The legacy BSS segment file: written by the connector, read and applied by the sandbox.

Both sides use the member's `BssFileFormat`, so a format the writer gets wrong cannot pass the tests unnoticed,
and both agree on what a line means (legacy-bss-file-format):

    UID SEP1 SEG [SEP2 SEG ...] [SEP4 SEG [SEP2 SEG ...]] [SEP5 DOMAIN]
    SEG = SEG_FIELD [SEP3 SEG_FIELD ...]     (the member's configured fields, in order)

Segments after SEP4 are removals; a device id is marked by SEP5 and its scheme number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crm_activation import InvalidIdentifier, Member

from .settings import (
    DOMAIN_NUMBERS,
    DOMAINS_BY_NUMBER,
    INVALID_COUNTERS,
    MAX_EXPIRATION_MINUTES,
    REMOVE_EXPIRATION,
    UUID_DOMAINS,
    BssFileFormat,
    DeviceDomain,
    SegField,
    xandr_uid,
)

#: Payload keys of the connector's identifier rules (the legacy format's column names).
UID_KEY = "UID"
DEVICE_KEY = "DEVICE_ID"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# -- writing ------------------------------------------------------------------------------------------------
@dataclass
class SegmentFile:
    """One upload: the file's lines in order and, per line, the contacts it stands for.

    Identical lines are written once: Xandr counts a duplicate line as `num_invalid_format`.
    """

    lines: list[str] = field(default_factory=list)
    owners: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # line -> [(contact id, key)]

    def add(self, line: str, contact_id: str, key: str) -> None:
        """Append a line for a contact (once per distinct line)."""
        if line not in self.owners:
            self.owners[line] = []
            self.lines.append(line)
        self.owners[line].append((contact_id, key))

    def encode(self) -> bytes:
        """The file as uploaded: Latin-1 ("your file must conform to the Latin1 character set"), LF-ended."""
        return "".join(line + "\n" for line in self.lines).encode("latin-1")


def seg_block(fmt: BssFileFormat, values: Mapping[SegField, str]) -> str:
    """One SEG block with the member's fields in the member's order."""
    return fmt.separator_3.join(values[name] for name in fmt.segment_fields)


def write_lines(
    fmt: BssFileFormat,
    members: Iterable[Member],
    seg_values: Mapping[SegField, str],
    remove: bool,
    domains: Sequence[DeviceDomain],
) -> tuple[SegmentFile, list[tuple[str, str]]]:
    """The file for one segment and the contacts that could not be written, with the reason.

    A member gets a line for its Xandr uid and one per device scheme for its MAID. Removals carry EXPIRATION
    -1 when the format has that field, else they follow SEPARATOR4. Values come from the identifier rules and
    are digits or UUIDs; a value containing a separator would corrupt the line and is refused instead.
    """
    separators = {s for s in (fmt.separator_1, fmt.separator_2, fmt.separator_3, fmt.separator_4,
                              fmt.separator_5) if s} | {"\n", "\r"}
    for name in fmt.segment_fields:
        if any(s in seg_values[name] for s in separators):
            raise ValueError(f"xandr: the segment's {name} contains a separator of the member's file format")
    block = seg_block(fmt, seg_values)
    removal_separator = remove and SegField.EXPIRATION not in fmt.segment_fields
    middle = fmt.separator_1 + ((fmt.separator_4 or "") if removal_separator else "")
    out = SegmentFile()
    unwritable: list[tuple[str, str]] = []
    for member in members:
        problems: list[str] = []
        lines: list[tuple[str, str]] = []
        for key, value in member.fields.items():
            if key not in (UID_KEY, DEVICE_KEY) or not value:
                continue
            if any(s in value for s in separators) or not value.isascii():
                problems.append(f"{key}: contains a separator or non-ASCII character")
            elif key == UID_KEY:
                lines.append((f"{value}{middle}{block}", key))
            elif fmt.separator_5 is None:
                problems.append(f"{key}: the member's BSS format has no separator_5 for device ids")
            else:
                for domain in domains:
                    device = value.upper() if domain is DeviceDomain.IDFA else value.lower()  # each OS's own form
                    lines.append((f"{device}{middle}{block}{fmt.separator_5}{DOMAIN_NUMBERS[domain]}", key))
        for line, key in lines:
            out.add(line, member.contact_id, key)
        if not lines:
            unwritable.append((member.contact_id, "; ".join(problems) or "no Xandr user id or device id"))
    return out, unwritable


# -- reading ------------------------------------------------------------------------------------------------
class LineFormatError(ValueError):
    """A line Xandr would count as `num_invalid_format`."""


@dataclass(frozen=True)
class ParsedLine:
    """One line as BSS reads it: the user, its device scheme (None: a Xandr uid) and its SEG blocks."""

    user: str
    domain: DeviceDomain | None
    adds: tuple[dict[SegField, str], ...]
    removes: tuple[dict[SegField, str], ...]


def parse_line(line: str, fmt: BssFileFormat) -> ParsedLine:
    """Split a line with the member's separators; raise `LineFormatError` for a malformed one."""
    domain: DeviceDomain | None = None
    if fmt.separator_5 is not None and fmt.separator_5 in line:
        line, _, number = line.rpartition(fmt.separator_5)
        if not number.isdigit() or int(number) not in DOMAINS_BY_NUMBER:
            raise LineFormatError("unknown device id scheme after separator 5")
        domain = DOMAINS_BY_NUMBER[int(number)]
    user, found, rest = line.partition(fmt.separator_1)
    if not found or not user:
        raise LineFormatError("no user id and separator 1")
    add_part, remove_part = rest, ""
    if fmt.separator_4 is not None and fmt.separator_4 in rest:
        add_part, _, remove_part = rest.partition(fmt.separator_4)
    adds = _blocks(add_part, fmt)
    removes = _blocks(remove_part, fmt)
    if not adds and not removes:
        raise LineFormatError("no segment on the line")
    return ParsedLine(user, domain, adds, removes)


def _blocks(text: str, fmt: BssFileFormat) -> tuple[dict[SegField, str], ...]:
    if not text:
        return ()
    blocks = []
    for block in text.split(fmt.separator_2):
        values = block.split(fmt.separator_3)
        if len(values) != len(fmt.segment_fields):
            raise LineFormatError("failed with an illegal number of fields")
        blocks.append(dict(zip(fmt.segment_fields, values, strict=True)))
    return tuple(blocks)


def error_log_entries(text: str | None) -> list[tuple[str, str]]:
    """`(counter, line)` pairs from a job's `error_log_lines` ("num_invalid_user-<the line>", one per row)."""
    entries = []
    for row in (text or "").splitlines():
        counter, found, line = row.partition("-")  # the line is kept as written: separators may be whitespace
        counter = counter.strip()
        if found and counter.startswith("num_") and line:
            entries.append((counter, line))
    return entries


# -- how BSS applies a file (the sandbox's half) ----------------------------------------------------------------
@dataclass(frozen=True)
class SegmentInfo:
    """What file processing needs to know about one of the member's segments."""

    code: str | None
    active: bool


@dataclass
class FileOutcome:
    """A processed file: the job's counters, its error log and the operations to apply at completion."""

    counts: dict[str, int]
    operations: list[tuple[int, str, int]]  # (segment id, user, EXPIRATION minutes; -1 removes)
    error_lines: list[str]
    per_segment: dict[int, int]


_INT_FIELDS = (SegField.SEG_ID, SegField.EXPIRATION, SegField.TIMESTAMP, SegField.VALUE, SegField.MEMBER_ID)
_MAX_VALUE = 2_147_483_647
_MILLISECONDS = 10**11  # a TIMESTAMP this large is in milliseconds: "the user will not be properly written"


def process_file(
    text: str,
    fmt: BssFileFormat,
    member_id: int,
    segments: Mapping[int, SegmentInfo],
    reject: Callable[[str], bool] | None = None,
    log_lines: int = 200,
) -> FileOutcome:
    """Validate every line as BSS does and collect what would be applied.

    Counters follow the batch-segment docs: `num_invalid_format` per malformed or duplicate line,
    `num_invalid_user` per line whose user is invalid (or, with `reject`, which is given the user, refused as
    unknown to Xandr),
    `num_valid_user` per line with a valid user, `num_valid` per applied user/segment pair, and the segment
    counters deduplicated per segment. A refused line or segment is not applied.
    """
    counts = dict.fromkeys(("num_valid", "num_valid_user", *INVALID_COUNTERS), 0)
    bad_segments: dict[str, set[str]] = {name: set() for name in ("num_invalid_segment", "num_inactive_segment",
                                                                  "num_unauth_segment")}
    by_code = {info.code.lower(): sid for sid, info in segments.items() if info.code}
    outcome = FileOutcome(counts, [], [], {})
    seen: set[str] = set()

    def refuse(counter: str, line: str) -> None:
        if counter in bad_segments:
            counts[counter] = len(bad_segments[counter])
        else:
            counts[counter] += 1
        if len(outcome.error_lines) < log_lines:
            outcome.error_lines.append(f"{counter}-{line}")

    for line in text.splitlines():
        if not line:
            continue
        try:
            if line in seen:
                raise LineFormatError("duplicate line")  # "Duplicate lines will also be considered invalid format"
            seen.add(line)
            parsed = parse_line(line, fmt)
            blocks = [(b, False) for b in parsed.adds] + [(b, True) for b in parsed.removes]
            if any(not _is_int(b[f]) for b, _ in blocks for f in _INT_FIELDS if f in b):
                raise LineFormatError("a numeric SEG field is not an integer")
        except LineFormatError:
            refuse("num_invalid_format", line)
            continue
        user = _user_key(parsed.user, parsed.domain)
        if user is None or (reject is not None and reject(user)):
            refuse("num_invalid_user", line)
            continue
        counts["num_valid_user"] += 1
        for block, removal in blocks:
            ref = block.get(SegField.SEG_ID) or block.get(SegField.SEG_CODE, "")
            sid = int(ref) if SegField.SEG_ID in block else by_code.get(ref.lower(), -1)
            expiration = REMOVE_EXPIRATION if removal else int(block.get(SegField.EXPIRATION, "0"))
            if int(block.get(SegField.MEMBER_ID, member_id)) != member_id:
                bad_segments["num_unauth_segment"].add(ref)
                refuse("num_unauth_segment", line)
            elif sid not in segments:
                bad_segments["num_invalid_segment"].add(ref)
                refuse("num_invalid_segment", line)
            elif not segments[sid].active:
                bad_segments["num_inactive_segment"].add(ref)
                refuse("num_inactive_segment", line)
            elif int(block.get(SegField.TIMESTAMP, "0")) >= _MILLISECONDS:
                refuse("num_invalid_timestamp", line)
            elif expiration < REMOVE_EXPIRATION or int(block.get(SegField.VALUE, "0")) > _MAX_VALUE:
                refuse("num_other_error", line)
            else:
                outcome.operations.append((sid, user, min(expiration, MAX_EXPIRATION_MINUTES)))
                outcome.per_segment[sid] = outcome.per_segment.get(sid, 0) + 1
                counts["num_valid"] += 1
    return outcome


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit() and text.isascii()


def _user_key(user: str, domain: DeviceDomain | None) -> str | None:
    """The user as membership stores it, or None when BSS would count it as `num_invalid_user`."""
    if domain is None:
        try:
            return xandr_uid(user, None)
        except InvalidIdentifier:
            return None
    if domain in UUID_DOMAINS and not _UUID.match(user.lower()):
        return None
    return f"{domain}:{user.lower()}"
