"""How often two runs claiming the `duckdb` pool (limit 1) at the same instant both get its slot.

Each trial starts two processes on one Dagster instance; they meet at a barrier and claim the slot
for a step at once, as a run's executor does: of a pool that exists, or of a new one, which the
claim sets up first (the first runs on a new instance). A trial where both are granted it is a
double claim: the second step then meets DuckDB's file lock and waits for a retry. A claim that
raises fails its run. Measured for Dagster's own event log storage and for Tessera's
(orchestration/lib/dagster_storage/), on SQLite and, with --postgres-url, on PostgreSQL (a
scratch database: dagster-postgres creates its tables there).

    .venv/bin/python benchmarks/pool_claims.py --trials 30
    .venv/bin/python benchmarks/pool_claims.py --trials 30 --postgres-url postgresql+psycopg2://tessera@127.0.0.1:5433/pool_claims
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import uuid
from pathlib import Path

import yaml

POOL = "duckdb"
STORAGES = {
    "sqlite": {
        "dagster": ("dagster._core.storage.event_log", "SqliteEventLogStorage"),
        "tessera": ("orchestration.lib.dagster_storage", "SerialClaimsSqliteEventLogStorage"),
    },
    "postgres": {
        "dagster": ("dagster_postgres.event_log", "PostgresEventLogStorage"),
        "tessera": ("orchestration.lib.dagster_storage.postgres", "SerialClaimsPostgresEventLogStorage"),
    },
}


def write_instance(home: Path, module: str, cls: str, postgres_url: str | None = None) -> Path:
    """A Dagster home whose event log is `module.cls`, with the pool limit of dagster.yaml."""
    home.mkdir(parents=True, exist_ok=True)
    config = {"postgres_url": postgres_url} if postgres_url else {"base_dir": str(home / "storage")}
    instance = {
        "event_log_storage": {"module": module, "class": cls, "config": config},
        "concurrency": {"pools": {"default_limit": 1}},
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance), encoding="utf-8")
    return home


def _claim(home: str, pool: str, run_id: str, barrier, granted, environ: dict[str, str]) -> None:
    """Claim as a run's executor does: it sets the pool up on its first claim, then claims a slot.
    `environ`: the caller's environment, which dagster.yaml may read ({env: ...}); the fork server
    started with the environment of its first use."""
    import dagster as dg

    os.environ.update(environ)
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
    from dagster._core.storage.dagster_run import DagsterRun

    try:
        with dg.DagsterInstance.from_config(home) as instance:
            instance.event_log_storage.get_pool_limits()  # connected before the barrier, as a run is
            barrier.wait(timeout=60)
            with InstanceConcurrencyContext(instance, DagsterRun(job_name="pool_claims", run_id=run_id)) as context:
                granted.put(int(context.claim(pool, "ingest_events")))
    except Exception as exc:  # a claim that fails fails its step, and so its run
        barrier.abort()
        granted.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


def simultaneous_claims(home: Path, trials: int, first_use: bool, claimers: int = 2) -> list[list[int | str]]:
    """For each trial, what each of `claimers` processes claiming at once got: 1 for the one slot,
    0 for a wait, or the error its claim raised; of a pool that exists (its setup done before), or
    of a new one (`first_use`)."""
    import dagster as dg

    from orchestration.lib.dagster_storage import create_instance_tables

    with dg.DagsterInstance.from_config(str(home)) as instance:  # an instance that exists, as in any deployment
        create_instance_tables(instance)
        if not first_use and POOL not in instance.event_log_storage.get_concurrency_keys():
            instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
    # Not fork: a child forked from a process with threads (pytest's, Dagster's) can crash in its
    # first garbage collection. The fork server is a clean process that has imported Dagster once.
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["dagster", "benchmarks.pool_claims"])
    counts = []
    for _ in range(trials):
        pool = f"{POOL}_{uuid.uuid4().hex[:8]}" if first_use else POOL
        runs = [uuid.uuid4().hex for _ in range(claimers)]
        barrier, granted = context.Barrier(claimers), context.Queue()
        processes = [
            context.Process(target=_claim, args=(str(home), pool, run, barrier, granted, dict(os.environ)), daemon=True)
            for run in runs
        ]
        for p in processes:
            p.start()
        counts.append(sorted((granted.get(timeout=120) for _ in processes), key=str))
        for p in processes:
            p.join()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for run in runs:
                instance.event_log_storage.free_concurrency_slots_for_run(run)
            if first_use:  # leave no trial pools in the instance's UI
                instance.event_log_storage.delete_concurrency_limit(pool)
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
                home = write_instance(
                    Path(tmp) / f"{backend}-{storage}",
                    module,
                    cls,
                    args.postgres_url if backend == "postgres" else None,
                )
                for scenario in ("existing pool", "new pool"):
                    counts = simultaneous_claims(home, args.trials, first_use=scenario == "new pool")
                    errors = [g for trial in counts for g in trial if isinstance(g, str)]
                    granted = [sum(g for g in trial if isinstance(g, int)) for trial in counts]
                    row = results[f"{backend}/{storage}/{scenario}"] = {
                        "trials": args.trials,
                        "double_claims": sum(g > 1 for g in granted),
                        "none_granted": sum(g == 0 for g in granted),
                        "failed_claims": len(errors),
                        "first_error": errors[0] if errors else None,
                    }
                    print(
                        f"{backend:8} {storage:8} {scenario:13}  double claims: {row['double_claims']:3}   "
                        f"none granted: {row['none_granted']:3}   failed claims: {len(errors):3}   (of {args.trials})",
                        flush=True,
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
