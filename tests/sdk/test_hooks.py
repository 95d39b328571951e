"""The plugin hooks, each through the real engine: campaign file, CSV, connectors and their local sandboxes.

A plugin here is an object with `@hookimpl` methods registered on the run's plugin manager, as an installed
plugin's module is. The last tests keep the contract honest: every hookspec has a test in this suite and its
exact signature in the "Hooks" section of docs/writing-a-connector.md, and every type a hook hands a plugin is
exported by `crm_activation`.
"""

from __future__ import annotations

import ast
import contextlib
import enum
import hashlib
import json
import re
import sqlite3
import types
import typing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pluggy
import pydantic
import pytest

import crm_activation
from crm_activation import (
    AudienceRef,
    BatchResult,
    ConfigError,
    Connector,
    Contact,
    RunSummary,
    SandboxServer,
    hookimpl,
)
from crm_activation.campaign.loader import load_campaign
from crm_activation.cli.local_sandboxes import start_sandboxes
from crm_activation.connectors.facebook.connector import FacebookConnector
from crm_activation.connectors.linkedin.connector import LinkedInConnector
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.holdout import Group, assign_group
from crm_activation.sdk import hookspecs
from crm_activation.sdk.connector import ConnectorDeclarationError
from crm_activation.sdk.errors import InputError
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "writing-a-connector.md"
CAMPAIGN_ID = "hooks"
PLATFORMS = ("facebook", "linkedin")
STAGES = ("awareness", "conversion")
TOKENS = {"facebook": "hooks-facebook-token-5c0e2a", "linkedin": "hooks-linkedin-token-9b41d7"}


# -- a campaign folder and its sandboxes ------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One CRM row of the test audience (US rows are offered both platforms)."""

    contact_id: str
    country: str = "US"
    stage: str = "awareness"
    consent: str = "yes"

    @property
    def email(self) -> str:
        return f"{self.contact_id}@example.com"

    @property
    def hashed_email(self) -> str:
        """What both platforms receive for the address: SHA-256 of the trimmed, lower-cased address."""
        return hashlib.sha256(self.email.encode()).hexdigest()

    @property
    def test_group(self) -> bool:
        """The holdout's own oracle, so a test can pick contacts of each group."""
        return assign_group(CAMPAIGN_ID, self.contact_id, 0.5) is Group.TEST


def us_rows(n: int, prefix: str = "c") -> list[Row]:
    """`n` US contacts spread over the funnel stages."""
    return [Row(f"{prefix}{i:03d}", stage=STAGES[i % len(STAGES)]) for i in range(n)]


def pick(rows: list[Row], test: int, control: int) -> list[Row]:
    """The first `test` test-group and `control` control-group rows."""
    return [r for r in rows if r.test_group][:test] + [r for r in rows if not r.test_group][:control]


