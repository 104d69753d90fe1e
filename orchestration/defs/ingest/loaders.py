"""Landing files -> typed raw tables, with every rejected line in raw.quarantine.

Plain Python over DuckDB (no Dagster), so tests and benchmarks call it directly.

Each load rebuilds one raw table from all files in its folder, then swaps it in with its
quarantine rows in a single transaction: a run killed half-way leaves the previous tables.
Events may instead be loaded for a window of days (a Dagster daily partition): only the files
with events on those days are read, and only those days are replaced.
A row's `loaded_at` is the time its file was first seen (raw.ingested_files), so re-running on
the same files gives identical tables.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import babel
import babel.numbers
import duckdb
import pandas as pd
import phonenumbers

from orchestration.defs.ingest.mapping import SourceFiles, canonical_sql, event_line_sql, read_mapped
from orchestration.lib import reason_codes as F
from orchestration.lib import suppression
from orchestration.lib.day_window import DayWindow
from orchestration.lib.identifiers import check_email, normalise_phone
from orchestration.lib.warehouse import table_exists, table_from_frame, transaction

EVENT_TYPES = ("track", "page", "screen", "identify")
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
TRUE_TEXT = ("true", "1", "yes", "y", "t")
FALSE_TEXT = ("false", "0", "no", "n", "f")
MAX_FUTURE_SKEW = "INTERVAL 1 DAY"  # clock skew allowed past the load's own clock


@dataclass
class LoadReport:
    source: str
    table: str
    files_seen: int = 0
    files_rejected: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    deduplicated: int = 0
    rows_suppressed: int = 0  # valid rows of erased persons, dropped (privacy.suppression_list)
    quarantine_suppressed: int = 0  # quarantined lines of erased persons, dropped
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    field_issues_by_reason: dict[str, int] = field(default_factory=dict)  # optional fields nulled (raw.field_issues)
    withheld_opt_outs: int = 0  # opt-outs read from rejected CRM records (raw.crm_rejected_opt_outs)
    guest_orders: int = 0  # orders with neither customer_id nor email: quarantined, they cannot be resolved
    files_read: int = 0  # the files this load read: a daily events load reads few, a reused snapshot none
    extra_days: int = 0  # events: days outside the window a daily load replaced (changed, new or gone files)
    reused: bool = False  # a snapshot source whose files and loader are as at its last load: nothing re-read
    columns_absent: dict[str, str] = field(default_factory=dict)  # file -> optional columns its header lacks (NULL)


@dataclass(frozen=True)
class Rule:
    """A row is rejected by the first rule whose condition holds (SQL over the text columns)."""

    code: str
    condition: str
    message: str  # SQL expression giving the human-readable reason


@dataclass(frozen=True)
class FieldCheck:
    """An optional field whose value fails `condition` is nulled; the record still loads, and the
    value, column and reason go to raw.field_issues. The first failing check of a column counts."""

    column: str
    code: str
    condition: str  # SQL over the text columns, true when the value is unusable
    message: str    # SQL expression giving the human-readable reason


@dataclass(frozen=True)
class CsvSource:
    name: str          # the landing folder, and `source` in raw.quarantine
    table: str         # raw.<table>
    columns: tuple[str, ...]
    rules: tuple[Rule, ...]  # what makes a whole record unusable: quarantined
    select: str        # SQL turning the checked text columns into typed ones
    dedupe: bool = False  # drop rows identical in every column
    fields: tuple[FieldCheck, ...] = ()  # optional fields: nulled and recorded, never the record
    # Column groups a file must have (one column of each); a file may leave out any other column.
    required: tuple[tuple[str, ...], ...] = ()


CONTRACT_PATTERNS = {"events": ("*.jsonl", "*.jsonl.gz")}  # the CSV sources: *.csv


def contract_files(root: Path, source: str) -> SourceFiles:
    """The files of one landing-contract folder, `<root>/<source>/`."""
    base = root / source
    patterns = CONTRACT_PATTERNS.get(source, ("*.csv",))
    found = {p for pat in patterns for p in base.rglob(pat) if p.is_file()} if base.is_dir() else set()
    return SourceFiles(root=root, files=sorted(found))


def _plan(files: Path | SourceFiles, source: str) -> SourceFiles:
    return files if isinstance(files, SourceFiles) else contract_files(files, source)


def _file_loaded_at(con, source: str, plan: SourceFiles, now: dt.datetime) -> dict[str, dt.datetime]:
    """First-seen time per file; a file whose size or mtime changed counts as new."""
    known = {
        (f, size, mtime): loaded for f, size, mtime, loaded in con.execute(
            "SELECT file, size_bytes, modified_ns, loaded_at FROM raw.ingested_files WHERE source = ?", [source]
        ).fetchall()
    }
    out = {}
    for path in plan.files:
        st = path.stat()
        rel = plan.relative(path)
        out[rel] = known.get((rel, st.st_size, st.st_mtime_ns), now)
    return out


def _create_from_rows(con, name: str, columns: list[str], rows: list[tuple], dtypes: dict | None = None) -> None:
    """A temp table from Python rows in one statement (executemany costs a round trip per row)."""
    table_from_frame(con, name, pd.DataFrame.from_records(rows, columns=columns).astype(dtypes or {}), temp=True)


def _whole_file_reason(exc: Exception) -> tuple[str, str]:
    text = str(exc)
    if "end of gzip stream" in text.lower():
        return F.FILE_UNREADABLE, "gzip stream is truncated (the upload was cut off); re-send the whole file"
    if "GZIP" in text.upper():
        return F.FILE_NOT_GZIP, "file ends in .gz but is not a gzip stream; re-export it compressed, or rename it without .gz"
    if "unicode" in text.lower() or "utf-8" in text.lower() or isinstance(exc, UnicodeDecodeError):
        return F.FILE_NOT_UTF8, "file is not UTF-8 text; re-export it as UTF-8"
    if missing := re.search(r'Referenced column "([^"]+)" not found', text):  # a mapped file unlike the others
        return F.FILE_UNREADABLE, (f"file has no column \"{missing.group(1)}\", which the sources config maps; "
                                   "check its delimiter, encoding and header row against the config")
    return F.FILE_UNREADABLE, f"file could not be read: {text.splitlines()[0][:300]}"


def _file_preview(path: Path) -> str:
    return path.read_bytes()[:200].decode("utf-8", errors="backslashreplace")


def _commit(con, report: LoadReport, typed_sql: str, quarantine_sql: str, files: dict[str, dt.datetime],
            file_stats: dict[str, tuple[int, int]], fingerprint: str, valid_rows: int,
            companions: dict[str, str]) -> None:
    """Swap in the new raw table, its companion tables (`companions`: table -> SQL, including the
    source's rows of raw.field_issues), its quarantine rows, its file manifest and the fingerprint
    of what was read (raw.snapshot_loads, with the counts a reuse reports), atomically."""
    per_file = {r[0]: r[1:] for r in con.execute(
        "SELECT file, count(*) FILTER (WHERE NOT rejected), count(*) FILTER (WHERE rejected) FROM _file_rows GROUP BY file"
    ).fetchall()}
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
                con, "raw.quarantine", ["raw"], where=f"t.source = '{report.source}'")
        _write_companions(con, report.source, companions, suppressing)
        con.execute("DELETE FROM raw.ingested_files WHERE source = ?", [report.source])
        rows = []
        for rel, loaded_at in files.items():
            loaded, rejected = per_file.get(rel, (0, 0))
            status = "rejected" if rel in report.files_rejected else "loaded"
            size, mtime = file_stats[rel]
            rows.append((report.source, rel, size, mtime, loaded_at, status, loaded + rejected, loaded, rejected))
        if rows:
            _create_from_rows(con, "_manifest", ["source", "file", "size_bytes", "modified_ns", "loaded_at", "status",
                                                 "rows_read", "rows_loaded", "rows_quarantined"], rows,
                              {"loaded_at": "datetime64[us]"})
            con.execute("INSERT INTO raw.ingested_files BY NAME SELECT * FROM _manifest")
        report.deduplicated = valid_rows - con.execute(f"SELECT count(*) FROM raw.{report.table}").fetchone()[0] \
            - report.rows_suppressed
        con.execute("DELETE FROM raw.snapshot_loads WHERE source = ?", [report.source])  # made by _reuse_snapshot
        con.execute("INSERT INTO raw.snapshot_loads VALUES (?, ?, ?)",
                    [report.source, fingerprint, json.dumps({name: getattr(report, name) for name in _CARRIED})])
    con.execute("DROP TABLE IF EXISTS _typed")
    _count_loaded(con, report)


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
            suppression.delete_suppressed(con, table, [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()],
                                          where=where)


def _count_loaded(con, report: LoadReport) -> None:
    """The rows, quarantined lines and field issues a source has now."""
    report.rows_loaded = con.execute(f"SELECT count(*) FROM raw.{report.table}").fetchone()[0]
    report.quarantine_by_reason = dict(con.execute(
        "SELECT reason_code, count(*) FROM raw.quarantine WHERE source = ? GROUP BY 1 ORDER BY 2 DESC, 1",
        [report.source]).fetchall())
    report.rows_quarantined = sum(report.quarantine_by_reason.values())
    report.field_issues_by_reason = dict(con.execute(
        f"SELECT reason_code, count(*) FROM {FIELD_ISSUES} WHERE source = ? GROUP BY 1 ORDER BY 2 DESC, 1",
        [report.source]).fetchall())
    if report.source == CRM.name and table_exists(con, "raw", "crm_rejected_opt_outs"):
        report.withheld_opt_outs = con.execute("SELECT count(*) FROM raw.crm_rejected_opt_outs").fetchone()[0]


def _register_files(con, plan: SourceFiles, now: dt.datetime, source: str):
    loaded_at = _file_loaded_at(con, source, plan, now)
    stats = {plan.relative(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in plan.files}
    _create_from_rows(con, "_files", ["file", "path", "loaded_at"],
                      [(plan.relative(p), str(p), loaded_at[plan.relative(p)]) for p in plan.files],
                      {"file": "string", "path": "string", "loaded_at": "datetime64[us]"})
    con.execute("CREATE OR REPLACE TEMP TABLE _rejected_files (file VARCHAR, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)")
    # Rows of mapped files that could not be parsed into columns (CSV rows that do not fit the header).
    con.execute("CREATE OR REPLACE TEMP TABLE _unparsed_rows "
                "(file VARCHAR, line_no BIGINT, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)")
    return loaded_at, stats


def _scan_files(con, plan: SourceFiles, files: list[Path], report: LoadReport, scan) -> None:
    """`scan(files)` over all files at once. A file DuckDB cannot read is named in its error:
    reject it, scan the rest."""
    pending = []
    for path in files:
        if path.suffix == ".gz" and _head(path, 2) != b"\x1f\x8b":  # not gzip: no need to scan it to know
            _reject_file(con, plan, path, report, *_whole_file_reason(OSError("not a GZIP stream")))
        else:
            pending.append(path)
    while True:
        try:
            scan(pending)
            return
        except (duckdb.Error, UnicodeDecodeError) as exc:
            named = [p for p in pending if str(p) in str(exc)]
            if len(named) == 1:
                errors = {named[0]: exc}
            else:  # named ambiguously (one path a prefix of another) or not at all: read each suspect
                errors = {p: e for p in (named or pending) if (e := _probe_error(scan, p)) is not None}
            if not errors:
                raise
            for path, error in errors.items():
                _reject_file(con, plan, path, report, *_whole_file_reason(error))
                pending.remove(path)


def _probe_error(scan, path: Path) -> Exception | None:
    try:
        scan([path])
        return None
    except (duckdb.Error, UnicodeDecodeError) as exc:
        return exc


def _scan_mapped(con, plan: SourceFiles, select: list[str], files: list[Path]) -> None:
    """`_mapped(file, line_no, raw, ...)` and `_unparsed(path, line_no, reason, raw)` from mapped
    files. No side effect beyond these two tables, so _scan_files may probe file by file."""
    if not files:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _mapped AS SELECT * FROM (SELECT NULL::VARCHAR AS file, "
                    f"NULL::BIGINT AS line_no, NULL::VARCHAR AS raw, {', '.join(select)}) WHERE false")
        con.execute("CREATE OR REPLACE TEMP TABLE _unparsed "
                    "(path VARCHAR, line_no BIGINT, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)")
        return
    header = (1 if plan.csv.header else 0) + plan.csv.skip_rows if plan.format == "csv" else 0
    read_mapped(con, plan, files, select, header)
    con.execute("CREATE OR REPLACE TEMP TABLE _mapped AS SELECT f.file, m.* EXCLUDE (path) "
                "FROM _mapped m JOIN _files f USING (path)")


def _keep_unparsed(con) -> None:
    """After a scan: its unparseable rows join the ones quarantined so far."""
    con.execute("INSERT INTO _unparsed_rows SELECT f.file, u.line_no, u.reason_code, u.reason, u.raw "
                "FROM _unparsed u JOIN _files f USING (path)")


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------

def _event_rules() -> tuple[Rule, ...]:
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    return (
        Rule(F.INVALID_JSON, "NOT is_json", "'line is not valid JSON'"),
        Rule(F.NOT_AN_OBJECT, "json_kind <> 'OBJECT'",
             "'line is JSON but not an object (found ' || lower(json_kind) || ')'"),
        Rule(F.MISSING_MESSAGE_ID, "nullif(trim(message_id), '') IS NULL", "'messageId is missing'"),
        Rule(F.UNKNOWN_TYPE, f"type IS NULL OR type NOT IN ({types})",
             "'type ' || coalesce('\"' || type || '\"', 'is missing') || '; expected one of track, page, screen, identify'"),
        Rule(F.MISSING_IDS, "nullif(trim(user_id), '') IS NULL AND nullif(trim(anonymous_id), '') IS NULL",
             "'userId and anonymousId are both missing; a message needs at least one'"),
        Rule(F.MISSING_TIMESTAMP, "nullif(trim(ts_text), '') IS NULL", "'timestamp is missing'"),
        Rule(F.INVALID_TIMESTAMP, "ts IS NULL OR ts < TIMESTAMP '2000-01-01'",
             "'timestamp \"' || ts_text || '\" is not a valid ISO-8601 time after 2000'"),
        # Judged by the load's own clock (when the file arrived), never by the message's receivedAt.
        Rule(F.FUTURE_TIMESTAMP, f"ts > loaded_at + {MAX_FUTURE_SKEW}",
             "'timestamp ' || ts_text || ' is more than a day after its file arrived (the row''s loaded_at)'"),
        Rule(F.MISSING_EVENT_NAME, "type = 'track' AND nullif(trim(event), '') IS NULL",
             "'track message has no event name'"),
        Rule(F.INVALID_FIELD_TYPE,
             "coalesce(json_type(properties), 'OBJECT') NOT IN ('OBJECT', 'NULL') "
             "OR coalesce(json_type(traits), 'OBJECT') NOT IN ('OBJECT', 'NULL') "
             "OR coalesce(json_type(context), 'OBJECT') NOT IN ('OBJECT', 'NULL')",
             "'properties, traits and context must be JSON objects'"),
    )


def _reason_sql(rules: tuple[Rule, ...]) -> tuple[str, str]:
    code = "CASE " + " ".join(f"WHEN {r.condition} THEN '{r.code}'" for r in rules) + " END"
    message = "CASE " + " ".join(f"WHEN {r.condition} THEN {r.message}" for r in rules) + " END"
    return code, message


MAX_LINE_BYTES = 64 * 1024 ** 2  # the longest line (event) or field (CSV) a load reads; docs/input_contract.md
LINES_SQL = """
    CREATE OR REPLACE TEMP TABLE _lines AS
    WITH numbered AS (
        -- Each line as one text column: the delimiter cannot occur in valid JSON text.
        SELECT filename, line, ordinality AS ord
        FROM read_csv(?, columns={'line': 'VARCHAR'}, delim='\\x01', quote='', escape='', header=false,
                      auto_detect=false, strict_mode=false, filename=true, max_line_size=MAX_LINE_BYTES) WITH ORDINALITY
    )
    SELECT f.file, n.line_no, n.line, NULL::VARCHAR AS raw FROM (
        SELECT filename, ord - min(ord) OVER (PARTITION BY filename) + 1 AS line_no, line
        FROM numbered
    ) n JOIN _files f ON f.path = n.filename
    WHERE n.line IS NOT NULL AND trim(n.line) <> ''
""".replace("MAX_LINE_BYTES", str(MAX_LINE_BYTES))


def _read_event_lines(con, plan: SourceFiles, files: list[Path], report: LoadReport) -> None:
    """`_lines(file, line_no, line, raw)`: Segment JSON lines as they are, or built from a mapping."""
    con.execute("CREATE OR REPLACE TEMP TABLE _lines (file VARCHAR, line_no BIGINT, line VARCHAR, raw VARCHAR)")
    if plan.mapped:
        def scan(batch):
            _scan_mapped(con, plan, [f"{event_line_sql(plan)} AS line"], batch)
            con.execute("CREATE OR REPLACE TEMP TABLE _lines AS SELECT file, line_no, line, raw FROM _mapped")
    else:
        def scan(batch):
            if batch:
                con.execute(LINES_SQL, [[str(p) for p in batch]])
    _scan_files(con, plan, files, report, scan)
    if plan.mapped:
        _keep_unparsed(con)


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _reject_file(con, plan: SourceFiles, path: Path, report: LoadReport, code: str, reason: str) -> None:
    rel = plan.relative(path)
    con.execute("INSERT INTO _rejected_files VALUES (?, ?, ?, ?)", [rel, code, reason, _file_preview(path)])
    report.files_rejected[rel] = code


EVENT_BATCH_BYTES = 64 * 1024 ** 2  # compressed bytes scanned per batch; bounds memory at any data size
# A full load builds its events here, compressed in the warehouse file (a temp table would spill
# them uncompressed, twice the disk), and renames it to raw.events when it commits.
EVENTS_LOADING = "raw._events_loading"

EVENT_CHECK_SQL = """
    CREATE OR REPLACE TEMP TABLE _checked AS
    WITH parsed AS (
        SELECT l.file, l.line_no, l.line, l.raw, f.loaded_at, json_valid(l.line) AS is_json
        FROM _lines l JOIN _files f USING (file)
    ), extracted AS (
        -- List paths parse each line once; one path per call would parse it per field.
        SELECT *,
               CASE WHEN is_json THEN json_type(line) END AS json_kind,
               CASE WHEN is_json THEN json_extract_string(line, ['$.messageId', '$.type', '$.event', '$.name',
                    '$.userId', '$.anonymousId', '$.timestamp', '$.sentAt', '$.receivedAt']) END AS t,
               CASE WHEN is_json THEN json_extract(line, ['$.properties', '$.traits', '$.context']) END AS o
        FROM parsed
    ), fields AS (
        SELECT file, line_no, line, raw, loaded_at, is_json, json_kind,
               t[1] AS message_id, t[2] AS type, t[3] AS event, t[4] AS name, t[5] AS user_id,
               t[6] AS anonymous_id, t[7] AS ts_text,
               timezone('UTC', try_cast(t[7] AS TIMESTAMPTZ)) AS ts,
               timezone('UTC', try_cast(t[8] AS TIMESTAMPTZ)) AS sent_at,
               timezone('UTC', try_cast(t[9] AS TIMESTAMPTZ)) AS received_at,
               o[1] AS properties, o[2] AS traits, o[3] AS context
        FROM extracted
    )
    SELECT *, {code_sql} AS reason_code FROM fields
"""
def _until_load(col: str) -> str:
    """SQL: the time `col`, or NULL when it lies after the load's clock (beyond the skew)."""
    return f"CASE WHEN {col} > c.loaded_at + {MAX_FUTURE_SKEW} THEN NULL ELSE {col} END"


EVENT_TYPED_SQL = f"""
    SELECT c.message_id, c.type, nullif(trim(c.event), '') AS event, nullif(trim(c.name), '') AS name,
           nullif(trim(c.user_id), '') AS user_id, nullif(trim(c.anonymous_id), '') AS anonymous_id,
           c.ts AS occurred_at, {_until_load('c.sent_at')} AS sent_at, {_until_load('c.received_at')} AS received_at,
           c.properties,
           -- A trait email that is no address, or a look-alike, leaves the traits (raw.field_issues keeps it).
           CASE WHEN q.email IS NULL THEN c.traits ELSE json_merge_patch(c.traits, '{{"email": null}}') END AS traits,
           c.context, c.file AS source_file, c.line_no AS source_line, c.loaded_at, p.phone_e164 AS traits_phone_e164
    FROM _checked c
    LEFT JOIN _event_emails q ON q.email = json_extract_string(c.traits, '$.email')
    LEFT JOIN _phones p  -- identify traits may carry a phone: E.164 with the message's country, as for CRM records
      ON c.type = 'identify'
     AND p.phone = json_extract_string(c.traits, '$.phone')
     AND p.country IS NOT DISTINCT FROM upper(json_extract_string(c.context, '$.location.country'))
     AND p.phone_valid
    WHERE c.reason_code IS NULL
"""
# sentAt and receivedAt after the load's clock, and unusable trait emails, are nulled and recorded
# in raw.field_issues, with the message's ids so that erasure finds the row.
EVENT_FIELD_ISSUES_SQL = f"""
    SELECT 'events' AS source, file, line_no AS line, field AS column_name, '{F.FUTURE_TIMESTAMP}' AS reason_code,
           field || ' ' || strftime(value, '%Y-%m-%dT%H:%M:%SZ')
             || ' is more than a day after its file arrived (the row''s loaded_at)' AS reason,
           CAST(value AS VARCHAR) AS raw, user_id, anonymous_id, loaded_at
    FROM (
        SELECT file, line_no, loaded_at, user_id, anonymous_id, 'sentAt' AS field, sent_at AS value
        FROM _checked WHERE reason_code IS NULL
        UNION ALL
        SELECT file, line_no, loaded_at, user_id, anonymous_id, 'receivedAt', received_at
        FROM _checked WHERE reason_code IS NULL
    ) WHERE value > loaded_at + {MAX_FUTURE_SKEW}
    UNION ALL
    SELECT 'events', c.file, c.line_no, 'traits.email', q.email_issue,
           'traits.email "' || q.email || '": ' || q.email_issue_reason, q.email, c.user_id, c.anonymous_id, c.loaded_at
    FROM _checked c JOIN _event_emails q ON q.email = json_extract_string(c.traits, '$.email')
    WHERE c.reason_code IS NULL
"""
# Of a message's copies the earliest wins, in a full load as against stored copies.
COPY_RANK = ("row_number() OVER (PARTITION BY message_id "
             "ORDER BY occurred_at, received_at NULLS LAST, source_file, source_line)")
EVENT_BAD_SQL = """
    SELECT file, line_no, reason_code, {message_sql} AS reason, coalesce(raw, line) AS raw, loaded_at
    FROM _checked WHERE reason_code IS NOT NULL
"""


def _parse_user_agents(con, typed: str) -> None:
    """raw.user_agents gains the agents of the rows just loaded, parsed with the `user-agents`
    library (device type, browser, OS, bot). A daily load only adds: agents are few, and an agent
    whose events were reloaded away does no harm to the join in int_segment__events."""
    from user_agents import parse

    con.execute("CREATE TABLE IF NOT EXISTS raw.user_agents (user_agent VARCHAR, device_type VARCHAR, "
                "browser_family VARCHAR, os_family VARCHAR, is_bot BOOLEAN)")
    agents = [r[0] for r in con.execute(
        f"SELECT DISTINCT json_extract_string(context, '$.userAgent') AS agent FROM {typed} "
        "WHERE agent IS NOT NULL AND agent NOT IN (SELECT user_agent FROM raw.user_agents) ORDER BY 1").fetchall()]
    rows = []
    for agent in agents:
        ua = parse(agent)
        kind = ("bot" if ua.is_bot else "tablet" if ua.is_tablet else "mobile" if ua.is_mobile
                else "desktop" if ua.is_pc else "other")
        rows.append((agent, kind, ua.browser.family, ua.os.family, bool(ua.is_bot)))
    _create_from_rows(con, "_user_agents", ["user_agent", "device_type", "browser_family", "os_family", "is_bot"],
                      rows, {"user_agent": "string", "device_type": "string", "browser_family": "string",
                             "os_family": "string", "is_bot": "bool"})
    con.execute("INSERT INTO raw.user_agents SELECT * FROM _user_agents")


def _batches(files: list[Path], limit: int) -> list[list[Path]]:
    batches, batch, size = [], [], 0
    for path in files:
        batch.append(path)
        size += path.stat().st_size
        if size >= limit:
            batches.append(batch)
            batch, size = [], 0
    return batches + [batch] if batch or not batches else batches


def _event_files_to_read(con, plan: SourceFiles, stats: dict[str, tuple[int, int]],
                         window: DayWindow) -> tuple[list[Path], set[dt.date], set[str]]:
    """(files to read, extra days, gone files). A load replaces the window's days and every day
    that a fresh file (new, changed, or indexed before the file index) holds or held, or that a
    gone file held: copies of one message share its day, so a file that changes or goes may
    bring back a copy from a file that did not. Files are read when they hold those days or own
    quarantined lines there, so a daily load reads a few days of files, not the history."""
    known = {f: (size, mtime, dates, home) for f, size, mtime, dates, home in con.execute(
        "SELECT file, size_bytes, modified_ns, event_dates, home_date FROM raw.ingested_files WHERE source = 'events'"
    ).fetchall()}
    current = {plan.relative(p): p for p in plan.files}
    gone = set(known) - set(current)
    if window.everything:
        return list(plan.files), set(), gone
    fresh = {rel for rel in current if rel not in known or known[rel][2] is None or known[rel][:2] != stats[rel]}
    extra = {d for rel in gone | fresh if rel in known for d in known[rel][2] or []}
    if fresh:
        extra |= {d for days in event_days(dataclasses.replace(plan, files=[current[r] for r in sorted(fresh)])).values()
                  for d in days}
    extra = {d for d in extra if not window.contains(d)}

    def wanted(day) -> bool:
        return day is not None and (window.contains(day) or day in extra)

    selected = [p for rel, p in current.items() if rel in fresh or any(map(wanted, known[rel][2] or []))
                or wanted(known[rel][3])]
    return selected, extra, gone


def event_days(files: SourceFiles, batch_bytes: int = EVENT_BATCH_BYTES) -> dict[str, list[dt.date]]:
    """The days (UTC) of each file's valid messages, read with the loader's own checks in an
    in-memory DuckDB (the warehouse stays untouched, so a sensor may call this during a run).
    A file with no valid message maps to an empty list."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    days: dict[str, list[dt.date]] = {files.relative(p): [] for p in files.files}
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.ingested_files (source VARCHAR, file VARCHAR, size_bytes BIGINT, "
                    "modified_ns BIGINT, loaded_at TIMESTAMP)")
        _register_files(con, files, now, "events")
        code_sql, _ = _reason_sql(_event_rules())
        for batch in _batches(files.files, batch_bytes):
            _read_event_lines(con, files, batch, LoadReport(source="events", table="events"))
            con.execute(EVENT_CHECK_SQL.format(code_sql=code_sql))
            for file, dates in con.execute("SELECT file, list_sort(list(DISTINCT CAST(ts AS DATE))) FROM _checked "
                                           "WHERE reason_code IS NULL GROUP BY file").fetchall():
                days[file] = dates
    return days


def load_events(con: duckdb.DuckDBPyConnection, files: Path | SourceFiles, now: dt.datetime | None = None,
                batch_bytes: int = EVENT_BATCH_BYTES, window: DayWindow = DayWindow()) -> LoadReport:
    """Replace the events of the days in `window` (default: all) with what the landing files hold,
    and of every day a new, changed or withdrawn file touches (see _event_files_to_read).

    `files`: the landing root (its events/ folder), or the files a sources config declares. A
    file's quarantined lines belong to its home day (its last valid event day; for a file without
    one, the last day of the window that first read it), so daily loads own them too. A message
    sent twice keeps its earliest copy, also when the copies fall on different days.
    """
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    report = LoadReport(source="events", table="events")
    plan = _plan(files, "events")
    report.files_seen = len(plan.files)
    loaded_at, stats = _register_files(con, plan, now, "events")
    if not table_exists(con, "raw", "events"):
        window = DayWindow()  # the first load reads every file anyway: it loads every day
    to_read, extra_days, gone = _event_files_to_read(con, plan, stats, window)
    report.files_read = len(to_read)
    report.extra_days = len(extra_days)
    con.execute("CREATE OR REPLACE TEMP TABLE _extra_days (day DATE)")
    if extra_days:
        con.executemany("INSERT INTO _extra_days VALUES (?)", [[d] for d in sorted(extra_days)])
    _create_from_rows(con, "_gone", ["file"], [(f,) for f in sorted(gone)], {"file": "string"})
    code_sql, message_sql = _reason_sql(_event_rules())
    # Batches keep only the typed rows of the days to replace, and each file's days: memory follows
    # one batch, and disk one copy of those rows, in file order with no global sort.
    con.execute(f"DROP TABLE IF EXISTS {EVENTS_LOADING}")  # left by a killed full load
    typed = EVENTS_LOADING if window.everything else "_typed"
    def replacing(day_sql: str) -> str:
        return f"(({window.holds(day_sql)}) OR {day_sql} IN (SELECT day FROM _extra_days))"

    in_window = window.holds("CAST(occurred_at AS DATE)")
    to_load = replacing("CAST(occurred_at AS DATE)")
    owned = replacing("home_date")
    for i, batch in enumerate(_batches(to_read, batch_bytes)):
        _read_event_lines(con, plan, batch, report)
        report.rows_read += con.execute("SELECT count(*) FROM _lines").fetchone()[0]
        con.execute(EVENT_CHECK_SQL.format(code_sql=code_sql))
        _batch_phones(con)
        _normalise_emails(con, "(SELECT json_extract_string(traits, '$.email') AS email FROM _checked "
                               "WHERE reason_code IS NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE _event_emails AS SELECT * FROM _emails WHERE email_issue IS NOT NULL")
        con.execute(f"{_into(typed, i)} SELECT * FROM ({EVENT_TYPED_SQL}) WHERE {to_load} "
                    "ORDER BY source_file, source_line")  # the same files load in the same order
        con.execute(f"{_into('_bad', i)} {EVENT_BAD_SQL.format(message_sql=message_sql)}")
        con.execute(f"{_into('_event_issues', i)} {EVENT_FIELD_ISSUES_SQL}")
        con.execute(f"{_into('_file_days', i)} SELECT file, CAST(ts AS DATE) AS day, count(*) AS n "
                    "FROM _checked WHERE reason_code IS NULL GROUP BY ALL")
    report.rows_read += con.execute("SELECT count(*) FROM _unparsed_rows").fetchone()[0]
    con.execute("DROP TABLE IF EXISTS _checked")
    con.execute("DROP TABLE IF EXISTS _lines")
    _event_file_homes(con, to_read, plan, stats, window, now)
    candidates = con.execute(f"SELECT count(*) FROM {typed}").fetchone()[0]
    _drop_later_copies(con, typed)
    if not window.everything:  # raw.events exists: a first load always loads everything
        _contest_stored_copies(con, to_load)
    if suppression.has_suppressions(con):  # erased persons' rows never land again, nor those tied to them
        columns = [r[0] for r in con.execute(f"DESCRIBE {typed}").fetchall()]
        suppression.extend(con, {typed: columns}, "linked to an erased identifier in events")
        report.rows_suppressed = suppression.delete_suppressed(con, typed, columns)
    conflicts = con.execute("SELECT count(*) FROM _conflicts").fetchone()[0]
    report.deduplicated = candidates - con.execute(f"SELECT count(*) FROM {typed}").fetchone()[0] \
        - report.rows_suppressed - conflicts
    quarantine = f"""
        SELECT 'events' AS source, q.file, q.line_no AS line, q.reason_code, q.reason, q.raw, q.loaded_at FROM (
            SELECT file, line_no, reason_code, reason, raw, loaded_at FROM _bad
            UNION ALL
            SELECT file, line_no, reason_code, reason, raw, loaded_at FROM _conflicts
            UNION ALL
            SELECT u.file, u.line_no, u.reason_code, u.reason, u.raw, f.loaded_at FROM _unparsed_rows u JOIN _files f USING (file)
            UNION ALL
            SELECT r.file, NULL, r.reason_code, r.reason, r.raw, f.loaded_at FROM _rejected_files r JOIN _files f USING (file)
        ) q JOIN _homes h USING (file)
        WHERE {owned}
    """
    with transaction(con):
        _parse_user_agents(con, typed)
        if window.everything:
            con.execute("DROP TABLE IF EXISTS raw.events")
            con.execute(f"ALTER TABLE {EVENTS_LOADING} RENAME TO events")
            con.execute("DELETE FROM raw.quarantine WHERE source = 'events'")
            con.execute(f"DELETE FROM {FIELD_ISSUES} WHERE source = 'events'")
            con.execute("DELETE FROM raw.ingested_files WHERE source = 'events'")
        else:
            con.execute(f"DELETE FROM raw.events WHERE {to_load} OR source_file IN (SELECT file FROM _gone)")
            con.execute("DELETE FROM raw.events e USING _superseded s "  # stored copies that lost to a new one
                        "WHERE e.message_id = s.message_id AND e.source_file = s.file AND e.source_line = s.line_no")
            con.execute("INSERT INTO raw.events SELECT * FROM _typed ORDER BY occurred_at, message_id")
            for table in ("raw.quarantine", FIELD_ISSUES):
                con.execute(f"DELETE FROM {table} WHERE source = 'events' AND (file IN "
                            f"(SELECT file FROM _homes WHERE {owned}) OR file IN (SELECT file FROM _gone))")
            con.execute("DELETE FROM raw.ingested_files WHERE source = 'events' AND "
                        "file IN (SELECT file FROM _homes UNION ALL SELECT file FROM _gone)")
        con.execute(f"INSERT INTO raw.quarantine BY NAME {quarantine}")
        con.execute(f"INSERT INTO {FIELD_ISSUES} BY NAME SELECT i.* FROM _event_issues i JOIN _homes h USING (file) "
                    f"WHERE {owned}")
        if suppression.has_suppressions(con):
            report.quarantine_suppressed = suppression.delete_suppressed(
                con, "raw.quarantine", ["raw"], where="t.source = 'events'")
        con.execute("""
            INSERT INTO raw.ingested_files BY NAME
            SELECT 'events' AS source, h.file, h.size_bytes, h.modified_ns, f.loaded_at,
                   CASE WHEN r.file IS NULL THEN 'loaded' ELSE 'rejected' END AS status,
                   h.rows_loaded + h.rows_quarantined AS rows_read, h.rows_loaded, h.rows_quarantined,
                   h.event_dates, h.home_date
            FROM _homes h JOIN _files f USING (file) LEFT JOIN _rejected_files r USING (file)
        """)
    report.rows_loaded = con.execute(f"SELECT count(*) FROM raw.events WHERE {in_window}").fetchone()[0]
    report.quarantine_by_reason = dict(con.execute(
        "SELECT reason_code, count(*) FROM raw.quarantine WHERE source = 'events' AND file IN "
        f"(SELECT file FROM _homes WHERE {owned}) GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    report.rows_quarantined = sum(report.quarantine_by_reason.values())
    report.field_issues_by_reason = dict(con.execute(
        f"SELECT reason_code, count(*) FROM {FIELD_ISSUES} WHERE source = 'events' AND file IN "
        f"(SELECT file FROM _homes WHERE {owned}) GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
    for name in ("_bad", "_conflicts", "_event_issues", "_event_emails", "_emails", "_typed", "_file_days", "_extra_days", "_gone", "_superseded", "_later_copies"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return report


def _into(table: str, batch_no: int) -> str:
    """The first batch creates `table` (a temp table, but for the full load's EVENTS_LOADING); the others append."""
    temp = "" if table == EVENTS_LOADING else "TEMP "
    return f"CREATE OR REPLACE {temp}TABLE {table} AS" if batch_no == 0 else f"INSERT INTO {table}"


def _contest_stored_copies(con, replaced: str) -> None:
    """A message kept outside what this load replaces competes with its new copy: the earliest
    (occurred_at, received_at, file, line) wins, as in a full load. Losing new copies leave
    `_typed`; losing stored ones are listed in `_superseded(message_id, file, line_no)`."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _contest AS
        SELECT message_id, source_file, source_line, loaded_at, stored, {COPY_RANK} AS copy_no, digest, message
        FROM (
            SELECT *, false AS stored, {MESSAGE_DIGEST} AS digest, {MESSAGE_JSON} AS message
            FROM _typed
            UNION ALL
            SELECT *, true, {MESSAGE_DIGEST}, {MESSAGE_JSON}
            FROM raw.events WHERE message_id IN (SELECT message_id FROM _typed) AND NOT {replaced}
        )
    """)
    con.execute(f"INSERT INTO _conflicts {CONFLICTS_SQL.format(copies='_contest')}")
    con.execute("DELETE FROM _typed t USING _contest c WHERE c.copy_no > 1 AND NOT c.stored "
                "AND c.message_id = t.message_id AND c.source_file = t.source_file AND c.source_line = t.source_line")
    con.execute("CREATE OR REPLACE TEMP TABLE _superseded AS "
                "SELECT message_id, source_file AS file, source_line AS line_no FROM _contest "
                "WHERE copy_no > 1 AND stored")
    con.execute("DROP TABLE _contest")


