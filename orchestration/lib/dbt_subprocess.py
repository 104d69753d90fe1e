"""dbt as a subprocess, for the steps that run it outside Dagster's dbt resource (an erasure's
rebuild, `tessera spark-build`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_dbt(dbt_args: list[str], target: str) -> subprocess.CompletedProcess:
    """`dbt <dbt_args>` against `target` (duckdb or spark) in a subprocess, outside Dagster's dbt
    resource. dbt's output is returned; a failure raises with it."""
    from orchestration.lib.settings import DBT_PROJECT_DIR

    dbt = Path(sys.executable).parent / "dbt"
    result = subprocess.run([str(dbt), *dbt_args, "--target", target, "--profiles-dir", "."],
                            cwd=DBT_PROJECT_DIR, capture_output=True, text=True, env={**os.environ, "TESSERA_ENGINE": target})
    if result.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(dbt_args)} failed on {target} (exit {result.returncode}):\n{result.stdout[-6000:]}")
    return result
