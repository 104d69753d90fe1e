"""Bring your own data: a YAML file (TESSERA_SOURCES_CONFIG) mapping a user's files onto the
landing contract, and the event taxonomy.

Each declared source replaces its landing folder; a source that is not declared is still read from
`<TESSERA_LANDING_DIR>/<source>/` when that folder exists, so erasure requests keep working. Every
problem in the file is collected into one SourcesConfigError, each line naming the file, the key,
what was wrong and how to fix it. See docs/sources.md.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from orchestration.defs.ingest.loaders import CSV_SOURCES
from orchestration.defs.ingest.loaders.common import contract_files
from orchestration.defs.ingest.mapping import (
    EVENT_FIELDS,
    CsvOptions,
    SourceFiles,
    canonical_sql,
    event_line_sql,
    identifier,
    reader_sql,
    source_columns,
)
from orchestration.lib.config_errors import ConfigProblems, pydantic_problems, suggest

SourceName = Literal["events", "crm", "orders", "enrichment", "privacy"]
SAMPLE_ROWS = 1000
SAMPLE_FILES = 5

# Canonical columns per source: (required, one-of groups); the rest of the contract's columns are optional.
CANONICAL: dict[str, tuple[str, ...]] = {"events": EVENT_FIELDS, **{s.name: s.columns for s in CSV_SOURCES}}
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "events": (("messageId",), ("type",), ("timestamp",), ("userId", "anonymousId")),
    **{s.name: s.required for s in CSV_SOURCES},
}
# The format a source's landing folder uses: such files need no column mapping.
CONTRACT_FORMAT = {
    "events": ("jsonl", "jsonl.gz"),
    "crm": ("csv",),
    "orders": ("csv",),
    "enrichment": ("csv",),
    "privacy": ("csv",),
}


class SourcesConfigError(ConfigProblems):
    """The sources config cannot be used; `problems` lists every reason."""

    heading = "The sources config has problems:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvSpec(_Strict):
    delimiter: str = Field(",", min_length=1, max_length=1)
    header: bool = True
    quote: str = Field('"', max_length=1)
    encoding: Literal["utf-8", "utf-16", "latin-1"] = "utf-8"
    skip_rows: int = Field(0, ge=0)
    types: dict[str, str] = Field(default_factory=dict)

    def options(self) -> CsvOptions:
        return CsvOptions(
            self.delimiter, self.header, self.quote, self.encoding, self.skip_rows, tuple(sorted(self.types.items()))
        )


class SourceSpec(_Strict):
    paths: list[str] = Field(min_length=1)
    format: Literal["jsonl", "jsonl.gz", "csv", "parquet"]
    csv: CsvSpec | None = None
    # Canonical column -> DuckDB SQL expression over the file's columns (constants in quotes: "'GBP'").
    columns: dict[str, str] | None = None

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _csv_only_for_csv(self):
        if self.csv is not None and self.format != "csv":
            raise ValueError(f"'csv' options apply to format csv only, and this source is {self.format}; remove them")
        return self


class Taxonomy(_Strict):
    """Which event names mean each behaviour (the defaults of docs/input_contract.md)."""

    product_viewed: list[str] = Field(default=["Product Viewed"], min_length=1)
    product_added: list[str] = Field(default=["Product Added"], min_length=1)
    order_completed: list[str] = Field(default=["Order Completed"], min_length=1)
    products_searched: list[str] = Field(default=["Products Searched"], min_length=1)
    video_watched: list[str] = Field(default=["Video Watched"], min_length=1)
    scroll_depth: list[str] = Field(default=["Scroll Depth Reached"], min_length=1)

    def dbt_vars(self) -> dict[str, list[str]]:
        return {f"tessera__event_{name}": list(names) for name, names in self.model_dump().items()}


class SourcesConfig(_Strict):
    sources: dict[SourceName, SourceSpec] = Field(default_factory=dict)
    taxonomy: Taxonomy = Field(default_factory=Taxonomy)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)  # relative paths start at the YAML file's folder

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def files(self, source: str, landing_root: Path) -> SourceFiles:
        """The files one ingestion step reads now (globs are expanded at run time: files arrive)."""
        spec = self.sources.get(source)
        if spec is None:
            return contract_files(landing_root, source)
        matched = sorted({p.resolve() for pattern in spec.paths for p in _glob(self.base_dir, pattern) if p.is_file()})
        columns = spec.columns
        if columns is None and spec.format not in CONTRACT_FORMAT[source]:
            columns = {c: identifier(c) for c in CANONICAL[source]}  # the file's columns carry the contract's names
        fmt = "contract" if columns is None else spec.format
        return SourceFiles(
            root=self.base_dir, files=matched, format=fmt, columns=columns, csv=(spec.csv or CsvSpec()).options()
        )


DEFAULT = SourcesConfig()


def _glob(base: Path, pattern: str) -> list[Path]:
    path = Path(pattern).expanduser()
    if path.is_absolute():
        anchor = Path(path.anchor)
        return list(anchor.glob(str(path.relative_to(anchor))))
    return list(base.glob(pattern))


def _yaml_problem(where: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return (
        f"{where}: not valid YAML{at} ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]}). "
        "Check the indentation and quote expressions that contain ':' or start with a quote."
    )


def _mapping_problems(where: str, source: str, spec: SourceSpec) -> list[str]:
    problems = []
    canonical = CANONICAL[source]
    if spec.columns is None:
        return problems
    for column, expr in spec.columns.items():
        key = f"sources.{source}.columns.{column}"
        if column not in canonical:
            hint = suggest(column, canonical, "column") or ""
            problems.append(
                f"{where}, key '{key}': '{column}' is not a column of the {source} contract. "
                f"{hint + ' ' if hint else ''}Columns: {', '.join(canonical)}."
            )
        if not isinstance(expr, str) or not expr.strip():
            problems.append(
                f"{where}, key '{key}': the expression is empty. Give a DuckDB SQL expression over "
                "the file's columns, or remove the key."
            )
        elif ";" in _outside_quotes(expr) or "--" in _outside_quotes(expr):
            problems.append(f"{where}, key '{key}': `{expr}` must be one SQL expression, without ';' or comments.")
    for group in REQUIRED[source]:
        if not any(spec.columns.get(c) for c in group):
            what = group[0] if len(group) == 1 else " or ".join(group)
            problems.append(
                f"{where}, key 'sources.{source}.columns': no mapping for {what}, which the {source} "
                f"contract requires. Add `{group[0]}: <expression>` (a constant goes in quotes: \"'x'\")."
            )
    return problems


def _outside_quotes(expr: str) -> str:
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", expr)


def _missing_column(message: str) -> str | None:
    found = re.search(r'Referenced column "([^"]+)" not found', message)
    return found.group(1) if found else None


def _sample_problems(where: str, source: str, config: SourcesConfig) -> list[str]:
    """Globs that match nothing, files that cannot be read as declared, and expressions that do not
    work on the first file's real columns (tried on its first rows)."""
    spec = config.sources[source]
    plan = config.files(source, Path("."))
    if not plan.files:
        return [
            f"{where}, key 'sources.{source}.paths': {', '.join(map(repr, spec.paths))} matches no file "
            f"(relative paths start at {config.base_dir}). Fix the path or glob, or remove the source."
        ]
    if not plan.mapped:
        return []
    problems = []
    with duckdb.connect() as con:
        # The first readable file of the first few: one damaged file is the loader's business (it
        # quarantines it), files none of which read as declared are a config problem.
        for first in plan.files[:SAMPLE_FILES]:
            try:
                columns = source_columns(con, plan, [first])
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE _sample AS SELECT * EXCLUDE (filename) "
                    f"FROM {reader_sql(plan.format, [first], plan.csv)} LIMIT {SAMPLE_ROWS}"
                )
                break
            except duckdb.Error as exc:
                error = exc
        else:
            tried = min(len(plan.files), SAMPLE_FILES)
            before = f", nor can the {tried - 1} file(s) before it" if tried > 1 else ""
            return [
                f"{where}, key 'sources.{source}.format': {first} cannot be read as {spec.format} "
                f"({str(error).splitlines()[0]}){before}. Check the format and the csv options."
            ]
        checks = (
            [
                (f"columns.{c}", s)
                for c, s in zip(CANONICAL[source], canonical_sql(plan, CANONICAL[source]), strict=True)
                if c in plan.columns
            ]
            if source != "events"
            else [
                (f"columns.{c}", f"{event_line_sql(SourceFiles(plan.root, [], columns={c: e}))} AS line")
                for c, e in plan.columns.items()
                if c in EVENT_FIELDS
            ]
        )
        for key, select in checks:
            try:
                con.execute(f"SELECT {select} FROM _sample").fetchall()
            except duckdb.Error as exc:
                message = str(exc).splitlines()[0]
                missing = _missing_column(message)
                hint = suggest(missing, columns, "column") if missing else ""
                if message.startswith("Parser Error"):
                    hint = (
                        "Put a column name that is an SQL keyword or holds spaces in double quotes, "
                        "for example '\"at\"'."
                    )
                hint = hint + " " if hint else ""
                problems.append(
                    f"{where}, key 'sources.{source}.{key}': `{plan.columns[key.split('.', 1)[1]]}` "
                    f"does not work on {first.name} ({message}). {hint}The file's columns: "
                    f"{', '.join(columns)}."
                )
    return problems


