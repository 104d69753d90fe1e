"""Recommendations (issue #35): every method and the baselines in one run, with a time split, on
UCI Online Retail or on a warehouse the pipeline built from generated data.

    .venv/bin/python benchmarks/recommendations.py
    .venv/bin/python benchmarks/recommendations.py --warehouse data/bench/p10000/warehouse.duckdb

Learn from the purchases before a cutoff (the end of the last day minus 30 days), test on the next
30 days' purchases, for every customer who bought in both periods. Ten items each
(ml/recommendations.py):
- baselines: global popularity; popularity within the segment (Online Retail: the country, its
  only grouping; a warehouse: the person's cluster, else their country, as the pipeline groups
  them); buy again (the customer's own items, most often bought first, then the more recent,
  padded with the global popularity);
- item-to-item co-occurrence, the factorisation (truncated SVD), content similarity (TF-IDF of the
  product descriptions; Online Retail only, a warehouse holds no product text), and the hybrid that
  learns to rank their candidates, on 1, 2 and 3 earlier 30-day windows (never on the test period; 3 is the
  pipeline's).
Precision, recall, MAP and NDCG at 10 (binary relevance: an item the customer bought in the test
period), and coverage (distinct items recommended over the items sold before the cutoff). The bar
of #35: Tessera's best at least 1.1 times the best baseline on NDCG@10.
Figures go to benchmarks/results/recommendations[-<warehouse folder>].json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402
from ml.recommendations import BASELINES, HybridRecommender, evaluate, holdout, metrics  # noqa: E402

DATA = ROOT / "examples" / "online_retail" / "online_retail_2010-2011.parquet"
METHODS = {
    "item-to-item co-occurrence": "item_to_item",
    "factorisation (truncated SVD)": "factorisation",
    "content similarity (TF-IDF of the description)": "content_similarity",
}


def online_retail() -> pd.DataFrame:
    """Purchases: customer, product (StockCode), time, country and the product's description; products
    only (no postage, fees or manual lines), no cancellations, no lines without a customer."""
    return (
        duckdb.connect()
        .execute(f"""
        SELECT CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS person_id, StockCode AS item_id, InvoiceDate AS at,
               Country AS "group", Description AS item_text
        FROM read_parquet('{DATA}')
        WHERE CustomerID IS NOT NULL AND Quantity > 0 AND NOT starts_with(InvoiceNo, 'C')
          AND regexp_matches(StockCode, '^[0-9]{{5}}')""")
        .df()
    )


def from_warehouse(path: Path) -> pd.DataFrame:
    """What the pipeline's recommender learns from (marts.purchased_items with each person's group)."""
    from orchestration.defs.ml.recommendations import purchases_frame
    from orchestration.defs.resources import WarehouseResource

    return purchases_frame(WarehouseResource(path=str(path)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", type=Path, help="a warehouse built by the pipeline (default: Online Retail)")
    args = ap.parse_args()
    purchases = from_warehouse(args.warehouse) if args.warehouse else online_retail()
    until = purchases["at"].max().normalize() + pd.Timedelta(days=1)
    started = time.perf_counter()
    history, relevant = holdout(purchases, until)
    seconds = {"history": time.perf_counter() - started}
    persons = sorted(relevant)
    table = evaluate(history, relevant)
    for name, method in METHODS.items():
        table[name] = metrics(getattr(history, method)(persons), relevant, len(history.items))
    for windows in (1, 2, 3):
        started = time.perf_counter()
        model = HybridRecommender().fit(purchases, history.until, windows=windows)
        table[f"hybrid ({windows} training window{'s' if windows > 1 else ''})"] = metrics(
            model.recommend(history, persons), relevant, len(history.items)
        )
        seconds[f"hybrid_{windows}_fit_and_recommend"] = time.perf_counter() - started
    best_baseline = max(BASELINES, key=lambda n: table[n]["ndcg_at_10"])
    best = max(table, key=lambda n: table[n]["ndcg_at_10"])
    test = purchases[purchases["at"] >= history.until]
    result = {
        "data": str(args.warehouse) if args.warehouse else "UCI Online Retail 2010-2011 (examples/online_retail)",
        "cutoff": str(history.until.date()),
        "test_days": 30,
        "customers_evaluated": len(persons),
        "customers_new_in_test": test["person_id"].nunique() - len(persons),
        "items_sold_before_cutoff": len(history.items),
        "methods": table,
        "best_baseline": best_baseline,
        "bar_ndcg_at_10": round(1.1 * table[best_baseline]["ndcg_at_10"], 4),
        "best": best,
        "best_over_best_baseline": round(table[best]["ndcg_at_10"] / table[best_baseline]["ndcg_at_10"], 3),
        "pipeline_hybrid_over_best_baseline": round(
            table["hybrid (3 training windows)"]["ndcg_at_10"] / table[best_baseline]["ndcg_at_10"], 3
        ),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    for name, figures in table.items():
        print(f"{name:<40} " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    print(
        f"bar: NDCG@10 >= {result['bar_ndcg_at_10']} (1.1 x {best_baseline}); {best}: {result['best_over_best_baseline']}x"
    )
    save_result("recommendations" + (f"-{args.warehouse.parent.name}" if args.warehouse else ""), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
