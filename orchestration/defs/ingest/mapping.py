"""Reading a user's own files (CSV, JSON lines, Parquet) through a declared column mapping.

A mapped source becomes the same text columns the landing contract's loaders check, so every
validation rule, the quarantine and the typed raw tables stay one code path. Each canonical column
is a DuckDB SQL expression over the file's columns, evaluated per row and cast to text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.lib import reason_codes as F

# Segment-spec fields a mapped event can set; the object-valued ones are written as JSON.
EVENT_SCALAR_FIELDS = (
    "messageId",
    "type",
    "event",
    "name",
    "userId",
    "anonymousId",
    "timestamp",
    "sentAt",
    "receivedAt",
)
EVENT_OBJECT_FIELDS = ("properties", "traits", "context")
EVENT_FIELDS = EVENT_SCALAR_FIELDS + EVENT_OBJECT_FIELDS


@dataclass(frozen=True)
class CsvOptions:
    delimiter: str = ","
    header: bool = True
    quote: str = '"'
    encoding: str = "utf-8"
    skip_rows: int = 0
    types: tuple[tuple[str, str], ...] = ()  # (column, DuckDB type) overriding auto-detection


@dataclass(frozen=True)
class SourceFiles:
    """What one ingestion step reads: its files, and how they map onto the contract.

    `root` is what file names in raw tables and the quarantine are relative to. `columns` is None
    when the files already follow the landing contract (the built-in readers handle them)."""

    root: Path
    files: list[Path]
    format: str = "contract"  # contract | csv | jsonl | jsonl.gz | parquet
    columns: dict[str, str] | None = None
    csv: CsvOptions = field(default_factory=CsvOptions)

    @property
    def mapped(self) -> bool:
        return self.columns is not None

    def relative(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reader_sql(fmt: str, files: list[Path], csv: CsvOptions, rejects: bool = False) -> str:
    """A DuckDB table function over `files`, with their path in a `filename` column."""
    paths = "[" + ", ".join(_quote(str(p)) for p in files) + "]"
    if fmt == "parquet":
        return f"read_parquet({paths}, filename=true)"
    if fmt in ("jsonl", "jsonl.gz"):
        return f"read_json({paths}, format='newline_delimited', filename=true)"
    options = [
        f"header={str(csv.header).lower()}",
        f"delim={_quote(csv.delimiter)}",
        f"quote={_quote(csv.quote)}",
        f"encoding={_quote(csv.encoding)}",
        f"skip={csv.skip_rows}",
        "filename=true",
    ]
    if csv.types:
        options.append("types={" + ", ".join(f"{_quote(c)}: {_quote(t)}" for c, t in csv.types) + "}")
    # Malformed rows must not fail the scan (or the dialect sniffing): the loader keeps them in
    # _csv_rejects for the quarantine; samples and schema look-ups skip them.
    options.append(
        "store_rejects=true, rejects_table='_csv_rejects', rejects_scan='_csv_scans'"
        if rejects
        else "ignore_errors=true"
    )
    return f"read_csv({paths}, {', '.join(options)})"


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def source_columns(con, plan: SourceFiles, files: list[Path]) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            f"DESCRIBE SELECT * EXCLUDE (filename) FROM {reader_sql(plan.format, files, plan.csv)}"
        ).fetchall()
    ]


def canonical_sql(plan: SourceFiles, canonical: tuple[str, ...]) -> list[str]:
    """One `CAST((expr) AS VARCHAR) AS col` per canonical column; unmapped ones are NULL."""
    out = []
    for column in canonical:
        expr = plan.columns.get(column)
        out.append(f"CAST(({expr}) AS VARCHAR) AS {column}" if expr else f"CAST(NULL AS VARCHAR) AS {column}")
    return out


def event_line_sql(plan: SourceFiles) -> str:
    """The mapped fields as one Segment-spec JSON object, so mapped events meet the same checks."""
    parts = []
    for name in EVENT_FIELDS:
        expr = plan.columns.get(name)
        if expr:
            value = f"CAST(({expr}) AS VARCHAR)" if name in EVENT_SCALAR_FIELDS else f"({expr})"
            parts.append(f"{_quote(name)}, {value}")
    return f"CAST(json_object({', '.join(parts)}) AS VARCHAR)"


def read_mapped(con, plan: SourceFiles, files: list[Path], select: list[str], header_lines: int) -> None:
    """`_mapped(path, line_no, raw, <select>)` for the given files, and `_unparsed(path, line_no,
    reason, raw)` for CSV rows DuckDB could not split into the header's columns.

    `raw` is the source row as JSON; `line_no` is the row's line, counting the header and any
    rejected rows before it (one line per record)."""
    columns = source_columns(con, plan, files)
    raw = "to_json(struct_pack(" + ", ".join(f"{identifier(c)} := {identifier(c)}" for c in columns) + "))"
    is_csv = plan.format == "csv"
    if is_csv:
        con.execute("DROP TABLE IF EXISTS _csv_rejects")
        con.execute("DROP TABLE IF EXISTS _csv_scans")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _mapped_rows AS
        SELECT filename AS path, ordinality - min(ordinality) OVER (PARTITION BY filename) + 1 AS record_no,
               CAST({raw} AS VARCHAR) AS raw, {", ".join(select)}
        FROM {reader_sql(plan.format, files, plan.csv, rejects=is_csv)} WITH ORDINALITY
    """)
    if is_csv:
        # One row per rejected line (DuckDB may report several errors for one line).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _unparsed AS
            SELECT path, line_no, arg_min(reason_code, error_rank) AS reason_code, arg_min(reason, error_rank) AS reason,
                   any_value(raw) AS raw
            FROM (
                SELECT s.file_path AS path, CAST(e.line AS BIGINT) AS line_no, e.csv_line AS raw,
                       CASE WHEN e.error_type = 'INVALID ENCODING' THEN 0 WHEN e.error_type = 'CAST' THEN 2 ELSE 1 END
                           AS error_rank,
                       CASE WHEN e.error_type = 'INVALID ENCODING' THEN '{F.FILE_NOT_UTF8}'
                            WHEN e.error_type = 'CAST' THEN '{F.INVALID_VALUE}' ELSE '{F.WRONG_FIELD_COUNT}' END
                           AS reason_code,
                       CASE WHEN e.error_type = 'INVALID ENCODING'
                                THEN 'row is not {plan.csv.encoding} text; re-export the file, or set csv.encoding'
                            WHEN e.error_type = 'CAST'
                                THEN 'column ' || e.column_name || ' does not fit the type DuckDB detected for it: '
                                     || e.error_message
                            ELSE 'row does not fit the header: ' || e.error_message END AS reason
                FROM _csv_rejects e JOIN _csv_scans s USING (scan_id, file_id)
            ) GROUP BY path, line_no
        """)
        # A valid row's line: its record number, plus the header, plus rejected rows before it.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _mapped AS
            WITH rejected AS (
                SELECT path, line_no - {header_lines} - row_number() OVER (PARTITION BY path ORDER BY line_no)
                       AS good_rows_before
                FROM (SELECT DISTINCT path, line_no FROM _unparsed)
            )
            SELECT m.* EXCLUDE (record_no),
                   m.record_no + {header_lines} + (SELECT count(*) FROM rejected r
                                                    WHERE r.path = m.path AND r.good_rows_before < m.record_no)
                   AS line_no
            FROM _mapped_rows m
        """)
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _unparsed "
            "(path VARCHAR, line_no BIGINT, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _mapped AS SELECT * EXCLUDE (record_no), record_no AS line_no "
            "FROM _mapped_rows"
        )
    con.execute("DROP TABLE _mapped_rows")
