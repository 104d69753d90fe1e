"""dbt's target folders, the vars and selections of a run, and dbt as a subprocess for the steps
that run it outside Dagster's dbt resource (an erasure's rebuild, `tessera spark-build`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

PARTIAL_PARSE = "partial_parse.msgpack"

# Selections around the Python steps that sit between dbt models (the identity graph, then the ML
# scores): dbt assets cannot depend on an asset that depends on them. The dbt assets
# (orchestration/defs/dbt/assets.py) and an erasure's rebuild on Spark (orchestration.lib.spark)
# select with them.
AFTER_IDENTITY_GRAPH = "stg_identity_graph__assignments+"
AFTER_ML = "stg_ml__cluster_assignments+ stg_ml__propensity_scores+ stg_ml__customer_lifetime_values+"


def run_vars(sources_config, as_of: str | None) -> dict:
    """The event taxonomy of the sources config (orchestration/defs/ingest/sources_config.py), and
    the feature date `as_of` (YYYY-MM-DD, from TESSERA_AS_OF) when it is set."""
    return sources_config.taxonomy.dbt_vars() | ({"tessera__as_of": as_of} if as_of else {})


def partial_parse_seed(step: str, warehouse: str | Path) -> Path:
    """Where a dbt step keeps the partial-parse file of its last successful run on `warehouse`. The
    warehouse path is part of dbt's profile, and dbt parses in full when the profile changes, so each
    warehouse keeps its own."""
    from orchestration.lib.settings import DBT_PROJECT_DIR

    key = hashlib.sha256(str(Path(warehouse).resolve()).encode()).hexdigest()[:12]
    return Path(DBT_PROJECT_DIR) / "target" / "partial_parse_by_step" / key / f"{step}.msgpack"


@contextlib.contextmanager
def dbt_target(step: str, warehouse: str | Path) -> Iterator[Path]:
    """A fresh dbt target folder for one invocation of `step`, seeded with the partial-parse file its
    last successful run on `warehouse` left. dagster-dbt would seed it with the project's file, which
    `dbt parse` wrote without vars; every step passes vars, so dbt would parse the whole project
    again (about 3 s). dbt itself re-parses what changed since the seed: files, vars, profile or its
    own version. On success the parse is kept for next time and the folder removed; a failure keeps
    the folder, with its dbt.log."""
    from orchestration.lib.settings import DBT_PROJECT_DIR

    path = Path(DBT_PROJECT_DIR) / "target" / f"{step}-{uuid.uuid4().hex[:12]}"
    seed = partial_parse_seed(step, warehouse)
    path.mkdir(parents=True)
    with contextlib.suppress(FileNotFoundError):  # a cache: another process may have just pruned it
        shutil.copy(seed, path / PARTIAL_PARSE)
    yield path
    if (path / PARTIAL_PARSE).exists():
        with contextlib.suppress(FileNotFoundError):
            seed.parent.mkdir(parents=True, exist_ok=True)
            partial = seed.with_suffix(f".{uuid.uuid4().hex[:7]}.tmp")
            shutil.copy(path / PARTIAL_PARSE, partial)
            os.replace(partial, seed)  # whole, never half-written
            _forget_old_warehouses(seed.parent.parent)
    shutil.rmtree(path, ignore_errors=True)


KEEP_WAREHOUSES = 16


def _forget_old_warehouses(seeds: Path) -> None:
    """Keep the partial-parse files of the warehouses used last: a warehouse seen once (a test's, a
    benchmark's) would otherwise leave some 3 MB behind for good."""
    by_use = sorted(seeds.iterdir(), key=lambda d: d.stat().st_mtime_ns, reverse=True)
    for old in by_use[KEEP_WAREHOUSES:]:
        shutil.rmtree(old, ignore_errors=True)


def run_dbt(dbt_args: list[str], target: str, target_path: Path | None = None) -> subprocess.CompletedProcess:
    """`dbt <dbt_args>` against `target` (duckdb or spark) in a subprocess, outside Dagster's dbt
    resource, writing into `target_path` (dbt's own default when None). dbt's output is returned; a
    failure raises with it."""
    from orchestration.lib.settings import DBT_PROJECT_DIR

    dbt = Path(sys.executable).parent / "dbt"
    env = {**os.environ, "TESSERA_ENGINE": target} | ({"DBT_TARGET_PATH": str(target_path)} if target_path else {})
    result = subprocess.run(
        [str(dbt), *dbt_args, "--target", target, "--profiles-dir", "."],
        cwd=DBT_PROJECT_DIR,
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"dbt {' '.join(dbt_args)} failed on {target} (exit {result.returncode}):\n{result.stdout[-6000:]}"
        )
    return result
