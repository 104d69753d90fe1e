"""The landing zone as a Dagster resource: what ingestion reads, and the sources config that maps
a user's own files onto the landing contract (its taxonomy also gives dbt its vars)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from orchestration.defs.ingest.mapping import SourceFiles
from orchestration.defs.ingest.sources_config import cached_sources_config


class LandingZoneResource(dg.ConfigurableResource):
    """The input root of the landing contract (TESSERA_LANDING_DIR, docs/input_contract.md), and optionally a
    sources config (TESSERA_SOURCES_CONFIG) that maps a user's own files onto it."""

    root: str
    sources_config: str | None = None

    def config(self):
        """The validated sources config (the landing contract's defaults when none is set)."""
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
