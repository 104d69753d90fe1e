"""Ingestion throughput and quarantine accuracy on generated data.

    .venv/bin/python benchmarks/ingest_throughput.py --persons 100000

Generates the landing zone once (reused when present), ingests every source into a fresh
DuckDB file, and reports events per second, a DuckDB read-once reference, peak memory, and how
many planted malformed lines were quarantined against how many valid lines were rejected.
"""

from __future__ import annotations

import collections
import csv
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from benchmarks._pipeline import save_result, tier_parser, tier_workdir  # noqa: E402
from orchestration.defs.ingest.loaders import SOURCES, load_source  # noqa: E402
from orchestration.lib.warehouse import connect  # noqa: E402
from orchestration.sample_data.generator import GeneratorConfig, default_workers, generate  # noqa: E402


def quarantine_accuracy(truth: Path, warehouse: Path) -> dict:
    with (truth / "faults.csv").open(encoding="utf-8", newline="") as fh:
        planted = collections.Counter(
            (f["source"], f["file"], f["reason_code"], "" if f["reason_code"].startswith("file_") else f["raw"])
            for f in csv.DictReader(fh)
        )
    with connect(warehouse, read_only=True) as con:
        got = collections.Counter(
            (s, f, c, "" if c.startswith("file_") else r)
            for s, f, c, r in con.execute("SELECT source, file, reason_code, raw FROM raw.quarantine").fetchall()
        )
    caught = sum((planted & got).values())
    return {
        "planted": sum(planted.values()),
        "quarantined_correctly": caught,
        "missed_or_wrong_reason": sum((planted - got).values()),
        "valid_rejected": sum((got - planted).values()),
    }


def main() -> int:
    ap = tier_parser(__doc__, 100_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    work = tier_workdir(args)
    landing, truth = work / "landing", work / "truth"
    result: dict = {"persons": args.persons}

    if not (truth / "summary.json").exists():
        t = time.perf_counter()
        generate(landing, GeneratorConfig(persons=args.persons, seed=args.seed, workers=default_workers()), truth)
        result["generate_s"] = round(time.perf_counter() - t, 1)
    summary = json.loads((truth / "summary.json").read_text())

    event_files = sorted(str(p) for p in (landing / "events").glob("*.jsonl*") if "truncated" not in p.name)
    t = time.perf_counter()
    with duckdb.connect() as con:
        ref_rows = con.execute(
            "SELECT count(*) FROM read_json(?, format='newline_delimited', ignore_errors=true)", [event_files]
        ).fetchone()[0]
    result["duckdb_read_json_once_s"] = round(time.perf_counter() - t, 2)
    result["duckdb_read_json_rows"] = ref_rows

    warehouse = work / "warehouse.duckdb"
    warehouse.unlink(missing_ok=True)
    stages = {}
    with connect(warehouse) as con:
        for source in SOURCES:
            t = time.perf_counter()
            report = load_source(con, landing, source)
            stages[source] = {
                "seconds": round(time.perf_counter() - t, 2),
                "rows_read": report.rows_read,
                "rows_loaded": report.rows_loaded,
                "quarantined": report.rows_quarantined,
                "deduplicated": report.deduplicated,
            }
    result["stages"] = stages
    ev = stages["events"]
    result["events_per_second"] = round(ev["rows_read"] / ev["seconds"])
    result["ingest_total_s"] = round(sum(s["seconds"] for s in stages.values()), 2)
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
    result["quarantine"] = quarantine_accuracy(truth, warehouse)
    result["generated_event_messages"] = summary["counts"]["event_messages"]

    save_result(f"ingest_p{args.persons}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
