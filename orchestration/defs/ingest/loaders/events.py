"""Events: Segment-spec JSON lines (or a user's files mapped onto them) -> raw.events, loaded
whole or for a window of days, each message once (its earliest copy), its user agents parsed into
raw.user_agents."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb

from orchestration.defs.ingest.loaders.common import (
    FIELD_ISSUES,
    MAX_FUTURE_SKEW,
    MAX_LINE_BYTES,
    LoadReport,
    Rule,
    create_from_rows,
    keep_unparsed,
    normalise_emails,
    normalise_phones,
    reason_sql,
    register_files,
    scan_files,
    scan_mapped,
    source_plan,
)
from orchestration.defs.ingest.mapping import SourceFiles, event_line_sql
from orchestration.lib import reason_codes as F
from orchestration.lib import suppression
from orchestration.lib.day_window import DayWindow
from orchestration.lib.warehouse import table_exists, transaction

# `alias` joins a previousId (an anonymous id) to a userId: its previousId becomes the message's
# anonymousId, so identity resolution links the two as it does for any message that carries both.
EVENT_TYPES = ("track", "page", "screen", "identify", "alias")


def _event_rules() -> tuple[Rule, ...]:
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    return (
        Rule(F.INVALID_JSON, "NOT is_json", "'line is not valid JSON'"),
        Rule(
            F.NOT_AN_OBJECT,
            "json_kind <> 'OBJECT'",
            "'line is JSON but not an object (found ' || lower(json_kind) || ')'",
        ),
        Rule(F.MISSING_MESSAGE_ID, "nullif(trim(message_id), '') IS NULL", "'messageId is missing'"),
        Rule(
            F.UNKNOWN_TYPE,
            f"type IS NULL OR type NOT IN ({types})",
            "'type ' || coalesce('\"' || type || '\"', 'is missing') || '; expected one of track, page, screen, identify'",
        ),
        Rule(
            F.MISSING_IDS,
            "nullif(trim(user_id), '') IS NULL AND nullif(trim(anonymous_id), '') IS NULL",
            "'userId and anonymousId are both missing; a message needs at least one'",
        ),
        Rule(F.MISSING_TIMESTAMP, "nullif(trim(ts_text), '') IS NULL", "'timestamp is missing'"),
        Rule(
            F.INVALID_TIMESTAMP,
            "ts IS NULL OR ts < TIMESTAMP '2000-01-01'",
            "'timestamp \"' || ts_text || '\" is not a valid ISO-8601 time after 2000'",
        ),
        # Judged by the load's own clock (when the file arrived), never by the message's receivedAt.
        Rule(
            F.FUTURE_TIMESTAMP,
            f"ts > loaded_at + {MAX_FUTURE_SKEW}",
            "'timestamp ' || ts_text || ' is more than a day after its file arrived (the row''s loaded_at)'",
        ),
        Rule(
            F.MISSING_EVENT_NAME,
            "type = 'track' AND nullif(trim(event), '') IS NULL",
            "'track message has no event name'",
        ),
        Rule(
            F.INVALID_FIELD_TYPE,
            "coalesce(json_type(properties), 'OBJECT') NOT IN ('OBJECT', 'NULL') "
            "OR coalesce(json_type(traits), 'OBJECT') NOT IN ('OBJECT', 'NULL') "
            "OR coalesce(json_type(context), 'OBJECT') NOT IN ('OBJECT', 'NULL')",
            "'properties, traits and context must be JSON objects'",
        ),
    )


# (file, line_no, line, raw, loaded_at) of the files in the list parameter: each line as one text column (the
# delimiter cannot occur in valid JSON text), numbered within its file.
LINES_SELECT = """
    WITH numbered AS (
        SELECT filename, line, ordinality AS ord
        FROM read_csv(?, columns={'line': 'VARCHAR'}, delim='\\x01', quote='', escape='', header=false,
                      auto_detect=false, strict_mode=false, filename=true, max_line_size=MAX_LINE_BYTES) WITH ORDINALITY
    )
    SELECT f.file, n.line_no, n.line, NULL::VARCHAR AS raw, f.loaded_at FROM (
        SELECT filename, ord - min(ord) OVER (PARTITION BY filename) + 1 AS line_no, line
        FROM numbered
    ) n JOIN _files f ON f.path = n.filename
    WHERE n.line IS NOT NULL AND trim(n.line) <> ''
