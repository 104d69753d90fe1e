"""The Spark engine (TESSERA_ENGINE=spark): a Thrift connection to the cluster's SQL endpoint, the
same one dbt-spark uses. Connection settings come from TESSERA_SPARK_HOST, TESSERA_SPARK_PORT and
TESSERA_SPARK_USER."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


class SparkUnavailableError(RuntimeError):
    """The Spark Thrift server did not answer; the message says where it looked."""


@contextlib.contextmanager
def connect() -> Iterator:
    from pyhive import hive
    from thrift.transport.TTransport import TTransportException

    host = os.environ.get("TESSERA_SPARK_HOST", "127.0.0.1")
    port = int(os.environ.get("TESSERA_SPARK_PORT", "10000"))
    try:
        con = hive.connect(host=host, port=port, username=os.environ.get("TESSERA_SPARK_USER", "tessera"))
    except (TTransportException, OSError) as exc:
        raise SparkUnavailableError(
            f"No Spark Thrift server answers at {host}:{port} (TESSERA_SPARK_HOST, TESSERA_SPARK_PORT): start the "
            "local cluster with `make services-up`, or point those variables at yours.") from exc
    try:
        cursor = con.cursor()
        cursor.execute("SET spark.sql.session.timeZone=UTC")
        yield cursor
    finally:
        con.close()


def read_frame(cursor, sql: str) -> pd.DataFrame:
    cursor.execute(sql)
    columns = [d[0].split(".")[-1] for d in cursor.description]
    return pd.DataFrame(cursor.fetchall(), columns=columns)


def publish_warehouse_sources(duckdb_warehouse: Path, lake: Path | None = None) -> list[str]:
    """Publish the dbt sources held in a DuckDB warehouse to the lake and register them in Spark."""
    from orchestration.lib import lake as lake_lib
    from orchestration.lib.warehouse import connect as duckdb_connect

    with duckdb_connect(duckdb_warehouse, read_only=True) as con, connect() as cursor:
        return lake_lib.publish_sources(con, cursor, lake_lib.dbt_source_tables(), lake)


def dbt_on_spark(duckdb_warehouse: Path, dbt_args: list[str], lake: Path | None = None,
                 publish: bool = True) -> subprocess.CompletedProcess:
    """Publish the warehouse's dbt sources (unless `publish` is False), then run `dbt <dbt_args>` against
    the spark target. dbt's output is returned; a failure raises with it."""
    from orchestration.lib.settings import DBT_PROJECT_DIR

    if publish:
        publish_warehouse_sources(duckdb_warehouse, lake)
    dbt = Path(sys.executable).parent / "dbt"
    result = subprocess.run([str(dbt), *dbt_args, "--target", "spark", "--profiles-dir", "."],
                            cwd=DBT_PROJECT_DIR, capture_output=True, text=True, env={**os.environ, "TESSERA_ENGINE": "spark"})
    if result.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(dbt_args)} failed on Spark (exit {result.returncode}):\n{result.stdout[-6000:]}")
    return result
