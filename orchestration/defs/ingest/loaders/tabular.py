"""The tabular sources (CSV files of the landing contract, or a user's files mapped onto them):
a `CsvSource` spec per source (crm.py, orders.py, firmographics.py, erasure_requests.py) and the
loader they share, with the rule and field-check builders the specs are written in. A snapshot whose
files and loader are as at its last load is not read again."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import phonenumbers

from orchestration.defs.ingest.loaders.common import (
    FIELD_ISSUES,
    MAX_LINE_BYTES,
    FieldCheck,
    LoadReport,
    Rule,
    create_from_rows,
    keep_unparsed,
    normalise_emails,
    normalise_phones,
    reason_sql,
    register_files,
    reject_file,
    scan_files,
    scan_mapped,
    source_plan,
    whole_file_reason,
)
from orchestration.defs.ingest.mapping import SourceFiles, canonical_sql
from orchestration.lib import reason_codes as F
from orchestration.lib import suppression
from orchestration.lib.warehouse import table_exists, transaction

TRUE_TEXT = ("true", "1", "yes", "y", "t")
FALSE_TEXT = ("false", "0", "no", "n", "f")


@dataclass(frozen=True)
class CsvSource:
    name: str  # the landing folder, and `source` in raw.quarantine
    table: str  # raw.<table>
    columns: tuple[str, ...]
    rules: tuple[Rule, ...]  # what makes a whole record unusable: quarantined
    select: str  # SQL turning the checked text columns into typed ones
    dedupe: bool = False  # drop rows identical in every column
    fields: tuple[FieldCheck, ...] = ()  # optional fields: nulled and recorded, never the record
    # Column groups a file must have (one column of each); a file may leave out any other column.
    required: tuple[tuple[str, ...], ...] = ()
    # What a source keeps beyond its table. `companions`: (raw table, SQL over the checked rows in
    # `_checked`, before optional fields are nulled), swapped in with the source's table.
    # `checked_counts`: (LoadReport field, SQL counting over `_checked`). `table_counts`: (LoadReport
    # field, table whose rows it counts after each load or reuse).
    companions: tuple[tuple[str, str], ...] = ()
    checked_counts: tuple[tuple[str, str], ...] = ()
    table_counts: tuple[tuple[str, str], ...] = ()


def _read_csv_records(
    path: Path, columns: tuple[str, ...], required: tuple[tuple[str, ...], ...] = (), absent: list[str] | None = None
):
    """Yield (line_no, raw_text, fields) per CSV record, keeping the exact source text.

    A column the header lacks reads as empty, unless it is one of the `required` groups; the
    absent columns are appended to `absent`. Raises ValueError with a reason code when the file as
    a whole is unusable.
    """
    csv.field_size_limit(MAX_LINE_BYTES)  # the module's default, 128 KiB, would fail a whole file on one field
    text = path.read_bytes().decode("utf-8-sig")  # UnicodeDecodeError -> whole file rejected
    lines = io.StringIO(text, newline="")
    consumed: list[str] = []

    def source():
        for ln in lines:
            consumed.append(ln)
            yield ln

    reader = csv.reader(source())
    try:
        header_raw = next(reader)
        header = [h.strip().lower() for h in header_raw]
    except StopIteration:
        raise ValueError(F.FILE_MISSING_HEADER, "file is empty; expected a header row") from None
    missing = [" or ".join(group) for group in required if not any(c in header for c in group)]
    if missing:
        raise ValueError(
            F.FILE_MISSING_HEADER,
            f"header row lacks the required column(s) {', '.join(missing)}; the first line must name "
            f"the columns (any of {', '.join(columns)}). Found: {', '.join(header_raw)[:200]}. Name "
            "them, or map the file's own columns in sources.yml (docs/sources.md).",
        )
    if absent is not None:
        absent.extend(c for c in columns if c not in header)
    positions = [header.index(c) if c in header else None for c in columns]
    consumed.clear()
    line_no = 2
    for fields in reader:
        raw = "".join(consumed).rstrip("\r\n")
        n_lines = len(consumed)
        consumed.clear()
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            line_no += n_lines
            continue
        if len(fields) != len(header):
            yield line_no, raw, None, len(fields), len(header)
        else:
            yield line_no, raw, ["" if i is None else fields[i] for i in positions], len(fields), len(header)
        line_no += n_lines


def _read_csv_rows(con, plan: SourceFiles, spec: CsvSource, report: LoadReport) -> None:
    """`_rows(file, line_no, raw, shape_error, <columns>)` from landing-contract CSV files, keeping
    each record's exact source text."""
    records: list[tuple] = []
    for path in plan.files:
        rel = plan.relative(path)
        absent: list[str] = []
        try:
            for line_no, raw, fields, n_fields, n_header in _read_csv_records(
                path, spec.columns, spec.required, absent
            ):
                if fields is None:
                    records.append(
                        (rel, line_no, raw, f"{n_fields} fields where the header has {n_header}")
                        + (None,) * len(spec.columns)
                    )
                else:
                    records.append((rel, line_no, raw, None) + tuple(f.strip() for f in fields))
        except (UnicodeDecodeError, ValueError) as exc:
            code, reason = whole_file_reason(exc) if isinstance(exc, UnicodeDecodeError) else exc.args
            records = [r for r in records if r[0] != rel]
            reject_file(con, plan, path, report, code, reason)
            continue
        if absent:
            report.columns_absent[rel] = ", ".join(absent)
    text_columns = ["file", "raw", "shape_error", *spec.columns]
    create_from_rows(
        con,
        "_rows",
        ["file", "line_no", "raw", "shape_error", *spec.columns],
        records,
        {**{c: "string" for c in text_columns}, "line_no": "int64"},
    )