""".replace("MAX_LINE_BYTES", str(MAX_LINE_BYTES))
NO_LINES = (
    "SELECT NULL::VARCHAR AS file, NULL::BIGINT AS line_no, NULL::VARCHAR AS line, NULL::VARCHAR AS raw, "
    "NULL::TIMESTAMP AS loaded_at WHERE false"
)


def _check_event_lines(con, plan: SourceFiles, files: list[Path], report: LoadReport, code_sql: str) -> None:
    """`_checked`: every line of `files` (Segment JSON lines as they are, or built from a mapping)
    with its fields extracted and its reason code (NULL: valid). Plain JSON lines are read, numbered
    and checked in one statement; a file DuckDB cannot read is rejected (scan_files)."""
    if plan.mapped:

        def scan(batch):
            scan_mapped(con, plan, [f"{event_line_sql(plan)} AS line"], batch)

        scan_files(con, plan, files, report, scan)
        keep_unparsed(con)
        mapped = "(SELECT m.file, m.line_no, m.line, m.raw, f.loaded_at FROM _mapped m JOIN _files f USING (file))"
        con.execute(_check_sql(code_sql, mapped))
    else:

        def scan(batch):
            if batch:
                con.execute(_check_sql(code_sql, f"({LINES_SELECT})"), [[str(p) for p in batch]])
            else:
                con.execute(_check_sql(code_sql, f"({NO_LINES})"))

        scan_files(con, plan, files, report, scan)  # an empty list too: then _checked is empty


EVENT_BATCH_BYTES = 64 * 1024**2  # compressed bytes scanned per batch; bounds memory at any data size

# A full load builds its events here, compressed in the warehouse file (a temp table would spill
# them uncompressed, twice the disk), and renames it to raw.events when it commits.
EVENTS_LOADING = "raw._events_loading"

# The Segment fields the product reads, flattened at load time into typed columns of raw.events:
# (column, JSON path in the message, how the text becomes the column). dbt's staging reads these
# columns and never parses the JSON again. The JSON objects stay in raw.events as received.
FLAT_FIELDS = (
    ("ip", "$.context.ip", "text"),
    ("user_agent", "$.context.userAgent", "text"),
    ("locale", "$.context.locale", "text"),
    ("timezone", "$.context.timezone", "text"),
    ("country", "$.context.location.country", "upper"),
    ("device_type_reported", "$.context.device.type", "lower"),
    ("library_name", "$.context.library.name", "text"),
    ("page_path", "$.context.page.path", "text"),
    ("page_url", "$.context.page.url", "text"),
    ("page_referrer", "$.context.page.referrer", "text"),
    ("campaign_source", "$.context.campaign.source", "text"),
    ("campaign_medium", "$.context.campaign.medium", "text"),
    ("campaign_name", "$.context.campaign.name", "text"),
    ("order_id", "$.properties.order_id", "text"),
    ("revenue", "$.properties.revenue", "DECIMAL(18, 2)"),
    ("product_id", "$.properties.product_id", "text"),
    ("category", "$.properties.category", "lower"),
    ("search_query", "$.properties.query", "text"),
    ("video_percent_watched", "$.properties.percent_watched", "DOUBLE"),
    ("scroll_percent", "$.properties.percent", "DOUBLE"),
    ("traits_phone", "$.traits.phone", "text"),
)
# Read as they are: the email decides a field issue first, and the phone is normalised.
TRAITS_EMAIL_PATH = "$.traits.email"
HEADER_PATHS = (
    "$.messageId",
    "$.type",
    "$.event",
    "$.name",
    "$.userId",
    "$.anonymousId",
    "$.timestamp",
    "$.sentAt",
    "$.receivedAt",
    "$.previousId",
)


NUMBERS = ("DECIMAL(18, 2)", "DOUBLE")


def _flat_sql(text: str, how: str) -> str:
    if how == "text":
        return f"nullif(trim({text}), '')"
    if how in ("upper", "lower"):
        return f"{how}(nullif(trim({text}), ''))"
    return f"try_cast({text} AS {how})"


_PATHS = HEADER_PATHS + (TRAITS_EMAIL_PATH,) + tuple(path for _, path, _ in FLAT_FIELDS)
_FLAT = len(HEADER_PATHS) + 2  # t[] index of the first flat field (1-based)

EVENT_CHECK_SQL = """
    CREATE OR REPLACE TEMP TABLE _checked AS
    WITH parsed AS (
        SELECT file, line_no, line, raw, loaded_at, json_valid(line) AS is_json
        FROM {lines}
    ), extracted AS (
        -- List paths parse each line once; one path per call would parse it per field.
        SELECT *,
               CASE WHEN is_json THEN json_type(line) END AS json_kind,
               CASE WHEN is_json THEN json_extract_string(line, [PATHS]) END AS t,
               CASE WHEN is_json THEN json_extract(line, ['$.properties', '$.traits', '$.context']) END AS o
        FROM parsed
    ), fields AS (
        SELECT file, line_no, line, raw, loaded_at, is_json, json_kind,
               t[1] AS message_id, t[2] AS type, t[3] AS event, t[4] AS name, t[5] AS user_id,
               CASE WHEN t[2] = 'alias' THEN coalesce(t[6], t[10]) ELSE t[6] END AS anonymous_id, t[7] AS ts_text,
               timezone('UTC', try_cast(t[7] AS TIMESTAMPTZ)) AS ts,
               timezone('UTC', try_cast(t[8] AS TIMESTAMPTZ)) AS sent_at,
               timezone('UTC', try_cast(t[9] AS TIMESTAMPTZ)) AS received_at,
               o[1] AS properties, o[2] AS traits, o[3] AS context, t[11] AS traits_email_text, FLAT
        FROM extracted
    )
    -- The line's text is kept for the quarantine only: valid lines live on in their typed fields.
    SELECT * REPLACE (CASE WHEN ({code_sql}) IS NOT NULL THEN line END AS line), {code_sql} AS reason_code
    FROM fields
