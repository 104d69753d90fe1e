"""Resources shared by every domain: the DuckDB warehouse and the landing zone."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import dagster as dg

from orchestration.defs.ingest.mapping import SourceFiles
from orchestration.lib import warehouse as wh

# A lock held outside Dagster (a notebook, the API, a run of another instance) is transient: the
# step waits and tries again. Other failures are not retried; they need a person.
LOCK_RETRY = dict(max_retries=3, seconds_to_wait=20)


def retry_when_locked(exc: BaseException) -> None:
    """Turn a failure caused by DuckDB's file lock into a step retry."""
    if isinstance(exc, wh.WarehouseLockedError) or "could not set lock on file" in str(exc).lower():
        raise dg.RetryRequested(**LOCK_RETRY) from exc


class WarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB file that every table lives in (TESSERA_WAREHOUSE)."""

    path: str

    @contextlib.contextmanager
    def connect(self, read_only: bool = False):
        with contextlib.ExitStack() as stack:
            try:
                con = stack.enter_context(wh.connect(self.path, read_only=read_only))
            except wh.WarehouseLockedError as exc:
                retry_when_locked(exc)
                raise
            yield con


class LandingZoneResource(dg.ConfigurableResource):
    """The input root of DESIGN.md's landing contract (TESSERA_LANDING_DIR), and optionally a
    sources config (TESSERA_SOURCES_CONFIG) that maps a user's own files onto it."""

    root: str
    sources_config: Optional[str] = None

    def config(self):
        """The validated sources config (the landing contract's defaults when none is set)."""
        from orchestration.defs.ingest.sources_config import cached_sources_config

        return cached_sources_config(Path(self.sources_config) if self.sources_config else None)

    def files(self, source: str) -> SourceFiles:
        """What the ingestion step of `source` reads: declared files, or its landing folder."""
        config = self.config()
        root = Path(self.root)
        if not config.sources and not root.is_dir():  # with a sources config, absent folders are absent sources
            raise dg.Failure(
                description=(
                    f"The landing folder {root} does not exist. Point TESSERA_LANDING_DIR at a folder with "
                    "events/, crm/, orders/, enrichment/ and privacy/ sub-folders, write sample data there "
                    f"with `tessera generate --out {root}`, or declare your own files in a sources config "
                    "(TESSERA_SOURCES_CONFIG, see docs/sources.md)."
                )
            )
        return config.files(source, root)
