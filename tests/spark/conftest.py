"""A Spark session in `local[2]` for the Spark path's tests, started once per session (about 5 s).

PySpark comes from PyPI (the `spark` extra, which the `test` extra includes) and Java from Debian's
`openjdk-17-jre-headless` (`scripts/install-system-deps`). Without them the tests skip, unless
CRM_ACTIVATION_REQUIRE_SPARK=1 (set by `make test`), which makes them fail instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _java_home() -> str | None:
    """A Java 17 (Spark 4 runs on 17 and 21); Debian's first, else whatever `java` the PATH has."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    for version in (17, 21):
        for home in sorted(glob.glob(f"/usr/lib/jvm/java-{version}-openjdk-*")):
            if Path(home, "bin", "java").exists():
                return home
    return None


def _unavailable(message: str) -> None:
    if os.environ.get("CRM_ACTIVATION_REQUIRE_SPARK") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Spark session with two cores, small Arrow batches (many per partition) and a private warehouse."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _unavailable("PySpark is not installed (pip install 'crm-activation[spark]')")
    home = _java_home()
    if home is None and shutil.which("java") is None:
        _unavailable("no Java runtime (Debian package openjdk-17-jre-headless; `make test` installs it)")
    saved = {name: os.environ.get(name) for name in ("JAVA_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    if home:
        os.environ["JAVA_HOME"] = home
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable  # executors: this venv
    folder = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("crm-activation-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "97")  # batch boundaries anywhere in the data
        .config("spark.sql.warehouse.dir", str(folder / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={folder}")
        .config("spark.local.dir", str(folder / "local"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