def _event_file_homes(con, read: list[Path], plan: SourceFiles, stats: dict[str, tuple[int, int]],
                      window: DayWindow, now: dt.datetime) -> None:
    """`_homes(file, size_bytes, modified_ns, event_dates, home_date, rows_loaded, rows_quarantined)`
    for the files read."""
    first_sight = (window.end - dt.timedelta(days=1)) if window.end else now.date()
    stored = dict(con.execute("SELECT file, home_date FROM raw.ingested_files "
                              "WHERE source = 'events' AND home_date IS NOT NULL").fetchall())
    rows = [(rel, *stats[rel], stored.get(rel)) for rel in map(plan.relative, read)]
    _create_from_rows(con, "_read", ["file", "size_bytes", "modified_ns", "stored_home"], rows,
                      {"file": "string", "size_bytes": "int64", "modified_ns": "int64", "stored_home": "datetime64[s]"})
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _homes AS
        WITH good AS (
            SELECT file, list_sort(list(day)) AS event_dates, sum(n) AS n FROM _file_days GROUP BY file
        ), bad AS (
            SELECT file, count(*) AS n FROM (
                SELECT file FROM _bad UNION ALL SELECT file FROM _unparsed_rows UNION ALL SELECT file FROM _rejected_files
            ) GROUP BY file
        )
        SELECT r.file, r.size_bytes, r.modified_ns, coalesce(g.event_dates, []::DATE[]) AS event_dates,
               coalesce(list_max(g.event_dates), CAST(r.stored_home AS DATE), DATE '{first_sight}') AS home_date,
               coalesce(g.n, 0) AS rows_loaded, coalesce(b.n, 0) AS rows_quarantined
        FROM _read r LEFT JOIN good g USING (file) LEFT JOIN bad b USING (file)
    """)


def _batch_phones(con) -> None:
    """`_phones` for the phones in this batch's valid identify traits (see EVENT_TYPED_SQL)."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _event_phones AS
        SELECT DISTINCT json_extract_string(traits, '$.phone') AS phone,
               upper(json_extract_string(context, '$.location.country')) AS country
        FROM _checked
        WHERE reason_code IS NULL AND type = 'identify' AND json_extract_string(traits, '$.phone') IS NOT NULL
    """)
    _normalise_phones(con, "_event_phones")


def _drop_later_copies(con, typed: str) -> None:
    """A message sent twice keeps its earliest copy (occurred_at, received_at, file, line). Only
    repeated ids are ranked, and the losers deleted in place: no second copy of every row. A later
    copy whose payload differs joins `_conflicts` (quarantined), not the silent duplicates."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _later_copies AS
        SELECT source_file, source_line, message_id, loaded_at, copy_no, digest, message FROM (
            SELECT source_file, source_line, message_id, loaded_at, {COPY_RANK} AS copy_no,
                   {MESSAGE_DIGEST} AS digest, {MESSAGE_JSON} AS message
            FROM {typed}
            WHERE message_id IN (SELECT message_id FROM {typed} GROUP BY message_id HAVING count(*) > 1)
        )
    """)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _conflicts AS {CONFLICTS_SQL.format(copies='_later_copies')}")
    con.execute(f"DELETE FROM {typed} t USING _later_copies c "
                "WHERE c.copy_no > 1 AND t.source_file = c.source_file AND t.source_line = c.source_line")


# What makes two copies of a message the same: what it says happened, to whom and when. Not the
# context: the client and server collectors forward one message with their own library and IP.
MESSAGE_FIELDS = ("type", "event", "name", "user_id", "anonymous_id", "occurred_at", "properties", "traits")
MESSAGE_DIGEST = "md5(CAST(row(" + ", ".join(MESSAGE_FIELDS) + ") AS VARCHAR))"
MESSAGE_JSON = "json_object(" + ", ".join(f"'{f}', {f}" for f in MESSAGE_FIELDS) + ")"
# A losing copy (copy_no > 1) whose payload differs from the winner's, with both texts.
CONFLICTS_SQL = f"""
    SELECT l.source_file AS file, l.source_line AS line_no, '{F.CONFLICTING_DUPLICATE}' AS reason_code,
           'messageId ' || l.message_id || ' was sent again with another payload; the copy at ' || w.source_file
             || ':' || w.source_line || ' was kept (the earliest timestamp wins)' AS reason,
           json_object('kept', w.message, 'conflicting', l.message)::VARCHAR AS raw, l.loaded_at
    FROM {{copies}} l JOIN {{copies}} w ON w.message_id = l.message_id AND w.copy_no = 1
    WHERE l.copy_no > 1 AND l.digest <> w.digest
