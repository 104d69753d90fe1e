"""The baselines a recommender must beat (issue #35), on UCI Online Retail, with a time split.

    .venv/bin/python benchmarks/recommendation_baselines.py

Learn from the purchases before a cutoff (the last invoice day minus 30 days), test on the next 30
days' purchases, for every customer who bought in both periods. Ten items each, from:
- global popularity: the items most customers bought before the cutoff;
- popularity within the segment: the same within the customer's country (the data set's only
  grouping until Tessera's segments are built on it);
- buy again: the customer's own items, most often bought first, then the more recent, padded with
  the global popularity.
Precision, recall, MAP and NDCG at 10 (binary relevance: an item the customer bought in the test
period), and coverage (distinct items recommended over the items sold before the cutoff). The
bar of #35: Tessera's best at least 1.1 times the best of these on NDCG@10.
Figures go to benchmarks/results/recommendation_baselines.json.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402

K = 10
DATA = ROOT / "examples" / "online_retail" / "online_retail_2010-2011.parquet"


def metrics(recommended: dict[str, list[str]], relevant: dict[str, set[str]], catalog: int) -> dict:
    precision = recall = ap = ndcg = 0.0
    for user, items in recommended.items():
        truth = relevant[user]
        hits = [1 if item in truth else 0 for item in items[:K]]
        precision += sum(hits) / K
        recall += sum(hits) / len(truth)
        found, total = 0, 0.0
        for rank, hit in enumerate(hits, 1):
            if hit:
                found += 1
                total += found / rank
        ap += total / min(len(truth), K)
        dcg = sum(hit / math.log2(rank + 1) for rank, hit in enumerate(hits, 1))
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(truth), K) + 1))
        ndcg += dcg / ideal
    n = len(recommended)
    shown = {item for items in recommended.values() for item in items[:K]}
    return {
        "precision@10": round(precision / n, 4),
        "recall@10": round(recall / n, 4),
        "map@10": round(ap / n, 4),
        "ndcg@10": round(ndcg / n, 4),
        "coverage": round(len(shown) / catalog, 4),
    }


def main() -> int:
    con = duckdb.connect()
    rows = con.execute(f"""
        SELECT CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer, StockCode AS item, InvoiceNo AS invoice,
               InvoiceDate AS at, Country AS country
        FROM read_parquet('{DATA}')
        WHERE CustomerID IS NOT NULL AND Quantity > 0 AND NOT starts_with(InvoiceNo, 'C')
          AND regexp_matches(StockCode, '^[0-9]{{5}}')  -- products; postage, fees and manual lines are not
    """).fetchall()
    last = max(r[3] for r in rows)
    cutoff = last.replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=30)
    train = [r for r in rows if r[3] < cutoff]
    test = [r for r in rows if r[3] >= cutoff]
    country = {r[0]: r[4] for r in rows}

    bought: dict[str, Counter] = defaultdict(Counter)  # customer -> item -> invoices
    latest: dict[tuple[str, str], object] = {}
    for customer, item, _invoice, at, _ in train:
        bought[customer][item] += 1
        latest[(customer, item)] = max(at, latest.get((customer, item), at))
    buyers: dict[str, set[str]] = defaultdict(set)
    for customer, item, *_ in train:
        buyers[item].add(customer)
    popular = [item for item, _ in sorted(buyers.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    by_country: dict[str, Counter] = defaultdict(Counter)
    for item, customers in buyers.items():
        for customer in customers:
            by_country[country[customer]][item] += 1

    relevant: dict[str, set[str]] = defaultdict(set)
    for customer, item, *_ in test:
        relevant[customer].add(item)
    known = sorted(c for c in relevant if c in bought)

    def pad(items: list[str]) -> list[str]:
        seen = set(items)
        return items + [i for i in popular[: K * 2] if i not in seen][: K - len(items)]

    recommendations = {
        "global popularity": {c: popular[:K] for c in known},
        "popularity in the segment (country)": {
            c: pad([i for i, _ in sorted(by_country[country[c]].items(), key=lambda kv: (-kv[1], kv[0]))][:K])
            for c in known
        },
        "buy again": {
            c: pad(
                [i for i, _ in sorted(bought[c].items(), key=lambda kv: (-kv[1], -latest[(c, kv[0])].timestamp()))][:K]
            )
            for c in known
        },
    }
    result = {
        "data": "UCI Online Retail 2010-2011 (examples/online_retail)",
        "cutoff": str(cutoff.date()),
        "test_days": 30,
        "customers_evaluated": len(known),
        "customers_new_in_test": len(relevant) - len(known),
        "items_sold_before_cutoff": len(buyers),
        "baselines": {name: metrics(recs, relevant, len(buyers)) for name, recs in recommendations.items()},
    }
    best = max(result["baselines"].items(), key=lambda kv: kv[1]["ndcg@10"])
    result["best_baseline"] = best[0]
    result["bar_ndcg@10"] = round(1.1 * best[1]["ndcg@10"], 4)
    for name, figures in result["baselines"].items():
        print(f"{name:<40} " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    print(f"bar for #35: NDCG@10 >= {result['bar_ndcg@10']} (1.1 x {best[0]})")
    save_result("recommendation_baselines", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
