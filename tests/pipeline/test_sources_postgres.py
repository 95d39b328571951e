"""The `type: sql` source against a real PostgreSQL server (tests/postgres_server.py), through `open_rows`.

Every test gets a fresh, empty database (`postgres_url`); its password is in PGPASSWORD, as in production, so
the URL itself carries none unless a test puts a (wrong) one in on purpose.
"""

from __future__ import annotations

import csv
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from pydantic import SecretStr

from crm_activation import SandboxServer
from crm_activation.campaign.loader import load_campaign
from crm_activation.campaign.schema import SourceConfig
from crm_activation.connectors.facebook.sandbox import FacebookSandbox
from crm_activation.connectors.facebook.settings import FacebookCredentials
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.sources import FETCH_SIZE, SourceRow, mask_url, open_rows
from crm_activation.sdk.errors import InputError

#: A password that must never appear in an error message, whichever way the URL carries it.
WRONG_PASSWORD = "wrong-pw-7f3a91c2"
EMAIL = "ann.lee@example.com"
NOT_SHOWN = "invalid text representation (SQLSTATE 22P02; the value is not shown)"


def sql(url: str, *, table: str | None = None, query: str | None = None) -> SourceConfig:
    return SourceConfig(type="sql", url=url, table=table, query=query)


def read(config: SourceConfig, base_dir: Path = Path(".")) -> list[SourceRow]:
    return list(open_rows(config, base_dir))


def execute(url: str, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    """Run set-up statements, each plain or `(statement, parameters)`, committed (the source connects itself)."""
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            text, params = statement if isinstance(statement, tuple) else (statement, None)
            connection.execute(text, params)


def database(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def with_password(url: str, password: str) -> str:
    return url.replace("://crm@", f"://crm:{password}@", 1)


def sessions(url: str, expected: int) -> int:
    """How many other sessions are connected to the test database, waiting (a while) for `expected`.

    A backend leaves pg_stat_activity shortly after its client hangs up, not at once, hence the wait; a count
    that never reaches `expected` is returned as it is, for the assertion to show.
    """
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database(url),),
            ).fetchone()
            count = int(row[0]) if row else -1
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.05)


def error_of(config: SourceConfig) -> str:
    with pytest.raises(InputError) as caught:
        read(config)
    return str(caught.value)


# -- reading -----------------------------------------------------------------------------------------------
CONTACTS = """
CREATE TABLE contacts (
    contact_id text, email text, first_name text, score numeric(4, 2), hires numeric, visits integer,
    ratio double precision, signed_up date, last_seen timestamp, avatar bytea, note text, account uuid,
    subscribed boolean, tags text[], amounts numeric[], profile jsonb
)
"""


def test_table_rows_map_columns_to_fields_and_values_become_json_like(postgres_url: str) -> None:
    execute(
        postgres_url,
        CONTACTS,
        "INSERT INTO contacts VALUES ('c1', 'ann.lee@example.com', 'Zoë 🎉 Ångström', 0.75, 3, 12, 0.5, "
        "'2024-02-29', '2024-03-01 13:45:07.25', '\\xc3a9', NULL, 'a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b', true, "
        "'{web,design}', '{1.50,2}', '{\"tier\": 2.5, \"ids\": [1]}')",
        "INSERT INTO contacts (contact_id) VALUES ('c2')",
        "INSERT INTO contacts (contact_id, score, hires) VALUES ('c3', -0.10, 1e3)",
    )
    rows = read(sql(postgres_url, table="contacts"))
    assert [(r.row, r.fields["contact_id"]) for r in rows] == [(1, "c1"), (2, "c2"), (3, "c3")]
    assert rows[0] == SourceRow(
        postgres_url,
        1,
        {
            "contact_id": "c1",
            "email": "ann.lee@example.com",
            "first_name": "Zoë 🎉 Ångström",
            "score": 0.75,
            "hires": 3,
            "visits": 12,
            "ratio": 0.5,
            "signed_up": "2024-02-29",
            "last_seen": "2024-03-01T13:45:07.250000",
            "avatar": "é",
            "note": None,
            "account": "a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b",
            "subscribed": True,
            "tags": ["web", "design"],
            "amounts": [1.5, 2],
            "profile": {"tier": 2.5, "ids": [1]},
        },
    )
    first = rows[0].fields
    assert type(first["hires"]) is int and type(first["score"]) is float and type(first["amounts"][1]) is int
    assert set(rows[1].fields) == set(first)  # every column, NULL or not
    assert all(v is None for k, v in rows[1].fields.items() if k != "contact_id")
    assert (rows[2].fields["score"], rows[2].fields["hires"]) == (-0.1, 1000)


