"""Guardrails: what stops a broken export or a mistyped campaign from emptying the audiences.

An incremental sync reads "a contact is gone from the export" as "remove them everywhere". So an export that
lost a column, or half its rows, looks exactly like a mass departure, and would be pushed as one. Three checks
stand between the audience and the platforms:

- the columns (`ColumnCheck`): the contact id column and every column `audience.columns` names must be in
  the source (a CSV header, a SQL result's columns, the keys of a JSON Lines source's records), checked before
  any row is routed. A missing one is one `InputError` (exit 2) naming it and the columns found;
- the size of the change (`large_changes`), once everything is staged and before the first push: more than
  `sync.max_reject_fraction` of the rows read rejected, or more than `sync.max_remove_fraction` of an
  audience's acknowledged members about to be removed, refuses the run (nothing is pushed on any channel,
  e-mail included) unless `--allow-large-changes` says the change is meant. Small counts are not checked,
  where ordinary churn or one bad row is a large share: a run reading fewer than `sync.reject_check_min_rows`
  rows (20), an audience with fewer than `sync.remove_check_min_members` acknowledged members (50). A contact
  moving to another funnel stage counts as removed from its old stage's audience (to the platform it is); a
  changed payload (same contact, same audience) does not count;
- campaign rules that can never apply (`rule_field_warnings`, `country_alias_warnings`): a segment condition
  on a field the source does not have, a country written as an alias ("UK") where contacts carry the ISO
  code ("GB"). They are run-summary warnings, and errors that refuse the run under `--strict`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..campaign.schema import Campaign, SourceConfig
from ..sdk.countries import country_code, is_country_code
from ..sdk.errors import InputError
from ..sdk.summary import RunSummary
from ..state.store import StateStore
from .onboarding import HISTORY_PREFIX, ContactParser

#: Keys of JSON Lines records remembered to name the columns found (a free-form source could have thousands).
MAX_KEYS_REMEMBERED = 200
#: Attribute names the pipeline sets on every contact, whatever the source has.
_ALWAYS_SET = frozenset({"segment", "funnel_stage"})
_CONSENT_COLUMNS = frozenset({"consent_ad_user_data", "consent_ad_personalization", "consent_email"})


def _source_name(config: SourceConfig) -> str:
    return config.path or config.table or "the SQL query"


class ColumnCheck:
    """The audience's required columns, checked against a header (`header`) or a JSON Lines source's keys.

    Required: the contact id's column (`columns.contact_id`, else `contact_id`) and every source column the
    campaign's `columns` mapping names. A header is checked at once; JSON Lines records each have their own
    keys, so their union is checked once every record was read (`finish`, at the end of the first of the
    run's two reads, before anything is routed or staged).
    """

    def __init__(self, parser: ContactParser, source: SourceConfig, name: str | None = None) -> None:
        """`name`: what errors call the input, when it is not the source's file (a Spark DataFrame)."""
        self.parser = parser
        self.source = name or _source_name(source)
        self.columns: list[str] | None = None
        self.keys_only = source.type == "jsonl"
        self._keys: dict[str, None] = {}
        self._missing = set(self.required())

    def required(self) -> list[str]:
        """The source columns a run cannot do without, the contact id's first."""
        return list(dict.fromkeys([self.parser.id_column, *self.parser.columns.values()]))

    def header(self, columns: list[str]) -> None:
        """Check a CSV header or a SQL result's columns; raise `InputError` naming what is missing."""
        self.columns = list(columns)
        missing = self.parser.missing_columns(columns)
        if self.parser.id_column not in columns:
            missing.insert(0, self.parser.id_column)
        self._raise(list(dict.fromkeys(missing)), columns)

    def saw(self, fields: Mapping[str, Any]) -> None:
        """Note the keys of one JSON Lines record."""
        if self._missing:
            self._missing.difference_update(fields)
        if len(self._keys) < MAX_KEYS_REMEMBERED:
            self._keys.update(dict.fromkeys(fields))

    def finish(self) -> None:
        """After a JSON Lines read: raise when a required key was in no record (nothing read: nothing to say)."""
        if not self.keys_only:
            return
        self.columns = list(self._keys)
        if self._keys:
            self._raise([c for c in self.required() if c in self._missing], self.columns)

    def _raise(self, missing: Sequence[str], found: Sequence[str]) -> None:
        if not missing:
            return
        where = "no record has" if self.keys_only else "the header has no"
        names = ", ".join(repr(c) for c in missing)
        shown = ", ".join(found[:50]) + (f", ... ({len(found)} in all)" if len(found) > 50 else "")
        hint = (
            "; map the contact id with audience.columns.contact_id"
            if self.parser.id_column in missing and "contact_id" not in self.parser.columns
            else ""
        )
        raise InputError(
            f"{self.source}: {where} column {names}, which the campaign needs (contact id or audience.columns); "
            f"columns found: {shown or 'none'}{hint}. Nothing was pushed."
        )


def rule_field_warnings(campaign: Campaign, parser: ContactParser, columns: Iterable[str]) -> list[str]:
    """Segment conditions testing a field that no column of the source provides (they can never hold as meant)."""
    provided = set(_ALWAYS_SET)
    reverse = {source: standard for standard, source in parser.columns.items()}
    for column in columns:
        name = reverse.get(column, column)
        provided.add(name)
        if name.startswith(HISTORY_PREFIX):
            provided.add(name[len(HISTORY_PREFIX) :])
        if name in _CONSENT_COLUMNS:
            provided.add("consent")
    warnings = []
    for rule in campaign.segments:
        for condition in rule.when:
            if condition.field not in provided:
                warnings.append(
                    f"segment rule {rule.name!r} tests field {condition.field!r}, which the source does not have "
                    f"(no such column): the condition sees it empty for every contact"
                )
    return warnings


def country_alias_warnings(campaign: Campaign) -> list[str]:
    """Country values in the channel rules that are aliases, not the ISO codes contacts carry ("UK" for GB).

    Onboarding stores every contact's country as its ISO 3166-1 alpha-2 code, so a rule listing "UK" matches
    no contact at all: Britain silently gets nothing (or the default channels).
    """
    channels = campaign.channels
    places: list[tuple[str, tuple[str, ...]]] = [("channels.countries", channels.countries or ())]
    places += [(f"channels.by_country[{i}].countries", rule.countries) for i, rule in enumerate(channels.by_country)]
    warnings = []
    for where, values in places:
        for value in values:
            if is_country_code(value):
                continue
            code = country_code(value)
            if code is not None and code != value:
                warnings.append(
                    f"{where} lists {value!r}, which is not an ISO 3166-1 code: contacts' countries are stored "
                    f"as ISO codes ({value} → {code}), so it matches no contact; write {code}"
                )
    return warnings


def _percent(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 or share == 0 else f"{share:.1%}"


def large_changes(campaign: Campaign, summary: RunSummary, state: StateStore, platforms: Iterable[str]) -> list[str]:
    """What exceeds the campaign's `sync` thresholds, worded with the figures (empty: nothing does).

    Read-only: the removes are counted from the staged desired membership against the acknowledged one,
    before any plan is made or any request sent.
    """
    sync = campaign.sync
    problems = []
    rejected = summary.outcomes.get("rejected", 0)
    rows = summary.rows_read
    if rows and rows >= sync.reject_check_min_rows and rejected / rows > sync.max_reject_fraction:
        problems.append(
            f"{_percent(rejected / summary.rows_read)} of rows rejected ({rejected:,} of {summary.rows_read:,}), "
            f"above sync.max_reject_fraction {_percent(sync.max_reject_fraction)}"
        )
    for platform in platforms:
        for key, (members, removed) in sorted(state.removal_counts(campaign.campaign, platform).items()):
            if members < max(sync.remove_check_min_members, 1) or removed / members <= sync.max_remove_fraction:
                continue
            problems.append(
                f"{platform} audience {key}: {removed:,} of its {members:,} members would be removed "
                f"({_percent(removed / members)}), above sync.max_remove_fraction {_percent(sync.max_remove_fraction)}"
            )
    return problems


def refusal(problems: Sequence[str], strict_errors: Sequence[str]) -> str:
    """The run summary's `error` for a refused run: every reason, and how to go ahead when it is meant."""
    parts = []
    if problems:
        parts.append(
            "; ".join(problems) + ". Nothing was pushed; if the change is meant, rerun with --allow-large-changes"
        )
    if strict_errors:
        parts.append("--strict: " + "; ".join(strict_errors) + ". Nothing was pushed")
    return ". ".join(parts)
