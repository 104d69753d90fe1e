"""The Spark engine (TESSERA_ENGINE=spark): a Thrift connection to the cluster's SQL endpoint, the
same one dbt-spark uses. Connection settings come from TESSERA_SPARK_HOST, TESSERA_SPARK_PORT and
TESSERA_SPARK_USER."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from orchestration.lib.dbt_subprocess import AFTER_IDENTITY_GRAPH, AFTER_ML, dbt_target, run_dbt
from orchestration.lib.settings import load_settings


class SparkUnavailableError(RuntimeError):
    """The Spark Thrift server did not answer; the message says where it looked."""


@contextlib.contextmanager
def connect() -> Iterator:
    from pyhive import hive
    from thrift.transport.TTransport import TTransportException

    settings = load_settings()
    host, port = settings.spark_host, settings.spark_port
    try:
        con = hive.connect(host=host, port=port, username=settings.spark_user)
    except (TTransportException, OSError) as exc:
        raise SparkUnavailableError(
            f"No Spark Thrift server answers at {host}:{port} (TESSERA_SPARK_HOST, TESSERA_SPARK_PORT): start the "
            "local cluster with `make services-up`, or point those variables at yours."
        ) from exc
    try:
        cursor = con.cursor()
        cursor.execute("SET spark.sql.session.timeZone=UTC")
        yield cursor
    finally:
        con.close()


def read_frame(cursor, sql: str) -> pd.DataFrame:
    """The result of `sql` with the dtypes DuckDB's `.df()` gives: decimals as floats, dates and
    timestamps as datetime64 (Thrift returns Decimal objects and dates as text)."""
    cursor.execute(sql)
    columns = [(d[0].split(".")[-1], d[1]) for d in cursor.description]
    frame = pd.DataFrame(cursor.fetchall(), columns=[name for name, _ in columns])
    for name, kind in columns:
        if kind == "DECIMAL_TYPE":
            frame[name] = pd.to_numeric(frame[name]).astype(float)
        elif kind in ("DATE_TYPE", "TIMESTAMP_TYPE"):
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[us]")
    return frame


def publish_warehouse_sources(duckdb_warehouse: Path, lake: Path | None = None) -> list[str]:
    """Publish the dbt sources held in a DuckDB warehouse to the lake and register them in Spark."""
    from orchestration.lib import lake as lake_lib
    from orchestration.lib.warehouse import connect as duckdb_connect

    with duckdb_connect(duckdb_warehouse, read_only=True) as con, connect() as cursor:
        return lake_lib.publish_tables(con, cursor, lake_lib.dbt_source_tables(), lake)


def dbt_on_spark(
    duckdb_warehouse: Path,
    dbt_args: list[str],
    lake: Path | None = None,
    publish: bool = True,
    target_path: Path | None = None,
) -> subprocess.CompletedProcess:
    """Publish the warehouse's dbt sources (unless `publish` is False), then run `dbt <dbt_args>` against
    the spark target."""
    if publish:
        publish_warehouse_sources(duckdb_warehouse, lake)
    return run_dbt(dbt_args, "spark", target_path)


def rebuild_after_erasure(
    duckdb_warehouse: str | Path, dbt_vars: dict, only_before_identity_graph: bool = False
) -> None:
    """Every dbt model again, in full, from sources published afresh, so that nothing this run
    builds still counts an erased person (deciles, quintiles, feature caps): Spark's Parquet tables
    have no row-level DELETE (on DuckDB the erasure deletes from the models' tables in place).
    `dbt_vars`: the run's (orchestration.lib.dbt_subprocess.run_vars). `only_before_identity_graph`:
    the models the run has built so far, when dbt builds the others next."""
    later = ["--exclude", AFTER_IDENTITY_GRAPH, AFTER_ML] if only_before_identity_graph else []
    with dbt_target("rebuild_after_erasure", duckdb_warehouse) as target_path:
        dbt_on_spark(
            Path(duckdb_warehouse),
            ["run", "--full-refresh", *later, "--vars", json.dumps(dbt_vars)],
            target_path=target_path,
        )


def table_location(cursor, table: str) -> str | None:
    """Where Spark keeps `schema.name`'s files, or None for a view or a missing table."""
    cursor.execute(f"SHOW TABLES IN {table.split('.')[0]} LIKE '{table.split('.')[1]}'")
    if not cursor.fetchall():
        return None
    cursor.execute(f"DESCRIBE TABLE EXTENDED {table}")
    details = {str(name).strip(): value for name, value, *_ in cursor.fetchall()}
    if str(details.get("Type", "")).upper() == "VIEW":
        return None
    location = details.get("Location")
    return location.removeprefix("file:") if location and location.startswith("file:") else location


def mirror_tables(con, cursor, tables: list[str]) -> list[str]:
    """Make each Spark table `schema.name` readable in the DuckDB warehouse under the same name: a
    view over the Parquet files Spark wrote (partition columns recovered from the directory names),
    replacing a DuckDB table of that name if the warehouse ran on DuckDB before. The Python steps
    (GX gates, segments, exports, the API) then read the engine's tables unchanged. Spark views have
    no files and are skipped; returns the tables mirrored."""
    mirrored = []
    for table in tables:
        location = table_location(cursor, table)
        if location is None:
            continue
        schema, name = table.split(".")
        kind = con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
        ).fetchall()
        if kind and kind[0][0] == "BASE TABLE":
            con.execute(f"DROP TABLE {table}")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet("
            f"'{location.rstrip('/')}/**/part-*', hive_partitioning = true, union_by_name = true)"
        )
        mirrored.append(table)
    return mirrored
