"""Each dbt step starts from the partial parse its last run on the same warehouse left, not from a
parse of the whole project; and the dbt version is known without running dbt."""

from __future__ import annotations

import json
import shutil
import uuid

import dagster_dbt.core.resource
from dagster_dbt import DbtCliResource

from orchestration.defs.dbt.definitions import VenvDbtCliResource
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
from orchestration.defs.dbt.project import dbt_project
from orchestration.lib.dbt_subprocess import dbt_target, partial_parse_seed, run_dbt


def test_a_dbt_step_with_the_same_vars_as_its_last_run_parses_nothing_again(tmp_path, monkeypatch):
    step = f"test_step_{uuid.uuid4().hex[:7]}"
    warehouse, other_warehouse = tmp_path / "warehouse.duckdb", tmp_path / "other.duckdb"

    def parse(as_of: str, on=warehouse) -> str:
        monkeypatch.setenv("TESSERA_WAREHOUSE", str(on))
        with dbt_target(step, on) as path:
            output = run_dbt(
                ["--debug", "parse", "--vars", json.dumps({"tessera__as_of": as_of})], "duckdb", path
            ).stdout
        assert not path.exists()
        return output

    try:
        first, second, other_vars = parse("2026-10-31"), parse("2026-10-31"), parse("2026-11-01")
        elsewhere = parse("2026-11-01", on=other_warehouse)
    finally:
        for seed in (partial_parse_seed(step, warehouse), partial_parse_seed(step, other_warehouse)):
            shutil.rmtree(seed.parent, ignore_errors=True)
    assert "Starting full parse" in first
    assert "Partial parsing enabled, no changes found" in second and "Starting full parse" not in second
    assert "Unable to do partial parsing because config vars" in other_vars
    # Another warehouse starts from nothing of the first one's: its seed is its own.
    assert "Starting full parse" in elsewhere and "profile has changed" not in elsewhere


def test_the_venvs_dbt_version_is_known_without_running_dbt(monkeypatch):
    executable = dbt_domain_defs.resources["dbt"].dbt_executable
    asked = DbtCliResource(project_dir=dbt_project, dbt_executable=executable)._cli_version  # runs `dbt --version`
    runs = []
    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", lambda *args, **kwargs: runs.append(args))
    assert VenvDbtCliResource(project_dir=dbt_project, dbt_executable=executable)._cli_version == asked
    assert runs == []


def test_only_the_warehouses_used_last_keep_their_partial_parse(tmp_path):
    import os

    from orchestration.lib import dbt_subprocess

    for age in range(dbt_subprocess.KEEP_WAREHOUSES + 3):
        seed = tmp_path / f"warehouse-{age}"
        seed.mkdir()
        os.utime(seed, ns=(0, 10**18 - age * 10**9))  # warehouse-0 used last
    dbt_subprocess._forget_old_warehouses(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"warehouse-{age}" for age in range(dbt_subprocess.KEEP_WAREHOUSES)
    )
