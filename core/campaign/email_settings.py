"""The email channel's settings: `EmailConfig` (campaign file, never secrets) and `EmailCredentials` (environment).

`EmailConfig` is the campaign file's top-level `email:` section, a frozen pydantic model like the rest of the
schema, so the loader's line-numbered error reporting applies to it. `EmailCredentials` subclasses the connector
`Credentials` base, so `load_credentials(EmailCredentials, "email", platform_config)` reads it from
`CRM_ACTIVATION_EMAIL_<FIELD>` variables (renamable with `credentials_env`) like any other connector's.

A sequence is keyed by funnel stage; each stage is an ordered list of steps. Delays count in days from the day
the contact entered the stage's sequence (step 1 on day 0, step 2 on day 3, ...), not from the previous send:
a schedule email teams can read off the config without simulating it.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..sdk.types import Credentials
from .source_settings import SourceConfig

_STRICT = ConfigDict(frozen=True, extra="forbid")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
#: Keys shorter than this are guessable by brute force; HMAC needs at least the digest's security level / 2.
MIN_KEY_LENGTH = 16


def _address(value: str, field: str) -> str:
    address = parseaddr(value)[1]
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ValueError(f"{field} is not an email address")
    return value


#: Brand values the packaged templates use; a campaign's `template_vars` override or add to them.
DEFAULT_TEMPLATE_VARS: dict[str, str | int | float | bool] = {
    "brand": "Freelance Hub",
    "site_url": "https://www.example.com",
    "support_url": "https://www.example.com/help",
    "postal_address": "Freelance Hub Inc., 100 Market Street, San Francisco, CA 94105, USA",
}


class VariantConfig(BaseModel):
    """One arm of a multivariate test on a step: a name and a relative weight.

    The name is a sub-folder of the template overriding some of its files, or just a value of the `variant`
    template variable, or both.
    """

    model_config = _STRICT

    name: str = Field(pattern=_NAME, description="variant id, recorded in email_sends.variant")
    weight: float = Field(1.0, gt=0, description="relative share of contacts (weights need not sum to 1)")


class StepConfig(BaseModel):
    """One email of a stage's sequence."""

    model_config = _STRICT

    template: str = Field(pattern=_NAME, description="template folder under the templates root")
    delay_days: int = Field(0, ge=0, le=366, description="days after entering the stage's sequence")
    variants: tuple[VariantConfig, ...] = Field((), description="empty: no test, one version for everyone")

    @field_validator("variants")
    @classmethod
    def _distinct(cls, value: tuple[VariantConfig, ...]) -> tuple[VariantConfig, ...]:
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError("two variants of a step have the same name")
        return value


class CouponConfig(BaseModel):
    """The coupon each contact gets (the win-back's $100 CTA); codes are per contact, see `coupons.py`."""

    model_config = _STRICT

    prefix: str = Field(pattern=r"^[A-Z0-9]{2,8}$", description="readable campaign prefix, e.g. WB100")
    amount: float = Field(100.0, gt=0)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    valid_days: int | None = Field(30, ge=1, description="days from the send the coupon is valid (None: no expiry)")