""".replace("PATHS", ", ".join(f"'{p}'" for p in _PATHS)).replace(
    "FLAT",
    ", ".join(
        f"{_flat_sql(f't[{_FLAT + i}]', how)} AS {name}"
        + (f", t[{_FLAT + i}] AS {name}_text" if how in NUMBERS else "")
        for i, (name, _, how) in enumerate(FLAT_FIELDS)
    ),
)


def _check_sql(code_sql: str, lines: str) -> str:
    return EVENT_CHECK_SQL.replace("{code_sql}", code_sql).replace("{lines}", lines)


def check_messages(
    con: duckdb.DuckDBPyConnection, lines: list[str], received_at: dt.datetime | list[dt.datetime]
) -> list[dict]:
    """The loader's own checks on messages that arrive one by one (the real-time collector): for each
    JSON line, its reason code and reason (None when valid) and its typed fields, as a load of a
    file that arrived at `received_at` (one time, or one per line) would give them. `con` is any
    DuckDB connection (in memory)."""
    import pyarrow as pa

    schema = pa.schema([("line_no", pa.int64()), ("line", pa.string()), ("loaded_at", pa.timestamp("us"))])
    code_sql, message_sql = reason_sql(_event_rules())
    times = received_at if isinstance(received_at, list) else [received_at] * len(lines)
    incoming = {"line_no": list(range(1, len(lines) + 1)), "line": lines, "loaded_at": times}
    con.register("_incoming", pa.table(incoming, schema=schema))
    try:
        con.execute(
            _check_sql(
                code_sql,
                "(SELECT 'collector' AS file, line_no, line, NULL::VARCHAR AS raw, loaded_at FROM _incoming)",
            )
        )
    finally:
        con.unregister("_incoming")
    flat = ", ".join(name for name, _, _ in FLAT_FIELDS)
    cursor = con.execute(f"""
        SELECT line_no, reason_code, {message_sql} AS reason, message_id, type, nullif(trim(event), '') AS event,
               nullif(trim(user_id), '') AS user_id, nullif(trim(anonymous_id), '') AS anonymous_id,
               ts AS occurred_at, {flat}
        FROM _checked ORDER BY line_no""")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _until_load(col: str) -> str:
    """SQL: the time `col`, or NULL when it lies after the load's clock (beyond the skew)."""
    return f"CASE WHEN {col} > c.loaded_at + {MAX_FUTURE_SKEW} THEN NULL ELSE {col} END"