def test_non_finite_numerics_become_floats(postgres_url: str) -> None:
    # PostgreSQL's numeric has NaN and ±Infinity; `int(Decimal("Infinity"))` raised OverflowError mid-run.
    rows = read(
        sql(postgres_url, query="SELECT 'Infinity'::numeric AS up, '-Infinity'::numeric AS down, 'NaN'::numeric AS nan")
    )
    fields = rows[0].fields
    assert (fields["up"], fields["down"]) == (float("inf"), float("-inf"))
    assert fields["nan"] != fields["nan"] and type(fields["nan"]) is float


def test_query_rows_are_numbered_by_position_in_the_result(postgres_url: str) -> None:
    execute(
        postgres_url,
        "CREATE TABLE people (id integer, mail text)",
        "INSERT INTO people SELECT n, 'user' || n || CASE WHEN n % 2 = 0 THEN '@example.com' ELSE '@example.org' END"
        " FROM generate_series(1, 9) AS n",
    )
    # `%` and braces are plain SQL here (no parameters are bound); a trailing semicolon is what people write.
    query = (
        "SELECT mail AS email, id * 10 AS \"history_hires\", '{x}' AS literal FROM people "
        "WHERE mail LIKE '%@example.com' ORDER BY id DESC; "
    )
    rows = read(sql(postgres_url, query=query))
    assert [(r.row, r.fields) for r in rows] == [
        (1, {"email": "user8@example.com", "history_hires": 80, "literal": "{x}"}),
        (2, {"email": "user6@example.com", "history_hires": 60, "literal": "{x}"}),
        (3, {"email": "user4@example.com", "history_hires": 40, "literal": "{x}"}),
        (4, {"email": "user2@example.com", "history_hires": 20, "literal": "{x}"}),
    ]
    assert read(sql(postgres_url, query="SELECT * FROM people WHERE false")) == []


def test_table_names_with_schema_case_and_quotes(postgres_url: str) -> None:
    execute(
        postgres_url,
        'CREATE SCHEMA "crm data"',
        'CREATE TABLE "crm data"."odd ""quoted"" table" (contact_id text)',
        "INSERT INTO \"crm data\".\"odd \"\"quoted\"\" table\" VALUES ('quoted')",
        "CREATE TABLE contacts (contact_id text)",
        "INSERT INTO contacts VALUES ('lower')",
        'CREATE TABLE "Contacts" (contact_id text)',
        "INSERT INTO \"Contacts\" VALUES ('upper')",
    )

    def ids(table: str) -> list[str]:
        return [r.fields["contact_id"] for r in read(sql(postgres_url, table=table))]

    assert ids('crm data.odd "quoted" table') == ["quoted"]
    assert ids("public.contacts") == ids("contacts") == ["lower"]
    assert ids("Contacts") == ["upper"]  # quoted, so the case is kept rather than folded to `contacts`
    message = error_of(sql(postgres_url, table="contacts; DROP TABLE contacts"))
    assert 'relation "contacts; drop table contacts" does not exist' in message.lower()
    assert ids("contacts") == ["lower"]  # a table name is an identifier, never SQL


@pytest.mark.parametrize(
    "scheme", ["postgres://", "postgresql+psycopg://", "postgresql+psycopg2://", "PostgreSQL://"]
)
def test_url_variants_reach_the_same_database(postgres_url: str, scheme: str) -> None:
    execute(postgres_url, "CREATE TABLE contacts (contact_id text)", "INSERT INTO contacts VALUES ('c1')")
    url = postgres_url.replace("postgresql://", scheme, 1)
    assert read(sql(url, table="contacts")) == [SourceRow(url, 1, {"contact_id": "c1"})]


