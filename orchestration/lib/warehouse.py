"""DuckDB warehouse access: short-lived connections, one writer at a time (docs/stack_notes.md)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb

from orchestration.lib.settings import load_settings

SCHEMAS = ("raw", "pii", "staging", "intermediate", "marts", "quality", "privacy")

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
    source      VARCHAR NOT NULL,   -- events, crm, orders, enrichment, privacy
    file        VARCHAR NOT NULL,   -- path relative to the landing root
    line        BIGINT,             -- 1-based line in the file; NULL when the whole file was rejected
    reason_code VARCHAR NOT NULL,   -- machine-readable, see orchestration/lib/reason_codes.py
    reason      VARCHAR NOT NULL,   -- what was wrong, for a person
    raw         VARCHAR,            -- the original text
    loaded_at   TIMESTAMP NOT NULL
)
"""

FIELD_ISSUES_DDL = """
CREATE TABLE IF NOT EXISTS raw.field_issues (
    source      VARCHAR NOT NULL,   -- crm, orders, enrichment, events
    file        VARCHAR NOT NULL,
    line        BIGINT NOT NULL,    -- the record's line; the record itself loaded, with this field NULL
    column_name VARCHAR NOT NULL,
    reason_code VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,
    raw         VARCHAR,            -- the value as sent
    customer_id VARCHAR,            -- the record's ids (CRM and orders; events), so that erasure finds the row
    user_id     VARCHAR,
    anonymous_id VARCHAR,
    loaded_at   TIMESTAMP NOT NULL
)
"""

FILES_DDL = """
CREATE TABLE IF NOT EXISTS raw.ingested_files (
    source           VARCHAR NOT NULL,
    file             VARCHAR NOT NULL,
    size_bytes       BIGINT NOT NULL,
    modified_ns      BIGINT NOT NULL,
    loaded_at        TIMESTAMP NOT NULL,
    status           VARCHAR NOT NULL,   -- loaded or rejected
    rows_read        BIGINT NOT NULL,
    rows_loaded      BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    event_dates      DATE[],             -- events: the days (UTC) of the file's valid messages
    home_date        DATE,               -- events: the daily partition that owns the file's quarantined lines
    PRIMARY KEY (source, file)
)
"""
# Warehouses created before daily partitions lack the two event columns.
FILES_MIGRATIONS = (
    "ALTER TABLE raw.ingested_files ADD COLUMN IF NOT EXISTS event_dates DATE[]",
    "ALTER TABLE raw.ingested_files ADD COLUMN IF NOT EXISTS home_date DATE",
)


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file; waiting and trying again usually helps."""


def memory_limit() -> str:
    """DuckDB's memory limit for every connection we open. DuckDB's own default is 80% of RAM; past the
    limit it spills to disk instead of taking the machine."""
    return load_settings().duckdb_memory_limit


@contextlib.contextmanager
def scratch_database() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB under the same memory limit, spilling to a temporary directory that goes
    away with it (for libraries such as Splink that bring their own tables)."""
    with tempfile.TemporaryDirectory(prefix="tessera-duckdb-") as spill:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{memory_limit()}'")
            con.execute(f"SET temp_directory = '{spill}'")
            yield con
        finally:
            con.close()


@contextlib.contextmanager
def connect(path: Path | str, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseLockedError(
                f"The warehouse {path} is locked by another process (a notebook, the DuckDB CLI, the lookup API "
                "or another run). DuckDB allows one writer per file: close that process, or wait for the other "
                "run to finish, then try again."
            ) from exc
        raise
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = '{memory_limit()}'")
        if not read_only:
            for schema in SCHEMAS:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            con.execute(QUARANTINE_DDL)
            con.execute(FIELD_ISSUES_DDL)
            for column in ("user_id", "anonymous_id"):  # raw.field_issues before events recorded issues
                con.execute(f"ALTER TABLE raw.field_issues ADD COLUMN IF NOT EXISTS {column} VARCHAR")
            con.execute(FILES_DDL)
            for statement in FILES_MIGRATIONS:
                con.execute(statement)
            _drop_leftovers(con, path)
        yield con
    finally:
        con.close()


def _drop_leftovers(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """What a killed process left: staging tables (`raw._*`, such as a full events load's
    `raw._events_loading`) and half-written compaction files. DuckDB admits one writer per file, so
    none of them is in use when a write connection opens. A dropped table leaves its values in the
    file's freed blocks, and a killed load may have held rows of erased persons there before it
    deleted them: the file is then due a compaction (the next erasure step does it)."""
    from orchestration.lib import suppression  # it imports this module

    leftovers = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw' "
        "AND table_type = 'BASE TABLE' AND starts_with(table_name, '_')"
    ).fetchall()
    for (name,) in leftovers:
        con.execute(f'DROP TABLE raw."{name}"')
    if leftovers:
        suppression.mark_compaction_due(con)
    for stale in path.parent.glob(f".{path.name}.compact-*"):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All statements inside commit together or not at all (also when the process dies)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def table_from_frame(con: duckdb.DuckDBPyConnection, name: str, frame, temp: bool = False) -> None:
    """CREATE OR REPLACE a table from a pandas DataFrame in one statement."""
    con.register("_frame", frame)
    try:
        con.execute(f"CREATE OR REPLACE {'TEMP ' if temp else ''}TABLE {name} AS SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
        ).fetchone()[0]
    )


def table_fingerprint(con: duckdb.DuckDBPyConnection, qualified: str) -> tuple[int, str]:
    """Row count and an order-independent content hash, to prove re-runs change nothing."""
    count, digest = con.execute(
        f"SELECT count(*), coalesce(md5(string_agg(r, '\n' ORDER BY r)), '') "
        f"FROM (SELECT CAST(t AS VARCHAR) AS r FROM {qualified} AS t)"
    ).fetchone()
    return count, digest


def compact(path: Path | str) -> tuple[int, int]:
    """Rewrite the DuckDB file so that deleted rows leave no bytes behind: DuckDB reuses the blocks
    a DELETE frees, but does not wipe them, so an erased person's values stay readable in the file.
    Every schema is copied into a fresh file (COPY FROM DATABASE), which replaces the old one in one
    rename. Holds the write lock throughout. Returns the file's bytes before and after."""
    path = Path(path)
    fresh = path.with_name(f".{path.name}.compact-{os.getpid()}")
    fresh.unlink(missing_ok=True)
    before = path.stat().st_size
    with connect(path) as con:
        con.execute("CHECKPOINT")
        con.execute(f"ATTACH '{fresh}' AS fresh")
        try:
            con.execute(f'COPY FROM DATABASE "{_catalog(con)}" TO fresh')
            con.execute("DETACH fresh")
        except BaseException:
            con.execute("DETACH DATABASE IF EXISTS fresh")
            fresh.unlink(missing_ok=True)
            raise
        os.replace(fresh, path)  # under the lock: no other process writes meanwhile
    Path(f"{path}.wal").unlink(missing_ok=True)
    return before, path.stat().st_size


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("SELECT current_database()").fetchone()[0]
