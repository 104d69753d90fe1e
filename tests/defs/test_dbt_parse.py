"""Each dbt step starts from the partial parse its last run left, not from a parse of the whole project."""

from __future__ import annotations

import json
import shutil
import uuid

from orchestration.defs.dbt.assets import keep_partial_parse, partial_parse_seed, step_target_path
from orchestration.lib.dbt_subprocess import run_dbt


def test_a_dbt_step_with_the_same_vars_as_its_last_run_parses_nothing_again(tmp_path, monkeypatch):
    step = f"test_step_{uuid.uuid4().hex[:7]}"
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))

    def parse(run_id: str, as_of: str) -> str:
        path = step_target_path(step, run_id)
        monkeypatch.setenv("DBT_TARGET_PATH", str(path))
        output = run_dbt(["--debug", "parse", "--vars", json.dumps({"as_of": as_of})], "duckdb").stdout
        keep_partial_parse(step, path)
        shutil.rmtree(path)
        return output

    try:
        first, second, other_vars = parse("run-1", "2026-10-31"), parse("run-2", "2026-10-31"), parse("run-3", "2026-11-01")
    finally:
        partial_parse_seed(step).unlink(missing_ok=True)
    assert "Starting full parse" in first
    assert "Partial parsing enabled, no changes found" in second and "Starting full parse" not in second
    assert "Unable to do partial parsing because config vars" in other_vars