class EmailConfig(BaseModel):
    """The email channel of one campaign. Relative paths are resolved against the campaign file's folder."""

    model_config = _STRICT

    from_address: str = Field(description='header From, e.g. "Acme <hello@mail.acme.example>" (DKIM d= domain)')
    reply_to: str | None = None
    bounce_address: str = Field(description="envelope MAIL FROM (Return-Path) where bounces go")
    unsubscribe_url: str = Field(description="https endpoint of the one-click unsubscribe handler; ?t=<token> is added")
    unsubscribe_mailto: str = Field(description="address for mailto: unsubscribes (subject carries the token)")
    templates: str | None = Field(None, description="templates folder; default: the packaged templates/email")
    sequences: dict[str, tuple[StepConfig, ...]] = Field(description="funnel stage → ordered steps")
    default_send_hour: int | None = Field(
        10, ge=0, le=23, description="the contact's local hour (its timezone column, else its country's main zone) "
        "when history has no engagement times; null: send as soon as a step is due"
    )
    min_gap_days: int = Field(1, ge=0, description="days at least between two emails to one contact")
    coupon: CouponConfig | None = None
    bounces: SourceConfig | None = Field(None, description="hard-bounce list (contact_id and/or email columns)")
    require_consent: bool = Field(False, description="True: a contact with no recorded email consent is skipped")
    template_vars: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="plain values every template sees (brand, site_url, postal_address…)"
    )
    locale: str = Field("en_US", pattern=r"^[a-z]{2}(_[A-Z]{2})?$", description="when the contact has none")
    feedback_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="sender id for Gmail's Feedback-ID header"
    )
    message_id_domain: str | None = Field(None, description="right side of Message-IDs; default: From's domain")
    max_attempts: int = Field(4, ge=1, le=20, description="SMTP tries per message within a run (4xx, drops)")
    initial_wait: float = Field(1.0, ge=0, description="seconds before the first SMTP retry (then doubling)")
    max_wait: float = Field(30.0, ge=0)
    smtp_connections: int = Field(
        4, ge=1, le=50, description="SMTP connections a run keeps open to the relay at once (relays and ESPs cap "
        "connections per client; a connection the relay refuses is given up and the run goes on with the others)"
    )
    render_processes: int | None = Field(
        None, ge=1, le=64, description="processes rendering templates and writing messages; null: one per core "
        "(started only for runs with more than a few hundred messages)"
    )

    @field_validator("from_address", "bounce_address", "unsubscribe_mailto", "reply_to")
    @classmethod
    def _addresses(cls, value: str | None, info: Any) -> str | None:
        return value if value is None else _address(value, info.field_name)

    @field_validator("unsubscribe_url")
    @classmethod
    def _https(cls, value: str) -> str:
        # RFC 8058: the one-click POST is only honoured for https; receivers ignore List-Unsubscribe-Post otherwise
        if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?", value):
            raise ValueError("must be an https:// URL without a query string or fragment")
        if len(value) > 300:
            raise ValueError("longer than 300 characters: List-Unsubscribe must stay on one header line")
        return value

    @model_validator(mode="after")
    def _steps(self) -> EmailConfig:
        if not self.sequences:
            raise ValueError("sequences: at least one funnel stage needs steps")
        for stage, steps in self.sequences.items():
            if not steps:
                raise ValueError(f"sequences.{stage}: no steps")
            delays = [s.delay_days for s in steps]
            if delays != sorted(delays):
                raise ValueError(f"sequences.{stage}: delay_days must not decrease from one step to the next")
        return self

    @property
    def from_domain(self) -> str:
        """The domain of the From address (Message-IDs use it unless `message_id_domain` is set)."""
        return parseaddr(self.from_address)[1].rpartition("@")[2].lower()

    @property
    def bounce_envelope(self) -> str:
        """The bare bounce address for MAIL FROM."""
        return parseaddr(self.bounce_address)[1]

    @property
    def unsubscribe_mailbox(self) -> str:
        """The bare mailto: address."""
        return parseaddr(self.unsubscribe_mailto)[1]

    def template_values(self) -> dict[str, str | int | float | bool]:
        """The packaged defaults overlaid with the campaign's `template_vars`."""
        return {**DEFAULT_TEMPLATE_VARS, **self.template_vars}


class EmailCredentials(Credentials):
    """SMTP relay settings and the channel's keys, read from the environment only.

    Host, port and the TLS switches are not secrets but live here too: they differ per environment (a local
    relay in tests, the ESP's smarthost in production) exactly like the credentials that go with them.
    Variables (default names): `CRM_ACTIVATION_EMAIL_SMTP_HOST`, `..._SMTP_PORT`, `..._SMTP_USERNAME`,
    `..._SMTP_PASSWORD`, `..._SMTP_STARTTLS`, `..._SMTP_SSL`, `..._COUPON_KEY`, `..._UNSUBSCRIBE_KEY`.
    """

    smtp_host: str
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: SecretStr | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(True, description="upgrade with STARTTLS (port 587)")
    smtp_ssl: bool = Field(False, description="implicit TLS from the first byte (port 465)")
    smtp_timeout: float = Field(30.0, gt=0)
    coupon_key: SecretStr | None = Field(None, description="HMAC key of coupon codes (required with coupons)")
    unsubscribe_key: SecretStr = Field(description="HMAC key of unsubscribe tokens and Message-IDs")

    @field_validator("coupon_key", "unsubscribe_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"shorter than {MIN_KEY_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _tls_choice(self) -> EmailCredentials:
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("smtp_ssl and smtp_starttls exclude each other (465 is implicit TLS, 587 STARTTLS)")
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("smtp_username and smtp_password go together")
        return self
