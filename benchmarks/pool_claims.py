"""How often two runs claiming the `duckdb` pool (limit 1) at the same instant both get its slot.

Each trial starts two processes on one Dagster instance; they meet at a barrier and claim the slot
for a step at once. A trial where both are granted it is a double claim: the second step then meets
DuckDB's file lock and waits for a retry. Measured for Dagster's own event log storage and for
Tessera's (orchestration/lib/dagster_storage.py), on SQLite and, with --postgres-url, on PostgreSQL.

    .venv/bin/python benchmarks/pool_claims.py --trials 30
    .venv/bin/python benchmarks/pool_claims.py --trials 30 --postgres-url postgresql+psycopg2://tessera@127.0.0.1:5433/dagster
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import uuid
from pathlib import Path

import yaml

POOL = "duckdb"
STORAGES = {
    "sqlite": {"dagster": ("dagster._core.storage.event_log", "SqliteEventLogStorage"),
               "tessera": ("orchestration.lib.dagster_storage", "SerialClaimsSqliteEventLogStorage")},
    "postgres": {"dagster": ("dagster_postgres.event_log", "PostgresEventLogStorage"),
                 "tessera": ("orchestration.lib.dagster_storage", "SerialClaimsPostgresEventLogStorage")},
}


def write_instance(home: Path, module: str, cls: str, postgres_url: str | None = None) -> Path:
    """A Dagster home whose event log is `module.cls`, with the pool limit of dagster.yaml."""
    home.mkdir(parents=True, exist_ok=True)
    config = {"postgres_url": postgres_url} if postgres_url else {"base_dir": str(home / "storage")}
    instance = {"event_log_storage": {"module": module, "class": cls, "config": config},
                "concurrency": {"pools": {"default_limit": 1}}, "telemetry": {"enabled": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance), encoding="utf-8")
    return home


def _claim(home: str, run_id: str, barrier, granted) -> None:
    import dagster as dg

    with dg.DagsterInstance.from_config(home) as instance:
        storage = instance.event_log_storage
        barrier.wait()
        granted.put(storage.claim_concurrency_slot(POOL, run_id, "ingest_events", 0).is_claimed)


def simultaneous_claims(home: Path, trials: int, claimers: int = 2) -> list[int]:
    """For each trial, how many of `claimers` processes claiming at once were granted the one slot."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        if POOL not in instance.event_log_storage.get_concurrency_keys():
            instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    context = mp.get_context("fork")
    counts = []
    for _ in range(trials):
        runs = [uuid.uuid4().hex for _ in range(claimers)]
        barrier, granted = context.Barrier(claimers), context.Queue()
        processes = [context.Process(target=_claim, args=(str(home), run, barrier, granted)) for run in runs]
        for p in processes:
            p.start()
        counts.append(sum(granted.get(timeout=120) for _ in processes))
        for p in processes:
            p.join()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for run in runs:
                instance.event_log_storage.free_concurrency_slots_for_run(run)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--postgres-url", help="a PostgreSQL database for dagster-postgres (it creates its tables)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pool_claims.json")
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgres"] if args.postgres_url else [])
    results = {}
    with tempfile.TemporaryDirectory(prefix="pool-claims-") as tmp:
        for backend in backends:
            for storage, (module, cls) in STORAGES[backend].items():
                home = write_instance(Path(tmp) / f"{backend}-{storage}", module, cls,
                                      args.postgres_url if backend == "postgres" else None)
                counts = simultaneous_claims(home, args.trials)
                results[f"{backend}/{storage}"] = {"trials": args.trials, "double_claims": sum(c > 1 for c in counts),
                                                   "no_claim": sum(c == 0 for c in counts)}
                print(f"{backend:8} {storage:8} double claims: {results[f'{backend}/{storage}']['double_claims']:3} "
                      f"of {args.trials}   none granted: {results[f'{backend}/{storage}']['no_claim']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