"""


# ---------------------------------------------------------------------------------------------
# CSV sources
# ---------------------------------------------------------------------------------------------

def _read_csv_records(path: Path, columns: tuple[str, ...], required: tuple[tuple[str, ...], ...] = (),
                      absent: list[str] | None = None):
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
        raise ValueError(F.FILE_MISSING_HEADER,
                         f"header row lacks the required column(s) {', '.join(missing)}; the first line must name "
                         f"the columns (any of {', '.join(columns)}). Found: {', '.join(header_raw)[:200]}. Name "
                         "them, or map the file's own columns in sources.yml (docs/sources.md).")
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


def _normalise_phones(con, source: str = "_rows") -> None:
    """`_phones(phone, country, phone_e164, phone_valid)` for every distinct (phone, country).

    E.164 when phonenumbers finds a possible number (the right length for its country), NULL
    otherwise. `phone_valid` says whether the numbering plan assigns it: `is_possible_number` accepts
    unassigned US area codes such as (286) 746-7627, which real CRMs hold, and those are kept as
    contact data but never link identities (docs/input_contract.md)."""
    pairs = con.execute(f"SELECT DISTINCT phone, country FROM {source} WHERE nullif(trim(phone), '') IS NOT NULL").fetchall()
    out = []
    for phone, country in pairs:
        region = (country or "").strip().upper() or None
        e164, valid = normalise_phone(phone, region), False
        if e164 is not None:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(e164))
        out.append((phone, country, e164, valid))
    _create_from_rows(con, "_phones", ["phone", "country", "phone_e164", "phone_valid"], out,
                      {"phone": "string", "country": "string", "phone_e164": "string", "phone_valid": "bool"})


def _normalise_emails(con, source: str = "_rows") -> None:
    """`_emails(email, email_normalised, email_issue, email_issue_reason)` for every distinct email
    in `source` (orchestration.lib.identifiers.check_email)."""
    out = []
    for (email,) in con.execute(f"SELECT DISTINCT email FROM {source} WHERE nullif(trim(email), '') IS NOT NULL").fetchall():
        checked = check_email(email)
        out.append((email, checked.key, checked.issue, checked.reason))
    _create_from_rows(con, "_emails", ["email", "email_normalised", "email_issue", "email_issue_reason"], out,
                      {"email": "string", "email_normalised": "string", "email_issue": "string",
                       "email_issue_reason": "string"})


def _read_csv_rows(con, plan: SourceFiles, spec: CsvSource, report: LoadReport) -> None:
    """`_rows(file, line_no, raw, shape_error, <columns>)` from landing-contract CSV files, keeping
    each record's exact source text."""
    records: list[tuple] = []
    for path in plan.files:
        rel = plan.relative(path)
        absent: list[str] = []
        try:
            for line_no, raw, fields, n_fields, n_header in _read_csv_records(path, spec.columns, spec.required, absent):
                if fields is None:
                    records.append((rel, line_no, raw, f"{n_fields} fields where the header has {n_header}")
                                   + (None,) * len(spec.columns))
                else:
                    records.append((rel, line_no, raw, None) + tuple(f.strip() for f in fields))
        except (UnicodeDecodeError, ValueError) as exc:
            code, reason = _whole_file_reason(exc) if isinstance(exc, UnicodeDecodeError) else exc.args
            records = [r for r in records if r[0] != rel]
            _reject_file(con, plan, path, report, code, reason)
            continue
        if absent:
            report.columns_absent[rel] = ", ".join(absent)
    text_columns = ["file", "raw", "shape_error", *spec.columns]
    _create_from_rows(con, "_rows", ["file", "line_no", "raw", "shape_error", *spec.columns], records,
                      {**{c: "string" for c in text_columns}, "line_no": "int64"})


