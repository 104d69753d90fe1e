"""The same dbt project on DuckDB and on a real Spark standalone cluster (Thrift), over the same
generated data, must give the same marts: identity_map as a partition of identifiers, user_features
to a tolerance, the segment attributes row for row. Also checks that a daily incremental run on
Spark (days emptied by dropping their partitions, then appended) leaves int_segment__events equal
to DuckDB's.

The cluster is started with `tessera services up spark` (as `make services-up` does) unless it is
already running, and stopped again only if this test started it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from benchmarks._pipeline import run_pipeline
from orchestration import services
from orchestration.lib import spark
from orchestration.lib.warehouse import connect

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def spark_cluster():
    started = services.up(["spark"])
    yield
    services.down(started)


@pytest.fixture(scope="module")
def engines(sample, spark_cluster, tmp_path_factory):
    """DuckDB through the real Dagster pipeline (with ML); then Spark from the same sources."""
    root = tmp_path_factory.mktemp("engines")
    landing, warehouse = root / "landing", root / "warehouse.duckdb"
    shutil.copytree(sample.landing, landing)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_WAREHOUSE", str(warehouse))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("TESSERA_LAKE_DIR", str(root / "lake"))
        run_pipeline(landing, warehouse, with_ml=True)
        as_of = _duckdb(warehouse, "select max(as_of) as as_of from marts.user_features")["as_of"][0]
        dbt_vars = json.dumps({"as_of": str(as_of)[:10]})
        spark.dbt_on_spark(warehouse, ["build", "--full-refresh", "--exclude", "test_type:unit", "--vars", dbt_vars])
        yield {"warehouse": warehouse, "vars": dbt_vars}


def _duckdb(warehouse, sql: str) -> pd.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return con.execute(sql).df()


def _spark(sql: str) -> pd.DataFrame:
    with spark.connect() as cursor:
        return spark.read_frame(cursor, sql)


def _both(engines, sql: str, key: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    left = _duckdb(engines["warehouse"], sql).sort_values(key).reset_index(drop=True)
    right = _spark(sql).sort_values(key).reset_index(drop=True)
    return left, right


def _assert_frames_match(left: pd.DataFrame, right: pd.DataFrame, rtol: float = 1e-9) -> None:
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right) > 0
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_numeric_dtype(a) or pd.api.types.is_numeric_dtype(b):
            a, b = pd.to_numeric(a, errors="coerce").astype(float), pd.to_numeric(b, errors="coerce").astype(float)
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=rtol, atol=1e-9, equal_nan=True,
                                       err_msg=f"column {column}")
        elif pd.api.types.is_datetime64_any_dtype(a) or pd.api.types.is_datetime64_any_dtype(b):
            pd.testing.assert_series_equal(pd.to_datetime(a).astype("datetime64[ns]"),
                                           pd.to_datetime(b).astype("datetime64[ns]"), check_names=False,
                                           obj=f"column {column}")
        else:
            norm = lambda s: s.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))  # noqa: E731
            mismatched = (norm(a) != norm(b)) & ~(norm(a).isna() & norm(b).isna())
            assert not mismatched.any(), f"column {column}: {left.loc[mismatched, column].head().tolist()} " \
                                         f"vs {right.loc[mismatched, column].head().tolist()}"


def test_identity_map_is_the_same_partition_of_identifiers(engines):
    sql = "select person_id, identifier_type, identifier from marts.identity_map"
    left, right = _both(engines, sql, ["identifier_type", "identifier"])

    def partition(frame: pd.DataFrame) -> set[frozenset]:
        keys = frame["identifier_type"] + ":" + frame["identifier"]
        return {frozenset(group) for _, group in keys.groupby(frame["person_id"])}

    assert len(left) == len(right) > 0
    assert partition(left) == partition(right)


def test_user_features_match_within_tolerance(engines):
    columns = _duckdb(engines["warehouse"], "select * from marts.user_features limit 0").columns
    sql = f"select {', '.join(columns)} from marts.user_features"
    left, right = _both(engines, sql, ["person_as_of_key"])
    _assert_frames_match(left, right, rtol=1e-6)


def test_segment_attributes_match_row_for_row(engines):
    columns = _duckdb(engines["warehouse"], "select * from marts.segment_attributes limit 0").columns
    sql = f"select {', '.join(columns)} from marts.segment_attributes"
    left, right = _both(engines, sql, ["person_id"])
    _assert_frames_match(left, right, rtol=1e-6)


def test_a_daily_incremental_run_on_spark_keeps_the_events_equal(engines):
    last_day = _duckdb(engines["warehouse"], "select max(event_date) as d from intermediate.int_segment__events")["d"][0]
    window = json.dumps({**json.loads(engines["vars"]), "partition_start": str(last_day)[:10], "partition_end": ""})
    spark.dbt_on_spark(engines["warehouse"], ["run", "--select", "int_segment__events", "--vars", window])
    sql = "select event_date, count(*) as events, count(distinct message_id) as messages " \
          "from intermediate.int_segment__events group by event_date"
    left, right = _both(engines, sql, ["event_date"])
    _assert_frames_match(left, right)
    assert (right["events"] == right["messages"]).all()


def test_connected_components_on_spark_equal_scipy_on_the_duckdb_graph(engines):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components as scipy_components

    from orchestration.defs.identity.spark_components import connected_components

    with spark.connect() as cursor:
        result = connected_components(cursor)
        on_spark = spark.read_frame(cursor, f"select node, component from {result.table}")
    nodes = _duckdb(engines["warehouse"], "select identifier_type || ':' || identifier as node "
                                          "from intermediate.int_identity__nodes")
    edges = _duckdb(engines["warehouse"], "select left_type || ':' || left_id as a, right_type || ':' || right_id as b "
                                          "from intermediate.int_identity__edges")
    index = {node: i for i, node in enumerate(sorted(set(nodes["node"]) | set(edges["a"]) | set(edges["b"])))}
    graph = sp.coo_matrix((np.ones(len(edges)), ([index[a] for a in edges["a"]], [index[b] for b in edges["b"]])),
                          shape=(len(index), len(index)))
    count, labels = scipy_components(graph, directed=False)
    expected: dict[int, set] = {}
    for node, label in zip(index, labels):
        expected.setdefault(label, set()).add(node)

    assert result.nodes == len(index) and result.components == count
    assert result.components < result.nodes  # the graph has real merges, not only singletons
    assert {frozenset(g) for _, g in on_spark.groupby("component")["node"]} == {frozenset(s) for s in expected.values()}
    # Each component is named by its smallest member, so the labels do not depend on the order of rounds.
    assert (on_spark.groupby("component")["node"].min() == on_spark.groupby("component")["node"].min().index).all()
