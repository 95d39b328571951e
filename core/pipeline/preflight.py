"""Checking a campaign before it runs (`crm-activation validate`): everything wrong at once, nothing pushed.

A run stops at the first problem it meets: a missing credential of one platform, then, once that is set, the
next platform's. A preflight lists them all: every platform's and e-mail's credential variables, the audience
source's header (the contact id column and every column the campaign maps), a sample of rows parsed by the
run's own `ContactParser` (rejection reasons counted), the segment rules' fields against the source's columns,
the files joined in (match table, suppression and bounce lists), the e-mail templates each sequence step names
(present, and compiling), and on request each connector's `check()` against its platform.

Nothing here writes: no state database is opened, no audience created, no message sent. Findings never carry a
value from the data or the environment, only file names, row numbers, column names and variable names.
"""

from __future__ import annotations

import difflib
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from jinja2 import TemplateNotFound, TemplateSyntaxError

from ..campaign.credentials import load_credentials
from ..campaign.email_settings import EmailConfig, EmailCredentials
from ..campaign.loader import LoadedCampaign
from ..campaign.schema import EMAIL_CHANNEL, PlatformConfig, SourceConfig
from ..email.rendering import PARTS, TemplateRenderer
from ..sdk.connector import Connector
from ..sdk.errors import CrmActivationError
from ..sdk.plugins import collect_connectors
from ..sdk.redaction import Redactor
from .channel_plan import build_connectors, enabled_platforms
from .onboarding import ContactParser
from .run_options import RunOptions
from .sources import SourceRow, open_rows, source_header

#: Rows parsed by default: enough to see the common rejection reasons, quick on any source.
DEFAULT_SAMPLE = 1000
#: Attributes that come from a standard column of the same name (or the one `columns` maps to it).
_DECLARED_FIELDS = ("segment", "lifecycle_stage", "preferred_categories", "email_unsubscribed")


@dataclass(frozen=True, slots=True)
class Finding:
    """One result: `level` "error" (the run would fail or do the wrong thing), "warning" or "ok"."""

    level: str
    check: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.message}" if self.where else f"{self.check}: {self.message}"


@dataclass
class Preflight:
    """The findings of one validation, and the sample's counts (for `--json`)."""

    findings: list[Finding] = field(default_factory=list)
    sample: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """No error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        """The findings that make the campaign invalid."""
        return [f for f in self.findings if f.level == "error"]

    def add(self, level: str, check: str, where: str, message: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(level, check, where, message))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: validity, findings by level, the sample's counts."""
        by_level = {level: [asdict(f) for f in self.findings if f.level == level] for level in ("error", "warning")}
        return {
            "valid": self.valid, "errors": by_level["error"], "warnings": by_level["warning"],
            "checked": [asdict(f) for f in self.findings if f.level == "ok"], "sample": self.sample,
        }


