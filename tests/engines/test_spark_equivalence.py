"""The whole Dagster pipeline (ingestion, identity graph, dbt models, GX gates, ML, erasures, segments)
with TESSERA_ENGINE=duckdb and with TESSERA_ENGINE=spark, on a real Spark standalone cluster (Thrift),
over the same generated data, must give the same results: identity_map as a partition of identifiers,
user_features to a tolerance, the segment attributes row for row, the same segment membership and the
same model scores. The Spark run resolves the identity graph in several batches of connected components
computed on the cluster. Also checks that a daily incremental run on Spark (days emptied by dropping
their partitions, then appended) leaves int_segment__events equal to DuckDB's.

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
from orchestration.defs.identity import assets as identity_assets
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
    """One Dagster run per engine, each with its own warehouse file, lake and MLflow store."""
    root = tmp_path_factory.mktemp("engines")
    landing = root / "landing"
    shutil.copytree(sample.landing, landing)
    runs = {}
    for engine in ("duckdb", "spark"):
        warehouse = root / f"{engine}.duckdb"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TESSERA_ENGINE", engine)
            mp.setenv("TESSERA_WAREHOUSE", str(warehouse))
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / f'mlflow-{engine}.db'}")
            mp.setenv("TESSERA_LAKE_DIR", str(root / "lake"))
            mp.setenv("TESSERA_EXPORTS_DIR", str(root / f"exports-{engine}"))
            # About 1,500 identifiers: the Spark run resolves them in several batches.
            mp.setattr(identity_assets, "BATCH_IDENTIFIERS", 400)
            # The GX gates on DuckDB are tested elsewhere; on Spark they read the mirrored views. dbt's
            # data tests (not_null, unique, accepted_values) are left out: a second each on Spark.
            run_pipeline(
                landing, warehouse, with_checks=engine == "spark", with_ml=True, with_privacy=True, dbt_tests=False
            )
        runs[engine] = warehouse
    as_of = _duckdb(runs["duckdb"], "select max(as_of) as as_of from marts.user_features")["as_of"][0]
    yield {
        "warehouse": runs["duckdb"],
        "spark_run": runs["spark"],
        "vars": json.dumps({"tessera__as_of": str(as_of)[:10]}),
        "mlflow": root / "mlflow-spark.db",
    }


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
            np.testing.assert_allclose(
                a.to_numpy(), b.to_numpy(), rtol=rtol, atol=1e-9, equal_nan=True, err_msg=f"column {column}"
            )
        elif pd.api.types.is_datetime64_any_dtype(a) or pd.api.types.is_datetime64_any_dtype(b):
            pd.testing.assert_series_equal(
                pd.to_datetime(a).astype("datetime64[ns]"),
                pd.to_datetime(b).astype("datetime64[ns]"),
                check_names=False,
                obj=f"column {column}",
            )
        else:
            norm = lambda s: s.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))  # noqa: E731
            mismatched = (norm(a) != norm(b)) & ~(norm(a).isna() & norm(b).isna())
            assert not mismatched.any(), (
                f"column {column}: {left.loc[mismatched, column].head().tolist()} "
                f"vs {right.loc[mismatched, column].head().tolist()}"
            )


def test_the_spark_run_keeps_the_dbt_models_on_spark_and_python_results_in_the_engine(engines):
    with connect(engines["spark_run"], read_only=True) as con:
        kinds = dict(
            con.execute(
                "select table_schema || '.' || table_name, table_type from information_schema.tables "
                "where table_schema in ('intermediate', 'marts')"
            ).fetchall()
        )
    # dbt's tables are views over Spark's Parquet files; what Python writes stays a table.
    assert kinds["marts.user_features"] == kinds["intermediate.int_segment__events"] == "VIEW"
    assert kinds["intermediate.identity_assignments"] == kinds["marts.segment_membership"] == "BASE TABLE"
    # The scores written back are registered in Spark, where dbt read them for the segment attributes.
    left, right = _both(engines, "select person_id, score from marts.propensity_scores", ["person_id"])
    _assert_frames_match(left, right)


def test_scores_and_segment_membership_are_the_same_on_both_engines(engines):
    sql = "select segment_name, person_id from marts.segment_membership"
    duck, spark_run = _duckdb(engines["warehouse"], sql), _duckdb(engines["spark_run"], sql)
    assert len(duck) > 0 and duck["segment_name"].nunique() > 3
    assert set(map(tuple, duck.to_numpy())) == set(map(tuple, spark_run.to_numpy()))
    for table in ("marts.cluster_assignments", "marts.propensity_scores"):
        columns = "person_id, cluster_id, cluster_name" if "cluster" in table else "person_id, score"
        left = _duckdb(engines["warehouse"], f"select {columns} from {table} order by person_id")
        right = _duckdb(engines["spark_run"], f"select {columns} from {table} order by person_id")
        _assert_frames_match(left, right)
    sql = "select person_id, rank, item_id, reason from marts.recommendations"
    duck, spark_run = _duckdb(engines["warehouse"], sql), _duckdb(engines["spark_run"], sql)
    assert len(duck) > 0 and set(map(tuple, duck.to_numpy())) == set(map(tuple, spark_run.to_numpy()))


def test_the_spark_run_tags_its_models_with_the_engine(engines):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{engines['mlflow']}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and {r.data.tags.get("tessera.engine") for r in runs} == {"spark"}


def test_erasures_reach_the_tables_on_spark(engines):
    from orchestration.defs.privacy.erasure import remaining_traces

    with connect(engines["spark_run"], read_only=True) as con:
        suppressed = con.execute("select count(*) from privacy.suppression_list").fetchone()[0]
        traces = remaining_traces(con, include_views=True)
    assert suppressed > 0
    assert traces == {}


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
    last_day = _duckdb(engines["warehouse"], "select max(event_date) as d from intermediate.int_segment__events")["d"][
        0
    ]
    window = json.dumps(
        {**json.loads(engines["vars"]), "tessera__partition_start": str(last_day)[:10], "tessera__partition_end": ""}
    )
    spark.dbt_on_spark(
        engines["warehouse"], ["run", "--select", "int_segment__events", "--vars", window], publish=False
    )
    sql = (
        "select event_date, count(*) as events, count(distinct message_id) as messages "
        "from intermediate.int_segment__events group by event_date"
    )
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
    nodes = _duckdb(
        engines["warehouse"],
        "select identifier_type || ':' || identifier as node from intermediate.int_identity__nodes",
    )
    edges = _duckdb(
        engines["warehouse"],
        "select left_type || ':' || left_id as a, right_type || ':' || right_id as b "
        "from intermediate.int_identity__edges",
    )
    index = {node: i for i, node in enumerate(sorted(set(nodes["node"]) | set(edges["a"]) | set(edges["b"])))}
    graph = sp.coo_matrix(
        (np.ones(len(edges)), ([index[a] for a in edges["a"]], [index[b] for b in edges["b"]])),
        shape=(len(index), len(index)),
    )
    count, labels = scipy_components(graph, directed=False)
    expected: dict[int, set] = {}
    for node, label in zip(index, labels, strict=True):
        expected.setdefault(label, set()).add(node)

    assert result.nodes == len(index) and result.components == count
    assert result.components < result.nodes  # the graph has real merges, not only singletons
    assert {frozenset(g) for _, g in on_spark.groupby("component")["node"]} == {frozenset(s) for s in expected.values()}
    # Each component is named by its smallest member, so the labels do not depend on the order of rounds.
    assert (on_spark.groupby("component")["node"].min() == on_spark.groupby("component")["node"].min().index).all()


def test_ml_samples_and_scoring_chunks_pick_the_same_persons_on_both_engines(engines):
    from orchestration.defs.ml.assets import _hash_range

    sql = f"select f.person_id, f.as_of from marts.user_features f where {_hash_range(0.2, 0.7)}"
    left, right = _both(engines, sql, ["person_id", "as_of"])
    total = _duckdb(engines["warehouse"], "select count(*) as n from marts.user_features")["n"][0]
    assert 0.4 * total < len(left) < 0.6 * total
    _assert_frames_match(left, right)
