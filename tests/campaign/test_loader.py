from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from crm_activation import ConfigError, Credentials
from crm_activation.campaign.credentials import default_env_name, load_credentials
from crm_activation.campaign.loader import CampaignFileError, load_campaign
from crm_activation.campaign.schema import PlatformConfig

VALID = """\
campaign: spring-2025
name: Spring reactivation
audience:
  source:
    type: csv
    path: data/contacts.csv
  columns:
    contact_id: crm_id
  identity_table:
    type: csv
    path: identity.csv
  suppression:
    type: sql
    url: sqlite:///suppress.db
    table: suppressed
segments:
  - name: lapsed
    when:
      - {field: lifecycle_stage, op: "==", value: lapsing}
holdout:
  fraction: 0.2
channels:
  countries: [US, GB, NO]
  default: [facebook]
  by_country:
    - countries: [US]
      platforms: [facebook, google]
platforms:
  facebook:
    account:
      ad_account_id: act_123
    credentials_env:
      access_token: FB_TOKEN
    audiences:
      awareness: {name: Spring awareness}
  google:
    account: {customer_id: "123-456-7890"}
"""


CREDENTIALS_MESSAGE = "credentials come from environment variables; use credentials_env"


def write(tmp_path: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(path: Path) -> list[str]:
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path)
    lines = str(caught.value).splitlines()
    assert lines == [str(issue) for issue in caught.value.errors]
    return lines


def test_valid_file_loads_with_sources_resolved_against_its_folder(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    loaded = load_campaign(path)
    campaign = loaded.campaign
    assert campaign.campaign == "spring-2025"
    assert loaded.base_dir == tmp_path.resolve()
    assert campaign.audience.source.path == str(tmp_path.resolve() / "data" / "contacts.csv")
    assert campaign.audience.identity_table is not None
    assert campaign.audience.identity_table.path == str(tmp_path.resolve() / "identity.csv")
    assert campaign.audience.suppression is not None
    assert campaign.audience.suppression.url == f"sqlite:///{tmp_path.resolve() / 'suppress.db'}"
    assert loaded.resolve("templates/x.j2") == tmp_path.resolve() / "templates" / "x.j2"
    assert loaded.resolve("/abs/file") == Path("/abs/file")
    # YAML 1.1 would read NO (Norway) as False; only true/false are booleans here.
    assert campaign.channels.countries == ("US", "GB", "NO")


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line containing `needle`."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "marker", "where", "message"),
    [
        (
            "  fraction: 0.2",
            "  fraction: lots",
            "fraction: lots",
            "holdout.fraction",
            "Input should be a valid number, unable to parse string as a number",
        ),
        (
            "    path: identity.csv",
            "    path: identity.csv\n    colour: red",
            "colour",
            "audience.identity_table.colour",
            "unknown key (not part of the campaign schema)",
        ),
        (
            "    - countries: [US]",
            "    - countries: [USA]",
            "[USA]",
            "channels.by_country.0.countries",
            "not ISO 3166-1 alpha-2 codes: USA",
        ),
        (
            "  countries: [US, GB, NO]",
            "  countries: [US, GB, Norway]",
            "Norway",
            "channels.countries",
            "not ISO 3166-1 alpha-2 codes: NORWAY",
        ),
        (
            "      platforms: [facebook, google]",
            "      platforms: [facebook, tiktok]",
            "tiktok",
            "channels.by_country.0.platforms.1",
            "platform 'tiktok' has no entry under `platforms:`",
        ),
        (
            "      awareness: {name: Spring awareness}",
            "      awarenes: {name: Spring awareness}",
            "awarenes:",
            "platforms.facebook.audiences.awarenes",
            "'awarenes' is not one of the funnel stages",
        ),
        (
            "    type: csv\n    path: data/contacts.csv",
            "    type: csv",
            "  source:",
            "audience.source",
            "a csv source needs `path`",
        ),
        (
            "    table: suppressed",
            "    table: suppressed\n    table: again",
            "table: again",
            "audience.suppression.table",
            "key given twice",
        ),
    ],
)
def test_each_error_points_at_its_line_and_dotted_path(
    tmp_path: Path, old: str, new: str, marker: str, where: str, message: str
) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    path = write(tmp_path, text)
    assert issues_of(path) == [f"{path}:{line_of(text, marker)}: {where}: {message}"]


def test_missing_field_is_reported_at_its_parent_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  - name: lapsed\n", "  - description: x\n"))
    (line,) = issues_of(path)
    assert line == f"{path}:{line_of(VALID, '- name: lapsed')}: segments.0.name: required key is missing"
    path = write(tmp_path, VALID.replace("campaign: spring-2025\n", ""))
    (line,) = issues_of(path)
    assert line == f"{path}:1: campaign: required key is missing"


def test_all_errors_are_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = (
        VALID.replace("  fraction: 0.2", "  fraction: 2")
        .replace("    - countries: [US]", "    - countries: [us, XYZ]")
        .replace("      platforms: [facebook, google]", "      platforms: [facebook, snap]")
        .replace("    type: csv\n    path: data/contacts.csv", "    type: tsv\n    path: data/contacts.csv")
    )
    lines = issues_of(write(tmp_path, text))
    expected = [line_of(text, "tsv"), line_of(text, "fraction: 2"), line_of(text, "XYZ"), line_of(text, "snap")]
    assert [int(line.split(":")[1]) for line in lines] == expected
    assert "audience.source.type" in lines[0]
    assert "holdout.fraction: Input should be less than 1" in lines[1]
    assert "channels.by_country.0.countries" in lines[2]
    assert "channels.by_country.0.platforms.1" in lines[3]


