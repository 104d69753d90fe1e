"""The Parquet lake that a Spark engine reads (TESSERA_ENGINE=spark).

Tables that Python writes (the raw tables of ingestion, the identity graph, the model scores) are
published as Parquet under TESSERA_LAKE_DIR/<schema>/<table>/ and registered in the Spark catalog as
external tables of the same name, so that dbt's sources resolve on Spark as they do on DuckDB.
A table is replaced whole: its new files are written beside the old ones and swapped in by rename,
so a killed publish leaves the previous copy readable.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import duckdb

from orchestration.lib.settings import DBT_PROJECT_DIR, load_settings


def lake_dir() -> Path:
    return load_settings().lake_dir


def table_path(table: str, lake: Path | None = None) -> Path:
    schema, name = table.split(".")
    return (lake or lake_dir()) / schema / name


def publish_table(con: duckdb.DuckDBPyConnection, table: str, lake: Path | None = None) -> Path:
    """Write the DuckDB table `schema.name` as Parquet to the lake, replacing its previous copy."""
    target = table_path(table, lake)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    staging.mkdir()
    try:
        con.execute(
            f"COPY ({_spark_readable_select(con, table)}) TO '{staging / 'part-0.parquet'}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
        )
        retired = target.with_name(f".{target.name}.retired.{uuid.uuid4().hex}")
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _spark_readable_select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """SELECT * with naive timestamps written as UTC instants: Spark reads naive Parquet timestamps as
    TIMESTAMP_NTZ, which its Hive metastore cannot store in a table. Our timestamps are UTC, and the
    warehouse connection's time zone is UTC, so the values do not change."""
    columns = con.execute(f"DESCRIBE {table}").fetchall()
    return (
        "SELECT "
        + ", ".join(
            f'CAST("{name}" AS TIMESTAMPTZ) AS "{name}"' if kind == "TIMESTAMP" else f'"{name}"'
            for name, kind, *_ in columns
        )
        + f" FROM {table}"
    )


def register_in_spark(cursor, table: str, lake: Path | None = None) -> None:
    """(Re)create `schema.name` in the Spark catalog as an external Parquet table over the lake copy.
    Dropping an external table leaves its files alone."""
    schema, _ = table.split(".")
    cursor.execute(f"CREATE DATABASE IF NOT EXISTS {schema}")
    cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(f"CREATE TABLE {table} USING parquet LOCATION '{table_path(table, lake).as_uri()}'")


def dbt_source_tables(manifest_path: Path = DBT_PROJECT_DIR / "target" / "manifest.json") -> list[str]:
    """`schema.table` of every dbt source: the tables Python writes and dbt reads."""
    import json

    sources = json.loads(manifest_path.read_text())["sources"].values()
    return sorted({f"{s['schema']}.{s['name']}" for s in sources})


def publish_tables(
    con: duckdb.DuckDBPyConnection, spark_cursor, tables: list[str], lake: Path | None = None
) -> list[str]:
    """Publish the DuckDB copies of `tables` that exist and register them in Spark; returns those published."""
    present = {
        f"{schema}.{name}"
        for schema, name in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    }
    published = [table for table in tables if table in present]
    for table in published:
        publish_table(con, table, lake)
        register_in_spark(spark_cursor, table, lake)
    return published
