"""The erasure suppression list, and SQL that finds an erased person's rows in any table.

privacy.suppression_list holds SHA-256 hashes of every identifier of an erased person, never the
identifiers themselves. A row belongs to an erased person when one of its identifier columns
(found by name: person_id, user_id, email, phone_e164, identifier_type + identifier...) hashes to
a listed value. The same predicate serves the erasure itself, the no-trace check and ingestion,
which drops later data for the person before it lands.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

import duckdb
import yaml

from orchestration.lib.settings import DBT_PROJECT_DIR
from orchestration.lib.warehouse import table_exists

SUPPRESSION_DDL = """
CREATE TABLE IF NOT EXISTS privacy.suppression_list (
    identifier_type        VARCHAR NOT NULL,  -- person_id, anonymous_id, user_id, customer_id, email_sha256, phone_sha256, order_id
    identifier_sha256      VARCHAR NOT NULL,  -- SHA-256 of the identifier (emails and phones: of the normalised value)
    erasure_request_sha256 VARCHAR NOT NULL,
    erased_at              TIMESTAMP NOT NULL,
    PRIMARY KEY (identifier_type, identifier_sha256)
)
"""
LOG_DDL = """
CREATE TABLE IF NOT EXISTS privacy.erasure_log (
    erasure_request_sha256 VARCHAR PRIMARY KEY,  -- SHA-256 of identifier_type | normalised identifier
    identifier_type        VARCHAR NOT NULL,
    requested_at           TIMESTAMP,
    processed_at           TIMESTAMP NOT NULL,
    outcome                VARCHAR NOT NULL,     -- erased, already_erased or not_found
    person_sha256          VARCHAR,
    identifiers_suppressed BIGINT NOT NULL,
    rows_removed           BIGINT NOT NULL
)
"""

HASHED_TYPES = ("email_sha256", "phone_sha256")
# Column name -> (suppression type, SQL hashing the column's value like the list does).
DIRECT_COLUMNS = {
    "person_id": ("person_id", "sha256({c})"),
    "user_id": ("user_id", "sha256({c})"),
    "anonymous_id": ("anonymous_id", "sha256({c})"),
    "customer_id": ("customer_id", "sha256({c})"),
    "customer_id_l": ("customer_id", "sha256({c})"),
    "customer_id_r": ("customer_id", "sha256({c})"),
    "email": ("email_sha256", "sha256(lower(trim({c})))"),
    "email_normalised": ("email_sha256", "sha256(lower(trim({c})))"),
    "traits_email_normalised": ("email_sha256", "sha256(lower(trim({c})))"),
    "email_sha256": ("email_sha256", "{c}"),
    "phone": ("phone_sha256", "sha256({c})"),
    "phone_e164": ("phone_sha256", "sha256({c})"),
    "traits_phone_e164": ("phone_sha256", "sha256({c})"),
    "phone_sha256": ("phone_sha256", "{c}"),
    "traits": ("email_sha256", "sha256(lower(trim(json_extract_string({c}, '$.email'))))"),
    # An order id is one person's: it ties an Order Completed event (and its login) to the order's customer.
    "order_id": ("order_id", "sha256({c})"),
    "properties": ("order_id", "sha256(json_extract_string({c}, '$.order_id'))"),
}
# JSON columns whose identifier sits at a path.
JSON_PATHS = {"traits": "$.email", "properties": "$.order_id"}
# (type column, value column) pairs, as in identity_map and the identity graph's edges.
TYPED_COLUMNS = (("identifier_type", "identifier"), ("left_type", "left_id"), ("right_type", "right_id"))
# Free text (quarantined lines, field issues and their reasons): URL-decoded and JSON-unescaped,
# split into tokens, each hashed as it is and lower-cased. This finds an identifier written as a
# token in any of those forms without knowing it in clear; delete_text_matches, which runs while
# the erasure still knows it, finds it anywhere in any text column.
TEXT_COLUMNS = ("raw", "reason")
TOKEN_SPLIT = r"""[\s,;:"'{}\[\]()<>=&?/|\\]+"""
# Never scrubbed: the requests themselves are the legal record (and the list is hashes only).
EXEMPT_TABLES = ("raw.erasure_requests", "raw.ingested_files")
SCHEMAS = ("raw", "pii", "intermediate", "marts", "quality")


# Identifier kinds that a row of an erased person hands on to the list (an identify event's
# anonymous id, a CRM record's customer id and phone): the row ties them to the person.
LINK_KINDS = ("person_id", "user_id", "anonymous_id", "customer_id", "email_sha256", "phone_sha256", "order_id")
# What makes a row the person's, so that it hands its identifiers on: not a device (another person
# may sign in on it) and not a phone on a record (a household's landline), but a phone that a login
# gave in its own identify call, as the identity graph reads it (identify_user_phone).
STRONG_KINDS = ("person_id", "user_id", "customer_id", "email_sha256", "order_id")
STRONG_COLUMNS = ("traits_phone_e164",)


@functools.lru_cache(maxsize=1)
def blocked_values() -> tuple[str, ...]:
    """The placeholder identifiers the identity graph never links on (the dbt var
    tessera__identity_blocked_values)."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return tuple(str(v).lower() for v in project["vars"]["tessera__identity_blocked_values"])


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS privacy")
    con.execute(SUPPRESSION_DDL)
    con.execute(LOG_DDL)
    con.execute("ALTER TABLE privacy.erasure_log ADD COLUMN IF NOT EXISTS landed_at TIMESTAMP")
    con.execute(COMPACTION_DUE_DDL)


def has_suppressions(con: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(con, "privacy", "suppression_list") and bool(
        con.execute("SELECT count(*) FROM privacy.suppression_list").fetchone()[0]
    )


def _listed(kind: str, value_sql: str) -> str:
    return (
        f"coalesce(({value_sql}) IN (SELECT identifier_sha256 FROM privacy.suppression_list "
        f"WHERE identifier_type = '{kind}'), false)"
    )


def predicate(columns: list[str], alias: str = "t", kinds: tuple[str, ...] | None = None) -> str | None:
    """SQL true for rows of a table with these columns that belong to a suppressed person (by an
    identifier of one of `kinds`, if given: then free text is not searched)."""
    names = set(columns)
    parts = [
        _listed(kind, expr.format(c=f'{alias}."{col}"'))
        for col, (kind, expr) in DIRECT_COLUMNS.items()
        if col in names and (kinds is None or kind in kinds or col in STRONG_COLUMNS)
    ]
    if "anonymous_id" in names and "user_id" in names and (kinds is None or "anonymous_id" in kinds):
        # A device's rows are the person's only while nobody else is signed in on it.
        device = _listed("anonymous_id", f'sha256({alias}."anonymous_id")')
        parts[parts.index(device)] = f"({device} AND {alias}.user_id IS NULL)"
    for type_col, value_col in TYPED_COLUMNS:
        if {type_col, value_col} <= names:
            value = (
                f"CASE WHEN {alias}.{type_col} IN {HASHED_TYPES} THEN {alias}.{value_col} "
                f"ELSE sha256({alias}.{value_col}) END"
            )
            # The map's and the edges' rows are the graph's decisions: every kind counts.
            parts.append(
                f"EXISTS (SELECT 1 FROM privacy.suppression_list s WHERE s.identifier_type = "
                f"{alias}.{type_col} AND s.identifier_sha256 = {value})"
            )
    for col in TEXT_COLUMNS if kinds is None else ():
        if col in names:
            text = f"replace({alias}.{col}, '\\u0040', '@')"
            decoded = f"{text} || ' ' || coalesce(try(url_decode({text})), '')"
            split = TOKEN_SPLIT.replace("'", "''")
            tokens = f"unnest(regexp_split_to_array({decoded}, '{split}'))"
            parts.append(
                f"EXISTS (SELECT 1 FROM (SELECT {tokens} AS tok) x WHERE x.tok <> '' AND ("
                f"sha256(x.tok) IN (SELECT identifier_sha256 FROM privacy.suppression_list) OR "
                f"sha256(lower(x.tok)) IN (SELECT identifier_sha256 FROM privacy.suppression_list)))"
            )
    return " OR ".join(parts) if parts else None


def _link_selects(table: str, columns: list[str], erased: str) -> list[str]:
    """SELECTs of (identifier_type, identifier_sha256) that the erased rows of `table` carry, but
    a shared device (`_shared_devices`): it is not the person's alone."""
    names, blocked = set(columns), ", ".join("'" + v.replace("'", "''") + "'" for v in blocked_values())
    selects = []
    for col, (kind, expr) in DIRECT_COLUMNS.items():
        # A phone as typed, or one the numbering plan does not assign, is too often shared: it links nobody.
        if col in names and kind in LINK_KINDS and col != "phone":
            column = f't."{col}"'
            value = f"json_extract_string({column}, '{JSON_PATHS[col]}')" if col in JSON_PATHS else column
            shared = (
                f" AND {column} NOT IN (SELECT anonymous_id FROM _shared_devices)" if kind == "anonymous_id" else ""
            )
            if col == "phone_e164" and "phone_valid" in names:
                shared += " AND t.phone_valid"
            selects.append(
                f"SELECT '{kind}' AS identifier_type, {expr.format(c=column)} AS identifier_sha256 "
                f"FROM {table} t WHERE ({erased}) AND lower(trim(CAST({value} AS VARCHAR))) NOT IN ({blocked})"
                f"{shared}"
            )
    for type_col, value_col in TYPED_COLUMNS:
        if {type_col, value_col} <= names:  # every identifier the map (or an edge) gives the person, phones too
            selects.append(
                f"SELECT t.{type_col}, CASE WHEN t.{type_col} IN {HASHED_TYPES} THEN t.{value_col} "
                f"ELSE sha256(t.{value_col}) END FROM {table} t WHERE ({erased}) "
                f"AND lower(trim(t.{value_col})) NOT IN ({blocked}) AND NOT (t.{type_col} = 'anonymous_id' "
                f"AND t.{value_col} IN (SELECT anonymous_id FROM _shared_devices))"
            )
    return selects


def _find_shared_devices(con: duckdb.DuckDBPyConnection, tables: dict[str, list[str]]) -> None:
    """`_shared_devices(anonymous_id)`: devices on which two or more user ids signed in, in `tables`
    or raw.events. The identity graph gives such a device to one person; erasure gives it to none,
    since the other person's rows on it stay."""
    sources = [t for t, cols in tables.items() if {"anonymous_id", "user_id"} <= set(cols)]
    if (
        table_exists(con, "raw", "events")
        and "raw.events" not in sources
        and {"anonymous_id", "user_id"} <= {r[0] for r in con.execute("DESCRIBE raw.events").fetchall()}
    ):
        sources.append("raw.events")
    union = (
        " UNION ALL ".join(
            f"SELECT anonymous_id, user_id FROM {t} WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL"
            for t in sources
        )
        or "SELECT NULL::VARCHAR AS anonymous_id, NULL::VARCHAR AS user_id WHERE false"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _shared_devices AS SELECT anonymous_id FROM ({union}) "
        "GROUP BY anonymous_id HAVING count(DISTINCT user_id) > 1"
    )


def extend(
    con: duckdb.DuckDBPyConnection,
    tables: dict[str, list[str]],
    reason: str,
    now: dt.datetime | None = None,
    max_rounds: int = 10,
) -> int:
    """Put on the list every identifier that a row of a listed person carries in `tables` (table ->
    columns), until no row adds one; identifiers added. A request by email thus reaches the
    customer id of the CRM record, the user id of the identify event and the person of the map."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    _find_shared_devices(con, tables)
    added = 0
    for _ in range(max_rounds):
        # A row joins the person by a strong identifier only: not by a phone (a household's), and not by
        # a device (whoever else signed in on it is not the person).
        selects = [
            q
            for table, cols in tables.items()
            if (erased := predicate(cols, kinds=STRONG_KINDS))
            for q in _link_selects(table, cols, erased)
        ]
        if not selects:
            return added
        n = con.execute(
            f"""
            INSERT INTO privacy.suppression_list
            SELECT DISTINCT n.identifier_type, n.identifier_sha256, ?, ?
            FROM ({" UNION ALL ".join(selects)}) n
            ANTI JOIN privacy.suppression_list s
                ON s.identifier_type = n.identifier_type AND s.identifier_sha256 = n.identifier_sha256
            WHERE n.identifier_sha256 IS NOT NULL""",
            [reason, now],
        ).fetchone()[0]
        if not n:
            return added
        added += n
    return added


def link_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Tables whose rows tie two identifiers of a person together (two link columns or more)."""

    def links(cols: list[str]) -> int:
        names = set(cols)
        return sum(1 for c, (kind, _) in DIRECT_COLUMNS.items() if c in names and kind in LINK_KINDS) + sum(
            2 for t, v in TYPED_COLUMNS if {t, v} <= names
        )

    return {t: cols for t, cols in person_tables(con).items() if links(cols) >= 2}


def person_tables(con: duckdb.DuckDBPyConnection, include_views: bool = False) -> dict[str, list[str]]:
    """Every base table (and view, if asked) that may hold a person's rows -> its columns."""
    kinds = "('BASE TABLE', 'VIEW')" if include_views else "('BASE TABLE')"
    rows = con.execute(f"""
        SELECT c.table_schema || '.' || c.table_name, list(c.column_name ORDER BY c.ordinal_position)
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
        WHERE t.table_type IN {kinds} AND c.table_schema IN {SCHEMAS}
        GROUP BY 1 ORDER BY 1""").fetchall()
    return {name: cols for name, cols in rows if name not in EXEMPT_TABLES and predicate(cols)}


def count_traces(con: duckdb.DuckDBPyConnection, include_views: bool = False) -> dict[str, int]:
    """Rows of suppressed persons per table (all zero after an erasure); with `include_views`, also
    per view (the Spark engine's tables, mirrored as views)."""
    out = {}
    for table, cols in person_tables(con, include_views).items():
        out[table] = con.execute(f"SELECT count(*) FROM {table} t WHERE {predicate(cols)}").fetchone()[0]
    return out


COMPACTION_DUE_DDL = "CREATE TABLE IF NOT EXISTS privacy.compaction_due (since TIMESTAMP NOT NULL)"


def delete_suppressed(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], where: str = "true") -> int:
    """Delete the rows of suppressed persons from `table` (only those matching `where`); rows deleted.
    Rows deleted from a table in the file leave their bytes in it: the file is then due a compaction."""
    erased = predicate(columns)
    if erased is None:
        return 0
    n = con.execute(f"DELETE FROM {table} AS t WHERE ({where}) AND ({erased})").fetchone()[0]
    if n and not table.startswith("_"):
        mark_compaction_due(con)
    return n


