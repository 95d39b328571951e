"""Fixtures shared by every test folder: a real PostgreSQL server (started once per session when a test asks),
and the local sandboxes' credentials in the environment."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _load_postgres_server() -> Any:
    # tests/ is not a package (pytest runs with --import-mode=importlib), so load the helper by path.
    spec = importlib.util.spec_from_file_location("postgres_server", Path(__file__).with_name("postgres_server.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["postgres_server"] = module
    spec.loader.exec_module(module)
    return module


postgres_server_module = _load_postgres_server()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A running PostgreSQL server for the session (see tests/postgres_server.py)."""
    bindir = postgres_server_module.find_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (Debian package postgresql; `make test` installs it)"
        if os.environ.get("CRM_ACTIVATION_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("psycopg")
    server = postgres_server_module.PostgresServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL of a fresh database on the session's server; its password is in PGPASSWORD, as in production."""
    monkeypatch.setenv("PGPASSWORD", postgres_server_module.PASSWORD)
    return str(postgres_server.url(postgres_server.create_database()))


@pytest.fixture
def postgres_icu_url(postgres_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Like `postgres_url`, but the database's default collation is ICU en-US ("a" < "B"), not bytewise."""
    monkeypatch.setenv("PGPASSWORD", postgres_server_module.PASSWORD)
    return str(postgres_server.url(postgres_server.create_database(icu_locale="en-US")))


@pytest.fixture
def sandbox_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local sandboxes' credentials (examples/sandbox.env) in the environment, as `make demo` has them."""
    for line in (Path(__file__).resolve().parents[1] / "examples" / "sandbox.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
