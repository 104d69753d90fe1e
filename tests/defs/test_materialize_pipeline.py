"""The pipeline materialised through Dagster on generated data (real dbt, real DuckDB file),
checked against the generator's ground truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.defs.dbt.assets import dbt_after_identity_graph, dbt_before_identity_graph, dbt_daily_events
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
from orchestration.defs.identity.definitions import defs as identity_defs
from orchestration.defs.identity.evaluation import pairwise_scores, truth_as_identity_map
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.checks import quarantine_checks
from orchestration.defs.ingest.loaders.events import EVENT_TYPES
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.metadata import PERSONAL_COLUMN, PREVIEW_ROWS
from orchestration.defs.ml.assets import ml_assets
from orchestration.defs.partitions import all_days_tags
from orchestration.defs.privacy.assets import sweep_assets
from orchestration.defs.quality.checks import DRIFT_FEATURES, quality_checks
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib.settings import reload_settings
from orchestration.lib.warehouse import connect, table_fingerprint

pytestmark = pytest.mark.slow
# Up to features and their gates; the ML, segment and export chain is tested in test_segments_pipeline.py.
ALL_ASSETS = [
    *ingest_assets,
    *quarantine_checks,
    dbt_daily_events,
    dbt_before_identity_graph,
    dbt_after_identity_graph,
    *identity_defs.assets,
    *sweep_assets,
    *quality_checks,
]
# The assets alone, without the GX gates and dbt tests, for the tests that only compare tables; of
# them, what a new orders file changes.
ALL_CHECKS = dg.AssetSelection.all_asset_checks()
NO_CHECKS = dg.AssetSelection.all() - ALL_CHECKS
FROM_ORDERS = dg.AssetSelection.assets(["raw", "order_lines"]).downstream() - ALL_CHECKS


def _copy_warehouse(source: Path, target: Path) -> Path:
    """A copy of a closed warehouse file (and its write-ahead log, if one is left)."""
    for suffix in ("", ".wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target


def _materialize(landing, warehouse, selection=None):
    return dg.materialize(
        ALL_ASSETS,
        selection=selection,
        resources={
            "warehouse": WarehouseResource(path=str(warehouse)),
            "landing": LandingZoneResource(root=str(landing)),
            "dbt": dbt_domain_defs.resources["dbt"],
            "settings": SettingsResource.from_settings(reload_settings()),  # TESSERA_AS_OF, where a test sets it
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags=all_days_tags(),
    )


@pytest.fixture(scope="module")
def pipeline(sample, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("pipeline") / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_WAREHOUSE", str(warehouse))  # read by the dbt profile
        result = _materialize(sample.landing, warehouse)
    assert result.success
    return result, warehouse


def _identity_map(warehouse) -> pd.DataFrame:
    with connect(warehouse, read_only=True) as con:
        return con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").df()


def test_every_table_asset_shows_its_rows_schema_and_no_identifier_reaches_the_event_log(sample, pipeline):
    result, _ = pipeline
    metadata: dict[str, dict] = {}
    for e in result.get_asset_materialization_events():
        metadata.setdefault(e.materialization.asset_key.to_user_string(), {}).update(e.materialization.metadata)
    # A run over every day records each day's materialization of a partitioned table with its figures;
    # the preview and the column schema, the same for every day, go once into an observation.
    observations = [e.asset_observation_data.asset_observation for e in result.all_events if e.is_asset_observation]
    daily = [
        e for e in result.get_asset_materialization_events() if e.materialization.asset_key.path == ["raw", "events"]
    ]
    assert len(daily) > 1 and not any("preview" in e.materialization.metadata for e in daily)
    assert [o.asset_key.path for o in observations if "preview" in o.metadata].count(["raw", "events"]) == 1
    for observation in observations:
        metadata[observation.asset_key.to_user_string()].update(observation.metadata)
    # Every identifier, as sent and as a person id: none may reach the event log through a preview.
    personal = {
        r["identifier"].strip().lower() for r in sample.truth_rows("identifiers") if len(r["identifier"].strip()) > 5
    }
    personal |= set(_identity_map(pipeline[1])["person_id"])
    assert len(personal) > 1000
    for key, md in metadata.items():
        assert md["dagster/row_count"].value >= 0, key
        assert md["dagster/column_schema"].value.columns, key
    # Nowhere in the run's event log: no metadata value, check result or message names anyone.
    log = "\n".join(repr(event).lower() for event in result.all_events)
    leaked = sorted(p for p in personal if p in log)
    assert not leaked, [(e.event_type_value, e.step_key) for e in result.all_events if leaked[0] in repr(e).lower()]
    # Column descriptions from dbt YAML reach the materialised schema.
    schema = {c.name: c.description for c in metadata["marts/identity_map"]["dagster/column_schema"].value.columns}
    assert schema["person_id"] and schema["matched_by"]
    assert "_No preview: this table holds personal data._" in metadata["pii/person_contacts"]["preview"].value
    # A preview is a table of the first rows, without the columns that may hold personal data.
    events = metadata["raw/events"]
    preview, columns = events["preview"].value, [c.name for c in events["dagster/column_schema"].value.columns]
    shown = [c.name for c in preview.schema.columns]
    assert shown[:3] == ["type", "event", "occurred_at"]
    assert shown == [c for c in columns if not PERSONAL_COLUMN.search(c)]
    assert events["preview_columns_hidden"].value == len(columns) - len(shown) > 0
    assert len(preview.records) == PREVIEW_ROWS
    assert {r.data["type"] for r in preview.records} <= set(EVENT_TYPES)
    assert {c.name: c.type for c in preview.schema.columns}["type"] == "string"
    identity = metadata["intermediate/identity_assignments"]
    assert identity["persons_merged_since_previous_run"].value == 0  # the first run has no previous map
    assert identity["identifiers_per_person_distribution"].value.startswith("![identifiers per person](data:image/png")


def test_ingest_and_staging_metadata_and_checks(sample, pipeline):
    result, warehouse = pipeline
    materializations = [e.materialization for e in result.get_asset_materialization_events()]
    metadata = {m.asset_key.to_user_string(): m.metadata for m in materializations}
    events_md = metadata["raw/events"]
    with connect(warehouse, read_only=True) as con:
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine WHERE source = 'events'").fetchone()[0]
        by_reason = con.execute(
            "SELECT reason_code, count(*) FROM raw.quarantine WHERE source = 'events' GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
        raw_events = con.execute("SELECT count(*) FROM raw.events").fetchone()[0]
        staged = con.execute("SELECT count(*) FROM intermediate.int_segment__events").fetchone()[0]
    assert events_md["rows_quarantined"].value == quarantined > 0
    assert events_md["rows_deduplicated"].value == sample.summary["counts"]["duplicate_messages"]
    quarantine_by_reason = events_md["quarantine_by_reason"].value
    assert [(r.data["reason"], r.data["rows"]) for r in quarantine_by_reason.records] == by_reason
    assert "invalid_json" in dict(by_reason)
    assert events_md["dagster/row_count"].value == raw_events == staged
    assert {
        "staging/stg_segment__events",
        "intermediate/int_segment__events",
        "staging/stg_crm__customers",
        "staging/stg_commerce__order_lines",
        "staging/stg_enrichment__firmographics",
        "staging/stg_privacy__erasure_requests",
        "marts/identity_map",
        "marts/profiles",
        "intermediate/identity_assignments",
    } <= set(metadata)
    checks = result.get_asset_check_evaluations()
    dbt_checks = [c for c in checks if c.asset_key.path[0] in ("staging", "intermediate", "marts")]
    assert len(dbt_checks) >= 25 and all(c.passed for c in dbt_checks)
    gates = {c.asset_key.to_user_string(): c.passed for c in checks if c.check_name == "great_expectations_gate"}
    assert gates == {
        "raw/events": True,
        "intermediate/int_segment__events": True,
        "marts/identity_map": True,
        "marts/user_features": True,
    }
    # The first run has no previous profile to compare with: the drift check lists the features alone.
    (drift,) = [c for c in checks if c.check_name == "feature_drift"]
    profile = drift.metadata["profile"].value
    assert drift.metadata["compared_with_previous"].value is False
    assert [r.data["feature"] for r in profile.records] == DRIFT_FEATURES
    assert all(
        r.data["previous mean"] is None and r.data["previous p95"] is None and isinstance(r.data["mean"], float)
        for r in profile.records
    )
    quarantine_results = {c.asset_key.to_user_string() for c in checks if c.check_name == "quarantine_share_below_5pct"}
    assert quarantine_results == {
        "raw/events",
        "raw/crm_customers",
        "raw/order_lines",
        "raw/firmographics",
        "raw/erasure_requests",
    }


def test_identity_meets_the_design_bars_against_ground_truth(sample, pipeline):
    _, warehouse = pipeline
    truth = truth_as_identity_map(pd.DataFrame(sample.truth_rows("identifiers")))
    scores = pairwise_scores(_identity_map(warehouse), truth)
    linkable = pairwise_scores(_identity_map(warehouse), truth[truth["linkable"] == "True"])
    assert scores["precision"] >= 0.99, scores
    assert linkable["recall"] >= 0.97, linkable


def test_shared_tablets_do_not_merge_their_two_people(sample, pipeline):
    _, warehouse = pipeline
    person = {(t, i): p for t, i, p in _identity_map(warehouse).itertuples(index=False)}
    truth = pd.DataFrame(sample.truth_rows("identifiers"))
    user_of = {r.person_key: r.identifier for r in truth[truth.identifier_type == "user_id"].itertuples()}
    shared = truth[truth.shared_device == "True"]
    assert len(shared)
    for row in shared.itertuples():
        a, b = row.shared_by.split("|")
        assert person[("user_id", user_of[a])] != person[("user_id", user_of[b])]


def test_crm_duplicates_merge_and_namesakes_stay_apart(sample, pipeline):
    _, warehouse = pipeline
    ids = _identity_map(warehouse)
    truth = pd.DataFrame(sample.truth_rows("identifiers"))
    customers = truth[(truth.identifier_type == "customer_id") & (truth.linkable == "True")].merge(
        ids, on=["identifier_type", "identifier"]
    )
    per_person = customers.groupby("person_key")["person_id"].agg(["size", "nunique"])
    duplicates = per_person[per_person["size"] > 1]
    assert len(duplicates) > 0 and (duplicates["nunique"] == 1).all()
    with connect(warehouse, read_only=True) as con:
        names = con.execute(
            "SELECT customer_id AS identifier, first_name, last_name FROM staging.stg_crm__customers"
        ).df()
    named = names.merge(customers, on="identifier")
    groups = named.groupby(["first_name", "last_name"]).agg(
        truths=("person_key", "nunique"), persons=("person_id", "nunique")
    )
    namesakes = groups[groups.truths > 1]
    assert len(namesakes) > 0 and (namesakes.persons == namesakes.truths).all()


def test_guest_orders_attach_by_email(sample, pipeline):
    _, warehouse = pipeline
    with connect(warehouse, read_only=True) as con:
        unattached = con.execute("""
            SELECT count(*) FROM staging.stg_commerce__order_lines o
            LEFT JOIN marts.identity_map m ON m.identifier_type = 'email_sha256' AND m.identifier = sha256(o.email_normalised)
            WHERE o.customer_id IS NULL AND m.person_id IS NULL
        """).fetchone()[0]
        guests = con.execute(
            "SELECT count(*) FROM staging.stg_commerce__order_lines WHERE customer_id IS NULL"
        ).fetchone()[0]
    assert guests > 0 and unattached == 0


def test_rerun_gives_the_same_person_ids(sample, pipeline, monkeypatch):
    _, warehouse = pipeline
    with connect(warehouse, read_only=True) as con:
        before = table_fingerprint(con, "marts.identity_map")
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(warehouse))
    again = _materialize(sample.landing, warehouse, selection=dg.AssetSelection.groups("identity"))
    assert again.success
    with connect(warehouse, read_only=True) as con:
        assert table_fingerprint(con, "marts.identity_map") == before


def test_definitions_load_with_lineage_from_ingest_to_identity():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["staging", "stg_segment__events"])).parent_keys == {dg.AssetKey(["raw", "events"])}
    assert graph.get(dg.AssetKey(["intermediate", "int_segment__events"])).parent_keys == {
        dg.AssetKey(["staging", "stg_segment__events"]),
        dg.AssetKey(["staging", "stg_segment__user_agents"]),
    }
    # erasure sweeps the identity graph's output before dbt reads it
    sweep = dg.AssetKey(["privacy", "erasure_sweep"])
    assert graph.get(dg.AssetKey(["staging", "stg_identity_graph__assignments"])).parent_keys == {sweep}
    assert dg.AssetKey(["intermediate", "identity_assignments"]) in graph.get(sweep).parent_keys
    assert all(graph.get(k).owners for k in graph.get_all_asset_keys())
    assert defs.resolve_job_def("materialize_all") is not None


def test_events_and_orders_after_as_of_change_no_feature(sample, pipeline, tmp_path, monkeypatch):
    """Future activity of already-known people must not reach features as of an earlier date."""
    import json

    landing = tmp_path / "landing"
    shutil.copytree(sample.landing, landing)
    as_of = "2026-10-15"
    monkeypatch.setenv("TESSERA_AS_OF", as_of)
    warehouse = _copy_warehouse(pipeline[1], tmp_path / "warehouse.duckdb")
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(warehouse))

    def features(selection):
        assert _materialize(landing, warehouse, selection).success
        with connect(warehouse, read_only=True) as con:
            rows = con.execute(f"SELECT count(*) FROM marts.user_features WHERE as_of = DATE '{as_of}'").fetchone()[0]
            return rows, table_fingerprint(con, f"(SELECT * FROM marts.user_features WHERE as_of = DATE '{as_of}')")

    # The module's warehouse, its features rebuilt as of the earlier date.
    before = features(dg.AssetSelection.assets(["intermediate", "int_feature_dates"]).downstream() - ALL_CHECKS)
    # Replay known messages (same ids on the same message, so no new identity evidence) after as_of.
    with connect(warehouse, read_only=True) as con:
        known = con.execute("""
            SELECT message_id, type, event, name, user_id, anonymous_id, properties, context
            FROM raw.events WHERE type = 'track' AND occurred_at < DATE '2026-10-01' LIMIT 300""").fetchall()
        order = con.execute("SELECT customer_id FROM raw.order_lines WHERE customer_id IS NOT NULL LIMIT 1").fetchone()[
            0
        ]
    lines = []
    for i, (_mid, mtype, event, _name, uid, aid, props, ctx) in enumerate(known):
        lines.append(
            json.dumps(
                {
                    "messageId": f"future-{i}",
                    "type": mtype,
                    "event": event,
                    "userId": uid,
                    "anonymousId": aid,
                    "timestamp": "2026-10-25T12:00:00Z",
                    "receivedAt": "2026-10-25T12:00:01Z",
                    "properties": json.loads(props or "{}"),
                    "context": json.loads(ctx or "{}"),
                }
            )
        )
    (landing / "events" / "zz-future.jsonl").write_text("\n".join(lines) + "\n")
    (landing / "orders" / "zz-future.csv").write_text(
        "order_id,customer_id,email,ordered_at,amount,currency,status,channel\n"
        f"FUTURE-1,{order},,2026-10-20T10:00:00Z,500.00,USD,completed,web\n"
    )
    after = features(NO_CHECKS)  # a rerun of everything over the grown landing zone
    with connect(warehouse, read_only=True) as con:  # the future activity did reach the warehouse
        assert con.execute("SELECT count(*) FROM raw.events WHERE message_id LIKE 'future-%'").fetchone()[0] == len(
            lines
        )
        assert con.execute("SELECT count(*) FROM raw.order_lines WHERE order_id = 'FUTURE-1'").fetchone()[0] == 1
    assert before[0] > 0
    assert after == before


def test_models_are_trained_registered_and_score_every_person(pipeline, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    _, warehouse = pipeline
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = dg.materialize(
        ml_assets,
        resources={
            "warehouse": WarehouseResource(path=str(warehouse)),
            "settings": SettingsResource.from_settings(reload_settings()),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    with connect(warehouse, read_only=True) as con:
        persons = con.execute("""SELECT count(*) FROM marts.user_features f JOIN intermediate.int_feature_dates d
                                 ON d.as_of = f.as_of AND d.purpose = 'scoring'""").fetchone()[0]
        clusters = con.execute("SELECT * FROM marts.cluster_assignments").df()
        scores = con.execute("SELECT * FROM marts.propensity_scores").df()
        values = con.execute("SELECT * FROM marts.customer_lifetime_values").df()
        buyers = con.execute("""SELECT count(*) FROM marts.user_features f JOIN intermediate.int_feature_dates d
                                ON d.as_of = f.as_of AND d.purpose = 'scoring' WHERE f.frequency_orders > 0""").fetchone()[
            0
        ]
    # Lifetime value: one row per buyer; P(alive) is a probability, and a buyer expects more in 12 months than in 30 days.
    assert len(values) == values["person_id"].nunique() == buyers > 0
    assert values["p_alive"].between(0, 1).all() and (values["expected_value_12m"] >= 0).all()
    assert (values["expected_purchases_12m"] >= values["expected_purchases_30d"]).all()
    assert len(clusters) == clusters["person_id"].nunique() == persons > 0
    assert len(scores) == scores["person_id"].nunique() == persons
    assert set(scores["model_name"]) == {"purchase_30d"} and scores["score"].between(0, 1).all()
    assert clusters["cluster_name"].str.len().min() > 3 and clusters["cluster_id"].nunique() >= 3
    client = MlflowClient()
    for name in ("tessera_clustering", "tessera_purchase_30d", "tessera_clv"):
        champion = client.get_model_version_by_alias(name, "champion")
        assert client.get_run(champion.run_id).data.tags["dagster.run_id"] == result.run_id
    metadata = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert metadata["ml/purchase_30d_model"]["promoted"].value is True
    assert metadata["marts/propensity_scores"]["dagster/row_count"].value == persons


def test_an_order_inside_the_label_window_changes_the_label_and_no_training_feature(
    sample, pipeline, tmp_path, monkeypatch
):
    """No leakage: what happens after the training cutoff reaches its label, never its features."""
    landing = tmp_path / "landing"
    shutil.copytree(sample.landing, landing)
    with connect(pipeline[1], read_only=True) as con:  # the module's run over the same landing files
        cutoff = con.execute(
            "SELECT as_of FROM intermediate.int_feature_dates WHERE purpose = 'training_cutoff'"
        ).fetchone()[0]
        earlier = f"(SELECT * FROM marts.user_features WHERE as_of <= DATE '{cutoff}')"
        features_before = table_fingerprint(con, earlier)
        customer, person = con.execute(
            """
            SELECT m.identifier, m.person_id FROM marts.identity_map m
            JOIN marts.purchase_labels l ON l.person_id = m.person_id AND l.as_of = ?
            WHERE m.identifier_type = 'customer_id' ORDER BY m.identifier LIMIT 1""",
            [cutoff],
        ).fetchone()
        labels_before = con.execute(
            "SELECT orders_in_window FROM marts.purchase_labels WHERE person_id = ? AND as_of = ?", [person, cutoff]
        ).fetchone()[0]
    ordered_at = (pd.Timestamp(cutoff) + pd.Timedelta(days=5, hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (landing / "orders" / "zz-in-window.csv").write_text(
        "order_id,customer_id,email,ordered_at,amount,currency,status,channel\n"
        f"IN-WINDOW-1,{customer},,{ordered_at},80.00,USD,completed,web\n"
    )
    # The module's warehouse gains the order: the run rebuilds what the orders feed, as a run after a
    # new orders file would, and leaves the events as they are.
    after = _copy_warehouse(pipeline[1], tmp_path / "after.duckdb")
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(after))
    assert _materialize(landing, after, FROM_ORDERS).success
    with connect(after, read_only=True) as con:
        assert table_fingerprint(con, earlier) == features_before
        labels_after = con.execute(
            "SELECT orders_in_window FROM marts.purchase_labels WHERE person_id = ? AND as_of = ?", [person, cutoff]
        ).fetchone()[0]
    assert labels_after == labels_before + 1