EVENT_TYPED_SQL = f"""
    SELECT c.message_id, c.type, nullif(trim(c.event), '') AS event, nullif(trim(c.name), '') AS name,
           nullif(trim(c.user_id), '') AS user_id, nullif(trim(c.anonymous_id), '') AS anonymous_id,
           c.ts AS occurred_at, {_until_load("c.sent_at")} AS sent_at, {_until_load("c.received_at")} AS received_at,
           c.properties,
           -- A trait email that is no address, or a look-alike, leaves the traits (raw.field_issues keeps it).
           CASE WHEN q.email IS NULL THEN c.traits ELSE json_merge_patch(c.traits, '{{"email": null}}') END AS traits,
           c.context, c.file AS source_file, c.line_no AS source_line, c.loaded_at, p.phone_e164 AS traits_phone_e164,
           {", ".join(f"c.{name}" for name, _, _ in FLAT_FIELDS)},
           CASE WHEN q.email IS NULL THEN nullif(trim(c.traits_email_text), '') END AS traits_email
    FROM _checked c
    LEFT JOIN _event_emails q ON q.email = c.traits_email_text
    LEFT JOIN _phones p  -- identify traits may carry a phone: E.164 with the message's country, as for CRM records
      ON c.type = 'identify'
     AND p.phone = c.traits_phone
     AND p.country IS NOT DISTINCT FROM c.country
     AND p.phone_valid
    WHERE c.reason_code IS NULL
"""

EVENT_COLUMNS = (
    "message_id",
    "type",
    "event",
    "name",
    "user_id",
    "anonymous_id",
    "occurred_at",
    "sent_at",
    "received_at",
    "properties",
    "traits",
    "context",
    "source_file",
    "source_line",
    "loaded_at",
    "traits_phone_e164",
    *(name for name, _, _ in FLAT_FIELDS),
    "traits_email",
)  # raw.events' columns, in EVENT_TYPED_SQL's order

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
    FROM _checked c JOIN _event_emails q ON q.email = c.traits_email_text
    WHERE c.reason_code IS NULL
""" + "".join(
    # A number that is not one is nulled, and recorded: the message keeps its other fields.
    f"""
    UNION ALL
    SELECT 'events', file, line_no, '{path[2:]}', '{F.INVALID_NUMBER}',
           '{path[2:]} "' || {name}_text || '" is not a number', {name}_text, user_id, anonymous_id, loaded_at
    FROM _checked WHERE reason_code IS NULL AND {name} IS NULL AND {name}_text IS NOT NULL
"""
    for name, path, how in FLAT_FIELDS
    if how in NUMBERS
)

# Of a message's copies the earliest wins, in a full load as against stored copies.
COPY_RANK = (
    "row_number() OVER (PARTITION BY message_id ORDER BY occurred_at, received_at NULLS LAST, source_file, source_line)"
)
EVENT_BAD_SQL = """
    SELECT file, line_no, reason_code, {message_sql} AS reason, coalesce(raw, line) AS raw, loaded_at
    FROM _checked WHERE reason_code IS NOT NULL
