"""Run a campaign on an audience held in an Apache Spark DataFrame (`pip install 'crm-activation[spark]'`).

`run_campaign` is the entry point (`job.py`); `SparkAudienceSource` hands a DataFrame to an `Engine` built by
hand (`audience.py`). See `docs/spark.md` for when to use it and how to run it on a cluster.
"""

from __future__ import annotations

try:
    import pyspark  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "crm_activation.spark needs PySpark: pip install 'crm-activation[spark]'"
    ) from error

from ..pipeline.run_options import RunOptions
from .audience import SparkAudience, SparkAudienceSource
from .job import run_campaign, write_acknowledged

__all__ = ["RunOptions", "SparkAudience", "SparkAudienceSource", "run_campaign", "write_acknowledged"]
