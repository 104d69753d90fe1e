"""Erasure cost on a tier's warehouse: apply its generated erasure requests, then run the no-trace scan.

    .venv/bin/python benchmarks/erasure_cost.py --persons 100000

Needs <workdir>/segments.duckdb from benchmarks/segments_api.py (it is modified: the requested
persons are erased from it). --reingest then times re-ingesting every event file with the
suppression list in force (compare with ingest_events in the segments_api result).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pipeline import save_result, tier_parser, tier_workdir  # noqa: E402
from orchestration.defs.privacy.erasure import process_erasures, remaining_traces  # noqa: E402
from orchestration.lib import suppression  # noqa: E402
from orchestration.lib.warehouse import connect  # noqa: E402


def main() -> int:
    ap = tier_parser(__doc__, 100_000)
    ap.add_argument("--reingest", action="store_true")
    args = ap.parse_args()
    warehouse = tier_workdir(args) / "segments.duckdb"
    if not warehouse.exists():
        print(f"{warehouse} does not exist: run benchmarks/segments_api.py --persons {args.persons} first.")
        return 2
    with connect(warehouse) as con:
        started = time.perf_counter()
        report = process_erasures(con)
        erase_s = time.perf_counter() - started
        started = time.perf_counter()
        traces = remaining_traces(con)
        check_s = time.perf_counter() - started
        tables = len(suppression.person_tables(con))
        reingest = None
        if args.reingest:
            from orchestration.defs.ingest.loaders import load_source

            started = time.perf_counter()
            loaded = load_source(con, tier_workdir(args) / "landing", "events")
            reingest = {"events_s": round(time.perf_counter() - started, 1), "rows_loaded": loaded.rows_loaded,
                        "rows_suppressed": loaded.rows_suppressed,
                        "quarantined_lines_suppressed": loaded.quarantine_suppressed}
    save_result(f"erasure_cost_p{args.persons}", {
        "persons": args.persons, "requests": report.requests, "erased_now": report.erased,
        "already_erased": report.already_erased, "not_found": report.not_found,
        "identifiers_suppressed": report.identifiers_suppressed, "rows_removed": sum(report.rows_removed.values()),
        "tables_scanned": tables, "erasure_s": round(erase_s, 2), "no_trace_check_s": round(check_s, 2),
        "traces_left": traces, "reingest_with_suppression": reingest})
    return 0


if __name__ == "__main__":
    sys.exit(main())
