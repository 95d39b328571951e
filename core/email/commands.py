"""What the e-mail team's commands do: `crm-activation email render | lint | preview`.

The arguments and the printing live in the console wing (`cli/email.py`); these functions take paths and
objects and return results, so the tests and other tools call them directly.

- `render TEMPLATE --contact FILE`: one template for one contact (a JSON object, a JSON list, JSON Lines or a
  CSV with the audience's columns; `--contact-id` picks a row) to stdout, or `--out DIR` for subject.txt,
  body.txt and body.html. Coupon and unsubscribe values are previews (nothing is recorded, no secret needed).
- `lint`: every template × variant × sample contact × segment × funnel stage × lifecycle stage, reporting every
  problem at once (each distinct problem once, with how often and one combination that shows it); exit 1.
  Every undefined variable of a part is reported, not only the first, with the closest existing name; a block
  the layout does not define (a misspelled `{% block contnet %}` whose content Jinja drops) is an error.
  Besides render errors it checks that both parts carry the unsubscribe link, the subject is not too long, the
  HTML loads nothing external, and hostile sample data comes out escaped.
- `preview`: a local web page with every template rendered for every sample contact (`preview.py`), or for
  real contacts of a campaign's source: `--campaign FILE` with `--contact-id ID` (repeatable) or `--sample N`
  (N contacts spread over the source: those whose id hashes lowest, so the same N each time).

`--config FILE` (YAML or JSON of the email section, `EmailConfig` fields) supplies template_vars, coupon, locale
and variants; without it the built-in sample config that fits the packaged templates is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..campaign.email_settings import EmailConfig
from ..campaign.loader import LoadedCampaign, load_campaign
from ..campaign.schema import SourceConfig
from ..pipeline.onboarding import ContactParser
from ..pipeline.sources import SourceRow, open_rows
from ..sdk.contact import Contact
from ..sdk.errors import InputError
from .rendering import PARTS, RenderedMessage, TemplateRenderer
from .samples import HOSTILE_TEXT, LIFECYCLE_STAGES, SAMPLE_CONTACTS, SEGMENTS, sample_config, sample_context
from .samples import with_attributes as _with
from .sequences import unit_hash

MAX_SUBJECT = 150
_EXTERNAL = re.compile(r"<(script|link|iframe|object|embed)\b|\bsrc\s*=\s*[\"']?https?:|url\(\s*[\"']?https?:", re.I)


def load_email_config(path: Path | None) -> EmailConfig:
    """The email section from a YAML/JSON file (relative `templates` resolved against it), or the sample."""
    if path is None:
        return sample_config()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        config = EmailConfig.model_validate(data.get("email", data) if isinstance(data, dict) else data)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the email config: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise InputError(f"{path}: {problems}") from None
    if config.templates and not Path(config.templates).is_absolute():
        config = config.model_copy(update={"templates": str(path.parent / config.templates)})
    return config


def load_contacts(
    path: Path, default_stage: str = "awareness", contact_id: str | None = None,
    columns: dict[str, str] | None = None,
) -> list[Contact]:
    """Contacts from a JSON object or list, JSON Lines or CSV file, parsed like the audience.

    With `contact_id`, only the row with that id is parsed (its raw id cell, trimmed, equals it), and only it
    must be valid: an export with a few broken rows still renders any good contact. Without it every row must
    parse, since the caller wants them all.
    """
    parser = ContactParser(columns or {}, default_stage)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not readable JSON: {exc}") from None
        records = data if isinstance(data, list) else [data]
        rows: Iterable[SourceRow] = (
            SourceRow(path.name, i, dict(r)) if isinstance(r, dict)
            else SourceRow(path.name, i, {}, f"a JSON {type(r).__name__}, not an object")
            for i, r in enumerate(records, 1)
        )
    else:
        source = SourceConfig.model_validate(
            {"type": "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv", "path": str(path)}
        )
        rows = open_rows(source, Path.cwd())
    contacts = []
    for row in rows:
        if contact_id is not None and _raw_id(row, parser.id_column) != contact_id:
            continue
        parsed = parser.parse(row)
        if parsed.contact is None:
            raise InputError("; ".join(str(issue) for issue in parsed.issues))
        contacts.append(parsed.contact)
        if contact_id is not None:
            break
    if not contacts:
        raise InputError(f"{path}: no contact with id {contact_id!r}" if contact_id is not None
                         else f"{path}: no contact in the file")
    return contacts


def _raw_id(row: SourceRow, column: str) -> str | None:
    """The row's contact id as written (None for a malformed row, which has no fields to trust)."""
    if row.error is not None:
        return None
    value = row.fields.get(column)
    return None if value is None else str(value).strip()


def campaign_email(path: Path) -> tuple[EmailConfig, LoadedCampaign]:
    """A campaign file's email section (its templates folder resolved against the file) and the campaign."""
    loaded = load_campaign(path)
    config = loaded.campaign.email
    if config is None:
        raise InputError(f"{path}: the campaign has no email section")
    if config.templates:
        config = config.model_copy(update={"templates": str(loaded.resolve(config.templates))})
    return config, loaded


