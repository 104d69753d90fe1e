"""Feature build time and RFM exactness against the ground truth.

    .venv/bin/python benchmarks/feature_build.py --persons 100000

Materialises the whole pipeline through Dagster (step times from the event log), then times a
features-only `dbt build` (int_feature_dates .. user_features_model_ready, with their tests) on
the same warehouse, and reports the share of true buyers and non-buyers whose frequency_orders
and monetary_total at the scoring date equal the generator's truth exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks._pipeline import ensure_generated, run_pipeline, save_result, tier_parser, tier_workdir  # noqa: E402
from orchestration.defs.identity.evaluation import truth_as_identity_map  # noqa: E402

FEATURE_SELECTION = "path:models/intermediate/features path:models/marts/features"


def rfm_exactness(warehouse: Path, truth_dir: Path) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        features = con.execute(
            "SELECT person_id, frequency_orders, monetary_total FROM marts.user_features "
            "WHERE as_of = (SELECT max(as_of) FROM marts.user_features)"
        ).df()
        identity = con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").df()
    truth = truth_as_identity_map(pd.read_csv(truth_dir / "identifiers.csv", dtype=str))
    persons = pd.read_csv(truth_dir / "persons.csv", dtype={"person_key": str})
    owner = identity.merge(truth, on=["identifier_type", "identifier"])[["true_person", "person_id"]].drop_duplicates()
    # A true person's orders may sit on several predicted persons when identity left a device apart.
    per_truth = (
        owner.merge(features, on="person_id").groupby("true_person")[["frequency_orders", "monetary_total"]].sum()
    )
    merged = (
        persons.set_index("person_key")
        .join(per_truth, rsuffix="_pred")
        .fillna({"frequency_orders_pred": 0, "monetary_total_pred": 0})
    )
    exact = (merged["frequency_orders"] == merged["frequency_orders_pred"]) & (
        (merged["monetary_total"] - merged["monetary_total_pred"].astype(float)).abs() < 0.005
    )
    buyers = merged["frequency_orders"] > 0
    return {
        "persons": int(len(merged)),
        "exact_share": round(float(exact.mean()), 5),
        "buyers": int(buyers.sum()),
        "buyers_exact_share": round(float(exact[buyers].mean()), 5),
        "mismatches": int((~exact).sum()),
    }


def main() -> int:
    args = tier_parser(__doc__, 100_000).parse_args()
    work = tier_workdir(args)
    landing, truth_dir = ensure_generated(work, args.persons)
    warehouse = work / "features.duckdb"
    warehouse.unlink(missing_ok=True)
    result: dict = {"persons": args.persons, "pipeline": run_pipeline(landing, warehouse, with_checks=True)}
    started = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "build",
            "--profiles-dir",
            ".",
            "--quiet",
            "-s",
            *FEATURE_SELECTION.split(),
        ],
        cwd=ROOT / "dbt_project",
        check=True,
        env={**os.environ, "TESSERA_WAREHOUSE": str(warehouse)},
    )
    result["features_only_dbt_build_s"] = round(time.perf_counter() - started, 1)
    result["rfm_vs_truth"] = rfm_exactness(warehouse, truth_dir)
    save_result(f"features_p{args.persons}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
