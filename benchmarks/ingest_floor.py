"""How fast DuckDB alone can do the least that event ingestion must do, on a tier's files.

    .venv/bin/python benchmarks/ingest_floor.py --persons 100000

Three queries over the same JSONL files as scale.py's read-once reference, in an in-memory DuckDB:
1. `read_json` and a count (scale.py's reference);
2. every line as text and a count (how the loader reads, so that a bad line can be quarantined);
3. the lines, `json_valid`, the nine fields the loader checks and the three objects it keeps,
   written to a table: the loader's parse with no quarantine, de-duplication or file index.
The third is a floor under `ingest_events`: no ingest that checks every line can be faster.
Figures go to benchmarks/results/ingest_floor_p<persons>.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from benchmarks._pipeline import ensure_generated, event_files, save_result, tier_parser, tier_workdir  # noqa: E402

LINES = ("read_csv(?, columns={'line': 'VARCHAR'}, delim='\\x01', quote='', escape='', header=false, "
         "auto_detect=false, strict_mode=false)")
QUERIES = {
    "read_json_count": "SELECT count(*) FROM read_json(?, format='newline_delimited', ignore_errors=true)",
    "lines_as_text_count": f"SELECT count(*) FROM {LINES}",
    "lines_checked_extracted_written": f"""
        CREATE OR REPLACE TABLE floor_events AS
        SELECT t[1] AS message_id, t[2] AS type, t[3] AS event, t[4] AS name, t[5] AS user_id, t[6] AS anonymous_id,
               try_cast(t[7] AS TIMESTAMPTZ) AS ts, try_cast(t[8] AS TIMESTAMPTZ) AS sent_at,
               try_cast(t[9] AS TIMESTAMPTZ) AS received_at, o[1] AS properties, o[2] AS traits, o[3] AS context
        FROM (
            SELECT CASE WHEN json_valid(line) THEN json_extract_string(line, ['$.messageId', '$.type', '$.event',
                        '$.name', '$.userId', '$.anonymousId', '$.timestamp', '$.sentAt', '$.receivedAt']) END AS t,
                   CASE WHEN json_valid(line) THEN json_extract(line, ['$.properties', '$.traits', '$.context']) END AS o
            FROM {LINES}
        )""",
}


def main() -> None:
    args = tier_parser(__doc__, 100_000).parse_args()
    landing, _ = ensure_generated(tier_workdir(args), args.persons)
    files = event_files(landing / "events")
    result = {"persons": args.persons, "files": len(files)}
    with duckdb.connect() as con:
        for name, sql in QUERIES.items():
            started = time.perf_counter()
            con.execute(sql, [files])
            result[f"{name}_s"] = round(time.perf_counter() - started, 1)
        result["rows_written"] = con.execute("SELECT count(*) FROM floor_events").fetchone()[0]
    save_result(f"ingest_floor_p{args.persons}", result)


if __name__ == "__main__":
    main()
