"""A throwaway PostgreSQL server for the tests: initdb in a temporary folder, started on a free loopback port.

Tests start what they need themselves: no running service, no Docker. The server runs as an unprivileged user
(PostgreSQL refuses root; as root the folder is handed to the `postgres` account Debian's package creates),
with password authentication so the tests exercise credentials the way a real deployment has them.

The binaries come from Debian's `postgresql` package (`scripts/install-system-deps` installs it). Without them
the fixtures skip, unless `CRM_ACTIVATION_REQUIRE_POSTGRES=1` (set by `make test`, hence by CI) turns the skip
into a failure, so a missing server can never silently drop the PostgreSQL tests from CI.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

USER = "crm"
PASSWORD = "pg-test-secret-4c1e9a"


def find_bindir() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on PATH, else the newest Debian version folder."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server; `url(database)` without the password (tests pass it through PGPASSWORD)."""

    bindir: Path
    folder: Path
    port: int
    run_as: str | None

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        """initdb and start; the caller must `stop()`."""
        run_as = "postgres" if os.geteuid() == 0 else None
        folder = Path(tempfile.mkdtemp(prefix="crm-activation-pg-"))
        (folder / "pwfile").write_text(PASSWORD + "\n")
        if run_as:
            account = pwd.getpwnam(run_as)
            for path in (folder, folder / "pwfile"):
                os.chown(path, account.pw_uid, account.pw_gid)
        server = cls(bindir, folder, _free_port(), run_as)
        server._run(
            "initdb", "-D", str(folder / "data"), "-U", USER, "--pwfile", str(folder / "pwfile"),
            "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )
        options = f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        server._run("pg_ctl", "-D", str(folder / "data"), "-l", str(folder / "log"), "-o", options, "-w", "start")
        return server

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder, check=False)
        if done.returncode != 0:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}{done.stdout}{log}")

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for a database, without the password."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, icu_locale: str | None = None) -> str:
        """A fresh, empty database; returns its name.

        With `icu_locale` (e.g. "en-US") its default collation is that language's, where "a" sorts before
        "B": what a production database often has, and what bytewise-order assumptions break on.
        """
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        collation = f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'" if icu_locale else ""
        with psycopg.connect(self.url(), password=PASSWORD, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"{collation}')
        return name

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