# -- streaming ---------------------------------------------------------------------------------------------
def test_a_large_table_is_read_whole_across_batches(postgres_url: str) -> None:
    total = 3 * FETCH_SIZE + 7
    execute(
        postgres_url,
        "CREATE TABLE contacts (contact_id text, n integer)",
        ("INSERT INTO contacts SELECT 'c' || n, n FROM generate_series(1, %s) AS n", (total,)),
    )
    rows = read(sql(postgres_url, query="SELECT contact_id, n FROM contacts ORDER BY n"))
    assert [r.row for r in rows] == list(range(1, total + 1))
    assert [r.fields["n"] for r in rows] == list(range(1, total + 1))  # no batch lost or repeated
    assert read(sql(postgres_url, query=f"SELECT n FROM contacts WHERE n <= {FETCH_SIZE}"))[-1].row == FETCH_SIZE


def test_rows_come_from_a_server_side_cursor_batch_by_batch(postgres_url: str) -> None:
    # Row `boom` divides by zero, but only when the server produces it: a source that loaded the whole result
    # up front would fail before its first row; a streaming one fails after the last complete batch.
    boom = 2 * FETCH_SIZE + 500
    query = f"SELECT n AS contact_id, 10 / (n - {boom}) AS x FROM generate_series(1, {3 * FETCH_SIZE}) AS n"
    rows = open_rows(sql(postgres_url, query=query), Path("."))
    head = [next(rows) for _ in range(FETCH_SIZE + 10)]
    assert [r.row for r in head] == list(range(1, FETCH_SIZE + 11))
    with psycopg.connect(postgres_url, autocommit=True) as observer:
        state = observer.execute(
            "SELECT state, query FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database(postgres_url),),
        ).fetchall()
    assert len(state) == 1 and state[0][0] == "idle in transaction" and state[0][1].startswith("FETCH")
    with pytest.raises(InputError) as caught:
        list(rows)
    assert str(caught.value) == (
        f"{postgres_url}: reading rows failed after row {2 * FETCH_SIZE}: "
        "division by zero (SQLSTATE 22012; the value is not shown)"
    )


def test_the_connection_is_closed_however_reading_ends(postgres_url: str) -> None:
    execute(
        postgres_url,
        "CREATE TABLE contacts (contact_id text)",
        ("INSERT INTO contacts SELECT 'c' || n FROM generate_series(1, %s) AS n", (2 * FETCH_SIZE,)),
    )
    config = sql(postgres_url, table="contacts")
    rows = open_rows(config, Path("."))
    assert sessions(postgres_url, 0) == 0  # lazy: nothing connects before the first row is asked for
    assert next(rows).row == 1
    assert sessions(postgres_url, 1) == 1
    rows.close()  # the consumer stops early (a failed run, a `head`)
    assert sessions(postgres_url, 0) == 0

    rows = open_rows(config, Path("."))
    next(rows)
    assert sessions(postgres_url, 1) == 1
    del rows  # dropped without close(): the generator's clean-up still runs
    assert sessions(postgres_url, 0) == 0

    assert len(read(config)) == 2 * FETCH_SIZE
    assert sessions(postgres_url, 0) == 0
    error_of(sql(postgres_url, query="SELECT contact_id::int FROM contacts"))
    assert sessions(postgres_url, 0) == 0
    error_of(sql(postgres_url, query="SELECT 1 AS a, 2 AS a"))
    assert sessions(postgres_url, 0) == 0


# -- errors ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_wrong_password_is_named_but_never_shown(postgres_url: str) -> None:
    url = with_password(postgres_url, WRONG_PASSWORD)
    message = error_of(sql(url, table="contacts"))
    assert message.startswith(f"{with_password(postgres_url, '***')}: cannot connect: ")
    assert 'password authentication failed for user "crm"' in message
    assert WRONG_PASSWORD not in message

    url = f"{postgres_url}?password={WRONG_PASSWORD}&connect_timeout=5"  # libpq's other place for a password
    message = error_of(sql(url, table="contacts"))
    assert message.startswith(f"{postgres_url}?password=***&connect_timeout=5: cannot connect: ")
    assert "password authentication failed" in message and WRONG_PASSWORD not in message