def validate_campaign(
    loaded: LoadedCampaign,
    pm: pluggy.PluginManager,
    *,
    platforms: tuple[str, ...] | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> Preflight:
    """Run every offline check of a loaded campaign (see the module docstring); `platforms` narrows like `--platform`.

    Connecting to the platforms is a separate step (`check_connections`), so a caller can start sandboxes for the
    platforms whose credentials were found first.
    """
    result = Preflight()
    _credentials(loaded, pm, platforms, result)
    _state(loaded, result)
    columns = _source(loaded, sample, result)
    if columns is not None:
        _segment_fields(loaded, columns, result)
    _joined_files(loaded, result)
    email = loaded.campaign.email
    if email is not None and (platforms is None or EMAIL_CHANNEL in platforms):
        _templates(loaded, email, result)
    return result


def ready_platforms(result: Preflight) -> list[str]:
    """The ad platforms whose connector could be built (account settings and credentials found)."""
    found = (f for f in result.findings if f.check == "credentials" and f.level == "ok")
    return [f.where for f in found if f.where != EMAIL_CHANNEL]


def check_connections(
    loaded: LoadedCampaign,
    pm: pluggy.PluginManager,
    platforms: Iterable[str],
    result: Preflight,
    base_urls: Mapping[str, str] | None = None,
) -> None:
    """Call each platform connector's `check()` (its cheapest authenticated request); failures become errors."""
    for slug in platforms:
        redactor = Redactor()
        try:
            connector = _connector(loaded, pm, slug, redactor, base_urls or {})
            connector.check()
        except CrmActivationError as error:
            result.add("error", "connect", slug, redactor.redact(str(error)))
        else:
            result.add("ok", "connect", slug, f"{connector.http.base_url}: credentials accepted")


def _connector(
    loaded: LoadedCampaign, pm: pluggy.PluginManager, slug: str, redactor: Redactor, base_urls: Mapping[str, str]
) -> Connector:
    """The connector a run would build for one platform (account model, credentials, HTTP client; no request)."""
    options = RunOptions(platforms=(slug,), base_urls=base_urls)
    return build_connectors(loaded.campaign, options, pm, redactor)[slug]


def _credentials(
    loaded: LoadedCampaign, pm: pluggy.PluginManager, platforms: tuple[str, ...] | None, result: Preflight
) -> None:
    """Build every platform's connector as a run would: each platform's missing variables are named together."""
    campaign = loaded.campaign
    installed = collect_connectors(pm)
    for slug in enabled_platforms(campaign, platforms):
        redactor = Redactor()
        try:
            if slug in installed:  # settings errors as `FILE:LINE: platforms.<slug>.account.<field>: message`
                account = campaign.platforms[slug].account
                loaded.validate_section(("platforms", slug, "account"), installed[slug].account_model, account)
            _connector(loaded, pm, slug, redactor, {})
        except CrmActivationError as error:
            result.add("error", "credentials", slug, redactor.redact(str(error)))
        else:
            result.add("ok", "credentials", slug, "account settings and credentials found")
    if campaign.email is not None and (platforms is None or EMAIL_CHANNEL in platforms):
        try:
            load_credentials(EmailCredentials, EMAIL_CHANNEL, PlatformConfig())
        except CrmActivationError as error:  # names variables, never values
            result.add("error", "credentials", EMAIL_CHANNEL, str(error))
        else:
            result.add("ok", "credentials", EMAIL_CHANNEL, "SMTP settings and keys found")


def _state(loaded: LoadedCampaign, result: Preflight) -> None:
    """The PostgreSQL password variable, when the campaign names one (the state itself is not opened)."""
    try:
        loaded.state_password()
    except CrmActivationError as error:
        result.add("error", "state", "state.password_env", str(error))


def _source(loaded: LoadedCampaign, sample: int, result: Preflight) -> set[str] | None:
    """Check the audience source's columns and parse a sample; the columns found (None: unreadable)."""
    audience = loaded.campaign.audience
    source = audience.source
    where = Path(source.path).name if source.path else "sql source"
    parser = ContactParser(audience.columns, loaded.campaign.funnel.first_stage)
    try:
        header = source_header(source, loaded.base_dir)
        rows = _first_rows(source, loaded.base_dir, sample)
    except CrmActivationError as error:
        result.add("error", "source", where, str(error))
        return None
    columns = set(header) if header is not None else {name for row in rows for name in row.fields}
    known = header is not None or bool(rows)
    if known:
        _required_columns(parser, columns, where, header is not None, result)
    _sample(parser, rows, where, result)
    return columns if known else None


def _first_rows(source: SourceConfig, base_dir: Path, n: int) -> list[SourceRow]:
    """The first `n` rows; the reader is closed at once (a SQL source's cursor is not left open)."""
    if not n:
        return []
    stream = open_rows(source, base_dir)
    try:
        return list(itertools.islice(stream, n))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _required_columns(parser: ContactParser, columns: set[str], where: str, exact: bool, result: Preflight) -> None:
    """The contact id column and every mapped column must be there (from the header, or seen in the sample)."""
    level = "error" if exact else "warning"  # a JSON line or SQL sample may just not show a column
    seen = "the header has" if exact else "the sampled rows have"
    if parser.id_column not in columns:
        result.add(level, "source", where, f"no {parser.id_column!r} column (the contact id): {seen} no such column")
    for column in parser.missing_columns(columns):
        if column != parser.id_column:
            result.add(level, "source", where, f"column {column!r} mapped in audience.columns: {seen} no such column"
                       + _nearest(column, columns))
    if not [f for f in result.findings if f.check == "source" and f.where == where]:
        result.add("ok", "source", where, f"{len(columns)} columns, contact id column {parser.id_column!r} present")


def _sample(parser: ContactParser, rows: list[SourceRow], where: str, result: Preflight) -> None:
    """Parse the sample with the run's parser: rejected rows and field issues by reason (first row of each)."""
    rejected: Counter[str] = Counter()
    issues: Counter[str] = Counter()
    first_row: dict[str, int] = {}
    accepted = 0
    for row in rows:
        parsed = parser.parse(row)
        accepted += parsed.contact is not None
        for issue in parsed.issues:
            reason = f"{issue.field}: {issue.reason}"
            (rejected if issue.fatal else issues)[reason] += 1
            first_row.setdefault(reason, issue.row)
    result.sample = {
        "rows": len(rows), "accepted": accepted, "rejected": len(rows) - accepted,
        "rejected_reasons": dict(rejected.most_common()), "field_issues": dict(issues.most_common()),
    }
    for counter, what in ((rejected, "rows rejected"), (issues, "field issues (row kept)")):
        for reason, n in counter.most_common():
            result.add("warning", "sample", where, f"{n} {what}: {reason} (first at row {first_row[reason]})")
    if rows and not accepted:
        result.add("error", "sample", where, f"all {len(rows)} sampled rows would be rejected")
    elif rows:
        result.add("ok", "sample", where, f"{accepted} of {len(rows)} sampled rows accepted")


def _segment_fields(loaded: LoadedCampaign, columns: set[str], result: Preflight) -> None:
    """Every field a segment rule tests must come from some column, or the rule silently never (or always) holds."""
    campaign = loaded.campaign
    parser = ContactParser(campaign.audience.columns, campaign.funnel.first_stage)
    probe = parser.parse(SourceRow("", 0, {c: "" for c in columns} | {parser.id_column: "probe"})).contact
    available = {"funnel_stage"}  # always set: the row's own, or the funnel's first stage
    if probe is not None:
        available |= set(probe.attributes.history) | set(probe.attributes.extra)
    available |= {name for name in _DECLARED_FIELDS if parser.columns.get(name, name) in columns}
    exact = campaign.audience.source.type == "csv"
    for i, rule in enumerate(campaign.segments):
        for j, condition in enumerate(rule.when):
            if condition.field not in available:
                result.add(
                    "error" if exact else "warning", "segments", f"segments[{i}].when[{j}] ({rule.name})",
                    f"field {condition.field!r} comes from no column of the source"
                    + _nearest(condition.field, available),
                )
    if campaign.segments and not [f for f in result.findings if f.check == "segments"]:
        result.add("ok", "segments", "", f"every field of {len(campaign.segments)} segment rules is a source column")


def _joined_files(loaded: LoadedCampaign, result: Preflight) -> None:
    """The match table, suppression and bounce lists must be readable (SQL ones are not queried)."""
    audience, email = loaded.campaign.audience, loaded.campaign.email
    joined: dict[str, SourceConfig | None] = {
        "audience.identity_table": audience.identity_table,
        "audience.suppression": audience.suppression,
        "email.bounces": email.bounces if email is not None else None,
    }
    for name, config in joined.items():
        if config is None or config.type == "sql":
            continue
        try:
            source_header(config, loaded.base_dir)
            if config.type == "jsonl":
                open_rows(config, loaded.base_dir)
        except CrmActivationError as error:
            result.add("error", "files", name, str(error))
        else:
            result.add("ok", "files", name, "readable")


def _templates(loaded: LoadedCampaign, config: EmailConfig, result: Preflight) -> None:
    """Each sequence step's template folder must exist, and each of its files (and variants' overrides) compile."""
    try:
        renderer = TemplateRenderer(loaded.resolve(config.templates) if config.templates else None)
    except CrmActivationError as error:
        result.add("error", "email", "email.templates", str(error))
        return
    present = set(renderer.templates())
    before = len(result.errors)
    for stage, steps in config.sequences.items():
        for i, step in enumerate(steps):
            where = f"email.sequences.{stage}[{i}]"
            if step.template not in present:
                result.add("error", "email", where, f"no template {step.template!r} in {renderer.folder}"
                           + _nearest(step.template, present))
                continue
            for variant in (None, *(v.name for v in step.variants)):
                for part in PARTS:
                    name = renderer.part_name(step.template, variant, part)
                    try:
                        renderer.env.get_template(name)
                    except TemplateSyntaxError as error:
                        result.add("error", "email", where, f"{error.name or name}:{error.lineno}: {error.message}")
                    except TemplateNotFound:
                        result.add("error", "email", where, f"template file not found: {name}")
    if len(result.errors) == before:
        result.add("ok", "email", "email.templates", f"every sequence step's template compiles ({renderer.folder})")


def _nearest(name: str, names: Iterable[str]) -> str:
    """A ' (did you mean …?)' hint for a misspelt column, field or template name."""
    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
