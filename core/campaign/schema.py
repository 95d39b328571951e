"""The campaign file's schema.

A campaign file (YAML) says where the audience comes from, how contacts are segmented, how the holdout is
drawn, which channels each country and segment may get, which audience and creative each funnel stage uses on
each platform, and where state lives. Secrets never appear here: credentials come from environment variables
(see `PlatformConfig.credentials_env`). Loading with line numbers is in `loader.py`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..sdk.countries import is_country_code
from ..state.database import is_postgres_url
from ..state.database_url import mask_url
from .email_settings import EmailConfig
from .source_settings import IdentityTableConfig, SourceConfig

__all__ = ["EmailConfig", "IdentityTableConfig", "SourceConfig"]  # re-exported: part of the campaign schema

_STRICT = ConfigDict(frozen=True, extra="forbid")
#: The channel slug of e-mail: configured by the `email:` section, not under `platforms:`.
EMAIL_CHANNEL = "email"
_ISO2 = re.compile(r"^[A-Z]{2}$")


class AudienceSourceConfig(BaseModel):
    """The CRM audience and the tables joined to it."""

    model_config = _STRICT

    source: SourceConfig
    columns: dict[str, str] = Field(
        default_factory=dict, description="standard column name → the source's column name"
    )
    identity_table: IdentityTableConfig | None = None
    suppression: SourceConfig | None = Field(
        None, description="contacts never to reach (columns contact_id and/or email, optional reason)"
    )


Operator = Literal["==", "!=", ">", ">=", "<", "<=", "in", "not in", "contains", "is empty", "is not empty"]


class Condition(BaseModel):
    """One test on a contact attribute, e.g. `{field: score, op: ">=", value: 0.7}`."""

    model_config = _STRICT

    field: str
    op: Operator = "=="
    value: Any = None


class SegmentRule(BaseModel):
    """A segment and the conditions (all must hold) that put a contact in it; no conditions = catch-all."""

    model_config = _STRICT

    name: str
    when: tuple[Condition, ...] = ()
    description: str = ""


class HoldoutConfig(BaseModel):
    """The control group: a deterministic share of each stratum that no channel ever reaches."""

    model_config = _STRICT

    fraction: float = Field(0.5, gt=0.0, lt=1.0)
    salt: str | None = Field(None, description="defaults to the campaign id")
    strata: tuple[str, ...] = ("country", "segment")
    srm_alpha: float = Field(0.001, gt=0.0, lt=1.0, description="warn when the balance p-value is below this")


def _iso_codes(value: tuple[str, ...]) -> tuple[str, ...]:
    upper = tuple(c.upper() for c in value)
    bad = [c for c in upper if not _ISO2.match(c)]
    if bad:
        raise ValueError(f"not ISO 3166-1 alpha-2 codes: {', '.join(bad)}")
    return upper


class CountryChannels(BaseModel):
    """The platforms the listed countries may get."""

    model_config = _STRICT

    countries: tuple[str, ...]
    platforms: tuple[str, ...]

    @field_validator("countries")
    @classmethod
    def _iso(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _iso_codes(value)


class ChannelsConfig(BaseModel):
    """Which platforms a contact may get, by country and then by segment.

    A contact's platforms are those of its country rule (or `default` when no rule lists the country),
    intersected with its segment's list when `by_segment` names the segment. When `countries` is given, a
    contact from any other country is ineligible.
    """

    model_config = _STRICT

    countries: tuple[str, ...] | None = None
    default: tuple[str, ...] = ()
    by_country: tuple[CountryChannels, ...] = ()
    by_segment: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("countries")
    @classmethod
    def _upper(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _iso_codes(value) if value is not None else None

    def platforms_named(self) -> set[str]:
        """Every platform slug the rules mention, to check each is configured."""
        names = set(self.default)
        for rule in self.by_country:
            names.update(rule.platforms)
        for platforms in self.by_segment.values():
            names.update(platforms)
        return names


class FunnelConfig(BaseModel):
    """The funnel stages in order; contacts without a stage start at `default_stage`."""

    model_config = _STRICT

    stages: tuple[str, ...] = ("awareness", "consideration", "conversion")
    default_stage: str | None = None

    @model_validator(mode="after")
    def _default_is_a_stage(self) -> FunnelConfig:
        if not self.stages:
            raise ValueError("at least one funnel stage is needed")
        if self.default_stage is not None and self.default_stage not in self.stages:
            raise ValueError(f"default_stage {self.default_stage!r} is not one of the stages")
        return self

    @property
    def first_stage(self) -> str:
        """The stage a contact without one is placed in."""
        return self.default_stage or self.stages[0]


class StageAudience(BaseModel):
    """The audience (and creative) a platform uses for one funnel stage."""

    model_config = _STRICT

    name: str
    creative: str | None = None
    description: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)


class PlatformConfig(BaseModel):
    """One platform account: its settings, where its secrets are in the environment, its stage audiences."""

    model_config = _STRICT

    account: dict[str, Any] = Field(default_factory=dict)
    credentials_env: dict[str, str] = Field(
        default_factory=dict, description="credential field → environment variable holding it"
    )
    audiences: dict[str, StageAudience] = Field(default_factory=dict)
    enabled: bool = True


class SyncConfig(BaseModel):
    """How membership changes are pushed."""

    model_config = _STRICT

    mode: Literal["incremental", "full"] = "incremental"
    batch_size: int | None = Field(None, ge=1, description="cap below each platform's own limit")
    # Guardrails (pipeline/guardrails.py): a broken export looks like "everyone left"; a run over one of these
    # pushes nothing unless `crm-activation run --allow-large-changes` says the change is meant.
    max_reject_fraction: float = Field(
        0.2, ge=0.0, le=1.0, description="refuse the run when more than this share of the rows read is rejected"
    )
    reject_check_min_rows: int = Field(
        20, ge=0, description="runs reading fewer rows than this are not checked against max_reject_fraction"
    )
    max_remove_fraction: float = Field(
        0.3, ge=0.0, le=1.0,
        description="refuse the run when more than this share of an audience's acknowledged members would be "
        "removed (per platform and audience)",
    )
    remove_check_min_members: int = Field(
        50, ge=0,
        description="audiences with fewer acknowledged members than this are not checked against "
        "max_remove_fraction: in a small audience, normal churn is a large share",
    )


class StateConfig(BaseModel):
    """Where the state database lives: a SQLite file (relative to the campaign file's folder) or PostgreSQL.

    A PostgreSQL URL carries no password: the file is shared and committed, secrets are not. libpq reads the
    password from PGPASSWORD or ~/.pgpass, or `password_env` names another environment variable.
    """

    model_config = _STRICT

    path: str = "crm-activation-state.sqlite"
    url: str | None = Field(None, description="postgresql://user@host:5432/database; replaces `path`")
    password_env: str | None = Field(None, description="environment variable holding the PostgreSQL password")

    @field_validator("url")
    @classmethod
    def _postgres_without_password(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not is_postgres_url(url):
            raise ValueError("a state URL is postgresql://user@host:port/database (for SQLite, use `path`)")
        if mask_url(url) != url:
            raise ValueError("put the password in an environment variable (password_env, or PGPASSWORD), not here")
        return url

    @model_validator(mode="after")
    def _password_env_needs_url(self) -> StateConfig:
        if self.password_env and not self.url:
            raise ValueError("password_env applies to a PostgreSQL `url` only")
        return self


class HttpConfig(BaseModel):
    """Retry and timeout overrides applied to every platform."""

    model_config = _STRICT

    max_attempts: int = Field(8, ge=1)
    initial_wait: float = Field(0.5, ge=0)
    max_wait: float = Field(60.0, ge=0)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    deadline_seconds: float = Field(
        300.0, gt=0, description="longest one request may take, retries and token requests included"
    )
    connect_attempts: int = Field(3, ge=1, description="attempts when the connection is refused or DNS fails")
    connect_max_wait: float = Field(1.0, ge=0, description="longest wait between those attempts")


class KpiConfig(BaseModel):
    """A key performance indicator: a contact converts when any of its event names occurs in the window."""

    model_config = _STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    events: tuple[str, ...] = Field((), description="event names that count; default: the KPI's own name")
    description: str = ""

    @property
    def event_names(self) -> tuple[str, ...]:
        """The event names that count as this KPI (the KPI's name when none are listed)."""
        return self.events or (self.name,)


class MeasurementConfig(BaseModel):
    """How the campaign's incremental effect is measured (`crm-activation report`); see docs/measurement.md.

    `costs` are per test contact offered a platform (key: platform slug) or a whole treatment (key: the
    `+`-joined slugs, which overrides the sum of its platforms), so spend can be ranked per unit of cost.
    """

    model_config = _STRICT

    kpis: tuple[KpiConfig, ...] = Field(
        (KpiConfig(name="account_created"), KpiConfig(name="first_job_post"), KpiConfig(name="hire")),
        min_length=1,
        description="default: account_created, first_job_post and hire, each counting the event of its name",
    )
    conversions: SourceConfig | None = Field(None, description="events: contact_id, event, timestamp, value")
    columns: dict[str, str] = Field(
        default_factory=dict, description="contact_id/event/timestamp/value → the source's column name"
    )
    window_days: int = Field(30, ge=1, le=366, description="days from the first run during which events count")
    costs: dict[str, float] = Field(default_factory=dict)
    min_cut_size: int = Field(200, ge=1, description="contacts per group below which a cut is flagged as small")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="1 - confidence level of every interval")

    @model_validator(mode="after")
    def _distinct(self) -> MeasurementConfig:
        names = [kpi.name for kpi in self.kpis]
        if len(set(names)) != len(names):
            raise ValueError("two KPIs have the same name")
        owners: dict[str, str] = {}
        for kpi in self.kpis:
            for event in kpi.event_names:
                if owners.setdefault(event, kpi.name) != kpi.name:
                    raise ValueError(f"event {event!r} is mapped to two KPIs ({owners[event]}, {kpi.name})")
        if any(cost < 0 for cost in self.costs.values()):
            raise ValueError("costs cannot be negative")
        return self


class Campaign(BaseModel):
    """A whole campaign file."""

    model_config = _STRICT

    campaign: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="the campaign id")
    name: str = ""
    default_country: str | None = Field(
        None,
        description="ISO 3166-1 alpha-2 country assumed when normalizing identifiers of contacts without a country "
        "(phone numbers, US states and ZIP codes); eligibility still goes by the contact's own country",
    )
    audience: AudienceSourceConfig
    segments: tuple[SegmentRule, ...] = ()
    default_segment: str = "unsegmented"
    holdout: HoldoutConfig = HoldoutConfig()
    channels: ChannelsConfig
    funnel: FunnelConfig = FunnelConfig()
    platforms: dict[str, PlatformConfig]
    sync: SyncConfig = SyncConfig()
    state: StateConfig = StateConfig()
    http: HttpConfig = HttpConfig()
    email: EmailConfig | None = Field(None, description="the email channel (slug `email` in channels)")
    measurement: MeasurementConfig | None = None

    @field_validator("default_country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not _ISO2.match(code) or not is_country_code(code):
            raise ValueError("not an ISO 3166-1 alpha-2 country code (e.g. US, GB, DE)")
        return code

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        unknown = self.channels.platforms_named() - set(self.platforms) - ({EMAIL_CHANNEL} if self.email else set())
        if unknown:
            raise ValueError(f"channels name platforms with no `platforms:` entry: {', '.join(sorted(unknown))}")
        for slug, platform in self.platforms.items():
            stray = set(platform.audiences) - set(self.funnel.stages)
            if stray:
                raise ValueError(f"platforms.{slug}.audiences names unknown funnel stages: {', '.join(sorted(stray))}")
        return self

    @property
    def holdout_salt(self) -> str:
        """The salt that seeds holdout assignment (the campaign id unless set)."""
        return self.holdout.salt or self.campaign
