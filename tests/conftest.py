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

# The files that take longest, longest first (seconds of a fresh clone's `make test` on 2 cores, from
# its --durations): xdist hands whole files to its two workers in collection order, so these start
# at once and the short files fill in behind them, instead of a long one starting last.
LONGEST_FIRST = (
    "tests/engines/test_spark_equivalence.py",  # 440
    "tests/defs/test_input_shapes.py",  # 325
    "tests/browser/test_uis.py",  # 244
    "tests/test_cli.py",  # 228
    "tests/defs/test_segments_pipeline.py",  # 193
    "tests/defs/test_materialize_pipeline.py",  # 190
    "tests/defs/test_incremental.py",  # 102
    "tests/defs/test_messy_corpus.py",  # 96
    "tests/defs/test_automation.py",  # 86
    "tests/engines/test_production_profile.py",  # 73
    "tests/defs/test_online_retail_example.py",  # 67
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: a file keeps its order


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
