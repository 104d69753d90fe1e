"""Blocking Great Expectations gates: a corrupted table fails its gate and stops what is downstream."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from expectations import user_features as suite
from orchestration.defs.quality.checks import build_gate
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.warehouse import connect

GOOD_ROW = dict(
    person_id="p_0000000000000001",
    as_of=pd.Timestamp("2026-10-31"),
    recency_days=3,
    frequency_orders=2,
    monetary_total=120.5,
    r_score=5,
    f_score=4,
    m_score=4,
    rfm_code="544",
    sessions_total=9,
    events_total=40,
    product_views=12,
    add_to_cart_count=2,
    searches=1,
    category_breadth=3,
    tenure_days=80,
    decayed_engagement=6.1,
    cart_abandonment_rate=0.5,
    video_completion_share=None,
    deep_scroll_share=0.25,
    mobile_share=0.7,
    weekend_share=0.2,
    business_hours_share=0.3,
    engagement_trend=0.1,
    preferred_local_hour=20,
    preferred_local_weekday=6,
    preferred_daypart="evening",
    primary_device_type="mobile",
    country="GB",
)


def _run(tmp_path, rows: list[dict]) -> dg.ExecuteInProcessResult:
    warehouse = tmp_path / "warehouse.duckdb"
    frame = pd.DataFrame(rows)

    @dg.asset(key=["marts", "user_features"])
    def features(warehouse: WarehouseResource) -> None:
        with warehouse.connect() as con:
            con.register("f", frame)
            con.execute("CREATE OR REPLACE TABLE marts.user_features AS SELECT * FROM f")

    @dg.asset(deps=[features])
    def propensity_scores() -> None:
        """Stands in for every model and segment downstream of the features."""

    gate = build_gate(suite, dg.AssetKey(["marts", "user_features"]), blocking=True)
    return dg.materialize(
        [features, gate, propensity_scores],
        raise_on_error=False,
        resources={"warehouse": WarehouseResource(path=str(warehouse))},
    )


def _materialized(result) -> set[str]:
    return {e.materialization.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_clean_features_pass_the_gate_and_downstream_runs(tmp_path):
    result = _run(tmp_path, [GOOD_ROW, {**GOOD_ROW, "person_id": "p_0000000000000002"}])
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    failures = evaluation.metadata["failures"]
    assert failures.records == [] and [c.name for c in failures.schema.columns] == [
        "expectation",
        "column",
        "unexpected",
        "examples",
    ]
    assert "propensity_scores" in _materialized(result)
    assert (tmp_path / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()


@pytest.mark.parametrize(
    "corruption, expectation, column, unexpected, example, shown",
    [
        ({"monetary_total": -50.0}, "expect_column_values_to_be_between", "monetary_total", 1, "-50.0", True),
        # A person id is an identifier: the failure is named and counted, the value never shown or stored.
        (
            {"person_id": "p_0000000000000001"},
            "expect_compound_columns_to_be_unique",
            None,
            2,
            "p_0000000000000001",
            False,
        ),
        (
            {"preferred_daypart": "lunchtime"},
            "expect_column_values_to_be_in_set",
            "preferred_daypart",
            1,
            "lunchtime",
            True,
        ),
    ],
)
def test_corrupted_features_fail_the_gate_and_downstream_is_skipped(
    tmp_path, corruption, expectation, column, unexpected, example, shown
):
    result = _run(tmp_path, [GOOD_ROW, {**GOOD_ROW, "person_id": "p_0000000000000002", **corruption}])
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["expectations_failed"].value >= 1
    failures = evaluation.metadata["failures"]
    assert {c.name: c.type for c in failures.schema.columns} == {
        "expectation": "string",
        "column": "string",
        "unexpected": "int",
        "examples": "string",
    }
    assert [r.data for r in failures.records] == [
        {"expectation": expectation, "column": column, "unexpected": unexpected, "examples": example if shown else ""}
    ]
    docs = "".join(p.read_text(errors="replace") for p in (tmp_path / "gx").rglob("*") if p.is_file())
    assert (example in docs) == shown
    assert _materialized(result) == {"marts/user_features"}, "the blocking gate must skip propensity_scores"
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert "propensity_scores" not in started
    assert any("great_expectations_gate" in step for step in failed)
    with connect(tmp_path / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT success FROM quality.gate_history").fetchall() == [(False,)]


def test_sampled_gate_compares_the_full_row_count_with_the_previous_run(tmp_path, monkeypatch):
    from expectations import raw_events

    monkeypatch.setattr(raw_events, "SAMPLE_ROWS", 1000)
    warehouse = tmp_path / "warehouse.duckdb"

    def run(rows: int) -> dg.AssetCheckEvaluation:
        @dg.asset(key=["raw", "events"])
        def events(warehouse: WarehouseResource) -> None:
            with warehouse.connect() as con:
                con.execute(f"""CREATE OR REPLACE TABLE raw.events AS
                    SELECT 'm' || i AS message_id, 'track' AS type, TIMESTAMP '2026-10-01' AS occurred_at,
                           'f' AS source_file, TIMESTAMP '2026-10-02' AS loaded_at FROM range({rows}) t(i)""")

        gate = build_gate(raw_events, dg.AssetKey(["raw", "events"]), blocking=False)
        result = dg.materialize([events, gate], resources={"warehouse": WarehouseResource(path=str(warehouse))})
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation

    first, steady, collapsed = run(10_000), run(12_000), run(3_000)
    assert first.passed and steady.passed
    assert first.metadata["rows"].value == 10_000 and 900 <= first.metadata["rows_validated"].value <= 1100
    assert not collapsed.passed
    assert [r.data for r in collapsed.metadata["failures"].records] == [
        {
            "expectation": "expect_table_row_count_to_be_between",
            "column": None,
            "unexpected": 3_000,
            "examples": "previous run had 12000 rows",
        }
    ]


def test_a_gate_reads_only_the_columns_its_suite_names():
    import great_expectations as gx

    from expectations.runner import columns_of

    e = gx.expectations
    assert columns_of(
        [
            e.ExpectColumnValuesToNotBeNull(column="a"),
            e.ExpectCompoundColumnsToBeUnique(column_list=["a", "b"]),
            e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="c", column_B="d"),
            e.ExpectTableRowCountToBeBetween(min_value=1),
        ]
    ) == ["a", "b", "c", "d"]
    assert "person_id" in columns_of(suite.expectations()) and "rfm_code" in columns_of(suite.expectations())