def test_yaml_syntax_error_gives_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("holdout:\n  fraction: 0.2", "holdout:\n  fraction: [0.2"))
    (line,) = issues_of(path)
    assert line.startswith(f"{path}:2")  # the line the parser stopped at
    assert "YAML syntax error" in line
    path = write(tmp_path, "campaign: x\n  bad indent: y\n")
    (line,) = issues_of(path)
    assert line.startswith(f"{path}:2: YAML syntax error")


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    assert issues_of(write(tmp_path, "# nothing\n")) == [f"{tmp_path / 'campaign.yaml'}:1: the campaign file is empty"]
    (line,) = issues_of(write(tmp_path, "- a\n- b\n"))
    assert "must be a mapping" in line
    with pytest.raises(CampaignFileError, match="campaign file not found"):
        load_campaign(tmp_path / "nope.yaml")


def test_secret_in_account_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "EAAB-this-is-a-very-secret-token-42"
    text = VALID.replace("      ad_account_id: act_123", f"      ad_account_id: act_123\n      access_token: {secret}")
    nested = "account: {customer_id: x, oauth: {client-secret: y}}"
    text = text.replace('account: {customer_id: "123-456-7890"}', nested)
    path = write(tmp_path, text)
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path)
    message = str(caught.value)
    assert secret not in message
    assert isinstance(caught.value, ConfigError)
    lines = message.splitlines()
    line = line_of(text, "access_token: EAAB")
    assert lines[0] == f"{path}:{line}: platforms.facebook.account.access_token: {CREDENTIALS_MESSAGE}"
    assert "platforms.google.account.oauth.client-secret: credentials come from environment variables" in lines[1]


class DemoCredentials(Credentials):
    access_token: SecretStr
    app_secret: SecretStr | None = None


def test_credentials_from_default_env_names() -> None:
    config = PlatformConfig()
    env = {"CRM_ACTIVATION_META_ADS_ACCESS_TOKEN": "tok-123456"}
    creds = load_credentials(DemoCredentials, "meta-ads", config, environ=env)
    assert creds.access_token.get_secret_value() == "tok-123456"
    assert creds.app_secret is None
    assert default_env_name("meta-ads", "access_token") == "CRM_ACTIVATION_META_ADS_ACCESS_TOKEN"


def test_credentials_from_overridden_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FB_TOKEN", "tok-abcdef")
    monkeypatch.setenv("CRM_ACTIVATION_FACEBOOK_APP_SECRET", "shh-999999")
    config = PlatformConfig(credentials_env={"access_token": "FB_TOKEN"})
    creds = load_credentials(DemoCredentials, "facebook", config)
    assert creds.access_token.get_secret_value() == "tok-abcdef"
    assert creds.app_secret is not None and creds.app_secret.get_secret_value() == "shh-999999"


def test_missing_env_var_names_the_variable_and_platform() -> None:
    config = PlatformConfig(credentials_env={"access_token": "FB_TOKEN"})
    with pytest.raises(ConfigError) as caught:
        load_credentials(DemoCredentials, "facebook", config, environ={"CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN": "x"})
    assert "FB_TOKEN" in str(caught.value)
    assert "facebook" in str(caught.value)
    with pytest.raises(ConfigError, match="FB_TOKEN"):  # empty is as good as unset
        load_credentials(DemoCredentials, "facebook", config, environ={"FB_TOKEN": ""})
    with pytest.raises(ConfigError, match="does not have: token"):
        load_credentials(DemoCredentials, "facebook", PlatformConfig(credentials_env={"token": "T"}), environ={})


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("{url: 'mysql://crm@db/crm'}", "a state URL is postgresql://"),
        ("{url: 'postgresql://crm:S3cret-x@db/crm'}", "environment variable"),
        ("{url: 'postgresql://crm@db/crm?password=S3cret-x'}", "environment variable"),
        ("{path: s.sqlite, password_env: PW}", "password_env applies to a PostgreSQL `url` only"),
    ],
)
def test_state_url_is_postgres_without_a_password(tmp_path: Path, state: str, message: str) -> None:
    text = VALID + f"state: {state}\n"
    (issue,) = issues_of(write(tmp_path, text))
    assert f"campaign.yaml:{line_of(text, 'state:')}" in issue and message in issue and "S3cret-x" not in issue


def test_state_target_from_the_file_or_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_campaign(write(tmp_path, VALID + "state: {url: 'postgresql://crm@db/crm', password_env: PW}\n"))
    assert loaded.state_target() == "postgresql://crm@db/crm"
    assert loaded.state_target("other.sqlite") == tmp_path.resolve() / "other.sqlite"
    assert loaded.state_target("postgres://x@h/d") == "postgres://x@h/d"
    with pytest.raises(ConfigError, match="PW, which is not set"):
        loaded.state_password()
    monkeypatch.setenv("PW", "from-env")
    assert loaded.state_password() == "from-env"
    default = load_campaign(write(tmp_path, VALID, "plain.yaml"))
    assert default.state_target() == tmp_path.resolve() / "crm-activation-state.sqlite"


def test_a_sqlite_override_needs_no_postgres_password(tmp_path: Path) -> None:
    loaded = load_campaign(write(tmp_path, VALID + "state: {url: 'postgresql://crm@db/crm', password_env: UNSET_PW}\n"))
    loaded.open_state(tmp_path / "local.sqlite").close()  # PW is not set, and not needed for a file
