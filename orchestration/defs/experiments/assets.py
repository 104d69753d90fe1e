"""Experiments on segments (docs/experiments.md): who is in which variant, and what it did.

- `marts/experiment_assignments`: each member of an experiment's segment gets a variant the first
  time a run sees them within the experiment's dates, by a salted hash (ml/experiments.py), and
  keeps it: a person's row is never rewritten. A bandit's new entrants follow the shares of
  `marts/experiment_allocations` instead of the fixed split.
- `marts/experiment_results`: one row per experiment, variant and scoring date (one "look" a day):
  the primary metric per person with its interval, the difference with the control (plain and
  CUPED-adjusted with the same metric before assignment), the fixed-horizon and always-valid tests,
  the sample-ratio test and the guardrails. Only persons whose metric window has closed count.
- `marts.experiment_allocations`, written by the results asset: a bandit's shares for the next day
  (Thompson sampling).
"""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from ml import experiments as stats
from orchestration.defs.experiments.config import CONTROL, ExperimentSpec
from orchestration.defs.experiments.loading import experiment_catalog
from orchestration.defs.metadata import frame_table, table_metadata
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.warehouse import table_exists, transaction

OWNER = "team:marketing-analytics"
MEMBERSHIP = dg.AssetKey(["marts", "segment_membership"])
ORDERS = dg.AssetKey(["intermediate", "int_orders"])
ASSIGNMENTS = "marts.experiment_assignments"
RESULTS = "marts.experiment_results"
ALLOCATIONS = "marts.experiment_allocations"


def _ensure_tables(con) -> None:
    con.execute(f"""CREATE TABLE IF NOT EXISTS {ASSIGNMENTS} (
        experiment VARCHAR NOT NULL, person_id VARCHAR NOT NULL, variant VARCHAR NOT NULL,
        assigned_at DATE NOT NULL, PRIMARY KEY (experiment, person_id))""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {RESULTS} (
        experiment VARCHAR NOT NULL, variant VARCHAR NOT NULL, metric VARCHAR NOT NULL,
        persons_assigned BIGINT, persons_measured BIGINT, mean DOUBLE, mean_ci_low DOUBLE, mean_ci_high DOUBLE,
        difference DOUBLE, difference_ci_low DOUBLE, difference_ci_high DOUBLE, relative_lift DOUBLE,
        p_value DOUBLE, cuped_difference DOUBLE, cuped_ci_low DOUBLE, cuped_ci_high DOUBLE,
        sequence_ci_low DOUBLE, sequence_ci_high DOUBLE, always_valid_p DOUBLE, sample_ratio_p DOUBLE,
        refund_rate_difference DOUBLE, guardrail_ok BOOLEAN, as_of DATE NOT NULL,
        PRIMARY KEY (experiment, variant, as_of))""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {ALLOCATIONS} (
        experiment VARCHAR NOT NULL, as_of DATE NOT NULL, variant VARCHAR NOT NULL, share DOUBLE NOT NULL,
        PRIMARY KEY (experiment, as_of, variant))""")


def _as_of(con) -> dt.date:
    return con.execute("SELECT CAST(max(as_of) AS DATE) FROM marts.segment_membership").fetchone()[0]


def _split_on(con, spec: ExperimentSpec, day: dt.date) -> dict[str, float]:
    """The split new entrants follow on `day`: a bandit's latest allocation, else the declared one."""
    if spec.mode == "bandit":
        rows = con.execute(
            f"SELECT variant, share FROM {ALLOCATIONS} WHERE experiment = ? AND as_of = "
            f"(SELECT max(as_of) FROM {ALLOCATIONS} WHERE experiment = ? AND as_of < ?)",
            [spec.name, spec.name, day],
        ).fetchall()
        if rows:
            shares = dict(rows)
            return {v: shares.get(v, 0.0) for v in spec.split}
    return spec.split


