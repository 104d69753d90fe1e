"""The segment catalog of this deployment: segments/*.yml checked against the dbt contract."""

from __future__ import annotations

import functools

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.segments.catalog import Catalog, attribute_schema, load_catalog
from orchestration.lib.settings import load_settings


@functools.cache
def segment_catalog() -> Catalog:
    """Loaded once per process; a SegmentConfigError here stops the code location with its message.
    It is checked when the code location loads (segments/definitions.py), before any resource exists,
    so the folder comes from the process's settings."""
    return load_catalog(load_settings().segments_dir, attribute_schema(dbt_project.manifest_path))
