"""Shared by the benchmarks: materialise the pipeline through Dagster and time each step."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

from orchestration.sample_data.generator import GeneratorConfig, default_workers, generate


def save_result(name: str, result: dict) -> None:
    """Write a benchmark's figures to benchmarks/results/<name>.json and print them."""
    import json

    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result, indent=2, default=float))


ROOT = Path(__file__).resolve().parents[1]


def tier_parser(doc: str, default_persons: int) -> argparse.ArgumentParser:
    """`--persons` and `--workdir`, shared by the benchmarks that run on generated tiers."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=default_persons)
    ap.add_argument("--workdir", type=Path, default=None, help="default: data/bench/p<persons>")
    return ap


def tier_workdir(args: argparse.Namespace) -> Path:
    return (args.workdir or ROOT / "data" / "bench" / f"p{args.persons}").resolve()


def ensure_generated(work: Path, persons: int) -> tuple[Path, Path]:
    landing, truth = work / "landing", work / "truth"
    if not (truth / "summary.json").exists():
        generate(landing, GeneratorConfig(persons=persons, workers=default_workers()), truth)
    return landing, truth


def event_files(events: Path) -> list[str]:
    """The tier's event JSONL files, without the generator's deliberately unreadable ones."""
    return sorted(str(p) for p in events.glob("*.jsonl*") if "truncated" not in p.name and "not-gzip" not in p.name)


def read_once_reference(events: Path) -> dict:
    """The reference for the pipeline's time: DuckDB alone reading the event files once (`read_json`
    and a count)."""
    import duckdb

    files = event_files(events)
    started = time.perf_counter()
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT count(*) FROM read_json(?, format='newline_delimited', ignore_errors=true)", [files]
        ).fetchone()[0]
    return {"seconds": round(time.perf_counter() - started, 1), "rows": rows, "files": len(files)}


# Pipeline stages, as the step keys of a run start.
STAGES = {
    "ingest": ("ingest_", "dbt_daily_events"),
    "identity": ("dbt_before_identity_graph", "intermediate__"),
    "features": ("dbt_after_identity_graph",),
    "ml": ("ml__", "marts__cluster", "marts__propensity"),
    "segments": ("dbt_after_ml", "segment_membership"),
}
GATE_MARKERS = ("great_expectations", "drift", "quarantine_share", "no_trace", "minimum_size")


def stage_times(step_s: dict[str, float]) -> dict[str, float]:
    """Seconds per stage (ingest, identity, features, gates, ml, segments) from a run's step times."""
    gates = {step for step in step_s if any(marker in step for marker in GATE_MARKERS)}
    stages = {
        stage: round(sum(s for step, s in step_s.items() if step.startswith(prefixes) and step not in gates), 1)
        for stage, prefixes in STAGES.items()
    }
    return {**stages, "gates": round(sum(step_s[step] for step in gates), 1)}


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Seconds per finished step of a run, from its event log."""
    begin, steps = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type_value == "STEP_START":
            begin[ev.step_key] = entry.timestamp
        elif ev.event_type_value == "STEP_SUCCESS":
            steps[ev.step_key] = round(entry.timestamp - begin[ev.step_key], 2)
    return steps


def run_pipeline(
    landing: Path,
    warehouse: Path,
    with_checks: bool = False,
    with_ml: bool = False,
    sources_config: Path | None = None,
    partition_key: str | None = None,
    train: bool = True,
    with_privacy: bool = False,
    instance=None,
    dbt_tests: bool = True,
    with_exports: bool = False,
) -> dict:
    """Every asset (optionally with asset checks, the ML and segment assets, and the erasures) into
    `warehouse`; wall time per step
    from the event log. `sources_config` maps a user's own files (TESSERA_SOURCES_CONFIG). The events
    of every day are loaded, or only those of `partition_key` (a daily run, with its lookback).
    `train=False` scores with the @champion models without retraining them, as daily_refresh_job does.
    `dbt_tests=False` leaves out dbt's data tests, keeping the other checks.
    Pass an ephemeral `instance` to watch the run's steps from another thread while it runs."""
    import dagster as dg

    # The dbt assets read the manifest when imported; a fresh clone has none until make builds it.
    subprocess.run(["make", "--quiet", "dbt_project/target/manifest.json"], cwd=ROOT, check=True)
    os.environ["TESSERA_WAREHOUSE"] = str(warehouse)
    from orchestration.defs.dbt.assets import (
        dbt_after_identity_graph,
        dbt_after_ml,
        dbt_before_identity_graph,
        dbt_daily_events,
    )
    from orchestration.defs.dbt.definitions import defs as dbt_defs
    from orchestration.defs.exports.assets import export_assets
    from orchestration.defs.identity.definitions import defs as identity_defs
    from orchestration.defs.ingest.assets import ingest_assets
    from orchestration.defs.ingest.resources import LandingZoneResource
    from orchestration.defs.ml.assets import ml_assets
    from orchestration.defs.ml.definitions import training_assets
    from orchestration.defs.ml.recommendations import recommendation_assets
    from orchestration.defs.partitions import all_days_tags
    from orchestration.defs.privacy.assets import privacy_assets, privacy_checks, sweep_assets, sweep_checks
    from orchestration.defs.quality.checks import quality_checks
    from orchestration.defs.resources import SettingsResource, WarehouseResource
    from orchestration.defs.segments.assets import segment_assets
    from orchestration.lib.settings import reload_settings

    checks = (quality_checks + ([*privacy_checks, *sweep_checks] if with_privacy else [])) if with_checks else []
    assets = (
        [
            *ingest_assets,
            dbt_daily_events,
            dbt_before_identity_graph,
            dbt_after_identity_graph,
            *identity_defs.assets,
            *sweep_assets,
        ]
        + checks
        + ([*ml_assets, dbt_after_ml, *segment_assets, *recommendation_assets] if with_ml else [])
        + (privacy_assets if with_privacy else [])
        + (export_assets if with_exports else [])
    )
    instance = instance or dg.DagsterInstance.ephemeral()
    settings = reload_settings()  # the caller may have changed the environment since the last run
    started = time.perf_counter()
    days = {"partition_key": partition_key} if partition_key else {"tags": all_days_tags()}
    selection = dg.AssetSelection.all() if train or not with_ml else dg.AssetSelection.all() - training_assets
    if not dbt_tests:
        selection = selection - dg.AssetSelection.all_asset_checks() | dg.AssetSelection.checks(*checks)
    result = dg.materialize(
        assets,
        selection=selection,
        instance=instance,
        **days,
        resources={
            "warehouse": WarehouseResource(path=str(warehouse), engine=settings.engine),
            "settings": SettingsResource.from_settings(settings),
            "landing": LandingZoneResource(
                root=str(landing), sources_config=(str(sources_config) if sources_config else None)
            ),
            "dbt": dbt_defs.resources["dbt"],
        },
    )
    total = time.perf_counter() - started
    assert result.success
    return {"run_wall_s": round(total, 1), "step_s": step_seconds(instance, result.run_id)}