def load_sources_config(path: Path | None) -> SourcesConfig:
    """The validated config; the defaults (landing contract, default taxonomy) when `path` is None."""
    if path is None:
        return DEFAULT
    where = path.name
    if not path.is_file():
        raise SourcesConfigError(
            [
                f"{path}: no such file. Set TESSERA_SOURCES_CONFIG to a sources YAML file "
                "(see examples/online_retail/sources.yml), or unset it to read the landing folders."
            ]
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SourcesConfigError([_yaml_problem(where, exc)]) from None
    if not isinstance(document, dict):
        raise SourcesConfigError([f"{where}: the top level must be a mapping with 'sources' and 'taxonomy' keys."])
    try:
        config = SourcesConfig.model_validate(document)
        config._base_dir = path.resolve().parent
    except ValidationError as exc:
        raise SourcesConfigError(pydantic_problems(where, exc, SourcesConfig)) from None
    problems = []
    for source, spec in config.sources.items():
        problems += _mapping_problems(where, source, spec)
    if not problems:  # sample the files only once the mappings are well-formed
        for source in config.sources:
            problems += _sample_problems(where, source, config)
    if problems:
        raise SourcesConfigError(problems)
    return config


@functools.cache
def cached_sources_config(path: Path | None) -> SourcesConfig:
    """Validated once per process and path."""
    return load_sources_config(path)


def sources_config() -> SourcesConfig:
    """The config TESSERA_SOURCES_CONFIG names, from the process's settings: it is checked when the
    code location loads (ingest/definitions.py); runs read it through LandingZoneResource."""
    from orchestration.lib.settings import load_settings

    return cached_sources_config(load_settings().sources_config)
