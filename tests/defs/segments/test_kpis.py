"""Segment KPIs on a warehouse with known members and orders, and the XmR control chart on a
history with a planted shift."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from orchestration.defs.resources import WarehouseResource
from orchestration.defs.segments.kpis import kpi_assets, kpi_checks, out_of_control
from orchestration.lib.warehouse import connect


def _warehouse(path):
    """vip: four members on 2026-10-31, of whom p1 and p2 ordered in the last 30 days (60 and 20);
    30 days earlier p1, p2 and p5 were members, and p5 has left since. p1's lifetime value is 100."""
    with connect(path) as con:
        con.execute("""CREATE TABLE marts.segment_membership AS SELECT * FROM (VALUES
            ('p1', 'vip', 'rule', TIMESTAMP '2026-09-01', TIMESTAMP '2026-10-31'),
            ('p2', 'vip', 'rule', TIMESTAMP '2026-09-01', TIMESTAMP '2026-10-31'),
            ('p3', 'vip', 'rule', TIMESTAMP '2026-10-20', TIMESTAMP '2026-10-31'),
            ('p4', 'vip', 'rule', TIMESTAMP '2026-10-20', TIMESTAMP '2026-10-31'))
            t(person_id, segment_name, segment_type, entered_at, as_of)""")
        con.execute("""CREATE TABLE marts.segment_membership_history AS SELECT * FROM (VALUES
            ('p1', 'vip', TIMESTAMP '2026-09-01', NULL), ('p2', 'vip', TIMESTAMP '2026-09-01', NULL),
            ('p3', 'vip', TIMESTAMP '2026-10-20', NULL), ('p4', 'vip', TIMESTAMP '2026-10-20', NULL),
            ('p5', 'vip', TIMESTAMP '2026-09-01', TIMESTAMP '2026-10-15'))
            t(person_id, segment_name, valid_from, valid_to)""")
        con.execute("""CREATE TABLE intermediate.int_orders AS SELECT * FROM (VALUES
            ('o1', 'p1', TIMESTAMP '2026-10-30 10:00', 60.00, 'completed', 'orders'),
            ('o2', 'p2', TIMESTAMP '2026-10-05 10:00', 20.00, 'completed', 'orders'),
            ('o3', 'p3', TIMESTAMP '2026-10-25 10:00', 99.00, 'refunded', 'orders'),
            ('o4', 'p4', TIMESTAMP '2026-09-15 10:00', 99.00, 'completed', 'orders'))
            t(order_id, person_id, ordered_at, amount, status, seen_in)""")
        con.execute(
            "CREATE TABLE marts.customer_lifetime_values AS SELECT 'p1' AS person_id, 100.0 AS expected_value_12m"
        )


def test_kpis_of_a_segment_at_a_run_are_what_its_members_did(tmp_path):
    _warehouse(tmp_path / "w.duckdb")
    result = dg.materialize(
        [*kpi_assets, *kpi_checks], resources={"warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb"))}
    )
    assert result.success
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        [row] = con.execute("SELECT * FROM marts.segment_kpis").df().to_dict("records")
    assert row["size"] == 4 and row["as_of"] == dt.datetime(2026, 10, 31)
    assert row["conversion_30d"] == 0.5 and row["revenue_per_person_30d"] == 20.0  # (60 + 20) / 4
    assert row["lifetime_value_12m"] == 25.0  # 100 / 4, non-buyers count 0
    assert abs(row["retention_30d"] - 2 / 3) < 1e-9  # p1, p2 stayed; p5 left
    [check] = result.get_asset_check_evaluations()
    assert check.passed  # one run: nothing to chart yet


def test_the_control_chart_flags_a_planted_shift_and_not_ordinary_noise():
    rng = np.random.default_rng(4)
    days = pd.date_range("2026-10-01", periods=15)
    stable = pd.DataFrame(
        {"segment_name": "vip", "as_of": days, "size": rng.normal(1000, 10, 15).round(), "conversion_30d": 0.3}
    )
    assert out_of_control(stable).empty
    shifted = stable.copy()
    shifted.loc[14, "size"] = 1200  # a rule change widened the segment overnight
    [flag] = out_of_control(shifted).to_dict("records")
    assert flag["segment_name"] == "vip" and flag["kpi"] == "size" and flag["high"] < 1200
    assert out_of_control(shifted.iloc[-5:]).empty  # too few earlier runs to chart
