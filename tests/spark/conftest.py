"""A Spark session in `local[2]` for the Spark path's tests: classic, then over Spark Connect (about 5 s each).

Every Spark test runs twice: on a classic session, and on a Spark Connect session (a local Connect server, as
`pyspark` starts for `remote("local[2]")`), which proves the path uses the DataFrame API alone, as it must to run
on Spark Connect clusters such as Databricks serverless.

PySpark comes from PyPI (the `spark` extra, which the `test` extra includes) and Java from Debian's
`openjdk-17-jre-headless` (`scripts/install-system-deps`). Without them the tests skip, unless
CRM_ACTIVATION_REQUIRE_SPARK=1 (set by `make test`), which makes them fail instead.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[2]


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
def spark_environment() -> dict[str, str]:
    """The environment Spark needs here: Java, and this interpreter for the Python workers (fails or skips)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _unavailable("PySpark is not installed (pip install 'crm-activation[spark]')")
    home = _java_home()
    if home is None and shutil.which("java") is None:
        _unavailable("no Java runtime (Debian package openjdk-17-jre-headless; `make test` installs it)")
    python = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return {**python, "JAVA_HOME": home} if home else python


@pytest.fixture
def script_environment(spark_environment: dict[str, str]) -> dict[str, str]:
    """The environment for a Spark script run in a subprocess: without the variables a Spark Connect session of
    this process set (they would make the script's own session a Connect client with no server)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_REMOTE", "SPARK_LOCAL_REMOTE",
                                                                            "SPARK_CONNECT"))}
    return {**inherited, **spark_environment}


@pytest.fixture(scope="session", params=["classic", "connect"])
def spark(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, spark_environment: dict[str, str]
) -> Iterator[Any]:
    """A local Spark session with two cores, small Arrow batches (many per partition) and a private warehouse."""
    from pyspark.sql import SparkSession

    saved = dict(os.environ)  # restored whole: a Connect session sets variables of its own
    os.environ.update(spark_environment)
    folder = tmp_path_factory.mktemp(f"spark-{request.param}")
    builder = SparkSession.builder
    builder = builder.remote("local[2]") if request.param == "connect" else builder.master("local[2]")
    builder = (
        builder.appName("crm-activation-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.log.level", "ERROR")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "97")  # batch boundaries anywhere in the data
        .config("spark.sql.warehouse.dir", str(folder / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={folder}")
        .config("spark.local.dir", str(folder / "local"))
    )
    with warnings.catch_warnings():  # Connect applies static settings at its start, then warns it cannot again
        warnings.filterwarnings("ignore", message=".*Cannot modify the value of.*")
        session = builder.getOrCreate()
    assert (".connect." in type(session).__module__) == (request.param == "connect")
    try:
        yield session
    finally:
        session.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def cases() -> Any:
    """The messy exports and the campaign of the batch pipeline's comparison test (loaded by path)."""
    path = ROOT / "tests" / "pipeline" / "test_batch_pipeline.py"
    spec = importlib.util.spec_from_file_location("batch_pipeline_cases", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["batch_pipeline_cases"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def csv_frame(spark: Any) -> Callable[[Path], Any]:
    """A CSV file's records as a DataFrame, numbered by line in `row`, spread over partitions out of order."""

    def frame(path: Path) -> Any:
        with path.open(newline="") as handle:
            header, *records = list(csv.reader(handle))
        columns: dict[str, list[Any]] = {name: [record[i] for record in records] for i, name in enumerate(header)}
        columns["row"] = list(range(2, len(records) + 2))
        return spark.createDataFrame(pa.table(columns)).repartition(3)

    return frame
