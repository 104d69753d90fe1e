"""What erasing costs in the DuckDB file at a given size: compaction (orchestration/lib/warehouse.py
`compact`) and the byte scan of the no-trace check (orchestration/lib/traces.py), on a file shaped
like the warehouse's event table at that many persons (about 100 events each, as the generator's).

    .venv/bin/python benchmarks/compaction_cost.py --persons 10000
    .venv/bin/python benchmarks/compaction_cost.py --persons 100000

The file is synthetic (built by DuckDB in seconds, not by the pipeline), so the figures are of the
file's size, not of a run; one person is deleted first, as an erasure would, and must be gone from
the bytes after compaction.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pipeline import save_result  # noqa: E402
from orchestration.lib.traces import file_traces  # noqa: E402
from orchestration.lib.warehouse import compact, connect  # noqa: E402

EVENTS_PER_PERSON = 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=10_000)
    args = ap.parse_args()
    rows = args.persons * EVENTS_PER_PERSON
    with tempfile.TemporaryDirectory(prefix="tessera-compaction-") as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        started = time.perf_counter()
        with connect(path) as con:
            con.execute(f"""
                CREATE TABLE raw.events AS
                SELECT md5(i::VARCHAR) AS message_id, 'track' AS type, 'Product Viewed' AS event,
                       'u-' || lpad((i % {args.persons})::VARCHAR, 8, '0') AS user_id,
                       md5(((i % {args.persons}) * 3 + i % 3)::VARCHAR) AS anonymous_id,
                       TIMESTAMP '2026-01-01' + to_seconds(i % 25000000) AS occurred_at,
                       json_object('product_id', 'SKU-' || (i % 9000), 'category', 'denim', 'price', (i % 200) + 0.99)
                           AS properties,
                       json_object('ip', '198.51.' || (i % 250) || '.' || (i % 200), 'page',
                                   json_object('url', 'https://shop.example/p/SKU-' || (i % 9000))) AS context
                FROM range({rows}) r(i)""")
            con.execute("CHECKPOINT")
            erased = "u-" + "7".zfill(8)
            con.execute("DELETE FROM raw.events WHERE user_id = ?", [erased])
            con.execute("CHECKPOINT")
        built_s = time.perf_counter() - started
        listed = [hashlib.sha256(erased.encode()).hexdigest()]
        started = time.perf_counter()
        traces_before = file_traces([path], listed)
        scan_s = time.perf_counter() - started
        started = time.perf_counter()
        before, after = compact(path)
        compact_s = time.perf_counter() - started
        traces_after = file_traces([path], listed)
    save_result(
        f"compaction_cost_p{args.persons}",
        {
            "persons": args.persons,
            "event_rows": rows,
            "build_s": round(built_s, 1),
            "file_bytes_before": before,
            "file_bytes_after": after,
            "compaction_s": round(compact_s, 1),
            "byte_scan_s": round(scan_s, 1),
            "erased_user_hits_before_compaction": sum(traces_before.values()),
            "erased_user_hits_after_compaction": sum(traces_after.values()),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
