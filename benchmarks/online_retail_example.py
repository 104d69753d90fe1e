"""The Online Retail walkthrough on the full file, through Dagster: per-stage times, what the
pipeline found against the published figures, and propensity against BG/NBD on a time split.

    .venv/bin/python benchmarks/online_retail_example.py [--cutoff 2011-09-08]

Two runs of the shipped config (examples/online_retail/sources.yml), each into its own warehouse
and MLflow store under data/bench/online_retail/:
1. as of the latest invoice date (what `make example-online-retail` does): stage times, customers,
   orders, cancellations and guests, segment sizes;
2. as of the cutoff: the pipeline's purchase_30d scores ranked against "completed order in the 30
   (and 90) days after the cutoff", beside BG/NBD fitted on all invoices up to the cutoff. Scored:
   the customers with a completed order up to the cutoff.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks._pipeline import run_pipeline, save_result, stage_times  # noqa: E402
from benchmarks.btyd_propensity import bg_nbd, labels, load_online_retail  # noqa: E402

CONFIG = ROOT / "examples" / "online_retail" / "sources.yml"
DATA = ROOT / "examples" / "online_retail" / "online_retail_2010-2011.parquet"
PUBLISHED = {"customers": 4372, "invoices_including_cancellations": 25900}


def _fresh_run(work: Path, as_of: dt.date | None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    for name in ("warehouse.duckdb", "mlflow.db"):
        (work / name).unlink(missing_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["TESSERA_EXPORTS_DIR"] = str(work / "exports")
    os.environ.pop("TESSERA_AS_OF", None)
    if as_of:
        os.environ["TESSERA_AS_OF"] = as_of.isoformat()
    (work / "landing").mkdir(exist_ok=True)
    timing = run_pipeline(
        work / "landing", work / "warehouse.duckdb", with_checks=True, with_ml=True, sources_config=CONFIG
    )
    return {"wall_s": timing["run_wall_s"], "stage_s": stage_times(timing["step_s"])}


def _found(warehouse: Path) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        guest_invoices = one(
            "SELECT count(DISTINCT json_extract_string(raw, '$.InvoiceNo')) FROM raw.quarantine "
            "WHERE reason_code = 'missing_customer'"
        )
        orders = dict(con.execute("SELECT status, count(*) FROM intermediate.int_orders GROUP BY 1").fetchall())
        return {
            "customers": one(
                "SELECT count(DISTINCT person_id) FROM marts.identity_map WHERE identifier_type = 'customer_id'"
            ),
            "orders_of_customers": sum(orders.values()),
            "completed_orders": orders.get("completed", 0),
            "cancellations": orders.get("cancelled", 0),
            "guest_invoices_unresolved": guest_invoices,
            "guest_lines_quarantined": one(
                "SELECT count(*) FROM raw.quarantine WHERE reason_code = 'missing_customer'"
            ),
            "invoices_including_cancellations": sum(orders.values()) + guest_invoices,
            "as_of": str(one("SELECT max(as_of) FROM marts.user_features")),
            "segments": dict(con.execute("SELECT segment_name, size FROM marts.segment_report ORDER BY 1").fetchall()),
            "clusters": dict(
                con.execute(
                    "SELECT cluster_name, count(*) FROM marts.cluster_assignments GROUP BY 1 ORDER BY 2 DESC"
                ).fetchall()
            ),
        }


def _propensity(warehouse: Path, cutoff: dt.date) -> dict:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        scores = (
            con.execute("""
            SELECT m.identifier AS person_id, s.score
            FROM marts.propensity_scores s JOIN marts.identity_map m USING (person_id)
            WHERE s.model_name = 'purchase_30d' AND m.identifier_type = 'customer_id'
        """)
            .df()
            .set_index("person_id")["score"]
        )
    truth = duckdb.connect()
    load_online_retail(truth, DATA)
    buyers = truth.execute(
        "SELECT DISTINCT customer_id AS person_id FROM orders WHERE NOT cancelled "
        "AND CAST(ordered_at AS DATE) <= ? ORDER BY 1",
        [cutoff],
    ).df()
    scored = buyers[buyers["person_id"].isin(scores.index)]
    out = {"cutoff": cutoff.isoformat(), "customers_scored": len(scored)}
    for days in (30, 90):
        y = labels(truth, scored["person_id"], cutoff, days)
        out[f"window_{days}d"] = {
            "positive_rate": round(float(y.mean()), 4),
            "tessera_purchase_30d_auc": round(float(roc_auc_score(y, scores.reindex(scored["person_id"]))), 4),
            "bg_nbd_auc": round(float(roc_auc_score(y, bg_nbd(truth, scored, cutoff, days))), 4),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoff", type=dt.date.fromisoformat, default=dt.date(2011, 9, 8))
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench" / "online_retail")
    args = ap.parse_args()
    started = time.perf_counter()
    latest = _fresh_run(args.workdir / "latest", None)
    found = _found(args.workdir / "latest" / "warehouse.duckdb")
    split = _fresh_run(args.workdir / "split", args.cutoff)
    result = {
        "full_file_run": latest,
        "found": found,
        "published": PUBLISHED,
        "time_split_run": split,
        "propensity": _propensity(args.workdir / "split" / "warehouse.duckdb", args.cutoff),
        "benchmark_s": round(time.perf_counter() - started, 1),
    }
    save_result("online_retail_example", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
