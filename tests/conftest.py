"""Shared fixtures: one small generated landing zone per session, with its ground truth."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest

# The sample's events begin in July 2026. From the default first partition (2025-01-01), a full run
# would record a materialisation per asset for every day since, some 3,500 Dagster events a run.
os.environ.setdefault("TESSERA_PARTITIONS_START", "2026-06-01")

from orchestration.lib.settings import load_settings  # noqa: E402
from orchestration.sample_data.generator import GeneratorConfig, generate  # noqa: E402

SMALL = GeneratorConfig(
    persons=400, seed=7, as_of=dt.date(2026, 10, 31), history_days=120, chunk_size=200, fault_rate=0.01
)


@dataclasses.dataclass(frozen=True)
class Sample:
    landing: Path
    truth: Path
    summary: dict

    def truth_rows(self, name: str) -> list[dict]:
        with (self.truth / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Sample:
    root = tmp_path_factory.mktemp("sample")
    summary = generate(root / "landing", SMALL, truth_dir=root / "truth")
    return Sample(root / "landing", root / "truth", summary)


@pytest.fixture(autouse=True)
def _settings_read_anew():
    """Each test reads the settings from its own environment: `load_settings()` keeps them for the
    process. A test or fixture that changes the environment mid-way calls `reload_settings()`."""
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
