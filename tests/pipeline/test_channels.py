"""The engine's channel seam: the engine runs whatever channels it is handed and names none of them."""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.email.delivery import DUPLICATE_ADDRESS, EmailDelivery
from crm_activation.pipeline.channel_plan import campaign_channels
from crm_activation.pipeline.channels import HeldBack, channel_phase
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.payload import PayloadBuilder
from crm_activation.pipeline.platform_channel import PlatformChannel
from crm_activation.sdk.contact import Contact
from crm_activation.sdk.errors import ConfigError
from crm_activation.sdk.identifier_kinds import IdentifierKind
from crm_activation.sdk.normalization import external_id_trimmed
from crm_activation.sdk.plugins import make_plugin_manager
from crm_activation.sdk.redaction import MASK, Redactor
from crm_activation.sdk.summary import PlatformSummary, StageCounts
from crm_activation.sdk.types import IdentifierRule, Member
from crm_activation.state.store import StateStore, encode_member

ENGINE = Path(__file__).resolve().parents[2] / "core" / "pipeline" / "engine.py"

CAMPAIGN = """\
campaign: seam
audience:
  source: {type: csv, path: contacts.csv}
holdout: {fraction: 0.01}  # every contact of these tests draws above 0.15: all are in the test group
channels:
  default: [first, second]
platforms:
  first: {enabled: false}
  second: {enabled: false}
state: {path: state.sqlite}
"""

EMAIL_SECTION = """\
email:
  from_address: "Seam <hello@mail.example.com>"
  bounce_address: bounces@mail.example.com
  unsubscribe_url: https://mail.example.com/unsubscribe
  unsubscribe_mailto: unsubscribe@mail.example.com
  sequences:
    awareness: [{template: we-miss-you}]
"""


@dataclass
class FakeChannel:
    """A channel keyed by the external id, pushed into a list."""

    name: str
    pushed: list[str]
    email_consent: bool = False
    fail: bool = False
    hold: set[str] = field(default_factory=set)
    requests: int = 0
    staged_members: dict[str, int] = field(default_factory=dict)

    @property
    def payload(self) -> PayloadBuilder:
        rule = IdentifierRule(IdentifierKind.EXTERNAL_ID, "xid", external_id_trimmed, hashed=False)
        return PayloadBuilder(self.name, (rule,), frozenset({IdentifierKind.EXTERNAL_ID}))

    def staged(self, contact: Contact, member: Member) -> tuple[str, str]:
        return encode_member(member)

    def hold_back(self, state: StateStore) -> HeldBack | None:
        if not self.hold:
            return None
        with state.transaction():
            state.db.executemany(
                "DELETE FROM desired WHERE platform=? AND contact_id=?", [(self.name, cid) for cid in self.hold]
            )
        return HeldBack({self.name: set(self.hold)}, "held by the test")

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        self.pushed.append(self.name)
        self.staged_members = state.desired_counts(self.name)
        self.requests = 3
        summary.stages["awareness"] = StageCounts(desired=sum(self.staged_members.values()))
        with channel_phase(self.name, summary, Redactor(["s3cret-value"])):
            if self.fail:
                raise ConfigError("the platform said no to s3cret-value")


