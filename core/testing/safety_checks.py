"""The kit's declaration, identifier and secret checks.

Identifiers: hashed exactly as declared (checked on the members the engine would build and on the wire), and
refused with reasons that never repeat the value. Secrets: refused credentials are a `ConfigError` after a
bounded number of requests, and no secret reaches an error message, a log record, the sandbox's log or the
dry-run outbox.
"""

from __future__ import annotations

import json
import re
import tempfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from ..pipeline.payload import NormalizationCache
from ..sdk.connector import validate_connector_class
from ..sdk.contact import Contact
from ..sdk.errors import ConfigError, CrmActivationError
from ..sdk.identifier_kinds import PERSONAL_KINDS, IdentifierKind
from ..sdk.normalization import sha256_hex
from ..sdk.plugins import ENTRY_POINT_GROUP, collect_connectors, make_plugin_manager
from ..sdk.sandbox import FaultPlan, SandboxApp
from ..sdk.types import Credentials, IdentifierRule
from .contacts import DEFAULT_VECTORS
from .harness import LogCapture, SandboxHarness, leaked, on_wire, step

if TYPE_CHECKING:
    from .declaration import ContractDeclaration

_LOWER_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PROBE_URL = "http://127.0.0.1:9"  # never contacted: for_sandbox only rewrites settings


def check_declarations(contract: ContractDeclaration) -> None:
    """Declarations valid, settings of the declared models, sandbox and `for_sandbox` usable as the engine uses them."""
    cls = contract.connector
    validate_connector_class(cls)
    assert isinstance(contract.account, cls.account_model), f"account is not a {cls.account_model.__name__}"
    assert isinstance(contract.credentials, cls.credentials_model), (
        f"credentials are not {cls.credentials_model.__name__}"
    )
    undocumented = [str(rule.kind) for rule in cls.identifier_rules if not rule.source.strip()]
    assert not undocumented, f"identifier rules without a `source` a reviewer can check: {undocumented}"
    json.dumps(cls.describe())
    assert cls.sandbox is not None, f"{cls.__qualname__} declares no sandbox: `run --sandbox` could not serve it"
    plan = FaultPlan(throttle_rate=0.5, seed=7)
    app = cls.sandbox(contract.credentials, plan)  # exactly how start_sandboxes builds it
    assert isinstance(app, SandboxApp), "the declared sandbox is not a SandboxApp"
    assert app.faults == plan, "the sandbox dropped the fault plan it was built with"
    moved = cls.for_sandbox(contract.account, _PROBE_URL)
    assert moved.base_url and moved.base_url.startswith(_PROBE_URL), "for_sandbox does not move base_url"
    stray = [name for name, value in moved if isinstance(value, str) and value.startswith(("http://", "https://"))
             and not value.startswith(_PROBE_URL)]
    assert not stray, f"for_sandbox leaves these endpoints on the real platform: {stray}"


