import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.defs.dbt.assets import tessera_dbt_models
from orchestration.defs.dbt.project import dbt_project


def _dbt_executable() -> str:
    # The venv's dbt, so the code location loads even when the venv is not on PATH.
    beside_python = Path(sys.executable).parent / "dbt"
    return str(beside_python) if beside_python.exists() else (shutil.which("dbt") or "dbt")


defs = dg.Definitions(
    assets=tessera_dbt_models,
    resources={"dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=_dbt_executable())},
)