def _read_mapped_rows(con, plan: SourceFiles, spec: CsvSource, report: LoadReport) -> None:
    """`_rows` from a user's files through the declared column expressions."""
    select = canonical_sql(plan, spec.columns)
    scan_files(con, plan, plan.files, report, lambda batch: scan_mapped(con, plan, select, batch))
    keep_unparsed(con)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT file, line_no, raw, NULL::VARCHAR AS shape_error, "
        f"{', '.join(spec.columns)} FROM _mapped"
    )
    con.execute("DROP TABLE IF EXISTS _mapped")


SNAPSHOT_LOADS_DDL = (
    "CREATE TABLE IF NOT EXISTS raw.snapshot_loads "
    "(source VARCHAR PRIMARY KEY, fingerprint VARCHAR NOT NULL, report JSON NOT NULL)"
)

# What a reuse carries over from the load that read the files; the rest is counted from the tables.
_CARRIED = (
    "files_rejected",
    "columns_absent",
    "rows_read",
    "deduplicated",
    "rows_suppressed",
    "quarantine_suppressed",
    "guest_orders",
)


def _snapshot_fingerprint(plan: SourceFiles, spec: CsvSource, stats: dict[str, tuple[int, int]]) -> str:
    """What a snapshot load depends on: each file's name, size and mtime, the source's spec and
    mapping, the loaders' code (every module of this package) and the phone library's version."""
    code = [p.read_text(encoding="utf-8") for p in sorted(Path(__file__).parent.glob("*.py"))]
    parts = [
        repr(spec),
        repr((plan.format, plan.columns, plan.csv, str(plan.root))),
        repr(sorted(stats.items())),
        phonenumbers.__version__,
        *code,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _reuse_snapshot(con, report: LoadReport, spec: CsvSource, fingerprint: str) -> bool:
    """True, with `report` filled in, when the last load of this source read the same files with the
    same loader: its tables stand as they are. They equal a reload: an erasure since then scrubbed
    them, as suppression would drop the same rows at a reload."""
    con.execute(SNAPSHOT_LOADS_DDL)
    stored = con.execute(
        "SELECT report FROM raw.snapshot_loads WHERE source = ? AND fingerprint = ?", [report.source, fingerprint]
    ).fetchone()
    if stored is None or not table_exists(con, "raw", report.table):
        return False
    for name, value in json.loads(stored[0]).items():
        setattr(report, name, value)
    report.reused = True
    _count_loaded(con, report, spec)
    return True


def load_csv_source(
    con: duckdb.DuckDBPyConnection, files: Path | SourceFiles, spec: CsvSource, now: dt.datetime | None = None
) -> LoadReport:
    """`files`: the landing root (its <source>/ folder), or the files a sources config declares.
    When the files and this loader are as at the last load, nothing is read again (`report.reused`)."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    report = LoadReport(source=spec.name, table=spec.table)
    plan = source_plan(files, spec.name)
    report.files_seen = len(plan.files)
    loaded_at, stats = register_files(con, plan, now, spec.name)
    fingerprint = _snapshot_fingerprint(plan, spec, stats)
    if _reuse_snapshot(con, report, spec, fingerprint):
        return report
    report.files_read = len(plan.files)
    (_read_mapped_rows if plan.mapped else _read_csv_rows)(con, plan, spec, report)
    report.rows_read = (
        con.execute("SELECT count(*) FROM _rows").fetchone()[0]
        + con.execute("SELECT count(*) FROM _unparsed_rows").fetchone()[0]
    )
    con.execute("CREATE OR REPLACE TEMP TABLE _rows AS SELECT r.*, f.loaded_at FROM _rows r JOIN _files f USING (file)")
    if "phone" in spec.columns:
        normalise_phones(con)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _rows AS SELECT r.*, p.phone_e164, p.phone_valid FROM _rows r "
            "LEFT JOIN _phones p ON p.phone = r.phone AND p.country IS NOT DISTINCT FROM r.country"
        )
    if "email" in spec.columns:
        normalise_emails(con)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _rows AS SELECT r.*, e.* EXCLUDE (email) FROM _rows r "
            "LEFT JOIN _emails e USING (email)"
        )
    rules = (Rule(F.WRONG_FIELD_COUNT, "shape_error IS NOT NULL", "shape_error"),) + spec.rules
    code_sql, message_sql = reason_sql(rules)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS SELECT *, {code_sql} AS reason_code FROM _rows")
    companions = {}
    for i, (table, sql) in enumerate(spec.companions):  # read before _check_fields nulls fields of _checked
        con.execute(f"CREATE OR REPLACE TEMP TABLE _companion_{i} AS {sql}")
        companions[table] = f"SELECT * FROM _companion_{i} ORDER BY source_file, source_line"
    companions[FIELD_ISSUES] = _check_fields(con, spec)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _file_rows AS SELECT file, reason_code IS NOT NULL AS rejected FROM _checked "
        "UNION ALL SELECT file, true FROM _unparsed_rows"
    )
    typed_rows = f"SELECT {spec.select}, file AS source_file, line_no AS source_line, loaded_at FROM _checked WHERE reason_code IS NULL"
    if spec.dedupe:
        cols = ", ".join(spec.columns)
        typed = (
            f"SELECT * EXCLUDE (copy_no) FROM (SELECT *, row_number() OVER (PARTITION BY {cols} "
            f"ORDER BY source_file, source_line) AS copy_no FROM ({typed_rows})) WHERE copy_no = 1 "
            f"ORDER BY source_file, source_line"
        )
    else:
        typed = typed_rows + " ORDER BY source_file, source_line"
    quarantine = f"""
        SELECT '{spec.name}', file, line_no, reason_code, {message_sql}, raw, loaded_at FROM _checked WHERE reason_code IS NOT NULL
        UNION ALL
        SELECT '{spec.name}', u.file, u.line_no, u.reason_code, u.reason, u.raw, f.loaded_at FROM _unparsed_rows u JOIN _files f USING (file)
        UNION ALL
        SELECT '{spec.name}', r.file, NULL, r.reason_code, r.reason, r.raw, f.loaded_at FROM _rejected_files r JOIN _files f USING (file)
    """
    valid = con.execute("SELECT count(*) FROM _checked WHERE reason_code IS NULL").fetchone()[0]
    for name, sql in spec.checked_counts:
        setattr(report, name, con.execute(sql).fetchone()[0])
    _commit(con, report, spec, typed, quarantine, loaded_at, stats, fingerprint, valid, companions)
    for temp in (*(f"_companion_{i}" for i in range(len(spec.companions))), "_field_issues"):
        con.execute(f"DROP TABLE IF EXISTS {temp}")
    return report


def _check_fields(con, spec: CsvSource) -> str:
    """Null the optional fields of loadable rows in `_checked` that fail their checks; the SQL of
    their raw.field_issues rows (from the temp table `_field_issues`)."""
    by_column: dict[str, list[FieldCheck]] = {}
    for check in spec.fields:
        by_column.setdefault(check.column, []).append(check)
    key = "nullif(customer_id, '')" if "customer_id" in spec.columns else "NULL::VARCHAR"
    selects = [
        f"""SELECT '{spec.name}' AS source, file, line_no AS line, '{column}' AS column_name,
                       {" AS reason_code, ".join(reason_sql(checks))} AS reason,
                       {column} AS raw, {key} AS customer_id, loaded_at
                FROM _checked WHERE reason_code IS NULL AND ({" OR ".join(f"({c.condition})" for c in checks)})"""
        for column, checks in by_column.items()
    ]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _field_issues AS "
        + (" UNION ALL ".join(selects) or f"SELECT * FROM {FIELD_ISSUES} WHERE false")
    )
    if by_column:
        nulled = ", ".join(
            f"CASE WHEN {' OR '.join(f'({c.condition})' for c in checks)} THEN NULL ELSE {column} END AS {column}"
            for column, checks in by_column.items()
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS SELECT * REPLACE ({nulled}) FROM _checked")
    return "SELECT * FROM _field_issues ORDER BY file, line, column_name"


def _commit(
    con,
    report: LoadReport,
    spec: CsvSource,
    typed_sql: str,
    quarantine_sql: str,
    files: dict[str, dt.datetime],
    file_stats: dict[str, tuple[int, int]],
    fingerprint: str,
    valid_rows: int,
    companions: dict[str, str],
) -> None:
    """Swap in the new raw table, its companion tables (`companions`: table -> SQL, including the
    source's rows of raw.field_issues), its quarantine rows, its file manifest and the fingerprint
    of what was read (raw.snapshot_loads, with the counts a reuse reports), atomically."""
    per_file = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT file, count(*) FILTER (WHERE NOT rejected), count(*) FILTER (WHERE rejected) FROM _file_rows GROUP BY file"
        ).fetchall()
    }
    suppressing = f"raw.{report.table}" not in suppression.EXEMPT_TABLES and suppression.has_suppressions(con)
    if suppressing:  # erased persons' rows never land again, nor those their rows tie to them
        con.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {typed_sql}")
        columns = [r[0] for r in con.execute("DESCRIBE _typed").fetchall()]
        suppression.extend(con, {"_typed": columns}, f"linked to an erased identifier in {report.source}")
        report.rows_suppressed = suppression.delete_suppressed(con, "_typed", columns)
        typed_sql = "SELECT * FROM _typed"
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TABLE raw.{report.table} AS {typed_sql}")
        con.execute("DELETE FROM raw.quarantine WHERE source = ?", [report.source])
        con.execute(f"INSERT INTO raw.quarantine {quarantine_sql}")
        if suppressing:
            report.quarantine_suppressed = suppression.delete_suppressed(
                con, "raw.quarantine", ["raw"], where=f"t.source = '{report.source}'"
            )
        _write_companions(con, report.source, companions, suppressing)
        con.execute("DELETE FROM raw.ingested_files WHERE source = ?", [report.source])
        rows = []
        for rel, loaded_at in files.items():
            loaded, rejected = per_file.get(rel, (0, 0))
            status = "rejected" if rel in report.files_rejected else "loaded"
            size, mtime = file_stats[rel]
            rows.append((report.source, rel, size, mtime, loaded_at, status, loaded + rejected, loaded, rejected))
        if rows:
            create_from_rows(
                con,
                "_manifest",
                [
                    "source",
                    "file",
                    "size_bytes",
                    "modified_ns",
                    "loaded_at",
                    "status",
                    "rows_read",
                    "rows_loaded",
                    "rows_quarantined",
                ],
                rows,
                {"loaded_at": "datetime64[us]"},
            )
            con.execute("INSERT INTO raw.ingested_files BY NAME SELECT * FROM _manifest")
        report.deduplicated = (
            valid_rows - con.execute(f"SELECT count(*) FROM raw.{report.table}").fetchone()[0] - report.rows_suppressed
        )
        con.execute("DELETE FROM raw.snapshot_loads WHERE source = ?", [report.source])  # made by _reuse_snapshot
        con.execute(
            "INSERT INTO raw.snapshot_loads VALUES (?, ?, ?)",
            [report.source, fingerprint, json.dumps({name: getattr(report, name) for name in _CARRIED})],
        )
    con.execute("DROP TABLE IF EXISTS _typed")
    _count_loaded(con, report, spec)


def _write_companions(con, source: str, companions: dict[str, str], suppressing: bool) -> None:
    """Inside _commit's transaction: this source's rows of raw.field_issues, and its own tables."""
    for table, sql in companions.items():
        if table == FIELD_ISSUES:
            con.execute(f"DELETE FROM {FIELD_ISSUES} WHERE source = ?", [source])
            con.execute(f"INSERT INTO {FIELD_ISSUES} BY NAME {sql}")
            where = f"t.source = '{source}'"
        else:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
            where = "true"
        if suppressing:
            suppression.delete_suppressed(
                con, table, [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()], where=where
            )


def _count_loaded(con, report: LoadReport, spec: CsvSource) -> None:
    """The rows, quarantined lines and field issues a source has now."""
    report.rows_loaded = con.execute(f"SELECT count(*) FROM raw.{report.table}").fetchone()[0]
    report.quarantine_by_reason = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM raw.quarantine WHERE source = ? GROUP BY 1 ORDER BY 2 DESC, 1",
            [report.source],
        ).fetchall()
    )
    report.rows_quarantined = sum(report.quarantine_by_reason.values())
    report.field_issues_by_reason = dict(
        con.execute(
            f"SELECT reason_code, count(*) FROM {FIELD_ISSUES} WHERE source = ? GROUP BY 1 ORDER BY 2 DESC, 1",
            [report.source],
        ).fetchall()
    )
    for name, table in spec.table_counts:
        if table_exists(con, *table.split(".")):
            setattr(report, name, con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def required_rule(*cols: str) -> Rule:
    cond = " OR ".join(f"nullif({c}, '') IS NULL" for c in cols)
    msg = "CASE " + " ".join(f"WHEN nullif({c}, '') IS NULL THEN '{c} is empty'" for c in cols) + " END"
    return Rule(F.MISSING_REQUIRED, cond, msg)


def email_checks() -> tuple[FieldCheck, ...]:
    """`email` against check_email's verdict (`email_issue`, joined in by normalise_emails)."""
    return tuple(
        FieldCheck("email", code, f"email_issue = '{code}'", "'email \"' || email || '\": ' || email_issue_reason")
        for code in (F.INVALID_EMAIL, F.MIXED_SCRIPT_EMAIL)
    )


def timestamp_rule(col: str) -> Rule:
    return Rule(
        F.INVALID_DATE,
        f"try_cast({col} AS TIMESTAMPTZ) IS NULL",
        f"'{col} \"' || {col} || '\" is not an ISO-8601 date-time'",
    )


def optional_timestamp_check(col: str) -> FieldCheck:
    rule = timestamp_rule(col)
    return FieldCheck(col, rule.code, f"nullif({col}, '') IS NOT NULL AND {rule.condition}", rule.message)


def boolean_check(col: str) -> FieldCheck:
    ok = ", ".join(f"'{v}'" for v in TRUE_TEXT + FALSE_TEXT)
    return FieldCheck(
        col,
        F.INVALID_BOOLEAN,
        f"nullif({col}, '') IS NOT NULL AND lower(trim({col})) NOT IN ({ok})",
        f"'{col} \"' || {col} || '\" is not true/false (accepted: true, false, 1, 0, yes, no)'",
    )


def bool_sql(col: str) -> str:
    return (
        f"CASE WHEN lower(trim({col})) IN ({', '.join(repr(v) for v in TRUE_TEXT)}) THEN true "
        f"WHEN lower(trim({col})) IN ({', '.join(repr(v) for v in FALSE_TEXT)}) THEN false END"
    )


def timestamp_sql(col: str) -> str:
    return f"timezone('UTC', try_cast(nullif({col}, '') AS TIMESTAMPTZ)) AS {col}"


def number_rule(col: str, sql_type: str) -> Rule:
    return Rule(
        F.INVALID_NUMBER,
        f"nullif({col}, '') IS NOT NULL AND try_cast({col} AS {sql_type}) IS NULL",
        f"'{col} \"' || {col} || '\" is not a number (use a plain decimal such as 1234.50)'",
    )


def optional_number_check(col: str, sql_type: str) -> FieldCheck:
    rule = number_rule(col, sql_type)
    return FieldCheck(col, rule.code, rule.condition, rule.message)


def code_list(codes) -> str:
    return ", ".join(f"'{c}'" for c in sorted(codes))
