"""The whole pipeline on DuckDB and on Spark over the same generated tier.

    .venv/bin/python benchmarks/engines.py --persons 10000      # starts the local Spark cluster if needed

1. DuckDB: every asset through Dagster (ingestion, identity, dbt, GX gates, ML, erasures, segments)
   into a fresh warehouse file, TESSERA_ENGINE=duckdb. Wall time per step and per stage.
2. Spark: the same run with TESSERA_ENGINE=spark on the local standalone cluster (Thrift): the dbt
   models on Spark, the Python steps through the lake and the mirrored views. Same figures.
3. The results compared: identity_map as a partition, row counts of user_features and
   segment_attributes on each engine, and segment membership.
Figures go to benchmarks/results/engines_p<persons>.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pipeline import (  # noqa: E402
    ensure_generated,
    run_pipeline,
    save_result,
    stage_times,
    tier_parser,
    tier_workdir,
)
from orchestration import services  # noqa: E402
from orchestration.lib import spark  # noqa: E402
from orchestration.lib.warehouse import connect  # noqa: E402

ENGINES = ("duckdb", "spark")


def _partition(frame) -> set[frozenset]:
    keys = frame["identifier_type"] + ":" + frame["identifier"]
    return {frozenset(group) for _, group in keys.groupby(frame["person_id"])}


def main() -> None:
    args = tier_parser(__doc__, 10_000).parse_args()
    work = tier_workdir(args)
    landing, _ = ensure_generated(work, args.persons)
    out = work / "engines"
    out.mkdir(parents=True, exist_ok=True)
    started_services = services.up(["spark"])
    runs, warehouses = {}, {}
    try:
        for engine in ENGINES:
            warehouse = out / f"{engine}.duckdb"
            warehouse.unlink(missing_ok=True)
            os.environ.update(
                TESSERA_ENGINE=engine,
                MLFLOW_TRACKING_URI=f"sqlite:///{out / f'mlflow-{engine}.db'}",
                TESSERA_LAKE_DIR=str(out / "lake"),
                TESSERA_EXPORTS_DIR=str(out / f"exports-{engine}"),
            )
            result = run_pipeline(landing, warehouse, with_checks=True, with_ml=True, with_privacy=True)
            runs[engine] = {
                "run_wall_s": result["run_wall_s"],
                "stages_s": stage_times(result["step_s"]),
                "step_s": result["step_s"],
            }
            warehouses[engine] = warehouse
            print(f"{engine}: {result['run_wall_s']} s", flush=True)
        identity_sql = "select person_id, identifier_type, identifier from marts.identity_map"
        with connect(warehouses["duckdb"], read_only=True) as duck, spark.connect() as cursor:
            events = duck.execute("select count(*) from intermediate.int_segment__events").fetchone()[0]
            same_partition = _partition(duck.execute(identity_sql).df()) == _partition(
                spark.read_frame(cursor, identity_sql)
            )
            counts = {
                table: {
                    "duckdb": duck.execute(f"select count(*) from {table}").fetchone()[0],
                    "spark": int(spark.read_frame(cursor, f"select count(*) as n from {table}")["n"][0]),
                }
                for table in ("marts.identity_map", "marts.user_features", "marts.segment_attributes")
            }
        membership = {}
        for engine, warehouse in warehouses.items():
            with connect(warehouse, read_only=True) as con:
                membership[engine] = set(
                    con.execute("select segment_name, person_id from marts.segment_membership").fetchall()
                )
    finally:
        services.down(started_services)
    save_result(
        f"engines_p{args.persons}",
        {
            "persons": args.persons,
            "events": int(events),
            "runs": runs,
            "identity_map_same_partition": same_partition,
            "row_counts": counts,
            "segment_memberships": {engine: len(m) for engine, m in membership.items()},
            "segment_membership_equal": membership["duckdb"] == membership["spark"],
        },
    )


if __name__ == "__main__":
    main()