@dataclass
class CampaignFolder:
    """A campaign file (JSON is YAML) pushing to Facebook and LinkedIn in the US, and its contacts CSV."""

    folder: Path
    servers: dict[str, SandboxServer]

    @property
    def state_path(self) -> Path:
        return self.folder / "state.sqlite"

    def write(self, rows: list[Row], *, batch_size: int = 4) -> None:
        lines = ["contact_id,email,country,funnel_stage,consent_ad_user_data,consent_ad_personalization"]
        lines += [f"{r.contact_id},{r.email},{r.country},{r.stage},{r.consent},{r.consent}" for r in rows]
        (self.folder / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        campaign = {
            "campaign": CAMPAIGN_ID,
            "audience": {"source": {"type": "csv", "path": "contacts.csv"}},
            "holdout": {"fraction": 0.5},
            "channels": {"default": [], "by_country": [{"countries": ["US"], "platforms": list(PLATFORMS)}]},
            "funnel": {"stages": list(STAGES)},
            "platforms": {
                "facebook": {"account": {"ad_account_id": "act_4242"}},
                "linkedin": {"account": {"ad_account_id": "5050", "source_platform": "CRM_ACTIVATION_SANDBOX"}},
            },
            "sync": {"batch_size": batch_size},
            "state": {"path": self.state_path.name},
            "http": {"max_attempts": 3, "initial_wait": 0.001, "max_wait": 0.01, "read_timeout": 2.0},
        }
        (self.folder / "campaign.yaml").write_text(json.dumps(campaign, indent=2), encoding="utf-8")

    def run(
        self, *plugins: object, dry_run: bool = False, mode: str | None = None, entry_points: bool = True
    ) -> RunSummary:
        """A run as `crm-activation run --sandbox` assembles it: installed plugins plus `plugins`."""
        options = RunOptions(
            dry_run=dry_run,
            outbox=self.folder / "outbox",
            base_urls={slug: server.url for slug, server in self.servers.items()},
            sleep=lambda _seconds: None,
            mode=mode,
        )
        manager = make_plugin_manager(plugins, load_entry_points=entry_points)
        return Engine(load_campaign(self.folder / "campaign.yaml"), options, plugin_manager=manager).run()

    def wire(self, platform: str) -> str:
        """Every request body the platform's sandbox received, as one text."""
        return "\n".join(str(entry["body"]) for entry in self.servers[platform].app.requests)

    def state(self) -> contextlib.closing[sqlite3.Connection]:
        """A second, read-only connection to the state database, as an outside observer would open one."""
        return read_only(self.state_path)


def read_only(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A read-only connection to a SQLite state database, closed when the `with` block ends."""
    return contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True))


@pytest.fixture
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CampaignFolder]:
    """The campaign folder with a Facebook and a LinkedIn sandbox accepting the tokens in the environment."""
    for slug, token in TOKENS.items():
        monkeypatch.setenv(f"CRM_ACTIVATION_{slug.upper()}_ACCESS_TOKEN", token)
    servers = start_sandboxes(collect_connectors(make_plugin_manager()), PLATFORMS)
    try:
        yield CampaignFolder(tmp_path, servers)
    finally:
        for server in servers.values():
            server.stop()


# -- register_connectors ----------------------------------------------------------------------------------
class Registration:
    """A plugin registering the two connectors the campaign uses, as a connector distribution does."""

    def __init__(self, *classes: type[Connector]) -> None:
        self.classes = list(classes)

    @hookimpl
    def register_connectors(self) -> list[type[Connector]]:
        return self.classes


def test_register_connectors_is_how_the_engine_finds_a_connector(campaign: CampaignFolder):
    rows = us_rows(12)
    campaign.write(rows)
    with pytest.raises(ConfigError, match="no connector named 'facebook' is installed"):
        campaign.run(entry_points=False)

    summary = campaign.run(Registration(FacebookConnector, LinkedInConnector), entry_points=False)

    assert summary.status == "succeeded", summary
    for platform in PLATFORMS:
        wire = campaign.wire(platform)
        assert all((r.hashed_email in wire) == r.test_group for r in rows), platform


def test_two_connectors_claiming_one_platform_are_refused_by_name():
    class ShadowFacebook(FacebookConnector):
        """A second class claiming the slug `facebook`."""

    manager = make_plugin_manager([Registration(ShadowFacebook)])

    with pytest.raises(ConnectorDeclarationError, match="'facebook' is registered twice") as caught:
        collect_connectors(manager)
    assert "FacebookConnector" in str(caught.value) and "ShadowFacebook" in str(caught.value)


# -- eligibility_veto -------------------------------------------------------------------------------------
@dataclass
class VetoPlugin:
    """Keeps `off_linkedin` off LinkedIn only and `blocked` off every platform; records what it was asked."""

    off_linkedin: set[str]
    blocked: set[str]
    asked: list[tuple[str, str]] = field(default_factory=list)

    @hookimpl
    def eligibility_veto(self, contact: Contact, platform: str) -> str | None:
        self.asked.append((contact.contact_id, platform))
        if contact.contact_id in self.blocked:
            return "blocked by plugin"
        if platform == "linkedin" and contact.contact_id in self.off_linkedin:
            return "vip: no linkedin"
        return None


def test_eligibility_veto_keeps_a_contact_off_one_platform_and_counts_it_suppressed(campaign: CampaignFolder):
    rows = us_rows(40)
    denied = pick([Row(f"denied{i}", consent="no") for i in range(20)], test=2, control=1)
    abroad = [Row("abroad1", country="DE"), Row("abroad2", country="FR")]
    campaign.write(rows + denied + abroad)
    off_linkedin = pick(rows, test=4, control=3)
    blocked = pick([r for r in rows if r not in off_linkedin], test=3, control=2)
    plugin = VetoPlugin({r.contact_id for r in off_linkedin}, {r.contact_id for r in blocked})

    summary = campaign.run(plugin)

    assert summary.status == "succeeded", summary
    # asked once per platform a contact was offered, after the campaign's own rules (country, consent) let it
    # through; control contacts too, so that where they "would have been reachable" matches the test group
    assert Counter(plugin.asked) == Counter((r.contact_id, p) for r in rows for p in PLATFORMS)
    linkedin, facebook = summary.platforms["linkedin"], summary.platforms["facebook"]
    consent = {"no consent for ad personalization": 2}  # the campaign's own rule, before any veto
    assert linkedin.suppressed_reasons == {"vip: no linkedin": 4, "blocked by plugin": 3} | consent
    assert facebook.suppressed_reasons == {"blocked by plugin": 3} | consent
    assert linkedin.eligible == facebook.eligible - 4
    # kept off one platform, a contact is still activated on the other; kept off all, it is suppressed
    assert summary.suppressed_reasons == {"blocked by plugin": 3, "no consent for ad personalization": 2}
    assert summary.outcomes["suppressed"] == 3 + 2
    assert summary.outcomes["activated"] == sum(r.test_group for r in rows) - 3
    facebook_wire, linkedin_wire = campaign.wire("facebook"), campaign.wire("linkedin")
    for row in rows:
        assert (row.hashed_email in facebook_wire) == (row.test_group and row not in blocked), row
        assert (row.hashed_email in linkedin_wire) == (row.test_group and row not in blocked + off_linkedin), row
    with campaign.state() as db:
        reachable = dict(db.execute("SELECT contact_id, reachable FROM holdout WHERE grp = 'control'").fetchall())
    assert {reachable[r.contact_id] for r in off_linkedin if not r.test_group} == {"facebook"}
    assert {reachable[r.contact_id] for r in blocked if not r.test_group} == {""}


# -- after_batch ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeenBatch:
    """One `after_batch` call, with what the state database held at that moment."""

    platform: str
    audience: AudienceRef
    operation: str
    size: int
    result: BatchResult
    ledger_rows: int  # rows of this audience and operation in the batch ledger
    members: int  # recorded members of this audience


@dataclass
class BatchObserver:
    """Records every batch and, through its own connection, what the state database had recorded by then."""

    state_path: Path
    seen: list[SeenBatch] = field(default_factory=list)

    @hookimpl
    def after_batch(self, platform: str, audience: AudienceRef, operation: str, size: int, result: BatchResult) -> None:
        where = (platform, audience.key)
        with read_only(self.state_path) as db:
            ledger_rows = db.execute(
                "SELECT COUNT(*) FROM batches WHERE platform=? AND audience_key=? AND operation=?", (*where, operation)
            ).fetchone()[0]
            members = db.execute(
                "SELECT COUNT(*) FROM memberships WHERE platform=? AND audience_key=?", where
            ).fetchone()[0]
        self.seen.append(SeenBatch(platform, audience, operation, size, result, ledger_rows, members))

    def take(self) -> list[SeenBatch]:
        seen, self.seen = self.seen, []
        return seen


def _audience_sizes(rows: list[Row]) -> dict[tuple[str, str], int]:
    """Test-group contacts per (platform, audience key): what each audience must hold."""
    counts = Counter(f"{CAMPAIGN_ID}/{r.stage}" for r in rows if r.test_group)
    return {(p, key): n for p in PLATFORMS for key, n in counts.items()}


def _check_recorded_first(
    seen: list[SeenBatch], ledger: Counter[tuple[str, str, str]], members: Counter[tuple[str, str]]
) -> None:
    """Each add or remove was in the batch ledger, and applied to the memberships, when the hook saw it.

    `ledger` and `members` are the batch ledger's rows and the member counts per audience before the run.
    """
    ledger, members = Counter(ledger), Counter(members)
    for batch in seen:
        where = (batch.platform, batch.audience.key)
        ledger[(*where, batch.operation)] += 1
        members[where] += batch.size if batch.operation == "add" else -batch.size
        assert (batch.ledger_rows, batch.members) == (ledger[(*where, batch.operation)], members[where]), batch


def _ledger(campaign: CampaignFolder, run_id: str | None = None) -> Counter[tuple[str, str, str]]:
    """Rows of the batch ledger by (platform, audience key, operation), of one run or all."""
    with campaign.state() as db:
        rows = db.execute("SELECT run_id, platform, audience_key, operation FROM batches").fetchall()
    return Counter((p, key, op) for rid, p, key, op in rows if run_id is None or rid == run_id)


def _members(campaign: CampaignFolder) -> Counter[tuple[str, str]]:
    """Recorded members per (platform, audience key)."""
    with campaign.state() as db:
        rows = db.execute("SELECT platform, audience_key, COUNT(*) FROM memberships GROUP BY 1, 2").fetchall()
    return Counter({(p, key): n for p, key, n in rows})


def test_after_batch_sees_every_acknowledged_batch_after_the_state_recorded_it(campaign: CampaignFolder):
    rows = us_rows(36)
    campaign.write(rows, batch_size=4)
    observer = BatchObserver(campaign.state_path)

    first = campaign.run(observer)

    assert first.status == "succeeded", first
    seen = observer.take()
    assert {b.operation for b in seen} == {"add"} and all(1 <= b.size <= 4 for b in seen)
    added: Counter[tuple[str, str]] = Counter()
    for batch in seen:
        added[(batch.platform, batch.audience.key)] += batch.size
        assert batch.result.received == batch.size, batch
    assert added == _audience_sizes(rows)
    assert Counter(b.platform for b in seen) == {p: first.platforms[p].batches for p in PLATFORMS}
    assert _ledger(campaign, first.run_id) == Counter((b.platform, b.audience.key, b.operation) for b in seen)
    _check_recorded_first(seen, Counter(), Counter())
    with campaign.state() as db:
        audiences = db.execute("SELECT platform, audience_key, remote_id FROM audiences").fetchall()
    stored = {(platform, key): remote_id for platform, key, remote_id in audiences}
    assert all(stored[(b.platform, b.audience.key)] == b.audience.remote_id for b in seen)

    # some test contacts leave the CRM export, new ones arrive: removes, then adds
    leaving = pick(rows, test=6, control=2)
    arriving = us_rows(10, prefix="n")
    kept = [r for r in rows if r not in leaving] + arriving
    campaign.write(kept, batch_size=4)
    ledger_before, members_before = _ledger(campaign), _members(campaign)

    second = campaign.run(observer)

    assert second.status == "succeeded", second
    seen = observer.take()
    removed: Counter[tuple[str, str]] = Counter()
    arrived: Counter[tuple[str, str]] = Counter()
    for batch in seen:
        (removed if batch.operation == "remove" else arrived)[(batch.platform, batch.audience.key)] += batch.size
    assert removed == _audience_sizes(leaving) and arrived == _audience_sizes(arriving)
    for platform in PLATFORMS:
        operations = [b.operation for b in seen if b.platform == platform]
        assert operations == sorted(operations, key=["remove", "add"].index), platform
    _check_recorded_first(seen, ledger_before, members_before)

    # a full sync: Facebook replaces each audience in one session; LinkedIn, which cannot, re-adds everyone
    ledger_before = _ledger(campaign)
    third = campaign.run(observer, mode="full")

    assert third.status == "succeeded", third
    seen = observer.take()
    desired = _audience_sizes(kept)
    replaced = [b for b in seen if b.platform == "facebook"]
    assert [b.operation for b in replaced] == ["replace"] * len(STAGES)
    for batch in replaced:
        assert batch.size == desired[("facebook", batch.audience.key)] == batch.members, batch
    readded: Counter[str] = Counter()
    for batch in (b for b in seen if b.platform == "linkedin"):
        readded[batch.audience.key] += batch.size
        assert batch.operation == "add" and batch.members == desired[("linkedin", batch.audience.key)], batch
    assert readded == {key: n for (platform, key), n in desired.items() if platform == "linkedin"}
    assert _ledger(campaign) - ledger_before == Counter(
        ("linkedin", b.audience.key, "add") for b in seen if b.platform == "linkedin"
    )  # a replace is recorded as the new membership, not as a batch


def test_after_batch_in_a_dry_run_sees_the_outbox_batches_and_nothing_is_recorded(campaign: CampaignFolder):
    rows = us_rows(20)
    campaign.write(rows, batch_size=4)
    observer = BatchObserver(campaign.state_path)

    summary = campaign.run(observer, dry_run=True)

    assert summary.status == "succeeded" and summary.dry_run, summary
    seen = observer.take()
    sent: Counter[tuple[str, str]] = Counter()
    for batch in seen:
        sent[(batch.platform, batch.audience.key)] += batch.size
        assert (batch.operation, batch.ledger_rows, batch.members) == ("add", 0, 0), batch
    assert sent == _audience_sizes(rows)
    assert not any(r.hashed_email in campaign.wire(p) for r in rows for p in PLATFORMS)
    assert sorted((campaign.folder / "outbox").iterdir()), "the dry run wrote no outbox"


# -- after_run --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeenRun:
    """One `after_run` call, with the run ledger's row for that run at that moment (None: no row)."""

    summary: RunSummary
    ledger: tuple[str, dict[str, object]] | None


@dataclass
class RunObserver:
    """Records every finished run and what the run ledger said about it by then."""

    state_path: Path
    seen: list[SeenRun] = field(default_factory=list)

    @hookimpl
    def after_run(self, summary: RunSummary) -> None:
        with read_only(self.state_path) as db:
            row = db.execute("SELECT status, summary FROM runs WHERE run_id = ?", (summary.run_id,)).fetchone()
        self.seen.append(SeenRun(summary, (row[0], json.loads(row[1])) if row else None))


def test_after_run_gets_the_final_summary_once_the_run_ledger_has_it(campaign: CampaignFolder):
    rows = us_rows(20)
    campaign.write(rows)
    observer = RunObserver(campaign.state_path)

    summary = campaign.run(observer)

    (seen,) = observer.seen
    assert seen.summary is summary and summary.status == "succeeded" and not summary.dry_run
    assert summary.rows_read == sum(summary.outcomes.values()) == len(rows)
    assert summary.seconds > 0 and all(summary.platforms[p].requests > 0 for p in PLATFORMS)
    assert seen.ledger == ("succeeded", summary.to_json())


def test_after_run_is_called_for_a_dry_run(campaign: CampaignFolder):
    rows = us_rows(20)
    campaign.write(rows)
    observer = RunObserver(campaign.state_path)

    summary = campaign.run(observer, dry_run=True)

    (seen,) = observer.seen
    assert seen.summary is summary and summary.dry_run and summary.status == "succeeded"
    assert summary.run_id == "dry-run" and seen.ledger is None  # a dry run is not in the run ledger
    assert summary.outcomes["activated"] == sum(r.test_group for r in rows) > 0
    assert not any(r.hashed_email in campaign.wire(p) for r in rows for p in PLATFORMS)


def test_after_run_is_called_when_a_platform_fails(campaign: CampaignFolder, monkeypatch: pytest.MonkeyPatch):
    campaign.write(us_rows(20))
    monkeypatch.setenv("CRM_ACTIVATION_LINKEDIN_ACCESS_TOKEN", "hooks-linkedin-token-revoked")
    observer = RunObserver(campaign.state_path)

    summary = campaign.run(observer)

    (seen,) = observer.seen
    assert seen.summary is summary and summary.status == "failed"
    assert summary.platforms["linkedin"].error and summary.platforms["facebook"].error is None
    assert "revoked" not in summary.platforms["linkedin"].error
    assert seen.ledger == ("failed", summary.to_json())


def test_after_run_is_called_when_the_run_stops_with_an_error(campaign: CampaignFolder):
    campaign.write(us_rows(4))
    (campaign.folder / "contacts.csv").unlink()
    observer = RunObserver(campaign.state_path)

    with pytest.raises(InputError, match="input file not found"):
        campaign.run(observer)

    (seen,) = observer.seen
    assert seen.summary.status == "failed" and "input file not found" in (seen.summary.error or "")
    assert seen.ledger is not None and seen.ledger[0] == "failed"


# -- the contract itself ----------------------------------------------------------------------------------
def hookspec_signatures() -> dict[str, str]:
    """Each hookspec's signature as written in hookspecs.py: `name(parameters) -> return`."""
    tree = ast.parse(Path(hookspecs.__file__).read_text(encoding="utf-8"))
    names = _hookspec_names()
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    return {function.name: signature_of(function) for function in functions}


def signature_of(function: ast.FunctionDef) -> str:
    """`name(parameters) -> return` as the source spells it."""
    returns = f" -> {ast.unparse(function.returns)}" if function.returns else ""
    return f"{function.name}({ast.unparse(function.args)}){returns}"


def _hookspec_names() -> set[str]:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return {name for name in vars(manager.hook) if not name.startswith("_")}


def hookimpls_in_tests() -> set[str]:
    """Names of every function decorated with `hookimpl` in the test suites."""
    paths = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("plugins/*/tests/**/*.py")]
    return {function.name for path in paths for function in _hookimpls(ast.parse(path.read_text(encoding="utf-8")))}


def _hookimpls(tree: ast.Module) -> list[ast.FunctionDef]:
    """Functions and methods decorated with `hookimpl` (bare or called) in a module."""
    decorated = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            decorators = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
            if any(isinstance(d, ast.Name) and d.id == "hookimpl" for d in decorators):
                decorated.append(node)
    return decorated


def hooks_section() -> str:
    """The "## 2. Hooks" section of the connector guide, up to the next section."""
    text = GUIDE.read_text(encoding="utf-8")
    match = re.search(r"^## 2\. Hooks\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f'{GUIDE} has no "## 2. Hooks" section'
    return match.group(1)


def test_hookspecs_are_found():
    assert set(hookspec_signatures()) == {"register_connectors", "eligibility_veto", "after_batch", "after_run"}


def test_every_hookspec_has_a_test_implementing_it():
    missing = set(hookspec_signatures()) - hookimpls_in_tests()
    assert not missing, f"hookspecs no test implements with @hookimpl: {sorted(missing)}"


def test_every_hookspec_signature_is_in_the_guide_exactly():
    section = hooks_section()
    missing = [signature for signature in hookspec_signatures().values() if signature not in section]
    assert not missing, f"the Hooks section of {GUIDE.name} lacks these signatures as written: {missing}"


def test_the_guides_hook_examples_match_the_hookspecs():
    """Each example implements a hook with the spec's exact signature and imports only exported names.

    Examples without a relative import (which stands for the plugin's own modules) also run, and pluggy
    validates their implementations against the specs as it would an installed plugin's.
    """
    signatures = hookspec_signatures()
    examples = re.findall(r"```python\n(.*?)```", hooks_section(), re.DOTALL)
    implemented = set()
    for number, source in enumerate(examples, start=1):
        where = f"{GUIDE.name}, Hooks example {number}"
        tree = ast.parse(source, where)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "crm_activation":
                unexported = {alias.name for alias in node.names} - set(crm_activation.__all__)
                assert not unexported, f"{where} imports what crm_activation does not export: {unexported}"
        for function in _hookimpls(tree):
            assert function.name in signatures, f"{where}: {function.name} is not a hook"
            assert signature_of(function) == signatures[function.name], where
            implemented.add(function.name)
        if not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree)):
            module = types.ModuleType(f"guide_example_{number}")
            exec(compile(tree, where, "exec"), vars(module))
            make_plugin_manager([module], load_entry_points=False)  # raises on a name or argument pluggy refuses
    assert implemented == set(signatures)