def test_a_malformed_url_echoed_by_libpq_is_masked(postgres_url: str) -> None:
    # libpq quotes a bad percent-escape back, and here the bad escape sits inside the password.
    password = f"{WRONG_PASSWORD}%zz"
    message = error_of(sql(with_password(postgres_url, password), table="contacts"))
    assert message.startswith(f"{with_password(postgres_url, '***')}: cannot connect: ")
    assert "percent" in message and WRONG_PASSWORD not in message


def test_unreachable_server_and_missing_database(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    url = f"postgresql://crm:{WRONG_PASSWORD}@127.0.0.1:{free_port()}{parts.path}"
    message = error_of(sql(url, table="contacts"))
    assert message.startswith(f"postgresql://crm:***@127.0.0.1:{urlsplit(url).port}{parts.path}: cannot connect: ")
    assert "Connection refused" in message and WRONG_PASSWORD not in message
    assert "\n" not in message

    url = postgres_url.replace(parts.path, "/no_such_db")
    assert error_of(sql(url, table="contacts")) == (
        f'{url}: cannot connect: connection failed: connection to server at "127.0.0.1", port {parts.port} '
        'failed: FATAL: database "no_such_db" does not exist'
    )


def test_bad_query_missing_table_and_duplicate_columns(postgres_url: str) -> None:
    execute(postgres_url, "CREATE TABLE contacts (contact_id text, email text)")
    assert error_of(sql(postgres_url, query="SELEC contact_id FROM contacts")) == (
        f'{postgres_url}: query failed: syntax error at or near "SELEC"'
    )
    assert error_of(sql(postgres_url, table="missing")) == (
        f'{postgres_url}: query failed: relation "missing" does not exist'
    )
    assert error_of(sql(postgres_url, query="SELECT nope FROM contacts")) == (
        f'{postgres_url}: query failed: column "nope" does not exist'
    )
    assert error_of(sql(postgres_url, query="SELECT email, email FROM contacts")) == (
        f"{postgres_url}: column 'email' appears twice in the result (alias one of them)"
    )
    assert error_of(sql(postgres_url, query="SELECT 1, 2")) == (
        f"{postgres_url}: column '?column?' appears twice in the result (alias one of them)"
    )


def test_data_errors_never_quote_the_value(postgres_url: str) -> None:
    # PostgreSQL's own message quotes the value that failed to convert: a customer's e-mail address here.
    execute(
        postgres_url,
        "CREATE TABLE contacts (n integer, email text)",
        (
            "INSERT INTO contacts SELECT n, CASE WHEN n = %s THEN %s ELSE n::text END FROM generate_series(1, %s) n",
            (FETCH_SIZE + 5, EMAIL, FETCH_SIZE + 10),
        ),
    )
    message = error_of(sql(postgres_url, query=f"SELECT email::integer AS id FROM contacts WHERE n > {FETCH_SIZE}"))
    assert message == f"{postgres_url}: query failed: {NOT_SHOWN}"
    # No ORDER BY: a sort would convert every row before returning the first; a plain scan converts row by row,
    # so the bad value surfaces while the second batch is fetched.
    message = error_of(sql(postgres_url, query="SELECT n, email::integer AS id FROM contacts"))
    assert message == f"{postgres_url}: reading rows failed after row {FETCH_SIZE}: {NOT_SHOWN}"
    assert EMAIL not in message


def test_mask_url_covers_every_place_libpq_takes_a_password() -> None:
    assert mask_url("postgresql://crm:s3cret@db.internal:5432/crm") == "postgresql://crm:***@db.internal:5432/crm"
    assert mask_url("postgresql://crm@db/crm?sslmode=require&PASSWORD=s3cret") == (
        "postgresql://crm@db/crm?sslmode=require&PASSWORD=***"
    )
    # multi-host (failover) URLs and IPv6 hosts: the parsed port / host cannot rebuild them
    assert mask_url("postgresql://crm:s3cret@h1:5432,h2:5433/crm") == "postgresql://crm:***@h1:5432,h2:5433/crm"
    assert mask_url("postgresql://crm:s3cret@[::1]:5432/crm") == "postgresql://crm:***@[::1]:5432/crm"
    assert mask_url("postgresql://crm@db/crm?sslmode=require") == "postgresql://crm@db/crm?sslmode=require"


# -- end to end --------------------------------------------------------------------------------------------
TOKEN = "pg-e2e-facebook-token-3b8d"

CAMPAIGN = """\
campaign: pg-winback
audience:
  source: {{type: sql, url: "{url}", table: contacts}}
holdout: {{fraction: 0.5}}
channels:
  default: [facebook]
platforms:
  facebook:
    account: {{ad_account_id: "act_55501", base_url: "{base_url}", requests_per_second: 500}}
    audiences:
      awareness: {{name: "PG awareness"}}
      consideration: {{name: "PG consideration"}}
      conversion: {{name: "PG conversion"}}
sync: {{mode: incremental, batch_size: 50}}
state: {{path: state.sqlite}}
http: {{max_attempts: 3, initial_wait: 0.001, max_wait: 0.01, read_timeout: 5}}
"""


@pytest.fixture
def facebook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FacebookSandbox, SandboxServer]]:
    monkeypatch.setenv("CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN", TOKEN)
    app = FacebookSandbox(FacebookCredentials(access_token=SecretStr(TOKEN)))
    with SandboxServer(app) as server:
        yield app, server