def campaign_contacts(loaded: LoadedCampaign, ids: Sequence[str] = (), sample: int = 0) -> dict[str, Contact]:
    """Real contacts of the campaign's audience source, parsed like a run parses them, by label.

    `ids`: exactly these contacts (each must exist and parse). `sample`: N contacts whose id hashes lowest (a
    stable, unordered spread over the source); rows that do not parse are skipped.
    """
    audience = loaded.campaign.audience
    parser = ContactParser(audience.columns, loaded.campaign.funnel.first_stage)
    wanted = set(ids)
    found: dict[str, Contact] = {}
    sampled: list[tuple[float, str, Contact]] = []
    for row in open_rows(audience.source, loaded.base_dir):
        raw = _raw_id(row, parser.id_column)
        if raw in wanted and raw not in found:
            parsed = parser.parse(row)
            if parsed.contact is None:
                raise InputError("; ".join(str(issue) for issue in parsed.issues))
            found[raw] = parsed.contact
        elif sample > 0 and raw:
            key = unit_hash("preview-sample", raw)
            if len(sampled) < sample or key < sampled[-1][0]:
                parsed = parser.parse(row)
                if parsed.contact is not None:
                    sampled = sorted([*sampled, (key, raw, parsed.contact)])[:sample]
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(f"{loaded.path}: no contact with id {', '.join(map(repr, missing))} in the audience source")
    contacts = {f"contact {cid}": found[cid] for cid in ids}
    contacts.update((f"contact {cid}", contact) for _, cid, contact in sampled if cid not in wanted)
    if not contacts:
        raise InputError(f"{loaded.path}: no contact to preview in the audience source")
    return contacts


def render_for_contact(
    renderer: TemplateRenderer, config: EmailConfig, template: str, variant: str | None, contact: Contact,
    stage: str | None = None, step: int = 1,
) -> RenderedMessage:
    """What `render` prints: the template for one contact with preview coupon and unsubscribe values."""
    return renderer.render_message(template, variant, sample_context(contact, config, stage=stage, step=step))


# -- lint --------------------------------------------------------------------------------------------------
@dataclass
class LintReport:
    """Distinct problems (message → how many renders showed it, and the first combination that did)."""

    renders: int = 0
    problems: dict[str, tuple[int, str]] = field(default_factory=dict)

    def add(self, message: str, where: str) -> None:
        """Count a problem; the first combination is kept as the example."""
        count, example = self.problems.get(message, (0, where))
        self.problems[message] = (count + 1, example)

    def lines(self) -> list[str]:
        """One line per distinct problem (plus its example), then a total."""
        out = [f"{msg}\n    ({n} of {self.renders} renders, e.g. {ex})" for msg, (n, ex) in self.problems.items()]
        return [*out, f"{len(self.problems)} problem(s) in {self.renders} renders"]


def _template_variants(renderer: TemplateRenderer, config: EmailConfig, template: str) -> list[str | None]:
    configured = {v.name for steps in config.sequences.values() for s in steps if s.template == template
                  for v in s.variants}
    return [None, *sorted(set(renderer.variants(template)) | configured)]


def check_rendered(rendered: RenderedMessage, context: dict[str, Any], hostile: bool) -> list[str]:
    """Problems a render can have although it did not fail."""
    problems = []
    url = context["unsubscribe_url"]
    if url not in rendered.text:
        problems.append("the text part has no visible unsubscribe link ({{ unsubscribe_url }})")
    if url.replace("&", "&amp;") not in rendered.html:
        problems.append("the HTML part has no visible unsubscribe link ({{ unsubscribe_url }})")
    if len(rendered.subject) > MAX_SUBJECT:
        problems.append(f"the subject is longer than {MAX_SUBJECT} characters")
    if _EXTERNAL.search(rendered.html):
        problems.append("the HTML loads scripts or external resources (images, CSS, frames)")
    if hostile and "<script>alert(1)</script>" in rendered.html:
        problems.append("contact data reaches the HTML unescaped (a `|safe` or `Markup` on contact data?)")
    return problems


def lint(
    renderer: TemplateRenderer, config: EmailConfig, segments: Sequence[str] = SEGMENTS,
    stages: Sequence[str] | None = None, lifecycle: Sequence[str] = LIFECYCLE_STAGES,
) -> LintReport:
    """Render the whole matrix and collect every problem (including steps naming a missing template)."""
    report = LintReport()
    templates = renderer.templates()
    for stage, steps in config.sequences.items():
        for number, step in enumerate(steps, 1):
            if step.template not in templates:
                report.add(f"sequences.{stage}[{number}]: template {step.template!r} not found in {renderer.folder}",
                           "config")
    checked: set[str] = set()
    for template in templates:
        for variant in _template_variants(renderer, config, template):
            for name in sorted({renderer.part_name(template, variant, part) for part in PARTS} - checked):
                checked.add(name)  # a file shared by variants is checked once: blocks do not depend on data
                for error in renderer.block_problems(name):
                    report.add(str(error), f"{template}/{variant or '-'} (the file itself, any contact)")
            for sample_name, sample in SAMPLE_CONTACTS.items():
                for segment in segments:
                    for stage in stages or list(config.sequences):
                        for life in lifecycle:
                            contact = _with(sample, segment=segment, funnel_stage=stage, lifecycle_stage=life)
                            where = f"{template}/{variant or '-'} × {sample_name} × {segment} × {stage} × {life}"
                            report.renders += 1
                            context = sample_context(contact, config, stage=stage)
                            rendered, errors = renderer.check_message(template, variant, context)
                            for error in errors:
                                report.add(str(error), where)
                            if rendered is None:
                                continue
                            for problem in check_rendered(rendered, context, sample_name == "hostile"):
                                report.add(f"{template}/{variant or '-'}: {problem}", where)
    return report


__all__ = ["HOSTILE_TEXT", "campaign_contacts", "campaign_email", "lint", "load_contacts", "load_email_config",
           "render_for_contact"]
