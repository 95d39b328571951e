"""The seam between the engine and the places contacts go: an ad platform and e-mail are each a `Channel`.

The engine streams the audience, routes every contact and stages each channel's members; what differs from
one channel to the next is asked of the channel itself, so the engine names none of them:

- `payload`: how a contact becomes the channel's member (an ad platform's hashed identifiers; e-mail's clear
  address), which also decides who is reachable there;
- `email_consent`: whether e-mail consent and unsubscribes gate the channel, rather than ad consent;
- `staged`: what is kept of a member in the state database (the encoded member, or the whole contact when the
  channel needs more than identifiers, as e-mail does to personalize). A channel whose staged form is the
  encoded member alone says so with `keeps_contact = False`, and the pipeline then never builds the contact;
- `hold_back`: a last guard over everything staged (e-mail: one message per address);
- `push`: the channel's own phase once every contact is staged (an ad platform's diff; e-mail's sends).

Channels are pushed concurrently (they are independent: one slow platform must not hold up the others or the
e-mail); the summary lists them in the order the engine is handed them (`channel_plan.campaign_channels`: the
ad platforms, then e-mail). A channel's `push` therefore runs in a worker thread; the state connection
serializes its statements and transactions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from ..sdk.contact import Contact
from ..sdk.errors import CrmActivationError
from ..sdk.redaction import Redactor, get_logger
from ..sdk.summary import PlatformSummary
from ..sdk.types import Member
from ..state.store import StateStore
from .payload import PayloadBuilder

log = get_logger(__name__)


@dataclass(frozen=True)
class HeldBack:
    """Staged members taken back after staging: contact ids by channel, and the one reason (a suppression)."""

    dropped: dict[str, set[str]]
    reason: str


class Channel(Protocol):
    """A place routed test contacts are sent: one name in the campaign's `channels` rules."""

    @property
    def name(self) -> str:
        """The channel's slug, as the campaign's channel rules and the run summary name it."""

    @property
    def payload(self) -> PayloadBuilder:
        """Builds a contact's member for this channel, or says why the contact is unreachable here."""

    @property
    def email_consent(self) -> bool:
        """True when e-mail consent and unsubscribes decide who may get it; False for ad consent."""

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (read for the summary however the run ended)."""

    def staged(self, contact: Contact, member: Member) -> tuple[str, str]:
        """The (payload, fingerprint) kept in the state database for one of this channel's members."""

    def hold_back(self, state: StateStore) -> HeldBack | None:
        """Take back staged members that must not be sent after all, once everything is staged (or None)."""

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        """Send what was staged, filling `summary`.

        A failure of the channel's own (a `CrmActivationError`) is recorded in `summary.error`, redacted, and
        does not stop the other channels: see `channel_phase`. Anything raised fails the whole run.
        """


@contextmanager
def channel_phase(name: str, summary: PlatformSummary, redactor: Redactor) -> Iterator[None]:
    """Time a channel's phase into `summary.seconds`; record its failure in `summary.error` instead of raising.

    One platform's outage must not cost the others their push, and the error message may quote a request, so
    it is redacted before it reaches the summary (which is printed and stored) or the log.
    """
    started = time.monotonic()
    try:
        yield
    except CrmActivationError as error:
        summary.error = redactor.redact(f"{type(error).__name__}: {error}")
        log.error("%s: %s", name, summary.error)
    summary.seconds = round(time.monotonic() - started, 3)