def test_a_campaign_reading_postgres_accounts_for_every_row(
    postgres_url: str, facebook: tuple[FacebookSandbox, SandboxServer], tmp_path: Path
) -> None:
    app, server = facebook
    good = 60
    execute(
        postgres_url,
        "CREATE TABLE contacts (contact_id uuid, email text, country text, funnel_stage text, score numeric)",
        (
            "INSERT INTO contacts SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, "
            "'user' || n || '@example.com', 'US', CASE WHEN n %% 3 = 0 THEN 'conversion' ELSE 'awareness' END, 0.9 "
            "FROM generate_series(1, %s) AS n",
            (good,),
        ),
    )
    execute(
        postgres_url,
        "INSERT INTO contacts VALUES (NULL, 'no-id@example.com', 'US', 'awareness', 0.5)",  # row 61: no id
        "INSERT INTO contacts VALUES (gen_random_uuid(), 'x@example.com', 'Atlantis', NULL, 0.5)",  # row 62
        "INSERT INTO contacts VALUES ('00000000-0000-4000-8000-000000000001', 'dup@example.com', 'US', NULL, 1)",
    )
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN.format(url=postgres_url, base_url=server.url))

    summary = Engine(load_campaign(tmp_path / "campaign.yaml"), RunOptions(rejects=tmp_path / "rejects.csv")).run()

    assert summary.status == "succeeded", summary.error
    assert summary.rows_read == good + 3 == sum(summary.outcomes.values())
    outcomes = summary.outcomes
    assert outcomes["rejected"] == 2  # row 62's unknown country is dropped, the contact kept without one
    assert outcomes["activated"] + outcomes["held_out"] + outcomes["ineligible"] == good + 1  # no country: ineligible
    assert outcomes["ineligible"] <= 1 and outcomes["activated"] > 0 < outcomes["held_out"]
    members = sum(len(a["members"]) for a in app.state()["audiences"].values())
    assert members == outcomes["activated"]
    with (tmp_path / "rejects.csv").open() as handle:
        written = {(r["source"], r["row"], r["field"], r["row_rejected"]) for r in csv.DictReader(handle)}
    assert written == {
        (postgres_url, "61", "contact_id", "yes"),
        (postgres_url, "62", "country", "no"),
        (postgres_url, "63", "contact_id", "yes"),
    }
    assert sessions(postgres_url, 0) == 0