def _exported_types(annotation: object) -> Iterator[type]:
    """The package's own classes in an annotation, e.g. `RunSummary` in `list[RunSummary] | None`."""
    origin = typing.get_origin(annotation)
    if origin is not None:
        for argument in typing.get_args(annotation):
            yield from _exported_types(argument)
    elif isinstance(annotation, type) and annotation.__module__.startswith("crm_activation."):
        yield annotation


def test_every_type_a_hook_hands_a_plugin_is_exported():
    namespace = {name: getattr(crm_activation, name) for name in crm_activation.__all__}
    pending: list[type] = []
    for name in hookspec_signatures():
        try:
            hints = typing.get_type_hints(getattr(hookspecs, name), localns=namespace)
        except NameError as error:
            pytest.fail(f"hookspec {name} uses a type crm_activation does not export: {error}")
        for hint in hints.values():
            pending.extend(_exported_types(hint))
    checked: set[type] = set()
    while pending:  # the types, and the types of their fields (a contact's attributes, a summary's platforms)
        cls = pending.pop()
        if cls in checked:
            continue
        checked.add(cls)
        assert namespace.get(cls.__name__) is cls, f"{cls.__module__}.{cls.__name__} is not exported"
        if issubclass(cls, pydantic.BaseModel) and cls is not Connector:
            for model_field in cls.model_fields.values():
                pending.extend(_exported_types(model_field.annotation))
    assert {"Contact", "Attributes", "Consent", "RunSummary", "PlatformSummary", "StageCounts", "BalanceRow"} <= {
        cls.__name__ for cls in checked
    }
    assert isinstance(crm_activation.Outcome, enum.EnumMeta)  # the keys of RunSummary.outcomes
