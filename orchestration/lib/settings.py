"""Runtime settings, read from the environment variables that docs/settings.md lists.

Relative paths are resolved against the repository root, so that `make run`, `dagster dev`,
pytest and dbt (which runs from `dbt_project/`) all agree on the same files.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


class SettingsError(ValueError):
    """A setting has a value Tessera cannot use; the message says which and how to fix it."""


def path_setting(var: str, default: str) -> Path:
    """The path in environment variable `var` (or `default`); a relative one is relative to the repository root."""
    path = Path(os.environ.get(var) or default).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


def _as_of() -> dt.date | None:
    raw = os.environ.get("TESSERA_AS_OF", "").strip()
    if not raw:
        return None
    try:
        as_of = dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(
            f"TESSERA_AS_OF={raw!r} is not a date. Use the form YYYY-MM-DD, for example "
            "TESSERA_AS_OF=2026-10-31, or unset it to use the date of the latest valid event or order."
        ) from None
    today = dt.datetime.now(dt.UTC).date()
    if as_of > today + dt.timedelta(days=1):
        raise SettingsError(
            f"TESSERA_AS_OF={raw!r} lies after today ({today}): features and segments would be computed for days "
            "that have no data yet. Set a date up to today, or unset it to use the date of the latest valid event "
            "or order.")
    return as_of


def _partitions_start() -> dt.date:
    raw = os.environ.get("TESSERA_PARTITIONS_START", "").strip() or "2025-01-01"
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(
            f"TESSERA_PARTITIONS_START={raw!r} is not a date. Use the form YYYY-MM-DD: the first day of the daily "
            "event partitions (events before it belong to the first partition)."
        ) from None


def _lookback_days() -> int:
    raw = os.environ.get("TESSERA_LOOKBACK_DAYS", "").strip() or "3"
    if not raw.isdigit() or int(raw) > 365:
        raise SettingsError(f"TESSERA_LOOKBACK_DAYS={raw!r} must be a whole number of days from 0 to 365: how many "
                            "days before a daily partition its run rebuilds too, for events that arrive late.")
    return int(raw)


def _consent_default() -> bool:
    raw = os.environ.get("TESSERA_CONSENT_DEFAULT", "allowed").strip().lower()
    if raw not in ("allowed", "denied"):
        raise SettingsError(f"TESSERA_CONSENT_DEFAULT={raw!r} must be 'allowed' or 'denied': it decides whether people "
                            "with no CRM record (anonymous visitors) may be in segments and exports.")
    return raw == "allowed"


def _engine() -> str:
    raw = os.environ.get("TESSERA_ENGINE", "").strip().lower() or "duckdb"
    if raw not in ("duckdb", "spark"):
        raise SettingsError(f"TESSERA_ENGINE={raw!r} must be 'duckdb' (the embedded default) or 'spark' (dbt-spark "
                            "over Thrift to the cluster in TESSERA_SPARK_HOST and TESSERA_SPARK_PORT).")
    return raw


def _ml_frame_rows() -> int:
    raw = os.environ.get("TESSERA_ML_FRAME_ROWS", "").strip().replace("_", "") or "1000000"
    if not raw.isdigit() or int(raw) < 1000:
        raise SettingsError(f"TESSERA_ML_FRAME_ROWS={raw!r} must be a whole number of at least 1000: the most rows an ML "
                            "step takes from the engine at once (larger training frames are sampled, scoring is chunked).")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    landing_dir: Path
    warehouse: Path
    as_of: dt.date | None
    mlflow_tracking_uri: str
    dagster_home: Path
    segments_dir: Path
    exports_dir: Path
    consent_default_allowed: bool
    sources_config: Path | None  # None: read the landing folders (docs/input_contract.md)
    reports_dir: Path
    partitions_start: dt.date  # the first daily event partition
    lookback_days: int  # days before a partition that its run rebuilds too (late events)
    engine: str  # duckdb or spark: where dbt runs
    ml_frame_rows: int  # the most rows an ML step reads from the engine at once


def load_settings() -> Settings:
    data_dir = PROJECT_ROOT / "data"
    return Settings(
        landing_dir=path_setting("TESSERA_LANDING_DIR", "data/landing"),
        warehouse=path_setting("TESSERA_WAREHOUSE", "data/warehouse.duckdb"),
        as_of=_as_of(),
        mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{data_dir / 'mlflow.db'}",
        dagster_home=path_setting("DAGSTER_HOME", "data/dagster_home"),
        segments_dir=path_setting("TESSERA_SEGMENTS_DIR", "segments"),
        exports_dir=path_setting("TESSERA_EXPORTS_DIR", "data/exports"),
        consent_default_allowed=_consent_default(),
        sources_config=path_setting("TESSERA_SOURCES_CONFIG", "") if os.environ.get("TESSERA_SOURCES_CONFIG") else None,
        reports_dir=path_setting("TESSERA_REPORTS_DIR", "data/reports"),
        partitions_start=_partitions_start(),
        lookback_days=_lookback_days(),
        engine=_engine(),
        ml_frame_rows=_ml_frame_rows(),
    )


def export_for_subprocesses(settings: Settings) -> None:
    """Publish absolute paths so that dbt (run from dbt_project/) and MLflow see the same files."""
    os.environ["TESSERA_WAREHOUSE"] = str(settings.warehouse)
    os.environ["TESSERA_LANDING_DIR"] = str(settings.landing_dir)
    if settings.sources_config:
        os.environ["TESSERA_SOURCES_CONFIG"] = str(settings.sources_config)
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