"""


def _parse_user_agents(con, typed: str) -> None:
    """raw.user_agents gains the agents of the rows just loaded, parsed with the `user-agents`
    library (device type, browser, OS, bot). A daily load only adds: agents are few, and an agent
    whose events were reloaded away does no harm to the join in int_segment__events."""
    from user_agents import parse

    con.execute(
        "CREATE TABLE IF NOT EXISTS raw.user_agents (user_agent VARCHAR, device_type VARCHAR, "
        "browser_family VARCHAR, os_family VARCHAR, is_bot BOOLEAN)"
    )
    agents = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT user_agent AS agent FROM {typed} "
            "WHERE agent IS NOT NULL AND agent NOT IN (SELECT user_agent FROM raw.user_agents) ORDER BY 1"
        ).fetchall()
    ]
    rows = []
    for agent in agents:
        ua = parse(agent)
        kind = (
            "bot"
            if ua.is_bot
            else "tablet"
            if ua.is_tablet
            else "mobile"
            if ua.is_mobile
            else "desktop"
            if ua.is_pc
            else "other"
        )
        rows.append((agent, kind, ua.browser.family, ua.os.family, bool(ua.is_bot)))
    create_from_rows(
        con,
        "_user_agents",
        ["user_agent", "device_type", "browser_family", "os_family", "is_bot"],
        rows,
        {
            "user_agent": "string",
            "device_type": "string",
            "browser_family": "string",
            "os_family": "string",
            "is_bot": "bool",
        },
    )
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


def _event_files_to_read(
    con, plan: SourceFiles, stats: dict[str, tuple[int, int]], window: DayWindow
) -> tuple[list[Path], set[dt.date], set[str]]:
    """(files to read, extra days, gone files). A load replaces the window's days and every day
    that a fresh file (new, changed, or indexed before the file index) holds or held, or that a
    gone file held: copies of one message share its day, so a file that changes or goes may
    bring back a copy from a file that did not. Files are read when they hold those days or own
    quarantined lines there, so a daily load reads a few days of files, not the history."""
    known = {
        f: (size, mtime, dates, home)
        for f, size, mtime, dates, home in con.execute(
            "SELECT file, size_bytes, modified_ns, event_dates, home_date FROM raw.ingested_files WHERE source = 'events'"
        ).fetchall()
    }
    current = {plan.relative(p): p for p in plan.files}
    gone = set(known) - set(current)
    if window.everything:
        return list(plan.files), set(), gone
    fresh = {rel for rel in current if rel not in known or known[rel][2] is None or known[rel][:2] != stats[rel]}
    extra = {d for rel in gone | fresh if rel in known for d in known[rel][2] or []}
    if fresh:
        extra |= {
            d
            for days in event_days(dataclasses.replace(plan, files=[current[r] for r in sorted(fresh)])).values()
            for d in days
        }
    extra = {d for d in extra if not window.contains(d)}

    def wanted(day) -> bool:
        return day is not None and (window.contains(day) or day in extra)

    selected = [
        p
        for rel, p in current.items()
        if rel in fresh or any(map(wanted, known[rel][2] or [])) or wanted(known[rel][3])
    ]
    return selected, extra, gone


def event_days(files: SourceFiles, batch_bytes: int = EVENT_BATCH_BYTES) -> dict[str, list[dt.date]]:
    """The days (UTC) of each file's valid messages, read with the loader's own checks in an
    in-memory DuckDB (the warehouse stays untouched, so a sensor may call this during a run).
    A file with no valid message maps to an empty list."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    days: dict[str, list[dt.date]] = {files.relative(p): [] for p in files.files}
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.ingested_files (source VARCHAR, file VARCHAR, size_bytes BIGINT, "
            "modified_ns BIGINT, loaded_at TIMESTAMP)"
        )
        register_files(con, files, now, "events")
        code_sql, _ = reason_sql(_event_rules())
        for batch in _batches(files.files, batch_bytes):
            _check_event_lines(con, files, batch, LoadReport(source="events", table="events"), code_sql)
            for file, dates in con.execute(
                "SELECT file, list_sort(list(DISTINCT CAST(ts AS DATE))) FROM _checked "
                "WHERE reason_code IS NULL GROUP BY file"
            ).fetchall():
                days[file] = dates
    return days


