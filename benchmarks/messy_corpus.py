"""The messy corpus (orchestration/sample_data/messy.py) against the clean generator, at one size.

Writes both landing zones, runs the whole pipeline (checks, models, segments) on each, and prints:
records planted, kept and quarantined by reason; field issues by reason; opted-out people in
segments (must be 0); and the run time of each. Results go to benchmarks/results/messy_corpus.json.

    .venv/bin/python benchmarks/messy_corpus.py --persons 10000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._pipeline import run_pipeline  # noqa: E402


def _counts(warehouse: Path) -> dict:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            "kept": dict(
                con.execute(
                    "SELECT 'crm', count(*) FROM raw.crm_customers UNION ALL "
                    "SELECT 'orders', count(*) FROM raw.order_lines UNION ALL "
                    "SELECT 'events', count(*) FROM raw.events"
                ).fetchall()
            ),
            "quarantined": {
                f"{s}/{c}": n
                for s, c, n in con.execute(
                    "SELECT source, reason_code, count(*) FROM raw.quarantine GROUP BY ALL ORDER BY ALL"
                ).fetchall()
            },
            "field_issues": {
                f"{s}/{col}/{c}": n
                for s, col, c, n in con.execute(
                    "SELECT source, column_name, reason_code, count(*) FROM raw.field_issues GROUP BY ALL ORDER BY ALL"
                ).fetchall()
            },
        }


def _opted_out_in_segments(warehouse: Path, truth: Path) -> tuple[int, int]:
    import duckdb

    with (truth / "persons.csv").open(encoding="utf-8") as fh:
        users = [p["user_id"] for p in csv.DictReader(fh) if p["opted_out"] == "True"]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("CREATE TEMP TABLE _out AS SELECT unnest(?) AS user_id", [users])
        leaked = con.execute("""
            SELECT count(DISTINCT m.person_id) FROM marts.segment_membership m
            JOIN marts.identity_map i ON i.person_id = m.person_id AND i.identifier_type = 'user_id'
            WHERE i.identifier IN (SELECT user_id FROM _out)""").fetchone()[0]
    return len(users), leaked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "messy_corpus.json")
    args = parser.parse_args()

    from orchestration.sample_data.generator import GeneratorConfig, generate
    from orchestration.sample_data.messy import MessyConfig, generate_messy

    result = {"persons": args.persons}
    with tempfile.TemporaryDirectory(prefix="tessera-messy-") as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        os.environ["TESSERA_EXPORTS_DIR"] = str(root / "exports")
        os.environ["TESSERA_REPORTS_DIR"] = str(root / "reports")
        planted = generate_messy(
            root / "messy" / "landing", MessyConfig(persons=args.persons), truth_dir=root / "messy" / "truth"
        )
        generate(root / "clean" / "landing", GeneratorConfig(persons=args.persons), truth_dir=root / "clean" / "truth")
        for name in ("messy", "clean"):
            warehouse = root / name / "warehouse.duckdb"
            run = run_pipeline(root / name / "landing", warehouse, with_checks=True, with_ml=True)
            result[f"{name}_run_wall_s"] = run["run_wall_s"]
            if name == "messy":
                result["planted"] = planted
                result["loaded"] = _counts(warehouse)
                result["opted_out_persons"], result["opted_out_in_segments"] = _opted_out_in_segments(
                    warehouse, root / name / "truth"
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
