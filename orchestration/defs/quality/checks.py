"""Great Expectations gates as Dagster asset checks, and feature drift against the previous run.

Gates that protect models and segments are blocking: when they fail, everything downstream of the
checked asset is skipped. Results, with failing expectations and example values, are in the check
metadata; GX Data Docs are written to `<warehouse folder>/gx/` (git-ignored).
"""

import datetime as dt
import json
import math
from pathlib import Path

import dagster as dg
import pandas as pd

from expectations import identity_map, int_segment__events, raw_events, user_features
from expectations.runner import Failure, columns_of, row_count_bounds, validate
from orchestration.defs.metadata import PERSONAL_COLUMN, frame_table
from orchestration.defs.resources import WarehouseResource
from orchestration.lib import figures

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS quality.gate_history (
    table_name VARCHAR, checked_at TIMESTAMP, row_count BIGINT, success BOOLEAN, failures JSON
)
"""
PROFILE_DDL = """
CREATE TABLE IF NOT EXISTS quality.feature_profiles (
    as_of DATE, profiled_at TIMESTAMP, feature VARCHAR, mean DOUBLE, p50 DOUBLE, p95 DOUBLE
)
"""
# (suite module, checked asset, blocking)
GATES = [
    (raw_events, dg.AssetKey(["raw", "events"]), False),
    (int_segment__events, dg.AssetKey(["intermediate", "int_segment__events"]), False),
    (identity_map, dg.AssetKey(["marts", "identity_map"]), True),
    (user_features, dg.AssetKey(["marts", "user_features"]), True),
]
DRIFT_FEATURES = [
    "recency_days",
    "frequency_orders",
    "monetary_total",
    "sessions_30d",
    "events_30d",
    "decayed_engagement",
    "mobile_share",
]


class DriftConfig(dg.Config):
    max_relative_change_of_mean: float = 0.5
    max_relative_change_of_p95: float = 0.75


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _failures_table(failures: list[Failure]) -> dg.TableMetadataValue:
    """One row per failing expectation: its column, unexpected count and first example values."""
    return frame_table(
        pd.DataFrame(
            [
                (f.expectation, f.column, f.unexpected_count, ", ".join(str(v) for v in f.examples[:5]))
                for f in failures
            ],
            columns=["expectation", "column", "unexpected", "examples"],
        ).astype({"unexpected": "Int64"})
    )


def build_gate(module, key: dg.AssetKey, blocking: bool) -> dg.AssetChecksDefinition:
    name = module.TABLE.split(".")[1]

    @dg.asset_check(
        asset=key,
        name="great_expectations_gate",
        blocking=blocking,
        pool="duckdb",
        description=f"Great Expectations suite `expectations/{module.__name__.split('.')[-1]}.py` "
        f"on {module.TABLE}" + (" (blocking)." if blocking else "."),
    )
    def _gate(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            con.execute(HISTORY_DDL)
            total = con.execute(f"SELECT count(*) FROM {module.TABLE}").fetchone()[0]
            columns = ", ".join(columns_of(module.expectations(None)))
            sample_rows = getattr(module, "SAMPLE_ROWS", None)
            # The rows whose key hashes into one bucket of total / SAMPLE_ROWS: the same rows every run, read
            # in parallel (a seeded reservoir sample reads on one thread, 7 s instead of 0.5 s for 10M events).
            sample = (
                f" WHERE hash({module.SAMPLE_KEY}) % {math.ceil(total / sample_rows)} = 0"
                if sample_rows and total > sample_rows
                else ""
            )
            frame = con.execute(f"SELECT {columns} FROM {module.TABLE}{sample}").df()
            previous = con.execute(
                "SELECT row_count FROM quality.gate_history WHERE table_name = ? AND success "
                "ORDER BY checked_at DESC LIMIT 1",
                [module.TABLE],
            ).fetchone()
            previous_rows = previous[0] if previous else None
            # A sample cannot answer "how many rows?": that comparison then runs on the full count.
            outcome = validate(
                name,
                frame,
                module.expectations(None if sample else previous_rows),
                Path(warehouse.path).parent / "gx",
                personal=lambda c: bool(PERSONAL_COLUMN.search(c)),
            )
            low, high = row_count_bounds(previous_rows) if previous_rows else (0, 0)
            if sample and previous_rows and not low <= total <= high:
                outcome.success = False
                outcome.failures.append(
                    Failure(
                        "expect_table_row_count_to_be_between", None, total, [f"previous run had {previous_rows} rows"]
                    )
                )
            con.execute(
                "INSERT INTO quality.gate_history VALUES (?, ?, ?, ?, ?)",
                [
                    module.TABLE,
                    _now(),
                    total,
                    outcome.success,
                    json.dumps([f.__dict__ for f in outcome.failures], default=str),
                ],
            )
        metadata = {
            "rows": total,
            "rows_validated": len(frame),
            "previous_rows": previous[0] if previous else None,
            "expectations_evaluated": outcome.evaluated,
            "expectations_failed": len(outcome.failures),
            "failures": _failures_table(outcome.failures),
        }
        if outcome.docs_index:
            metadata["data_docs"] = dg.MetadataValue.path(str(outcome.docs_index))
        return dg.AssetCheckResult(
            passed=outcome.success,
            metadata=metadata,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        )

    return _gate


@dg.asset_check(
    asset=dg.AssetKey(["marts", "user_features"]),
    name="feature_drift",
    blocking=False,
    pool="duckdb",
    description="Mean and 95th percentile of key features at the latest as_of, against the previous run.",
)
def feature_drift(config: DriftConfig, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        con.execute(PROFILE_DDL)
        as_of = con.execute("SELECT max(as_of) FROM marts.user_features").fetchone()[0]
        current = {}
        for f in DRIFT_FEATURES:
            mean, p50, p95 = con.execute(
                f"SELECT avg({f}), quantile_cont({f}, 0.5), quantile_cont({f}, 0.95) FROM marts.user_features "
                f"WHERE as_of = ?",
                [as_of],
            ).fetchone()
            current[f] = (float(mean or 0), float(p50 or 0), float(p95 or 0))
        last = con.execute("SELECT max(profiled_at) FROM quality.feature_profiles").fetchone()[0]
        previous = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT feature, mean, p50, p95 FROM quality.feature_profiles WHERE profiled_at = ?", [last]
            ).fetchall()
        }
        now = _now()
        for f, (mean, p50, p95) in current.items():
            con.execute(
                "INSERT INTO quality.feature_profiles VALUES (?, ?, ?, ?, ?, ?)", [as_of, now, f, mean, p50, p95]
            )
        history = (
            con.execute("SELECT profiled_at, feature, mean FROM quality.feature_profiles ORDER BY profiled_at")
            .df()
            .pivot_table(index="profiled_at", columns="feature", values="mean")
        )

    def change(new: float, old: float) -> float:
        return abs(new - old) / abs(old) if old else (0.0 if new == old else float("inf"))

    rows, drifted = [], []
    for f, (mean, _, p95) in current.items():
        old = previous.get(f)
        if old is not None and (
            change(mean, old[0]) > config.max_relative_change_of_mean
            or change(p95, old[2]) > config.max_relative_change_of_p95
        ):
            drifted.append(f)
        rows.append((f, mean, old[0] if old else None, p95, old[2] if old else None))
    profile = pd.DataFrame(rows, columns=["feature", "mean", "previous mean", "p95", "previous p95"]).astype(
        {"mean": float, "previous mean": float, "p95": float, "previous p95": float}
    )
    relative = history.tail(20).div(history.tail(20).iloc[0].replace(0, float("nan")))  # 1.0 = the first run shown
    plot = figures.markdown_image(
        figures.lines(relative, "Feature means per run, relative to the first run shown", "mean / first mean"),
        "feature drift",
    )
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "as_of": str(as_of),
            "drifted_features": ", ".join(drifted) or "none",
            "feature_means_over_runs": dg.MetadataValue.md(plot),
            "profile": frame_table(profile.round(3)),
            "compared_with_previous": bool(previous),
        },
    )


quality_checks = [build_gate(*gate) for gate in GATES] + [feature_drift]
