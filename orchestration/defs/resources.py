"""Resources shared by every domain: the DuckDB warehouse and the landing zone."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dagster as dg

from orchestration.lib import warehouse as wh


class WarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB file that every table lives in (TESSERA_WAREHOUSE)."""

    path: str

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        with wh.connect(self.path, read_only=read_only) as con:
            yield con


class LandingZoneResource(dg.ConfigurableResource):
    """The input root of DESIGN.md's landing contract (TESSERA_LANDING_DIR)."""

    root: str

    def path(self) -> Path:
        root = Path(self.root)
        if not root.is_dir():
            raise dg.Failure(
                description=(
                    f"The landing folder {root} does not exist. Point TESSERA_LANDING_DIR at a folder with "
                    "events/, crm/, orders/, enrichment/ and privacy/ sub-folders, or write sample data there "
                    f"with `tessera generate --out {root}`."
                )
            )
        return root