def _read_mapped_rows(con, plan: SourceFiles, spec: CsvSource, report: LoadReport) -> None:
    """`_rows` from a user's files through the declared column expressions."""
    select = canonical_sql(plan, spec.columns)
    _scan_files(con, plan, plan.files, report, lambda batch: _scan_mapped(con, plan, select, batch))
    _keep_unparsed(con)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT file, line_no, raw, NULL::VARCHAR AS shape_error, "
                f"{', '.join(spec.columns)} FROM _mapped")
    con.execute("DROP TABLE IF EXISTS _mapped")


SNAPSHOT_LOADS_DDL = ("CREATE TABLE IF NOT EXISTS raw.snapshot_loads "
                      "(source VARCHAR PRIMARY KEY, fingerprint VARCHAR NOT NULL, report JSON NOT NULL)")
# What a reuse carries over from the load that read the files; the rest is counted from the tables.
_CARRIED = ("files_rejected", "columns_absent", "rows_read", "deduplicated", "rows_suppressed", "quarantine_suppressed", "guest_orders")


def _snapshot_fingerprint(plan: SourceFiles, spec: CsvSource, stats: dict[str, tuple[int, int]]) -> str:
    """What a snapshot load depends on: each file's name, size and mtime, the source's spec and
    mapping, this loader's code and the phone library's version."""
    parts = [repr(spec), repr((plan.format, plan.columns, plan.csv, str(plan.root))), repr(sorted(stats.items())),
             phonenumbers.__version__, Path(__file__).read_text(encoding="utf-8")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _reuse_snapshot(con, report: LoadReport, fingerprint: str) -> bool:
    """True, with `report` filled in, when the last load of this source read the same files with the
    same loader: its tables stand as they are. They equal a reload: an erasure since then scrubbed
    them, as suppression would drop the same rows at a reload."""
    con.execute(SNAPSHOT_LOADS_DDL)
    stored = con.execute("SELECT report FROM raw.snapshot_loads WHERE source = ? AND fingerprint = ?",
                         [report.source, fingerprint]).fetchone()
    if stored is None or not table_exists(con, "raw", report.table):
        return False
    for name, value in json.loads(stored[0]).items():
        setattr(report, name, value)
    report.reused = True
    _count_loaded(con, report)
    return True


def load_csv_source(con: duckdb.DuckDBPyConnection, files: Path | SourceFiles, spec: CsvSource,
                    now: dt.datetime | None = None) -> LoadReport:
    """`files`: the landing root (its <source>/ folder), or the files a sources config declares.
    When the files and this loader are as at the last load, nothing is read again (`report.reused`)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    report = LoadReport(source=spec.name, table=spec.table)
    plan = _plan(files, spec.name)
    report.files_seen = len(plan.files)
    loaded_at, stats = _register_files(con, plan, now, spec.name)
    fingerprint = _snapshot_fingerprint(plan, spec, stats)
    if _reuse_snapshot(con, report, fingerprint):
        return report
    report.files_read = len(plan.files)
    (_read_mapped_rows if plan.mapped else _read_csv_rows)(con, plan, spec, report)
    report.rows_read = con.execute("SELECT count(*) FROM _rows").fetchone()[0] + \
        con.execute("SELECT count(*) FROM _unparsed_rows").fetchone()[0]
    con.execute("CREATE OR REPLACE TEMP TABLE _rows AS SELECT r.*, f.loaded_at FROM _rows r JOIN _files f USING (file)")
    if "phone" in spec.columns:
        _normalise_phones(con)
        con.execute("CREATE OR REPLACE TEMP TABLE _rows AS SELECT r.*, p.phone_e164, p.phone_valid FROM _rows r "
                    "LEFT JOIN _phones p ON p.phone = r.phone AND p.country IS NOT DISTINCT FROM r.country")
    if "email" in spec.columns:
        _normalise_emails(con)
        con.execute("CREATE OR REPLACE TEMP TABLE _rows AS SELECT r.*, e.* EXCLUDE (email) FROM _rows r "
                    "LEFT JOIN _emails e USING (email)")
    rules = (Rule(F.WRONG_FIELD_COUNT, "shape_error IS NOT NULL", "shape_error"),) + spec.rules
    code_sql, message_sql = _reason_sql(rules)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS SELECT *, {code_sql} AS reason_code FROM _rows")
    companions = {}
    if spec is CRM:  # an opt-out withholds even from a record that cannot load
        con.execute(f"CREATE OR REPLACE TEMP TABLE _withheld AS {REJECTED_OPT_OUTS_SQL}")
        companions["raw.crm_rejected_opt_outs"] = "SELECT * FROM _withheld ORDER BY source_file, source_line"
    companions[FIELD_ISSUES] = _check_fields(con, spec)
    con.execute("CREATE OR REPLACE TEMP TABLE _file_rows AS SELECT file, reason_code IS NOT NULL AS rejected FROM _checked "
                "UNION ALL SELECT file, true FROM _unparsed_rows")
    typed_rows = f"SELECT {spec.select}, file AS source_file, line_no AS source_line, loaded_at FROM _checked WHERE reason_code IS NULL"
    if spec.dedupe:
        cols = ", ".join(spec.columns)
        typed = (f"SELECT * EXCLUDE (copy_no) FROM (SELECT *, row_number() OVER (PARTITION BY {cols} "
                 f"ORDER BY source_file, source_line) AS copy_no FROM ({typed_rows})) WHERE copy_no = 1 "
                 f"ORDER BY source_file, source_line")
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
    if spec is ORDERS:
        report.guest_orders = con.execute(f"SELECT count(DISTINCT order_id) FROM _checked "
                                          f"WHERE reason_code = '{F.MISSING_CUSTOMER}'").fetchone()[0]
    _commit(con, report, typed, quarantine, loaded_at, stats, fingerprint, valid, companions)
    for temp in ("_withheld", "_field_issues"):
        con.execute(f"DROP TABLE IF EXISTS {temp}")
    return report


FIELD_ISSUES = "raw.field_issues"


def _check_fields(con, spec: CsvSource) -> str:
    """Null the optional fields of loadable rows in `_checked` that fail their checks; the SQL of
    their raw.field_issues rows (from the temp table `_field_issues`)."""
    by_column: dict[str, list[FieldCheck]] = {}
    for check in spec.fields:
        by_column.setdefault(check.column, []).append(check)
    key = "nullif(customer_id, '')" if "customer_id" in spec.columns else "NULL::VARCHAR"
    selects = [f"""SELECT '{spec.name}' AS source, file, line_no AS line, '{column}' AS column_name,
                       {' AS reason_code, '.join(_reason_sql(checks))} AS reason,
                       {column} AS raw, {key} AS customer_id, loaded_at
                FROM _checked WHERE reason_code IS NULL AND ({' OR '.join(f'({c.condition})' for c in checks)})"""
               for column, checks in by_column.items()]
    con.execute("CREATE OR REPLACE TEMP TABLE _field_issues AS " + (" UNION ALL ".join(selects) or
                f"SELECT * FROM {FIELD_ISSUES} WHERE false"))
    if by_column:
        nulled = ", ".join(f"CASE WHEN {' OR '.join(f'({c.condition})' for c in checks)} THEN NULL ELSE {column} END "
                           f"AS {column}" for column, checks in by_column.items())
        con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS SELECT * REPLACE ({nulled}) FROM _checked")
    return "SELECT * FROM _field_issues ORDER BY file, line, column_name"


# ---------------------------------------------------------------------------------------------
# The tabular sources of the landing contract
# ---------------------------------------------------------------------------------------------

def _required(*cols: str) -> Rule:
    cond = " OR ".join(f"nullif({c}, '') IS NULL" for c in cols)
    msg = "CASE " + " ".join(f"WHEN nullif({c}, '') IS NULL THEN '{c} is empty'" for c in cols) + " END"
    return Rule(F.MISSING_REQUIRED, cond, msg)


def _email_checks() -> tuple[FieldCheck, ...]:
    """`email` against check_email's verdict (`email_issue`, joined in by _normalise_emails)."""
    return tuple(FieldCheck("email", code, f"email_issue = '{code}'", "'email \"' || email || '\": ' || email_issue_reason")
                 for code in (F.INVALID_EMAIL, F.MIXED_SCRIPT_EMAIL))


def _timestamp(col: str) -> Rule:
    return Rule(F.INVALID_DATE, f"try_cast({col} AS TIMESTAMPTZ) IS NULL",
                f"'{col} \"' || {col} || '\" is not an ISO-8601 date-time'")


def _optional_timestamp(col: str) -> FieldCheck:
    rule = _timestamp(col)
    return FieldCheck(col, rule.code, f"nullif({col}, '') IS NOT NULL AND {rule.condition}", rule.message)


def _boolean(col: str) -> FieldCheck:
    ok = ", ".join(f"'{v}'" for v in TRUE_TEXT + FALSE_TEXT)
    return FieldCheck(col, F.INVALID_BOOLEAN, f"nullif({col}, '') IS NOT NULL AND lower(trim({col})) NOT IN ({ok})",
                      f"'{col} \"' || {col} || '\" is not true/false (accepted: true, false, 1, 0, yes, no)'")


def _bool_sql(col: str) -> str:
    return (f"CASE WHEN lower(trim({col})) IN ({', '.join(repr(v) for v in TRUE_TEXT)}) THEN true "
            f"WHEN lower(trim({col})) IN ({', '.join(repr(v) for v in FALSE_TEXT)}) THEN false END")


def _ts_sql(col: str) -> str:
    return f"timezone('UTC', try_cast(nullif({col}, '') AS TIMESTAMPTZ)) AS {col}"


def _number(col: str, sql_type: str) -> Rule:
    return Rule(F.INVALID_NUMBER, f"nullif({col}, '') IS NOT NULL AND try_cast({col} AS {sql_type}) IS NULL",
                f"'{col} \"' || {col} || '\" is not a number (use a plain decimal such as 1234.50)'")


def _optional_number(col: str, sql_type: str) -> FieldCheck:
    rule = _number(col, sql_type)
    return FieldCheck(col, rule.code, rule.condition, rule.message)


def _code_list(codes) -> str:
    return ", ".join(f"'{c}'" for c in sorted(codes))


# ISO 3166-1 alpha-2 countries and ISO 4217 currencies, as CLDR (through Babel) knows them.
COUNTRY_CODES = _code_list(c for c in babel.Locale("en").territories if len(c) == 2 and c.isalpha() and c != "ZZ")
CURRENCY_CODES = _code_list(babel.numbers.list_currencies())

CRM = CsvSource(
    name="crm", table="crm_customers",
    columns=("customer_id", "email", "phone", "first_name", "last_name", "birth_date", "street", "city",
             "postcode", "country", "signup_at", "updated_at", "marketing_opt_in", "personalization_opt_in"),
    required=(("customer_id",), ("updated_at",)),
    rules=(
        _required("customer_id", "updated_at"),
        _timestamp("updated_at"),
    ),
    fields=(
        *_email_checks(),
        FieldCheck("phone", F.INVALID_PHONE, "nullif(phone, '') IS NOT NULL AND phone_e164 IS NULL",
                   "'phone \"' || phone || '\" is not a phone number' || coalesce(' for country ' || nullif(country, ''), '')"),
        FieldCheck("birth_date", F.INVALID_DATE, "nullif(birth_date, '') IS NOT NULL AND try_cast(birth_date AS DATE) IS NULL",
                   "'birth_date \"' || birth_date || '\" is not a date (use YYYY-MM-DD)'"),
        _optional_timestamp("signup_at"),
        _boolean("marketing_opt_in"),
        _boolean("personalization_opt_in"),
        FieldCheck("country", F.INVALID_VALUE, f"nullif(country, '') IS NOT NULL AND upper(trim(country)) NOT IN ({COUNTRY_CODES})",
                   "'country \"' || country || '\" is not an ISO 3166 two-letter code'"),
    ),
    select=("customer_id, nullif(email, '') AS email, email_normalised, nullif(phone, '') AS phone, phone_e164, "
            "CASE WHEN phone_e164 IS NOT NULL THEN phone_valid END AS phone_valid, "
            "nullif(first_name, '') AS first_name, nullif(last_name, '') AS last_name, "
            "try_cast(nullif(birth_date, '') AS DATE) AS birth_date, nullif(street, '') AS street, "
            "nullif(city, '') AS city, nullif(postcode, '') AS postcode, upper(trim(nullif(country, ''))) AS country, "
            f"{_ts_sql('signup_at')}, {_ts_sql('updated_at')}, "
            f"{_bool_sql('marketing_opt_in')} AS marketing_opt_in, "
            f"{_bool_sql('personalization_opt_in')} AS personalization_opt_in"),
    dedupe=True,
)

# CRM records that cannot load (no key, no readable updated_at) but whose consent fields say no:
# their opt-out still withholds the person they identify (marts.profiles).
REJECTED_OPT_OUTS_SQL = f"""
    SELECT nullif(trim(customer_id), '') AS customer_id, email_normalised,
           timezone('UTC', try_cast(nullif(updated_at, '') AS TIMESTAMPTZ)) AS updated_at,
           {_bool_sql('marketing_opt_in')} AS marketing_opt_in,
           {_bool_sql('personalization_opt_in')} AS personalization_opt_in,
           reason_code, file AS source_file, line_no AS source_line, loaded_at
    FROM _checked
    WHERE reason_code IS NOT NULL AND shape_error IS NULL
      AND (nullif(trim(customer_id), '') IS NOT NULL OR email_normalised IS NOT NULL)
      AND false IN ({_bool_sql('marketing_opt_in')}, {_bool_sql('personalization_opt_in')})
"""

ORDERS = CsvSource(
    name="orders", table="order_lines",
    columns=("order_id", "customer_id", "email", "ordered_at", "amount", "currency", "status", "channel"),
    required=(("order_id",), ("ordered_at",), ("amount",), ("status",), ("customer_id", "email")),
    rules=(
        _required("order_id", "ordered_at", "amount", "status"),
        Rule(F.MISSING_CUSTOMER, "nullif(customer_id, '') IS NULL AND email_normalised IS NULL",
             "'customer_id is empty and email ' || coalesce('\"' || nullif(email, '') || '\" is not an address', "
             "'is empty') || '; an order needs one of them'"),
        _timestamp("ordered_at"),
        Rule(F.FUTURE_TIMESTAMP,
             f"timezone('UTC', try_cast(ordered_at AS TIMESTAMPTZ)) > loaded_at + {MAX_FUTURE_SKEW}",
             "'ordered_at ' || ordered_at || ' is more than a day after its file arrived (the row''s loaded_at)'"),
        _number("amount", "DECIMAL(18, 2)"),
        Rule(F.INVALID_VALUE, "lower(status) NOT IN ('completed', 'refunded', 'cancelled')",
             "'status \"' || status || '\" is not one of completed, refunded, cancelled'"),
        Rule(F.NEGATIVE_AMOUNT, "lower(status) = 'completed' AND try_cast(amount AS DECIMAL(18, 2)) < 0",
             "'amount ' || amount || ' is negative on a completed order; send refunds with status refunded'"),
    ),
    fields=(
        *_email_checks(),
        FieldCheck("currency", F.INVALID_VALUE, f"nullif(currency, '') IS NOT NULL AND upper(trim(currency)) NOT IN ({CURRENCY_CODES})",
                   "'currency \"' || currency || '\" is not an ISO 4217 code'"),
    ),
    select=("order_id, nullif(customer_id, '') AS customer_id, nullif(email, '') AS email, email_normalised, "
            f"{_ts_sql('ordered_at')}, CAST(amount AS DECIMAL(18, 2)) AS amount, upper(trim(nullif(currency, ''))) AS currency, "
            "lower(status) AS status, nullif(lower(channel), '') AS channel"),
)

ENRICHMENT = CsvSource(
    name="enrichment", table="firmographics",
    columns=("email_domain", "company_name", "industry", "employee_count", "annual_revenue_usd"),
    required=(("email_domain",),),
    rules=(_required("email_domain"),),
    fields=(_optional_number("employee_count", "BIGINT"), _optional_number("annual_revenue_usd", "DECIMAL(18, 2)")),
    select=("lower(email_domain) AS email_domain, nullif(company_name, '') AS company_name, "
            "nullif(industry, '') AS industry, try_cast(nullif(employee_count, '') AS BIGINT) AS employee_count, "
            "try_cast(nullif(annual_revenue_usd, '') AS DECIMAL(18, 2)) AS annual_revenue_usd"),
    dedupe=True,
)

PRIVACY = CsvSource(
    name="privacy", table="erasure_requests",
    columns=("requested_at", "identifier_type", "identifier"),
    required=(("requested_at",), ("identifier_type",), ("identifier",)),
    rules=(
        _required("requested_at", "identifier_type", "identifier"),
        _timestamp("requested_at"),
        Rule(F.INVALID_VALUE,
             "lower(identifier_type) NOT IN ('email', 'phone', 'user_id', 'customer_id', 'anonymous_id')",
             "'identifier_type \"' || identifier_type || '\" is not one of email, phone, user_id, customer_id, anonymous_id'"),
    ),
    # identifier is cleared once the erasure step has processed the request; the hash stays as proof.
    select=(f"{_ts_sql('requested_at')}, lower(identifier_type) AS identifier_type, identifier, "
            "sha256(CASE WHEN lower(identifier_type) = 'email' THEN lower(trim(identifier)) ELSE trim(identifier) END) "
            "AS identifier_sha256"),
    dedupe=True,
)

CSV_SOURCES = (CRM, ORDERS, ENRICHMENT, PRIVACY)


def load_source(con: duckdb.DuckDBPyConnection, files: Path | SourceFiles, source: str,
                now: dt.datetime | None = None, window: DayWindow = DayWindow()) -> LoadReport:
    """`window` narrows an events load to some days; the other sources are always loaded whole."""
    if source == "events":
        return load_events(con, files, now, window=window)
    spec = next(s for s in CSV_SOURCES if s.name == source)
    return load_csv_source(con, files, spec, now)


SOURCES = ("events",) + tuple(s.name for s in CSV_SOURCES)
