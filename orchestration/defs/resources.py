"""The resources shared by every domain: the warehouse (DuckDB, with Spark as the engine when
TESSERA_ENGINE=spark) and the settings the assets read at run time. The landing zone's resource
belongs to ingestion (orchestration/defs/ingest/resources.py)."""

from __future__ import annotations

import contextlib

import dagster as dg

from orchestration.lib import warehouse as wh
from orchestration.lib.settings import Settings

# A lock held outside Dagster (a notebook, the API, a run of another instance) is transient: the
# step waits and tries again. Other failures are not retried; they need a person.
LOCK_RETRY = dict(max_retries=3, seconds_to_wait=20)


def retry_when_locked(exc: BaseException) -> None:
    """Turn a failure caused by DuckDB's file lock into a step retry."""
    if isinstance(exc, wh.WarehouseLockedError) or "could not set lock on file" in str(exc).lower():
        raise dg.RetryRequested(**LOCK_RETRY) from exc


class WarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB file that every step reads and writes (TESSERA_WAREHOUSE), and the engine
    that runs the dbt models (TESSERA_ENGINE).

    On `duckdb` the file is the whole warehouse. On `spark` the dbt models live on the cluster:
    tables that Python writes and dbt reads are published to the Parquet lake (`publish`), and the
    tables dbt builds are mirrored into the file as views over Spark's Parquet files (`mirror`), so
    the same steps read them under the same names. `read_frame` runs a query on the engine itself.
    """

    path: str
    engine: str = "duckdb"

    @property
    def on_spark(self) -> bool:
        return self.engine == "spark"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        with contextlib.ExitStack() as stack:
            try:
                con = stack.enter_context(wh.connect(self.path, read_only=read_only))
            except wh.WarehouseLockedError as exc:
                retry_when_locked(exc)
                raise
            yield con

    def publish(self, con, tables: list[str]) -> list[str]:
        """On Spark, publish `tables` (those the file holds) to the lake and register them in the Spark
        catalog, for dbt's sources and the cluster's steps; returns those published (none on DuckDB)."""
        if not self.on_spark:
            return []
        from orchestration.lib import lake, spark

        with spark.connect() as cursor:
            return lake.publish_tables(con, cursor, tables)

    def mirror(self, tables: list[str]) -> list[str]:
        """On Spark, (re)create DuckDB views over the Spark tables of `tables`; returns those mirrored."""
        if not self.on_spark:
            return []
        from orchestration.lib import spark

        with self.connect() as con, spark.connect() as cursor:
            return spark.mirror_tables(con, cursor, tables)

    def read_frame(self, sql: str):
        """A pandas frame of `sql` (portable SQL) computed by the engine: the DuckDB file, or the
        Spark cluster, where only the result travels."""
        if self.on_spark:
            from orchestration.lib import spark

            with spark.connect() as cursor:
                return spark.read_frame(cursor, sql)
        with self.connect(read_only=True) as con:
            return con.execute(sql).df()


class SettingsResource(dg.ConfigurableResource):
    """The settings the assets read at run time (orchestration/lib/settings.py, docs/settings.md),
    handed over by Dagster: orchestration/definitions.py builds it once from `load_settings()`, so no
    asset reads the environment. The values were validated when they were read; paths are absolute.
    A test or script that changes the environment builds its own: `from_settings(reload_settings())`."""

    exports_dir: str
    reports_dir: str
    dagster_home: str
    mlflow_tracking_uri: str
    as_of: str | None = None  # YYYY-MM-DD; None: the day of the latest valid event, order or CRM record
    consent_default_allowed: bool = True
    ml_frame_rows: int = 1_000_000
    redis_port: int = 6390  # the real-time path's broker (docs/realtime.md)

    @classmethod
    def from_settings(cls, settings: Settings) -> SettingsResource:
        return cls(
            exports_dir=str(settings.exports_dir),
            reports_dir=str(settings.reports_dir),
            dagster_home=str(settings.dagster_home),
            mlflow_tracking_uri=settings.mlflow_tracking_uri,
            as_of=settings.as_of.isoformat() if settings.as_of else None,
            consent_default_allowed=settings.consent_default_allowed,
            ml_frame_rows=settings.ml_frame_rows,
            redis_port=settings.redis_port,
        )