def write_campaign(folder: Path, rows: list[dict[str, str]], extra: str = "") -> Path:
    (folder / "campaign.yaml").write_text(CAMPAIGN + extra)
    with (folder / "contacts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "campaign.yaml"


ROWS = [
    {"contact_id": "c1", "external_id": "x-1", "country": "US", "consent_email": "yes"},
    {"contact_id": "c2", "external_id": "x-2", "country": "US", "consent_email": "no"},
    {"contact_id": "c3", "external_id": "", "country": "US", "consent_email": "yes"},
    {"contact_id": "c1", "external_id": "x-9", "country": "US", "consent_email": "yes"},
]


def test_the_engine_runs_the_channels_it_is_handed_in_their_order(tmp_path: Path) -> None:
    pushed: list[str] = []
    first, second = FakeChannel("first", pushed), FakeChannel("second", pushed)
    summary = Engine(load_campaign(write_campaign(tmp_path, ROWS)), RunOptions(), channels=[first, second]).run()

    assert summary.status == "succeeded", summary.error
    # Pushed concurrently (they are independent); the summary keeps the order they were handed in.
    assert sorted(pushed) == ["first", "second"] and list(summary.platforms) == ["first", "second"]
    assert summary.rows_read == 4
    assert summary.outcomes["activated"] == 2 and summary.outcomes["ineligible"] == 1
    assert summary.rejected_reasons == {"contact_id: duplicate contact_id": 1}
    for channel in (first, second):
        assert channel.staged_members == {"seam/awareness": 2}
        platform = summary.platforms[channel.name]
        assert (platform.offered, platform.eligible, platform.unreachable, platform.requests) == (3, 2, 1, 3)
        assert platform.stages["awareness"].desired == 2


def test_a_channel_that_fails_is_recorded_redacted_and_the_next_one_still_pushes(tmp_path: Path) -> None:
    pushed: list[str] = []
    channels = [FakeChannel("first", pushed, fail=True), FakeChannel("second", pushed)]
    summary = Engine(load_campaign(write_campaign(tmp_path, ROWS)), RunOptions(), channels=channels).run()

    assert sorted(pushed) == ["first", "second"]
    assert summary.status == "failed"
    assert summary.platforms["first"].error == f"ConfigError: the platform said no to {MASK}"
    assert summary.platforms["second"].error is None


def test_a_channels_hold_back_counts_as_suppressed(tmp_path: Path) -> None:
    pushed: list[str] = []
    channels = [FakeChannel("first", pushed, hold={"c1"}), FakeChannel("second", pushed, hold={"c1"})]
    summary = Engine(load_campaign(write_campaign(tmp_path, ROWS)), RunOptions(), channels=channels).run()

    for channel in channels:
        platform = summary.platforms[channel.name]
        assert (platform.eligible, platform.suppressed) == (1, 1)
        assert platform.suppressed_reasons == {"held by the test": 1}
        assert channel.staged_members == {"seam/awareness": 1}
    assert summary.outcomes["activated"] == 1 and summary.outcomes["suppressed"] == 1
    assert summary.suppressed_reasons == {"held by the test": 1}
    assert sum(summary.outcomes.values()) == summary.rows_read


def test_a_channel_declaring_email_consent_is_gated_by_it(tmp_path: Path) -> None:
    pushed: list[str] = []
    channels = [FakeChannel("first", pushed, email_consent=True), FakeChannel("second", pushed)]
    summary = Engine(load_campaign(write_campaign(tmp_path, ROWS)), RunOptions(), channels=channels).run()

    assert summary.platforms["first"].suppressed_reasons == {"no email marketing consent": 1}
    assert summary.platforms["first"].eligible == 1
    assert summary.platforms["second"].eligible == 2


def test_the_campaigns_channels_are_its_platforms_then_email_unless_excluded(tmp_path: Path) -> None:
    loaded = load_campaign(write_campaign(tmp_path, ROWS, EMAIL_SECTION))
    pm, redactor = make_plugin_manager(), Redactor()

    channels = campaign_channels(loaded, loaded.campaign, RunOptions(dry_run=True), pm, redactor)
    assert [c.name for c in channels] == ["email"]
    assert isinstance(channels[0], EmailDelivery) and channels[0].email_consent
    assert campaign_channels(loaded, loaded.campaign, RunOptions(platforms=("first",)), pm, redactor) == []


def test_an_email_dry_run_stages_whole_contacts_and_holds_back_shared_addresses(tmp_path: Path) -> None:
    rows = [
        {"contact_id": "a", "email": "Ann@Example.com", "country": "US", "first_name": "Ann"},
        {"contact_id": "b", "email": " ann@example.com", "country": "US", "first_name": "Annie"},
        {"contact_id": "c", "email": "cy@example.com", "country": "US", "first_name": "Cy"},
    ]
    path = write_campaign(tmp_path, rows, EMAIL_SECTION)
    path.write_text(path.read_text().replace("[first, second]", "[email]"))
    summary = Engine(load_campaign(path), RunOptions(dry_run=True)).run()

    email = summary.platforms["email"]
    assert list(summary.platforms) == ["email"]
    assert (email.offered, email.eligible, email.suppressed) == (3, 2, 1)
    assert email.suppressed_reasons == {DUPLICATE_ADDRESS: 1}
    assert email.messages == {"not sent: dry run": 2}
    assert email.stages["awareness"].desired == 2 and email.seconds == 0.0
    assert summary.outcomes["activated"] == 2 and summary.suppressed_reasons == {DUPLICATE_ADDRESS: 1}


def test_an_ad_platform_channel_stages_the_encoded_member() -> None:
    class Http:
        requests_sent = 7

    class Connector:
        identifier_rules = (IdentifierRule(IdentifierKind.EXTERNAL_ID, "xid", external_id_trimmed, hashed=False),)
        match_keys = frozenset({IdentifierKind.EXTERNAL_ID})
        http = Http()

    channel = PlatformChannel(
        "ads", Connector(), None, hooks=make_plugin_manager().hook, redactor=Redactor(), dry_run=True  # type: ignore[arg-type]
    )
    member = Member("c1", {"xid": "x-1"}, "US", {})
    assert channel.staged(Contact(contact_id="c1"), member) == encode_member(member)
    assert channel.requests == 7 and not channel.email_consent
    assert channel.hold_back(None) is None  # type: ignore[arg-type]


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_engine_names_no_channel_in_particular() -> None:
    source = ENGINE.read_text()
    tree = ast.parse(source)
    imports = _imports(tree)
    assert not [name for name in imports if "email" in name], imports
    assert "EMAIL_CHANNEL" not in source
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert not [text for text in literals if "email" in text.lower() and "\n" not in text]


@pytest.mark.parametrize("call", ["positional", "keywords"])
def test_the_old_constructor_forms_still_work(tmp_path: Path, call: str) -> None:
    loaded = load_campaign(write_campaign(tmp_path, ROWS))
    pm = make_plugin_manager()
    engine = Engine(loaded, RunOptions(), pm) if call == "positional" else Engine(loaded, plugin_manager=pm)
    assert engine.channels == []  # both platforms are disabled and there is no e-mail section
