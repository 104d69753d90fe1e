"""Runtime settings: one pydantic model of the environment variables that docs/settings.md lists, read
once per process by `load_settings()`.

Relative paths are resolved against the repository root, so that `make run`, `dagster dev`,
pytest and dbt (which runs from `dbt_project/`) all agree on the same files. A value Tessera cannot
use raises `SettingsError`, whose message says which variable, what is wrong and how to fix it. The
assets get their settings from Dagster as a resource (`SettingsResource` in
orchestration/defs/resources.py), which orchestration/definitions.py builds from these.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


class SettingsError(ValueError):
    """A setting has a value Tessera cannot use; the message says which and how to fix it."""


def resolve_path(value: str | Path) -> Path:
    """`value` with ~ expanded; a relative path is relative to the repository root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path).resolve()


PATHS = (
    "landing_dir",
    "warehouse",
    "dagster_home",
    "segments_dir",
    "experiments_dir",
    "exports_dir",
    "reports_dir",
    "lake_dir",
    "services_dir",
)
PORTS = (
    "postgres_port",
    "mlflow_port",
    "spark_port",
    "spark_master_port",
    "spark_master_ui_port",
    "spark_worker_ui_port",
    "redis_port",
    "collector_port",
)


class Settings(BaseSettings):
    """Every TESSERA_* variable (and MLflow's and Dagster's own), typed. Build it with `load_settings()`,
    which turns a mistake into a `SettingsError`. An empty variable means the default for paths,
    dates and numbers; elsewhere it is a value (an empty TESSERA_SPARK_JAVA_OPTIONS means no options)."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", frozen=True, extra="ignore", validate_default=True)

    # The pipeline (the order is the order of the checks: the first mistake is reported).
    landing_dir: Path = Path("data/landing")
    warehouse: Path = Path("data/warehouse.duckdb")
    as_of: dt.date | None = None
    mlflow_tracking_uri: str = Field("", validation_alias="MLFLOW_TRACKING_URI")
    dagster_home: Path = Field(Path("data/dagster_home"), validation_alias="DAGSTER_HOME")
    segments_dir: Path = Path("segments")
    experiments_dir: Path = Path("experiments")  # experiment definitions (docs/experiments.md); none: no experiment
    exports_dir: Path = Path("data/exports")
    consent_default_allowed: bool = Field(True, validation_alias="TESSERA_CONSENT_DEFAULT")
    sources_config: Path | None = None  # None: read the landing folders (docs/input_contract.md)
    reports_dir: Path = Path("data/reports")
    partitions_start: dt.date = dt.date(2025, 1, 1)  # the first daily event partition
    lookback_days: int = 3  # days before a partition that its run rebuilds too (late events)
    engine: Literal["duckdb", "spark"] = "duckdb"  # where dbt runs
    ml_frame_rows: int = 1_000_000  # the most rows an ML step reads from the engine at once
    duckdb_memory_limit: str = "6GB"
    lake_dir: Path = Path("data/lake")  # with engine=spark: the Parquet copies that Spark reads

    # The lookup API: `app_from_environment` requires the token.
    api_token: SecretStr = SecretStr("")
    api_rate_limit: str = "50/second"
    api_docs_need_token: bool = False
    api_refresh_seconds: float = 30.0

    # The real-time path (docs/realtime.md): Segment's write key that the collector accepts (required
    # to start it), its port, and the broker's (Redis, started by `tessera services up redis`).
    collector_write_key: SecretStr = SecretStr("")
    collector_port: int = 8090
    redis_port: int = 6390
    webhook_urls: str = ""  # comma-separated; each gets every real-time entry and exit
    webhook_secret: SecretStr = SecretStr("")  # the HMAC key of the X-Tessera-Signature header

    # Local services (orchestration/services.py) and the Spark engine's connection.
    services_dir: Path = Path("data/services")
    postgres_bin: Path = Path("/usr/lib/postgresql/15/bin")  # used as given: a relative path is relative to the cwd
    postgres_port: int = 5433
    mlflow_port: int = 5001
    spark_host: str = "127.0.0.1"
    spark_port: int = 10000
    spark_user: str = "tessera"
    spark_master_port: int = 7077
    spark_master_ui_port: int = 8088
    spark_worker_ui_port: int = 8089
    spark_worker_cores: str = "2"
    spark_worker_memory: str = "6g"
    spark_executor_memory: str = "5g"
    spark_driver_memory: str = "2g"
    spark_java_options: str = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # empty: the JVM's own defaults

    @property
    def webhooks(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @property
    def redis_url(self) -> str:
        return redis_url(self.redis_port)

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of `field`."""
        return cls.model_fields[field].validation_alias or f"TESSERA_{field.upper()}"

    @field_validator(*PATHS, mode="before")
    @classmethod
    def _path(cls, value: Any, info: ValidationInfo) -> Path:
        return resolve_path(value or cls.model_fields[info.field_name].default)

    @field_validator("sources_config", mode="before")
    @classmethod
    def _sources_config(cls, value: Any) -> Path | None:
        return resolve_path(value) if value else None

    @field_validator("mlflow_tracking_uri", mode="before")
    @classmethod
    def _mlflow_tracking_uri(cls, value: Any) -> str:
        # Absolute: MLflow's own default depends on the working directory.
        return value or f"sqlite:///{PROJECT_ROOT / 'data' / 'mlflow.db'}"

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, value: Any) -> dt.date | None:
        raw = _text(value).strip()
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
                "or order."
            )
        return as_of

    @field_validator("partitions_start", mode="before")
    @classmethod
    def _partitions_start(cls, value: Any) -> dt.date:
        raw = _text(value).strip() or "2025-01-01"
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise SettingsError(
                f"TESSERA_PARTITIONS_START={raw!r} is not a date. Use the form YYYY-MM-DD: the first day of the daily "
                "event partitions (events before it belong to the first partition)."
            ) from None

    @field_validator("lookback_days", mode="before")
    @classmethod
    def _lookback_days(cls, value: Any) -> int:
        raw = _text(value).strip() or "3"
        if not raw.isdigit() or int(raw) > 365:
            raise SettingsError(
                f"TESSERA_LOOKBACK_DAYS={raw!r} must be a whole number of days from 0 to 365: how many "
                "days before a daily partition its run rebuilds too, for events that arrive late."
            )
        return int(raw)

    @field_validator("consent_default_allowed", mode="before")
    @classmethod
    def _consent_default(cls, value: Any) -> bool:
        if isinstance(value, bool):  # the default
            return value
        raw = _text(value).strip().lower()
        if raw not in ("allowed", "denied"):
            raise SettingsError(
                f"TESSERA_CONSENT_DEFAULT={raw!r} must be 'allowed' or 'denied': it decides whether "
                "people with no CRM record (anonymous visitors) may be in segments and exports."
            )
        return raw == "allowed"

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> str:
        raw = _text(value).strip().lower() or "duckdb"
        if raw not in ("duckdb", "spark"):
            raise SettingsError(
                f"TESSERA_ENGINE={raw!r} must be 'duckdb' (the embedded default) or 'spark' (dbt-spark "
                "over Thrift to the cluster in TESSERA_SPARK_HOST and TESSERA_SPARK_PORT)."
            )
        return raw

    @field_validator("ml_frame_rows", mode="before")
    @classmethod
    def _ml_frame_rows(cls, value: Any) -> int:
        raw = _text(value).strip().replace("_", "") or "1000000"
        if not raw.isdigit() or int(raw) < 1000:
            raise SettingsError(
                f"TESSERA_ML_FRAME_ROWS={raw!r} must be a whole number of at least 1000: the most rows "
                "an ML step takes from the engine at once (larger training frames are sampled, scoring "
                "is chunked)."
            )
        return int(raw)

    @field_validator("api_rate_limit", mode="before")
    @classmethod
    def _api_rate_limit(cls, value: Any) -> str:
        import limits

        try:
            limits.parse(value)
        except ValueError:
            raise SettingsError(
                f"TESSERA_API_RATE_LIMIT={value!r} is not a rate: write it as '<count>/<unit>', "
                "for example 50/second or 1000/minute."
            ) from None
        return value

    @field_validator("api_docs_need_token", mode="before")
    @classmethod
    def _api_docs_need_token(cls, value: Any) -> bool:
        return value if isinstance(value, bool) else _text(value).strip().lower() in ("1", "true", "yes")

    @field_validator("api_refresh_seconds", mode="before")
    @classmethod
    def _api_refresh_seconds(cls, value: Any) -> float:
        try:
            return float(value)
        except ValueError:
            raise SettingsError(
                f"TESSERA_API_REFRESH_SECONDS={value!r} must be a number of seconds, for example "
                "TESSERA_API_REFRESH_SECONDS=30: how often, at most, the API checks whether the "
                "warehouse file changed."
            ) from None

    @field_validator(*PORTS, mode="before")
    @classmethod
    def _port(cls, value: Any, info: ValidationInfo) -> int:
        default = cls.model_fields[info.field_name].default
        raw = _text(value).strip() or str(default)
        if not raw.isdigit():
            name = cls.variable(info.field_name)
            raise SettingsError(f"{name}={raw!r} must be a port number, for example {name}={default}.")
        return int(raw)


def redis_url(port: int) -> str:
    """The local Redis of the real-time path (`tessera services up redis`)."""
    return f"redis://127.0.0.1:{port}/0"


def _text(value: Any) -> str:
    """An environment value, or a field's default, as text."""
    return value.isoformat() if isinstance(value, dt.date) else str(value) if value is not None else ""


@functools.cache
def load_settings() -> Settings:
    """The settings of this process, read from the environment on first use and kept: the code
    location reads them when it loads and hands them to the assets as a resource. After changing
    the environment (tests, scripts that run several configurations), `reload_settings()`."""
    try:
        return Settings()
    except ValidationError as exc:
        raise _settings_error(exc) from None


def reload_settings() -> Settings:
    """Read the environment again, for this process's `load_settings()` too."""
    load_settings.cache_clear()
    return load_settings()


def _settings_error(exc: ValidationError) -> SettingsError:
    """The first mistake, as the validators word it (every pipeline variable has a validator of its own)."""
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SettingsError):
        return cause
    field = str(error["loc"][0]) if error["loc"] else ""
    name = Settings.variable(field) if field in Settings.model_fields else field
    return SettingsError(f"{name}={error.get('input')!r}: {error['msg']}. docs/settings.md lists the accepted values.")


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
