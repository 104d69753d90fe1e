"""The erasure suppression list, and SQL that finds an erased person's rows in any table.

privacy.suppression_list holds SHA-256 hashes of every identifier of an erased person, never the
identifiers themselves. A row belongs to an erased person when one of its identifier columns
(found by name: person_id, user_id, email, phone_e164, identifier_type + identifier...) hashes to
a listed value. The same predicate serves the erasure itself, the no-trace check and ingestion,
which drops later data for the person before it lands.
"""

from __future__ import annotations

import duckdb

from orchestration.lib.warehouse import table_exists

SUPPRESSION_DDL = """
CREATE TABLE IF NOT EXISTS privacy.suppression_list (
    identifier_type        VARCHAR NOT NULL,  -- person_id, anonymous_id, user_id, customer_id, email_sha256, phone_sha256
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
}
# (type column, value column) pairs, as in identity_map and the identity graph's edges.
TYPED_COLUMNS = (("identifier_type", "identifier"), ("left_type", "left_id"), ("right_type", "right_id"))
# Free text (quarantined lines): split into tokens, each hashed as it is and lower-cased.
TEXT_COLUMNS = ("raw",)
TOKEN_SPLIT = r"""[\s,;:"{}\[\]()]+"""
# Never scrubbed: the requests themselves are the legal record (and the list is hashes only).
EXEMPT_TABLES = ("raw.erasure_requests", "raw.ingested_files")
SCHEMAS = ("raw", "pii", "intermediate", "marts", "quality")


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS privacy")
    con.execute(SUPPRESSION_DDL)
    con.execute(LOG_DDL)


def has_suppressions(con: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(con, "privacy", "suppression_list") and \
        bool(con.execute("SELECT count(*) FROM privacy.suppression_list").fetchone()[0])


def _listed(kind: str, value_sql: str) -> str:
    return (f"coalesce(({value_sql}) IN (SELECT identifier_sha256 FROM privacy.suppression_list "
            f"WHERE identifier_type = '{kind}'), false)")


def predicate(columns: list[str], alias: str = "t") -> str | None:
    """SQL true for rows of a table with these columns that belong to a suppressed person."""
    names = set(columns)
    parts = [_listed(kind, expr.format(c=f'{alias}."{col}"')) for col, (kind, expr) in DIRECT_COLUMNS.items()
             if col in names]
    for type_col, value_col in TYPED_COLUMNS:
        if {type_col, value_col} <= names:
            value = (f"CASE WHEN {alias}.{type_col} IN {HASHED_TYPES} THEN {alias}.{value_col} "
                     f"ELSE sha256({alias}.{value_col}) END")
            parts.append(f"EXISTS (SELECT 1 FROM privacy.suppression_list s WHERE s.identifier_type = "
                         f"{alias}.{type_col} AND s.identifier_sha256 = {value})")
    for col in TEXT_COLUMNS:
        if col in names:
            tokens = f"unnest(regexp_split_to_array({alias}.{col}, '{TOKEN_SPLIT}'))"
            parts.append(f"EXISTS (SELECT 1 FROM (SELECT {tokens} AS tok) x WHERE x.tok <> '' AND ("
                         f"sha256(x.tok) IN (SELECT identifier_sha256 FROM privacy.suppression_list) OR "
                         f"sha256(lower(x.tok)) IN (SELECT identifier_sha256 FROM privacy.suppression_list)))")
    return " OR ".join(parts) if parts else None


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


def delete_suppressed(con: duckdb.DuckDBPyConnection, table: str, columns: list[str], where: str = "true") -> int:
    """Delete the rows of suppressed persons from `table` (only those matching `where`); rows deleted."""
    erased = predicate(columns)
    if erased is None:
        return 0
    return con.execute(f"DELETE FROM {table} AS t WHERE ({where}) AND ({erased})").fetchone()[0]


def scrub(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Delete every row of every suppressed person; rows removed per table."""
    return {table: delete_suppressed(con, table, cols) for table, cols in person_tables(con).items()}
