"""Scale tiers: the whole pipeline at 10k, 100k and 1M generated persons, and one daily run.

    .venv/bin/python benchmarks/scale.py --persons 10000
    .venv/bin/python benchmarks/scale.py --persons 100000
    .venv/bin/python benchmarks/scale.py --persons 1000000 --no-daily

For the tier (generated into data/bench/p<persons>/ unless it is there already):
1. the reference: DuckDB alone reading the event JSONL files once (`read_json` and a count);
2. a full run through Dagster (ingest, identity, features, gates, ML, segments) over every day
   but the last, into a fresh warehouse and MLflow store: wall time per stage and end to end,
   peak memory of the process tree (this process, dbt and anything they start), events per second;
3. the last day's files land, and a daily run of that one partition (with its 3-day lookback)
   rebuilds the same chain as daily_refresh_job does, scoring with the models the full run
   trained (they retrain weekly): its wall time against the full run's.
Figures go to benchmarks/results/scale_p<persons>.json. While a run goes, its finished steps, peak
memory and free disk are rewritten every 30 s to <workdir>/scale/progress-<full|day>.json, so a run
that does not finish still shows how far it got.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from benchmarks._pipeline import (  # noqa: E402
    ensure_generated,
    read_once_reference,
    run_pipeline,
    save_result,
    stage_times,
    step_seconds,
    tier_parser,
    tier_workdir,
)

PAGE = os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak resident memory of this process and its descendants, sampled from /proc twice a second."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree_rss(self) -> int:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            rss[int(entry)] = pages * PAGE
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
            tree.update(children)
            frontier.extend(children)
        return sum(rss.get(pid, 0) for pid in tree)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            self._stop.wait(0.5)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _write_progress(path: Path, instance, memory: PeakMemory, started: float) -> None:
    """The finished steps so far, peak memory and free disk, so that a run that does not finish
    still says how far it got and what each step cost."""
    import json

    runs = instance.get_runs(limit=1)
    steps = step_seconds(instance, runs[0].run_id) if runs else {}
    path.write_text(
        json.dumps(
            {
                "elapsed_s": round(time.perf_counter() - started),
                "peak_memory_gb": round(memory.peak / 1024**3, 2),
                "free_disk_gb": round(shutil.disk_usage(path.parent).free / 1e9, 1),
                "step_s": steps,
            },
            indent=2,
        )
        + "\n"
    )


def timed_run(landing: Path, warehouse: Path, partition_key: str | None = None, train: bool = True) -> dict:
    import dagster as dg

    instance, started = dg.DagsterInstance.ephemeral(), time.perf_counter()
    progress, done = warehouse.parent / f"progress-{partition_key or 'full'}.json", threading.Event()
    with PeakMemory() as memory:

        def watch() -> None:
            while not done.wait(30):
                _write_progress(progress, instance, memory, started)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            timing = run_pipeline(
                landing,
                warehouse,
                with_checks=True,
                with_ml=True,
                partition_key=partition_key,
                train=train,
                instance=instance,
            )
        finally:
            done.set()
            watcher.join()
    return {
        "wall_s": timing["run_wall_s"],
        "stage_s": stage_times(timing["step_s"]),
        "peak_memory_gb": round(memory.peak / 1024**3, 2),
        "step_s": timing["step_s"],
    }


# Disk a tier needs, measured at 1M persons: 12 GB of landing files, a 32 GB warehouse, 23 GB of spill.
DISK_BYTES_PER_PERSON = 70_000


def main() -> None:
    parser = tier_parser(__doc__, 10_000)
    parser.add_argument("--no-daily", action="store_true", help="skip the daily run (step 3)")
    parser.add_argument("--ignore-disk", action="store_true", help="start even with less free disk than the tier needs")
    args = parser.parse_args()
    work = tier_workdir(args)
    work.mkdir(parents=True, exist_ok=True)
    free, needed = shutil.disk_usage(work).free, args.persons * DISK_BYTES_PER_PERSON
    if free < needed and not args.ignore_disk:
        sys.exit(
            f"benchmarks/scale.py: {args.persons:,} persons need about {needed / 1e9:.0f} GB of free disk in {work} "
            f"(landing files, warehouse, spill) and {free / 1e9:.0f} GB are free. Free some, choose --workdir "
            "elsewhere, or pass --ignore-disk."
        )
    generate_started = time.perf_counter()
    landing, _ = ensure_generated(work, args.persons)
    generated_s = round(time.perf_counter() - generate_started, 1)
    events = landing / "events"
    last_day = max(p.name[:10] for p in events.iterdir() if p.name[:4].isdigit())
    held = work / "held_back"
    held.mkdir(exist_ok=True)
    for path in events.glob(f"{last_day}-*"):
        shutil.move(str(path), held / path.name)

    run_dir = work / "scale"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{run_dir / 'mlflow.db'}"
    os.environ["TESSERA_EXPORTS_DIR"] = str(run_dir / "exports")
    os.environ["TESSERA_REPORTS_DIR"] = str(run_dir / "reports")
    os.environ.pop("TESSERA_AS_OF", None)
    try:
        reference = read_once_reference(events)
        print(f"read-once reference: {reference}", flush=True)
        full = timed_run(landing, run_dir / "warehouse.duckdb")
    finally:
        for path in held.iterdir():
            shutil.move(str(path), events / path.name)
    result = {
        "persons": args.persons,
        "generate_s": generated_s if generated_s > 1 else "already generated",
        "duckdb_read_json_once": reference,
        "full_run_all_days_but_the_last": full
        | {
            "events_per_s": round(reference["rows"] / full["wall_s"]),
            "ratio_to_read_once": round(full["wall_s"] / reference["seconds"], 1),
        },
    }
    if not args.no_daily:
        daily = timed_run(landing, run_dir / "warehouse.duckdb", partition_key=last_day, train=False)
        with duckdb.connect(str(run_dir / "warehouse.duckdb"), read_only=True) as con:
            day_events = con.execute(
                f"SELECT count(*) FROM raw.events WHERE CAST(occurred_at AS DATE) = DATE '{last_day}'"
            ).fetchone()[0]
        result["daily_run"] = daily | {
            "partition": last_day,
            "events_that_day": day_events,
            "share_of_full_run": round(daily["wall_s"] / full["wall_s"], 3),
        }
    save_result(f"scale_p{args.persons}", result)


if __name__ == "__main__":
    main()