def check_entry_point(contract: ContractDeclaration) -> None:
    """The named entry point loads a plugin module whose hook registers this very class."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == contract.entry_point]
    assert found, f"no entry point {contract.entry_point!r} in group {ENTRY_POINT_GROUP!r}: is the package installed?"
    manager = make_plugin_manager(extra_plugins=[found[0].load()], load_entry_points=False)
    registered = collect_connectors(manager).get(contract.connector.platform)
    assert registered is contract.connector, (
        f"entry point {contract.entry_point!r} registers {registered!r} for {contract.connector.platform!r}"
    )


def _vector_contact(contract: ContractDeclaration, kind: IdentifierKind, raw: str, country: str | None) -> Contact:
    """The kit's contact 0 with only its primary match key (so a member exists), the vector's kind and country."""
    primary = contract.primary_kind()
    identifiers = {primary: contract.make_contact(0).identifiers[primary], kind: raw}
    if country and kind is not IdentifierKind.COUNTRY:
        identifiers[IdentifierKind.COUNTRY] = country
    return Contact(contact_id="kit-vector", identifiers=identifiers)


def check_identifiers(contract: ContractDeclaration) -> None:
    """Shapes of every field, acknowledged clear personal data, normalization vectors, pre-hashed pass-through."""
    cls, builder, cache = contract.connector, contract.builder(), NormalizationCache()
    problems: list[str] = []
    contact = contract.make_contact(0)
    sample = builder.build(contact, cache)
    member = contract.members([0])[0]
    for rule in cls.identifier_rules:
        value = member.fields.get(rule.key)
        if value is None:
            if contact.identifiers.get(rule.kind):  # a kind the country has no sample value for is fine
                reasons = [p.reason for p in sample.problems if p.kind == rule.kind] or ["no field"]
                problems.append(f"{rule.kind}: the sample value gave no `{rule.key}` ({reasons[0]}): see make_contact")
        elif rule.hashed and not _LOWER_HEX64.match(value):
            problems.append(f"{rule.kind}: `{rule.key}` is declared hashed but is not 64 lower-case hex digits")
        elif not rule.hashed and _LOWER_HEX64.match(value.lower()):
            problems.append(f"{rule.kind}: `{rule.key}` is declared clear but holds a SHA-256 digest")
        if rule.kind in PERSONAL_KINDS and not rule.hashed and rule.kind not in contract.clear_personal_kinds:
            problems.append(
                f"{rule.kind}: personal data sent in clear as `{rule.key}`; hash it, or list the kind in "
                "clear_personal_kinds if the platform documents it unhashed"
            )
    declared: dict[IdentifierKind, IdentifierRule] = {}
    for rule in cls.identifier_rules:  # a vector checks a kind's first rule (Meta's FN, not the FI made from it)
        declared.setdefault(rule.kind, rule)
    for vector in (*DEFAULT_VECTORS, *contract.identifier_vectors):
        vector_rule = declared.get(vector.kind)
        if vector_rule is None:
            continue
        outcome = builder.build(_vector_contact(contract, vector.kind, vector.raw, vector.country), cache)
        refusals = [p.reason for p in outcome.problems if p.kind == vector.kind]
        field = outcome.member.fields.get(vector_rule.key) if outcome.member else None
        label = f"{vector.kind} {vector.raw!r}" + (f" ({vector.note})" if vector.note else "")
        if vector.normalized is None:
            if not refusals:
                problems.append(f"{label} was accepted as {field!r}; it must be refused")
            raw = vector.raw.strip().lower()
            if raw and any(raw in reason.lower() for reason in refusals):
                problems.append(f"{label}: the refusal reason repeats the value")
            continue
        expected = sha256_hex(vector.normalized) if vector_rule.hashed else vector.normalized
        if refusals:
            problems.append(f"{label} was refused ({refusals[0]}); expected {vector.normalized!r}")
        elif field != expected:
            hashed = f" = sha256({vector.normalized!r})" if vector_rule.hashed else ""
            problems.append(f"{label} gave {field!r}; expected {expected!r}{hashed}")
    for rule in cls.identifier_rules:
        if not (rule.hashed and rule.kind in PERSONAL_KINDS):
            continue
        digest = sha256_hex(f"pre-hashed {rule.kind}")
        for given in (digest, digest.upper()):  # CRM exports write hashes in either case; platforms want lower
            outcome = builder.build(_vector_contact(contract, rule.kind, given, contract.country), cache)
            got = outcome.member.fields.get(rule.key) if outcome.member else None
            if rule.whole_value and got != digest:
                problems.append(f"{rule.kind}: pre-hashed {given[:8]}... became {got!r}; it must pass through")
            elif not rule.whole_value and got is not None:  # a digest has no year or initial to take
                problems.append(f"{rule.kind}: `{rule.key}` is made from part of the value, yet a pre-hashed value "
                                f"gave {got!r}; it must be left out")
    assert not problems, "identifier contract broken:\n  " + "\n  ".join(problems)


def check_wire_hashing(contract: ContractDeclaration) -> None:
    """After pushing full sample contacts, no personal value meant to be hashed is on the wire in clear."""
    cls = contract.connector
    indexes = range(6)
    members = contract.members(indexes)
    with SandboxHarness(contract) as harness:
        connector = harness.connector()
        with step("push sample contacts"):
            audience = connector.ensure_audience(contract.audience_spec(), None)
            connector.add_members(audience, members)
        wire = harness.requests_text()
    problems = []
    for index, member in zip(indexes, members, strict=True):
        contact = contract.make_contact(index)
        for rule in cls.identifier_rules:
            raw = contact.identifiers.get(rule.kind)
            if not raw or rule.kind not in PERSONAL_KINDS or rule.kind in contract.clear_personal_kinds:
                continue
            try:
                normalized = rule.normalize(raw, contact.country)
            except ValueError:
                continue
            clear = {text for text in (raw.strip(), normalized) if len(text.strip()) >= 3}
            if any(on_wire(text, wire) for text in clear):
                problems.append(f"{contact.contact_id}: its {rule.kind} is on the wire in clear")
        keys = [rule.key for rule in cls.identifier_rules if rule.kind in cls.match_keys]
        if not any(on_wire(member.fields[key], wire) for key in keys if member.fields.get(key)):
            problems.append(f"{contact.contact_id}: none of its match-key values reached the sandbox")
    assert not problems, "identifiers on the wire:\n  " + "\n  ".join(problems)


def default_wrong_credentials(credentials: Credentials) -> Credentials:
    """The credentials with every secret replaced by a distinct wrong value (other fields kept)."""
    update = {
        name: SecretStr(f"kit-wrong-{name}-0123456789") for name, value in credentials if isinstance(value, SecretStr)
    }
    return credentials.model_copy(update=update)


def check_wrong_credentials(contract: ContractDeclaration) -> None:
    """Good credentials pass `check`; wrong ones fail fast with a ConfigError that leaks nothing anywhere."""
    wrong = contract.wrong_credentials or default_wrong_credentials(contract.credentials)
    with (
        tempfile.TemporaryDirectory(prefix="crm-contract-") as scratch,
        SandboxHarness(contract, log_path=Path(scratch) / "sandbox.jsonl") as harness,
    ):
        with step("check() with the valid credentials"):
            harness.connector().check()
        connector = harness.connector(wrong)
        error: Exception | None = None
        with LogCapture(contract.connector.__module__.split(".")[0]).active() as logs:
            try:
                connector.check()
                connector.ensure_audience(contract.audience_spec(), None)
            except ConfigError as caught:
                error = caught
            except CrmActivationError as caught:
                raise AssertionError(
                    f"wrong credentials raised {type(caught).__name__}, not ConfigError, after "
                    f"{connector.http.requests_sent} requests: retrying cannot fix credentials"
                ) from None
        assert error is not None, "the sandbox accepted the wrong credentials (check() and ensure_audience passed)"
        sent = connector.http.requests_sent
        assert sent <= contract.max_auth_failure_requests, (
            f"refused credentials cost {sent} requests (at most {contract.max_auth_failure_requests}): retried"
        )
        chain: list[str] = []
        link: BaseException | None = error
        while link is not None:  # tracebacks print every chained exception too
            chain.append(f"{link!s} {link.args!r}")
            link = link.__cause__ or link.__context__
        # The connector holds both sets, so neither may reach its errors or logs. The sandbox can only mask
        # what it knows: the credentials it accepts and the tokens it issued.
        places = {
            "the ConfigError (and its chain)": (" ".join(chain), harness.all_secrets(wrong)),
            "log records": ("\n".join(logs.lines), harness.all_secrets(wrong)),
            "the sandbox's request log": (harness.dumped_log() + harness.log_file_text(), harness.all_secrets()),
        }
        for place, (text, secrets) in places.items():
            found = leaked(text, secrets)
            assert not found, f"{place} contains {', '.join(found)}"


def check_dry_run(contract: ContractDeclaration, tmp: Path) -> None:
    """check, ensure, add and remove in a dry run: recorded, masked, nothing sent."""
    members = contract.members(range(4))
    outbox = tmp / "outbox"
    with SandboxHarness(contract) as harness:
        connector = harness.connector(outbox_dir=outbox)
        with step("a dry run"):
            connector.check()
            audience = connector.ensure_audience(contract.audience_spec(), None)
            connector.add_members(audience, members)
            connector.remove_members(audience, members[:2])
        secrets = harness.all_secrets()
        assert not harness.app.requests, f"a dry run reached the sandbox: {harness.describe_requests()}"
        assert connector.http.requests_sent == 0, "a dry run sent requests"
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(outbox.glob("*.jsonl")))
    assert text.strip(), "a dry run recorded nothing in the outbox"
    found = leaked(text, secrets)
    assert not found, f"the dry-run outbox contains {', '.join(found)}"
    keys = [r.key for r in contract.connector.identifier_rules if r.kind in contract.connector.match_keys]
    recorded = [m for m in members if any(on_wire(m.fields[k], text.lower()) for k in keys if m.fields.get(k))]
    assert recorded, "the outbox holds none of the members' match keys: what a run would send is not recorded"
