"""Experiments through Dagster on a warehouse with a planted truth: 4,000 members of churn_risk enter
an experiment; a month later the voucher arm converted 5 points more, by construction, and a
person's conversion before assignment predicts theirs after (what CUPED uses)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pytest

from orchestration.defs.experiments.assets import experiment_assets, experiment_checks
from orchestration.defs.experiments.config import ExperimentConfigError, load_experiments
from orchestration.defs.experiments.loading import experiment_catalog
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.warehouse import connect

T = dt.date(2026, 10, 1)
UPLIFT = 0.05
EXPERIMENT = """
experiments:
  - name: winback_voucher
    description: d
    owner: o
    segment: churn_risk
    start: 2026-09-20
    variants: {control: 50, voucher: 50}
    metric: {kind: conversion, days: 30}
    guardrails: [{kind: refund_rate, days: 30, max_increase: 0.02}]
"""


@pytest.fixture()
def world(tmp_path, monkeypatch):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "e.yml").write_text(EXPERIMENT)
    monkeypatch.setenv("TESSERA_EXPERIMENTS_DIR", str(tmp_path / "experiments"))
    experiment_catalog.cache_clear()
    warehouse = tmp_path / "w.duckdb"
    with connect(warehouse) as con:
        con.execute(
            "CREATE TABLE marts.segment_membership AS SELECT 'p' || i AS person_id, 'churn_risk' AS segment_name, "
            "'propensity' AS segment_type, TIMESTAMP '2026-10-01' AS entered_at, TIMESTAMP '2026-10-01' AS as_of "
            "FROM range(4000) r(i)"
        )
        con.execute(
            "CREATE TABLE intermediate.int_orders (order_id VARCHAR, person_id VARCHAR, ordered_at TIMESTAMP, "
            "amount DECIMAL(18, 2), status VARCHAR, seen_in VARCHAR)"
        )
    yield warehouse
    experiment_catalog.cache_clear()


def _run(warehouse, selection=None):
    result = dg.materialize(
        [*experiment_assets, *experiment_checks],
        selection=selection,
        resources={"warehouse": WarehouseResource(path=str(warehouse))},
        raise_on_error=False,
    )
    return result


def _plant(con, rng, day: dt.date) -> None:
    """Orders: a conversion in the 30 days before `day` for 30% of the members, and after it with a
    chance of 8% + 30% of that, plus UPLIFT for the voucher arm."""
    arms = dict(con.execute("SELECT person_id, variant FROM marts.experiment_assignments").fetchall())
    rows = []
    for person, variant in sorted(arms.items()):
        before = rng.random() < 0.3
        if before:
            rows.append((f"{person}-pre", person, day - dt.timedelta(days=10), 20.0, "completed", "orders"))
        if rng.random() < 0.08 + 0.3 * before + (UPLIFT if variant == "voucher" else 0):
            rows.append((f"{person}-post", person, day + dt.timedelta(days=12), 20.0, "completed", "orders"))
    con.executemany("INSERT INTO intermediate.int_orders VALUES (?, ?, ?, ?, ?, ?)", rows)


def test_a_planted_uplift_is_measured_within_its_interval_and_assignment_stays_put(world):
    assert _run(world).success
    with connect(world) as con:
        first = dict(con.execute("SELECT person_id, variant FROM marts.experiment_assignments").fetchall())
        _plant(con, np.random.default_rng(5), T)
        # A month later: p0..p99 left the segment and 500 newcomers joined.
        con.execute("DELETE FROM marts.segment_membership WHERE person_id IN (SELECT 'p' || i FROM range(100) r(i))")
        con.execute(
            "INSERT INTO marts.segment_membership SELECT 'n' || i, 'churn_risk', 'propensity', "
            "TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-01' FROM range(500) r(i)"
        )
        con.execute("UPDATE marts.segment_membership SET as_of = TIMESTAMP '2026-11-01'")
    result = _run(world)
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.description
    with connect(world, read_only=True) as con:
        after = dict(con.execute("SELECT person_id, variant FROM marts.experiment_assignments").fetchall())
        rows = con.execute(
            "SELECT * FROM marts.experiment_results WHERE variant = 'voucher' AND as_of = DATE '2026-11-01'"
        ).df()
    assert {p: after[p] for p in first} == first  # nobody's variant changed, leavers included
    assert len(after) == 4500 and abs(sum(v == "voucher" for v in first.values()) / 4000 - 0.5) < 0.03
    [voucher] = rows.to_dict("records")
    # Measured: those assigned a month ago, leavers included; the newcomers' month has not passed.
    assert voucher["persons_measured"] == sum(v == "voucher" for v in first.values())
    assert voucher["persons_assigned"] == sum(v == "voucher" for v in after.values())
    # One draw: the estimate within three standard errors of the truth (99.7%); that the 95% interval
    # covers the truth 95% of the time is tested over simulations (tests/ml/test_experiments.py).
    plain = voucher["difference_ci_high"] - voucher["difference_ci_low"]
    reduced = voucher["cuped_ci_high"] - voucher["cuped_ci_low"]
    assert abs(voucher["difference"] - UPLIFT) <= 1.5 * plain / 2
    assert abs(voucher["cuped_difference"] - UPLIFT) <= 1.5 * reduced / 2
    assert reduced < 0.97 * plain  # the pre-period explains some of the variance
    assert voucher["sequence_ci_low"] <= voucher["cuped_ci_low"] and voucher["guardrail_ok"] is True
    assert voucher["always_valid_p"] < 0.05  # 5 points on 2,000 a side is found


def test_a_broken_split_fails_the_sample_ratio_check(world):
    assert _run(world).success
    with connect(world) as con:  # logging lost 300 of the control arm
        con.execute(
            "DELETE FROM marts.experiment_assignments WHERE person_id IN (SELECT person_id FROM "
            "marts.experiment_assignments WHERE variant = 'control' ORDER BY person_id LIMIT 300)"
        )
    result = _run(
        world, dg.AssetSelection.assets(["marts", "experiment_results"]) | dg.AssetSelection.all_asset_checks()
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and "winback_voucher" in check.description


def test_a_mistake_in_an_experiment_names_the_file_experiment_key_and_fix(tmp_path):
    (tmp_path / "bad.yml").write_text(
        EXPERIMENT.replace("segment: churn_risk", "segment: churn_risks").replace("control: 50", "contrl: 50")
    )
    with pytest.raises(ExperimentConfigError) as caught:
        load_experiments(tmp_path, {"churn_risk", "vip"})
    text = str(caught.value)
    assert "bad.yml, experiment 'winback_voucher'" in text and "'control'" in text
    (tmp_path / "bad.yml").write_text(EXPERIMENT.replace("segment: churn_risk", "segment: churn_risks"))
    with pytest.raises(ExperimentConfigError) as caught:
        load_experiments(tmp_path, {"churn_risk", "vip"})
    assert "Did you mean segment 'churn_risk'?" in str(caught.value)
