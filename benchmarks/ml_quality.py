"""Clustering and purchase_30d quality against the generator's ground truth, and training time.

    .venv/bin/python benchmarks/ml_quality.py --persons 10000

Materialises the whole pipeline including the ML assets (a fresh MLflow store in the work folder),
then reports:
- the adjusted Rand index between the chosen clusters and the true archetypes;
- the ROC-AUC of marts.propensity_scores against the truth's purchases in the 30 days after as_of,
  and how well calibrated they are there (ECE, Brier, mean score against the observed rate);
- each ML step's wall time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import adjusted_rand_score, brier_score_loss, roc_auc_score  # noqa: E402

from benchmarks._pipeline import ensure_generated, run_pipeline, save_result, tier_parser, tier_workdir  # noqa: E402
from ml.propensity import expected_calibration_error  # noqa: E402
from orchestration.defs.identity.evaluation import truth_as_identity_map  # noqa: E402


def true_person_of(con, truth_dir: Path) -> pd.Series:
    """person_id -> the true person most of its identifiers belong to."""
    identity = con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").df()
    truth = truth_as_identity_map(pd.read_csv(truth_dir / "identifiers.csv", dtype=str))
    joined = identity.merge(truth, on=["identifier_type", "identifier"])
    return joined.groupby("person_id")["true_person"].agg(lambda s: s.value_counts().index[0])


def main() -> int:
    args = tier_parser(__doc__, 10_000).parse_args()
    work = tier_workdir(args)
    landing, truth_dir = ensure_generated(work, args.persons)
    warehouse, store = work / "ml.duckdb", work / "mlflow.db"
    warehouse.unlink(missing_ok=True)
    store.unlink(missing_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    pipeline = run_pipeline(landing, warehouse, with_ml=True)
    persons = pd.read_csv(truth_dir / "persons.csv").set_index("person_key")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        owner = true_person_of(con, truth_dir)
        clusters = con.execute("SELECT person_id, cluster_id, cluster_name FROM marts.cluster_assignments").df()
        scores = con.execute("SELECT person_id, score FROM marts.propensity_scores").df()
    clusters["archetype"] = clusters["person_id"].map(owner).map(persons["archetype"])
    scores["bought"] = scores["person_id"].map(owner).map(persons["purchased_next_30d"])
    c, s = clusters.dropna(subset=["archetype"]), scores.dropna(subset=["bought"])
    steps = pipeline["step_s"]
    result = {
        "persons": args.persons,
        "pipeline": pipeline,
        "clustering": {
            "persons_scored": len(c),
            "clusters": int(c["cluster_id"].nunique()),
            "ari_vs_archetype": round(float(adjusted_rand_score(c["archetype"], c["cluster_id"])), 4),
            "crosstab": pd.crosstab(c["cluster_name"], c["archetype"]).to_dict(orient="index"),
            "train_s": steps.get("ml__clustering_model"),
            "assign_s": steps.get("marts__cluster_assignments"),
        },
        "purchase_30d": {
            "persons_scored": len(s),
            "positive_rate": round(float(s["bought"].astype(bool).mean()), 4),
            "roc_auc_vs_truth": round(float(roc_auc_score(s["bought"].astype(bool), s["score"])), 4),
            "ece_vs_truth": round(expected_calibration_error(s["bought"].astype(bool), s["score"]), 4),
            "brier_vs_truth": round(float(brier_score_loss(s["bought"].astype(bool), s["score"])), 4),
            "mean_score": round(float(s["score"].mean()), 4),
            "train_s": steps.get("ml__purchase_30d_model"),
            "score_s": steps.get("marts__propensity_scores"),
        },
    }
    save_result(f"ml_p{args.persons}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