def load_events(
    con: duckdb.DuckDBPyConnection,
    files: Path | SourceFiles,
    now: dt.datetime | None = None,
    batch_bytes: int = EVENT_BATCH_BYTES,
    window: DayWindow = DayWindow(),
) -> LoadReport:
    """Replace the events of the days in `window` (default: all) with what the landing files hold,
    and of every day a new, changed or withdrawn file touches (see _event_files_to_read).

    `files`: the landing root (its events/ folder), or the files a sources config declares. A
    file's quarantined lines belong to its home day (its last valid event day; for a file without
    one, the last day of the window that first read it), so daily loads own them too. A message
    sent twice keeps its earliest copy, also when the copies fall on different days.
    """
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    report = LoadReport(source="events", table="events")
    plan = source_plan(files, "events")
    report.files_seen = len(plan.files)
    loaded_at, stats = register_files(con, plan, now, "events")
    if not table_exists(con, "raw", "events") or _stored_columns(con) != EVENT_COLUMNS:
        # The first load reads every file anyway; a warehouse of an earlier release (other
        # columns) is loaded again whole, since a day's rows could not sit beside the others.
        window = DayWindow()
    to_read, extra_days, gone = _event_files_to_read(con, plan, stats, window)
    report.files_read = len(to_read)
    report.extra_days = len(extra_days)
    con.execute("CREATE OR REPLACE TEMP TABLE _extra_days (day DATE)")
    if extra_days:
        con.executemany("INSERT INTO _extra_days VALUES (?)", [[d] for d in sorted(extra_days)])
    create_from_rows(con, "_gone", ["file"], [(f,) for f in sorted(gone)], {"file": "string"})
    code_sql, message_sql = reason_sql(_event_rules())
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
        _check_event_lines(con, plan, batch, report, code_sql)
        report.rows_read += con.execute("SELECT count(*) FROM _checked").fetchone()[0]
        _batch_phones(con)
        normalise_emails(con, "(SELECT traits_email_text AS email FROM _checked WHERE reason_code IS NULL)")
        con.execute("CREATE OR REPLACE TEMP TABLE _event_emails AS SELECT * FROM _emails WHERE email_issue IS NOT NULL")
        con.execute(
            f"{_into(typed, i)} SELECT * FROM ({EVENT_TYPED_SQL}) WHERE {to_load} ORDER BY source_file, source_line"
        )  # the same files load in the same order
        con.execute(f"{_into('_bad', i)} {EVENT_BAD_SQL.format(message_sql=message_sql)}")
        con.execute(f"{_into('_event_issues', i)} {EVENT_FIELD_ISSUES_SQL}")
        con.execute(
            f"{_into('_file_days', i)} SELECT file, CAST(ts AS DATE) AS day, count(*) AS n "
            "FROM _checked WHERE reason_code IS NULL GROUP BY ALL"
        )
    report.rows_read += con.execute("SELECT count(*) FROM _unparsed_rows").fetchone()[0]
    con.execute("DROP TABLE IF EXISTS _checked")
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
    report.deduplicated = (
        candidates - con.execute(f"SELECT count(*) FROM {typed}").fetchone()[0] - report.rows_suppressed - conflicts
    )
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
            con.execute(
                "DELETE FROM raw.events e USING _superseded s "  # stored copies that lost to a new one
                "WHERE e.message_id = s.message_id AND e.source_file = s.file AND e.source_line = s.line_no"
            )
            con.execute("INSERT INTO raw.events SELECT * FROM _typed ORDER BY occurred_at, message_id")
            for table in ("raw.quarantine", FIELD_ISSUES):
                con.execute(
                    f"DELETE FROM {table} WHERE source = 'events' AND (file IN "
                    f"(SELECT file FROM _homes WHERE {owned}) OR file IN (SELECT file FROM _gone))"
                )
            con.execute(
                "DELETE FROM raw.ingested_files WHERE source = 'events' AND "
                "file IN (SELECT file FROM _homes UNION ALL SELECT file FROM _gone)"
            )
        con.execute(f"INSERT INTO raw.quarantine BY NAME {quarantine}")
        con.execute(
            f"INSERT INTO {FIELD_ISSUES} BY NAME SELECT i.* FROM _event_issues i JOIN _homes h USING (file) "
            f"WHERE {owned}"
        )
        if suppression.has_suppressions(con):
            report.quarantine_suppressed = suppression.delete_suppressed(
                con, "raw.quarantine", ["raw"], where="t.source = 'events'"
            )
        con.execute("""
            INSERT INTO raw.ingested_files BY NAME
            SELECT 'events' AS source, h.file, h.size_bytes, h.modified_ns, f.loaded_at,
                   CASE WHEN r.file IS NULL THEN 'loaded' ELSE 'rejected' END AS status,
                   h.rows_loaded + h.rows_quarantined AS rows_read, h.rows_loaded, h.rows_quarantined,
                   h.event_dates, h.home_date
            FROM _homes h JOIN _files f USING (file) LEFT JOIN _rejected_files r USING (file)
        """)
    report.rows_loaded = con.execute(f"SELECT count(*) FROM raw.events WHERE {in_window}").fetchone()[0]
    report.quarantine_by_reason = dict(
        con.execute(
            "SELECT reason_code, count(*) FROM raw.quarantine WHERE source = 'events' AND file IN "
            f"(SELECT file FROM _homes WHERE {owned}) GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    report.rows_quarantined = sum(report.quarantine_by_reason.values())
    report.field_issues_by_reason = dict(
        con.execute(
            f"SELECT reason_code, count(*) FROM {FIELD_ISSUES} WHERE source = 'events' AND file IN "
            f"(SELECT file FROM _homes WHERE {owned}) GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    for name in (
        "_bad",
        "_conflicts",
        "_event_issues",
        "_event_emails",
        "_emails",
        "_typed",
        "_file_days",
        "_extra_days",
        "_gone",
        "_superseded",
        "_later_copies",
    ):
        con.execute(f"DROP TABLE IF EXISTS {name}")
    return report


def _stored_columns(con) -> tuple[str, ...]:
    return tuple(r[0] for r in con.execute("DESCRIBE raw.events").fetchall())


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
    con.execute(
        "DELETE FROM _typed t USING _contest c WHERE c.copy_no > 1 AND NOT c.stored "
        "AND c.message_id = t.message_id AND c.source_file = t.source_file AND c.source_line = t.source_line"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _superseded AS "
        "SELECT message_id, source_file AS file, source_line AS line_no FROM _contest "
        "WHERE copy_no > 1 AND stored"
    )
    con.execute("DROP TABLE _contest")


def _event_file_homes(
    con, read: list[Path], plan: SourceFiles, stats: dict[str, tuple[int, int]], window: DayWindow, now: dt.datetime
) -> None:
    """`_homes(file, size_bytes, modified_ns, event_dates, home_date, rows_loaded, rows_quarantined)`
    for the files read."""
    first_sight = (window.end - dt.timedelta(days=1)) if window.end else now.date()
    stored = dict(
        con.execute(
            "SELECT file, home_date FROM raw.ingested_files WHERE source = 'events' AND home_date IS NOT NULL"
        ).fetchall()
    )
    rows = [(rel, *stats[rel], stored.get(rel)) for rel in map(plan.relative, read)]
    create_from_rows(
        con,
        "_read",
        ["file", "size_bytes", "modified_ns", "stored_home"],
        rows,
        {"file": "string", "size_bytes": "int64", "modified_ns": "int64", "stored_home": "datetime64[s]"},
    )
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
        SELECT DISTINCT traits_phone AS phone, country
        FROM _checked
        WHERE reason_code IS NULL AND type = 'identify' AND traits_phone IS NOT NULL
    """)
    normalise_phones(con, "_event_phones")


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
    con.execute(
        f"DELETE FROM {typed} t USING _later_copies c "
        "WHERE c.copy_no > 1 AND t.source_file = c.source_file AND t.source_line = c.source_line"
    )


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
