"""Where rows come from (the audience, match tables, suppression and bounce lists, conversions).

Its own module because both the campaign schema and the e-mail channel's settings use it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(frozen=True, extra="forbid")


class SourceConfig(BaseModel):
    """Where rows come from: a CSV or JSON Lines file, or a SQL query on SQLite or PostgreSQL.

    Relative paths are resolved against the campaign file's folder when the campaign loads.
    """

    model_config = _STRICT

    type: Literal["csv", "jsonl", "sql"]
    path: str | None = None
    url: str | None = Field(None, description="sqlite:///file.db or postgresql://... for type sql")
    query: str | None = Field(None, description="SELECT for type sql (or use `table`)")
    table: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"

    @model_validator(mode="after")
    def _needs_location(self) -> SourceConfig:
        if self.type in ("csv", "jsonl") and not self.path:
            raise ValueError(f"a {self.type} source needs `path`")
        if self.type == "sql" and not (self.url and (self.query or self.table)):
            raise ValueError("a sql source needs `url` and either `query` or `table`")
        return self


class IdentityTableConfig(SourceConfig):
    """A match table (CRM id → platform ids) joined in at onboarding; `key` is its CRM id column."""

    key: str = "contact_id"
