"""Loading a campaign file with errors that point at the line to fix.

The YAML is composed into a node tree (which keeps every node's position) and the plain data is built from
it, recording the line of each mapping key and sequence item under its path. Every problem found — YAML
syntax, schema errors from pydantic, secrets written into the file, channels naming platforms that are not
configured — is reported at once as `FILE:LINE: dotted.path: message`, and no message ever echoes a value
from the file (a value might be a secret pasted in by mistake).

Two deliberate departures from plain `yaml.safe_load`:

- Only `true`/`false` (any case) are booleans. YAML 1.1 also reads `yes`, `no`, `on`, `off` as booleans,
  which turns Norway's country code `NO` into `False`.
- A key written twice in one mapping is an error instead of the last one silently winning.

Relative file locations in the audience's sources (`path`, and `sqlite:///relative.db` URLs) are made absolute
against the campaign file's folder while loading, so the returned `Campaign` can be used from any working
directory; `LoadedCampaign.resolve` does the same for any other relative path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..sdk.errors import ConfigError
from ..state.database import Database, is_postgres_url, open_database
from .schema import EMAIL_CHANNEL, Campaign, FunnelConfig

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)

#: Account keys that hold secrets: `access_token`, `client-secret`, `apiKey`, `developer_token`, ...
_SECRET_KEY = re.compile(
    r"token|secret|passw(or)?d|api_?key|private_?key|credential|bearer|auth_?code|session_?key", re.IGNORECASE
)
_SECRET_MESSAGE = "credentials come from environment variables; use credentials_env"
_NOT_SECRET = re.compile(r"_(url|uri|endpoint|path)$", re.IGNORECASE)  # token_url names where, not what


def _looks_secret(key: object) -> bool:
    return bool(_SECRET_KEY.search(str(key))) and not _NOT_SECRET.search(str(key))
_SOURCE_KEYS = ("source", "identity_table", "suppression")
_BOOL_TAG = "tag:yaml.org,2002:bool"


@dataclass(frozen=True, slots=True)
class CampaignIssue:
    """One problem in a campaign file; `line` is 1-based (None when the file could not be read at all)."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class CampaignFileError(ConfigError):
    """A campaign file that cannot be used; the message lists every issue, one per line."""

    def __init__(self, issues: list[CampaignIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues

    @property
    def errors(self) -> list[CampaignIssue]:
        """The issues, in file order."""
        return self.issues


@dataclass(frozen=True)
class LoadedCampaign:
    """A validated campaign and where its file lives."""

    campaign: Campaign
    path: Path
    base_dir: Path
    #: The line of every mapping key and list item, by path: later checks (a connector's account model) point there.
    lines: Mapping[Loc, int] = field(default_factory=dict, repr=False, compare=False)

    def validate_section(self, loc: Loc, model: type[M], data: Any) -> M:
        """Validate a part of the campaign against a model only known later (a connector's `account_model`).

        Errors come out like the loader's own: `FILE:LINE: platforms.acme.account.advertiser_id: message`,
        one per problem and never echoing a value, instead of pydantic's dump of the input.

        Raises:
            CampaignFileError: listing every problem found.
        """
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            issues = []
            for error in exc.errors(include_url=False, include_input=False):
                where = (*loc, *error["loc"])
                issues.append(CampaignIssue(str(self.path), _line_for(where, self.lines), _dotted(where),
                                            _message(error)))
            raise CampaignFileError(issues) from None

    def resolve(self, relative: str | Path) -> Path:
        """A path relative to the campaign file's folder (absolute paths are returned unchanged)."""
        candidate = Path(relative).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def state_target(self, override: str | Path | None = None) -> str | Path:
        """The state database: `override` (the CLI's `--state`: a path or URL), else the campaign's url or path."""
        if override is not None:
            return override if is_postgres_url(override) else self.resolve(override)
        state = self.campaign.state
        return state.url if state.url else self.resolve(state.path)

    def state_password(self) -> str | None:
        """The PostgreSQL password from `state.password_env`, when the campaign names one.

        Raises:
            ConfigError: the variable is named but not set.
        """
        name = self.campaign.state.password_env
        if not name:
            return None
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"state.password_env names {name}, which is not set")
        return value

    def open_state(self, override: str | Path | None = None, readonly: bool = False) -> Database:
        """Connect to the campaign's state database (see `state_target`)."""
        target = self.state_target(override)
        password = self.state_password() if is_postgres_url(target) else None
        return open_database(target, password=password, readonly=readonly)


# -- YAML with positions -----------------------------------------------------------------------------------
class _Builder:
    """Builds plain data from a composed node tree, remembering the line of every path."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.lines: dict[Loc, int] = {}
        self.issues: list[CampaignIssue] = []
        self._active: set[int] = set()

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
            return node.value  # yes/no/on/off stay strings (NO is Norway)
        return self.loader.construct_object(node, deep=True)

    def build(self, node: yaml.Node, loc: Loc, line: int) -> Any:
        self.lines[loc] = line
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self._active:
            self.issues.append(CampaignIssue(self.file, line, _dotted(loc), "recursive alias"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*loc, i), item.start_mark.line + 1) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return self.loader.construct_object(node, deep=True)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        data: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(CampaignIssue(self.file, line, _dotted(loc), "a mapping key must be a scalar"))
                continue
            key = self.scalar(key_node)
            if key in data:
                self.issues.append(CampaignIssue(self.file, line, _dotted((*loc, key)), "key given twice"))
                continue
            data[key] = self.build(value_node, (*loc, key), line)
        return data


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _read_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int], list[CampaignIssue]]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {(): 1}, [CampaignIssue(file, 1, "", "the campaign file is empty")]
        builder = _Builder(loader, file)
        data = builder.build(root, (), root.start_mark.line + 1)
        return data, builder.lines, builder.issues
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        return None, {}, [CampaignIssue(file, line, "", f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:  # reader errors (e.g. a control character) carry no mark object
        return None, {}, [CampaignIssue(file, getattr(exc, "line", None), "", f"YAML error: {type(exc).__name__}")]
    finally:
        loader.dispose()


# -- checks pydantic cannot place on a line ----------------------------------------------------------------
def _walk(data: Any, loc: Loc) -> Iterator[tuple[Loc, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*loc, key), value
            yield from _walk(value, (*loc, key))


def _secret_keys(data: dict[str, Any]) -> Iterator[Loc]:
    platforms = data.get("platforms")
    if not isinstance(platforms, dict):
        return
    for slug, platform in platforms.items():
        if not isinstance(platform, dict):
            continue
        for key in platform:
            if key not in ("credentials_env", "account", "audiences") and _looks_secret(key):
                yield ("platforms", slug, key)
        account = platform.get("account")
        for loc, _value in _walk(account, ("platforms", slug, "account")):
            if _looks_secret(loc[-1]):
                yield loc


def _cross_references(data: dict[str, Any]) -> Iterator[tuple[Loc, str]]:
    """Channels naming unconfigured platforms, audiences naming unknown stages, each at its own line."""
    platforms = data.get("platforms")
    if not isinstance(platforms, dict):
        return
    raw_channels = data.get("channels")
    channels: dict[str, Any] = raw_channels if isinstance(raw_channels, dict) else {}
    named: list[tuple[Loc, Any]] = []
    if isinstance(channels.get("default"), list):
        named += [(("channels", "default", i), slug) for i, slug in enumerate(channels["default"])]
    for i, rule in enumerate(channels.get("by_country") or ()):
        if isinstance(rule, dict) and isinstance(rule.get("platforms"), list):
            named += [(("channels", "by_country", i, "platforms", j), s) for j, s in enumerate(rule["platforms"])]
    by_segment = channels.get("by_segment")
    if isinstance(by_segment, dict):
        for segment, slugs in by_segment.items():
            if isinstance(slugs, list):
                named += [(("channels", "by_segment", segment, j), s) for j, s in enumerate(slugs)]
    for loc, slug in named:
        if slug == EMAIL_CHANNEL:
            if not isinstance(data.get("email"), dict):
                yield loc, "the email channel needs an `email:` section"
        elif isinstance(slug, str) and slug not in platforms:
            yield loc, f"platform {slug!r} has no entry under `platforms:`"
    funnel = data.get("funnel")
    stages = funnel.get("stages") if isinstance(funnel, dict) else None
    if stages is None:
        stages = FunnelConfig.model_fields["stages"].default
    if not isinstance(stages, list | tuple):
        return
    for slug, platform in platforms.items():
        audiences = platform.get("audiences") if isinstance(platform, dict) else None
        if isinstance(audiences, dict):
            for stage in audiences:
                if stage not in stages:
                    yield ("platforms", slug, "audiences", stage), f"{stage!r} is not one of the funnel stages"


def _absolute_sources(data: dict[str, Any], base_dir: Path) -> None:
    audience = data.get("audience")
    if not isinstance(audience, dict):
        return
    for key in _SOURCE_KEYS:
        source = audience.get(key)
        if not isinstance(source, dict):
            continue
        path = source.get("path")
        if isinstance(path, str) and path and not Path(path).expanduser().is_absolute():
            source["path"] = str(base_dir / path)
        url = source.get("url")
        if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            location = url[len("sqlite:///") :]
            if location and not location.startswith(":memory:"):
                source["url"] = f"sqlite:///{base_dir / location}"


def _line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    """The line of the deepest part of `loc` present in the file (the parent mapping for a missing key)."""
    for depth in range(len(loc), -1, -1):
        line = lines.get(loc[:depth])
        if line is not None:
            return line
    return None


def _message(error: ErrorDetails) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown key (not part of the campaign schema)"
    if error["type"] == "missing":
        return "required key is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def load_campaign(path: str | Path) -> LoadedCampaign:
    """Read and validate a campaign file.

    Args:
        path: the campaign YAML file.

    Returns:
        The validated campaign, with relative source paths made absolute against the file's folder.

    Raises:
        CampaignFileError: listing every problem as `FILE:LINE: dotted.path: message`.
    """
    file_path = Path(path)
    file = str(path)
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CampaignFileError([CampaignIssue(file, None, "", "campaign file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else exc.strerror or type(exc).__name__
        raise CampaignFileError([CampaignIssue(file, None, "", f"cannot read the campaign file: {reason}")]) from None

    data, lines, issues = _read_yaml(text, file)
    if not isinstance(data, dict):
        if not issues:
            issues.append(CampaignIssue(file, lines.get((), 1), "", "the campaign file must be a mapping of keys"))
        raise CampaignFileError(issues)

    found: list[tuple[int | None, Loc, str]] = [(i.line, tuple(i.path.split(".")), i.message) for i in issues]
    for loc in _secret_keys(data):
        found.append((_line_for(loc, lines), loc, _SECRET_MESSAGE))
    cross = [(_line_for(loc, lines), loc, message) for loc, message in _cross_references(data)]
    found += cross

    base_dir = file_path.resolve().parent
    _absolute_sources(data, base_dir)
    campaign: Campaign | None = None
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error["loc"])
            if not loc and cross:
                continue  # the campaign-wide consistency check, already reported line by line above
            found.append((_line_for(loc, lines), loc, _message(error)))
    if found or campaign is None:
        found.sort(key=lambda item: (item[0] or 0, _dotted(item[1])))
        raise CampaignFileError([CampaignIssue(file, line, _dotted(loc), message) for line, loc, message in found])
    return LoadedCampaign(campaign=campaign, path=file_path, base_dir=base_dir, lines=lines)
