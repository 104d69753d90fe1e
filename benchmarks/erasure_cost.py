"""Erasure cost on a tier's warehouse: apply its generated erasure requests, compact the file, then run
the no-trace scan of the tables and of the file's bytes.

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
from orchestration.lib.traces import file_traces  # noqa: E402
from orchestration.lib.warehouse import compact, connect  # noqa: E402


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
            reingest = {
                "events_s": round(time.perf_counter() - started, 1),
                "rows_loaded": loaded.rows_loaded,
                "rows_suppressed": loaded.rows_suppressed,
                "quarantined_lines_suppressed": loaded.quarantine_suppressed,
            }
    started = time.perf_counter()
    bytes_before, bytes_after = compact(warehouse)
    compact_s = time.perf_counter() - started
    with connect(warehouse, read_only=True) as con:
        listed = [r[0] for r in con.execute("SELECT identifier_sha256 FROM privacy.suppression_list").fetchall()]
    started = time.perf_counter()
    file_hits = file_traces([warehouse], listed)
    scan_s = time.perf_counter() - started
    save_result(
        f"erasure_cost_p{args.persons}",
        {
            "compaction_s": round(compact_s, 2),
            "file_bytes_before": bytes_before,
            "file_bytes_after": bytes_after,
            "file_byte_scan_s": round(scan_s, 2),
            "file_traces_after_compaction": file_hits,
            "persons": args.persons,
            "requests": report.requests,
            "erased_now": report.erased,
            "already_erased": report.already_erased,
            "not_found": report.not_found,
            "identifiers_suppressed": report.identifiers_suppressed,
            "rows_removed": sum(report.rows_removed.values()) + sum(report.text_rows_removed.values()),
            "tables_scanned": tables,
            "erasure_s": round(erase_s, 2),
            "no_trace_check_s": round(check_s, 2),
            "traces_left": traces,
            "reingest_with_suppression": reingest,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
