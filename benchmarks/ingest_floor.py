"""How long the event loader's own parse and line checks take, with nothing else of ingestion.

    .venv/bin/python benchmarks/ingest_floor.py --persons 100000

On the same JSONL files as scale.py's read-once reference, in an in-memory DuckDB:
1. the reference: `read_json` and a count;
2. the loader reading every line as text and running its checks on it (the SQL of `load_events`,
   batch by batch, through `event_days`, which the sensor calls). Nothing is written to a warehouse,
   and there is no quarantine, de-duplication, user-agent parsing or file index. This is a floor
   under `ingest_events`: no ingest that checks every line this way can be faster.
Figures go to benchmarks/results/ingest_floor_p<persons>.json.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._pipeline import (  # noqa: E402
    ensure_generated,
    event_files,
    read_once_reference,
    save_result,
    tier_parser,
    tier_workdir,
)
from orchestration.defs.ingest.loaders.common import contract_files  # noqa: E402
from orchestration.defs.ingest.loaders.events import event_days  # noqa: E402


def main() -> None:
    args = tier_parser(__doc__, 100_000).parse_args()
    landing, _ = ensure_generated(tier_workdir(args), args.persons)
    reference = read_once_reference(landing / "events")
    plan = dataclasses.replace(
        contract_files(landing, "events"), files=list(map(Path, event_files(landing / "events")))
    )
    started = time.perf_counter()
    days = event_days(plan)
    checked_s = round(time.perf_counter() - started, 1)
    save_result(
        f"ingest_floor_p{args.persons}",
        {
            "persons": args.persons,
            "files": reference["files"],
            "read_json_count_s": reference["seconds"],
            "rows": reference["rows"],
            "loader_lines_checked_s": checked_s,
            "files_with_valid_events": sum(1 for d in days.values() if d),
            "ratio_to_read_once": round(checked_s / reference["seconds"], 1),
        },
    )


if __name__ == "__main__":
    main()
