"""The dbt project on DuckDB and on Spark over the same generated tier.

    .venv/bin/python benchmarks/engines.py --persons 10000      # needs `make services-up` (or starts Spark)

1. The whole pipeline through Dagster into a fresh DuckDB warehouse (with ML), for the sources.
2. DuckDB: `dbt build --full-refresh` of every model (unit tests left out, as on Spark), timed.
3. Spark: the sources published to the Parquet lake and registered (timed apart), then the same
   `dbt build --full-refresh` on the local standalone cluster over Thrift, timed.
4. The marts compared: identity_map as a partition, user_features and segment_attributes row counts.
Figures go to benchmarks/results/engines_p<persons>.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pipeline import ensure_generated, run_pipeline, save_result, tier_parser, tier_workdir  # noqa: E402
from orchestration import services  # noqa: E402
from orchestration.lib import spark  # noqa: E402
from orchestration.lib.settings import DBT_PROJECT_DIR  # noqa: E402
from orchestration.lib.warehouse import connect  # noqa: E402

DBT_BUILD = ["build", "--full-refresh", "--exclude", "test_type:unit"]


def dbt_on_duckdb(warehouse: Path, dbt_vars: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "dbt"), *DBT_BUILD, "--vars", dbt_vars, "--profiles-dir", "."],
                   cwd=DBT_PROJECT_DIR, check=True, capture_output=True, env={**os.environ, "TESSERA_WAREHOUSE": str(warehouse)})
    return round(time.perf_counter() - started, 1)


def main() -> None:
    args = tier_parser(__doc__, 10_000).parse_args()
    work = tier_workdir(args)
    landing, _ = ensure_generated(work, args.persons)
    warehouse = work / "engines" / "warehouse.duckdb"
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    warehouse.unlink(missing_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'engines' / 'mlflow.db'}"
    os.environ["TESSERA_LAKE_DIR"] = str(work / "engines" / "lake")
    started_services = services.up(["spark"])
    try:
        pipeline = run_pipeline(landing, warehouse, with_ml=True)
        with connect(warehouse, read_only=True) as con:
            as_of = con.execute("select max(as_of) from marts.user_features").fetchone()[0]
            events = con.execute("select count(*) from intermediate.int_segment__events").fetchone()[0]
        dbt_vars = json.dumps({"as_of": str(as_of)[:10]})
        duckdb_s = dbt_on_duckdb(warehouse, dbt_vars)

        started = time.perf_counter()
        spark.publish_warehouse_sources(warehouse)
        publish_s = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        spark.dbt_on_spark(warehouse, [*DBT_BUILD, "--vars", dbt_vars], publish=False)
        spark_s = round(time.perf_counter() - started, 1)

        counts = {}
        with connect(warehouse, read_only=True) as con, spark.connect() as cursor:
            for table in ("marts.identity_map", "marts.user_features", "marts.segment_attributes"):
                left = con.execute(f"select count(*) from {table}").fetchone()[0]
                right = spark.read_frame(cursor, f"select count(*) as n from {table}")["n"][0]
                counts[table] = {"duckdb": int(left), "spark": int(right)}
    finally:
        services.down(started_services)
    save_result(f"engines_p{args.persons}", {
        "persons": args.persons, "events": int(events), "pipeline_wall_s_duckdb": pipeline["run_wall_s"],
        "dbt_build_s": {"duckdb": duckdb_s, "spark": spark_s}, "lake_publish_s": publish_s, "row_counts": counts})


if __name__ == "__main__":
    main()