def mark_compaction_due(con: duckdb.DuckDBPyConnection) -> None:
    ensure_tables(con)
    con.execute("INSERT INTO privacy.compaction_due VALUES (now())")


def compaction_due(con: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(con, "privacy", "compaction_due") and bool(
        con.execute("SELECT count(*) FROM privacy.compaction_due").fetchone()[0]
    )


def clear_compaction_due(con: duckdb.DuckDBPyConnection) -> None:
    if table_exists(con, "privacy", "compaction_due"):
        con.execute("DELETE FROM privacy.compaction_due")


def text_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every base table that may hold a person's rows -> its text (VARCHAR, JSON) columns."""
    rows = con.execute(f"""
        SELECT c.table_schema || '.' || c.table_name, list(c.column_name ORDER BY c.ordinal_position)
        FROM information_schema.columns c
        JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
        WHERE t.table_type = 'BASE TABLE' AND c.table_schema IN {SCHEMAS} AND c.data_type IN ('VARCHAR', 'JSON')
        GROUP BY 1 ORDER BY 1""").fetchall()
    return {name: cols for name, cols in rows if name not in EXEMPT_TABLES}


def delete_text_matches(con: duckdb.DuckDBPyConnection, forms: set[str], batch: int = 500) -> dict[str, int]:
    """Delete every row, in every table, whose text holds one of `forms` (case-insensitive, not
    inside a longer word or number); rows removed per table."""
    removed: dict[str, int] = {}
    ordered = sorted(forms, key=len, reverse=True)
    for start in range(0, len(ordered), batch):
        pattern = (
            "(?i)(?:^|[^0-9a-z])(?:"
            + "|".join(re.escape(f) for f in ordered[start : start + batch])
            + ")(?:[^0-9a-z]|$)"
        )
        for table, cols in text_columns(con).items():
            hit = " OR ".join(f'coalesce(regexp_matches(CAST(t."{c}" AS VARCHAR), ?), false)' for c in cols)
            n = con.execute(f"DELETE FROM {table} AS t WHERE {hit}", [pattern] * len(cols)).fetchone()[0]
            removed[table] = removed.get(table, 0) + n
            if n:
                mark_compaction_due(con)
    return removed


def scrub(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete every row of every suppressed person; rows removed per table."""
    return {table: delete_suppressed(con, table, cols) for table, cols in person_tables(con).items()}
