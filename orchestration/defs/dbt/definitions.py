import importlib.metadata
import shutil
import sys
from functools import cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from orchestration.defs.dbt.assets import tessera_dbt_models
from orchestration.defs.dbt.project import dbt_project


def _dbt_executable() -> str:
    # The venv's dbt, so the code location loads even when the venv is not on PATH.
    beside_python = Path(sys.executable).parent / "dbt"
    return str(beside_python) if beside_python.exists() else (shutil.which("dbt") or "dbt")


class VenvDbtCliResource(DbtCliResource):
    """dagster-dbt without two fixed costs a dbt step does not need here."""

    @cached_property
    def _cli_version(self) -> version.Version:
        """dagster-dbt runs `dbt --version` (4 s here) once per resource instance, and Dagster makes
        one per run. The venv's own dbt is the installed dbt-core."""
        if Path(self.dbt_executable).parent == Path(sys.executable).parent:
            return version.parse(importlib.metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)

    def _initialize_dbt_core_adapter(self, args):
        """No in-process adapter: dagster-dbt sets one up (loading every macro, about 1 s) on each
        invocation only for `fetch_row_counts()` and `fetch_column_metadata()`, which Tessera does not
        call; its steps add their own row counts and previews (orchestration/defs/metadata.py)."""
        return None


defs = dg.Definitions(
    assets=tessera_dbt_models,
    resources={"dbt": VenvDbtCliResource(project_dir=dbt_project, dbt_executable=_dbt_executable())},
)