@dg.asset(
    key=["marts", "experiment_assignments"],
    deps=[MEMBERSHIP],
    group_name="experiments",
    owners=[OWNER],
    kinds={"duckdb", "python"},
    pool="duckdb",
    description="One row per person and experiment they entered: the variant, by a salted hash of the person, "
    "given the first time a run sees them in the experiment's segment within its dates and never changed.",
)
def experiment_assignments(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    catalog = experiment_catalog()
    new = []
    with warehouse.connect() as con:
        _ensure_tables(con)
        as_of = _as_of(con)
        with transaction(con):
            for spec in catalog.values():
                if as_of is None or as_of < spec.start:
                    continue
                entrants = con.execute(
                    f"""SELECT m.person_id, greatest(CAST(m.entered_at AS DATE), ?) AS assigned_at
                        FROM marts.segment_membership m
                        WHERE m.segment_name = ? AND m.person_id NOT IN
                              (SELECT person_id FROM {ASSIGNMENTS} WHERE experiment = ?)
                        ORDER BY m.person_id""",
                    [spec.start, spec.segment, spec.name],
                ).fetchall()
                split = _split_on(con, spec, as_of)
                rows = [
                    (spec.name, person, stats.assign(spec.hash_salt, person, split), min(day, as_of))
                    for person, day in entrants
                    if spec.end is None or day <= spec.end
                ]
                if rows:
                    con.executemany(f"INSERT INTO {ASSIGNMENTS} VALUES (?, ?, ?, ?)", rows)
                new += rows
        counts = con.execute(
            f"SELECT experiment, variant, count(*) AS persons FROM {ASSIGNMENTS} GROUP BY ALL ORDER BY ALL"
        ).df()
        metadata = table_metadata(con, ASSIGNMENTS)
    context.log.info(f"{len(new):,} persons entered {len(catalog)} experiment(s)")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "entered_now": len(new),
            "persons_by_variant": frame_table(counts.astype({"persons": "int64"})),
        }
    )


def _outcomes(con, spec: ExperimentSpec, as_of: dt.date) -> pd.DataFrame:
    """Per assigned person whose window has closed: the metric after assignment (`y`), the same
    metric over as many days before it (`pre`), and whether they had a refunded order (guardrail)."""
    days = spec.metric.days
    value = "1" if spec.metric.kind == "conversion" else "o.amount"
    guard = max([g.days for g in spec.guardrails], default=days)
    return (
        con.execute(
            f"""
        WITH assigned AS (
            SELECT person_id, variant, assigned_at FROM {ASSIGNMENTS}
            WHERE experiment = ? AND assigned_at + INTERVAL ({days}) DAY <= ?
        ), orders AS (
            SELECT person_id, CAST(ordered_at AS DATE) AS day, status, amount FROM intermediate.int_orders
        )
        SELECT a.person_id, a.variant,
               coalesce({"max" if spec.metric.kind == "conversion" else "sum"}(CASE WHEN o.status = 'completed'
                   AND o.day > a.assigned_at AND o.day <= a.assigned_at + INTERVAL ({days}) DAY THEN {value} END), 0) AS y,
               coalesce({"max" if spec.metric.kind == "conversion" else "sum"}(CASE WHEN o.status = 'completed'
                   AND o.day > a.assigned_at - INTERVAL ({days}) DAY AND o.day <= a.assigned_at THEN {value} END), 0) AS pre,
               coalesce(max(CASE WHEN o.status = 'refunded' AND o.day > a.assigned_at
                   AND o.day <= a.assigned_at + INTERVAL ({guard}) DAY THEN 1 END), 0) AS refunded
        FROM assigned a LEFT JOIN orders o ON o.person_id = a.person_id
        GROUP BY a.person_id, a.variant ORDER BY a.person_id""",
            [spec.name, as_of],
        )
        .df()
        .astype({"y": "float64", "pre": "float64", "refunded": "float64"})
    )


def analyse(con, spec: ExperimentSpec, as_of: dt.date) -> pd.DataFrame:
    """This look's rows of marts.experiment_results for one experiment."""
    frame = _outcomes(con, spec, as_of)
    assigned = dict(
        con.execute(
            f"SELECT variant, count(*) FROM {ASSIGNMENTS} WHERE experiment = ? GROUP BY 1", [spec.name]
        ).fetchall()
    )
    srm = stats.sample_ratio_p(assigned, spec.split) if spec.mode == "fixed" else float("nan")
    adjusted, _ = stats.cuped(frame["y"].to_numpy(), frame["pre"].to_numpy()) if len(frame) else (np.array([]), 0.0)
    frame["adjusted"] = adjusted
    control = frame[frame["variant"] == CONTROL]
    earlier = dict(
        con.execute(
            f"SELECT variant, min(always_valid_p) FROM {RESULTS} WHERE experiment = ? AND as_of < ? GROUP BY 1",
            [spec.name, as_of],
        ).fetchall()
    )
    rows = []
    for variant in spec.split:
        arm = frame[frame["variant"] == variant]
        plain = stats.compare(control["y"], arm["y"])
        reduced = stats.compare(control["adjusted"], arm["adjusted"])
        guard = stats.compare(control["refunded"], arm["refunded"])
        limit = min((g.max_increase for g in spec.guardrails), default=None)
        n = len(arm)
        half = 1.96 * arm["y"].std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        rows.append(
            {
                "experiment": spec.name,
                "variant": variant,
                "metric": f"{spec.metric.kind}_{spec.metric.days}d",
                "persons_assigned": int(assigned.get(variant, 0)),
                "persons_measured": n,
                "mean": float(arm["y"].mean()) if n else np.nan,
                "mean_ci_low": float(arm["y"].mean() - half) if n > 1 else np.nan,
                "mean_ci_high": float(arm["y"].mean() + half) if n > 1 else np.nan,
                "difference": plain.difference,
                "difference_ci_low": plain.ci_low,
                "difference_ci_high": plain.ci_high,
                "relative_lift": plain.relative_lift,
                "p_value": plain.p_value,
                "cuped_difference": reduced.difference,
                "cuped_ci_low": reduced.ci_low,
                "cuped_ci_high": reduced.ci_high,
                "sequence_ci_low": reduced.sequence_low,
                "sequence_ci_high": reduced.sequence_high,
                # The running minimum over the looks so far: valid however often anyone looked.
                "always_valid_p": min(reduced.always_valid_p, earlier.get(variant) or 1.0),
                "sample_ratio_p": srm,
                "refund_rate_difference": guard.difference,
                # Not above the most it may rise (None: no guardrail, the control, or nothing measured yet)
                "guardrail_ok": None
                if limit is None or variant == CONTROL or np.isnan(guard.ci_low)
                else bool(guard.ci_low <= limit),
                "as_of": as_of,
            }
        )
    return pd.DataFrame(rows)


