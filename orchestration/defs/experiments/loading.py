"""The experiment definitions of the process's settings, loaded once and checked against the segments."""

from __future__ import annotations

import functools

from orchestration.defs.experiments.config import ExperimentSpec, load_experiments
from orchestration.defs.segments.loading import segment_catalog
from orchestration.lib.settings import load_settings


@functools.cache
def experiment_catalog() -> dict[str, ExperimentSpec]:
    """An ExperimentConfigError here stops the code location with its message (definitions.py)."""
    daily = {name for name, s in segment_catalog().segments.items() if not s.live_only}
    return load_experiments(load_settings().experiments_dir, daily)