@dg.asset(
    key=["marts", "experiment_results"],
    deps=[experiment_assignments, ORDERS],
    group_name="experiments",
    owners=[OWNER],
    kinds={"duckdb", "python"},
    pool="duckdb",
    description="One row per experiment, variant and day (a look): the primary metric with its 95% interval, the "
    "difference with the control (Welch, and CUPED-adjusted), the always-valid p-value and confidence sequence "
    "(mixture SPRT: safe to read every day), the sample-ratio test and the refund-rate guardrail.",
)
def experiment_results(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    catalog = experiment_catalog()
    with warehouse.connect() as con:
        _ensure_tables(con)
        as_of = _as_of(con)
        looks = [analyse(con, spec, as_of) for spec in catalog.values() if as_of is not None and as_of >= spec.start]
        today = pd.concat(looks, ignore_index=True) if looks else None
        with transaction(con):
            if today is not None:
                con.register("_look", today.astype({"guardrail_ok": "boolean"}))
                con.execute(f"DELETE FROM {RESULTS} WHERE as_of = ?", [as_of])  # a rerun of the day replaces its look
                con.execute(f"INSERT INTO {RESULTS} BY NAME SELECT * FROM _look")
                con.unregister("_look")
            for spec in catalog.values():
                if spec.mode != "bandit" or today is None:
                    continue
                arms = today[today["experiment"] == spec.name].set_index("variant")
                measured = arms["persons_measured"].astype(int)
                converted = (arms["mean"].fillna(0) * measured).round().astype(int)
                shares = stats.thompson_allocation(
                    converted.to_dict(),
                    measured.to_dict(),
                    spec.floor,
                    seed=int(pd.Timestamp(as_of).strftime("%Y%m%d")),
                )
                con.execute(f"DELETE FROM {ALLOCATIONS} WHERE experiment = ? AND as_of = ?", [spec.name, as_of])
                con.executemany(
                    f"INSERT INTO {ALLOCATIONS} VALUES (?, ?, ?, ?)",
                    [[spec.name, as_of, v, s] for v, s in shares.items()],
                )
        metadata = table_metadata(con, RESULTS)
    summary = (
        today[
            [
                "experiment",
                "variant",
                "persons_measured",
                "mean",
                "difference",
                "cuped_ci_low",
                "cuped_ci_high",
                "always_valid_p",
                "sample_ratio_p",
            ]
        ]
        if today is not None
        else pd.DataFrame()
    )
    return dg.MaterializeResult(metadata={**metadata, "experiments": len(catalog), "this_look": frame_table(summary)})


@dg.asset_check(
    asset=experiment_results,
    pool="duckdb",
    description="Every fixed-split experiment's assignment counts fit its planned split (chi-square p >= 0.001): "
    "a mismatch means assignment or logging is broken, and no other figure of the experiment can be trusted.",
)
def sample_ratio_matches(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, "marts", "experiment_results"):
            return dg.AssetCheckResult(passed=True, description="No experiment has started.")
        rows = con.execute(
            f"""SELECT experiment, min(sample_ratio_p) FROM {RESULTS}
                WHERE as_of = (SELECT max(as_of) FROM {RESULTS}) AND NOT isnan(sample_ratio_p) GROUP BY 1 ORDER BY 1"""
        ).fetchall()
    broken = [(name, p) for name, p in rows if p < stats.SRM_ALPHA]
    return dg.AssetCheckResult(
        passed=not broken,
        description="Every split as planned."
        if not broken
        else "Sample-ratio mismatch: " + ", ".join(f"{n} (p = {p:.2g})" for n, p in broken),
        metadata={"experiments_checked": len(rows), "mismatched": len(broken)},
    )


experiment_assets = [experiment_assignments, experiment_results]
experiment_checks = [sample_ratio_matches]
