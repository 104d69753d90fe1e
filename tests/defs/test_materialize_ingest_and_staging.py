"""Ingestion and staging materialised through Dagster (real dbt, real DuckDB file)."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration.defs.dbt.assets import tessera_dbt_models
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.checks import quarantine_checks
from orchestration.defs.resources import LandingZoneResource, WarehouseResource
from orchestration.lib.warehouse import connect

pytestmark = pytest.mark.slow


def test_ingest_and_staging_materialise_with_lineage_metadata_and_passing_checks(sample, tmp_path, monkeypatch):
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(warehouse))  # read by the dbt profile
    result = dg.materialize(
        [*ingest_assets, *quarantine_checks, tessera_dbt_models],
        resources={
            "warehouse": WarehouseResource(path=str(warehouse)),
            "landing": LandingZoneResource(root=str(sample.landing)),
            "dbt": dbt_domain_defs.resources["dbt"],
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success

    materializations = [e.materialization for e in result.get_asset_materialization_events()]
    metadata = {m.asset_key.to_user_string(): m.metadata for m in materializations}
    events_md = metadata["raw/events"]
    with connect(warehouse, read_only=True) as con:
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine WHERE source = 'events'").fetchone()[0]
        raw_events = con.execute("SELECT count(*) FROM raw.events").fetchone()[0]
        staged = con.execute("SELECT count(*) FROM staging.stg_segment__events").fetchone()[0]
    assert events_md["rows_quarantined"].value == quarantined > 0
    assert events_md["rows_deduplicated"].value == sample.summary["counts"]["duplicate_messages"]
    assert "invalid_json" in events_md["quarantine_by_reason"].value
    assert events_md["dagster/row_count"].value == raw_events == staged
    assert {"staging/stg_segment__events", "staging/stg_crm__customers", "staging/stg_commerce__order_lines",
            "staging/stg_enrichment__firmographics", "staging/stg_privacy__erasure_requests"} <= set(metadata)

    checks = result.get_asset_check_evaluations()
    dbt_checks = [c for c in checks if c.asset_key.path[0] == "staging"]
    assert len(dbt_checks) >= 15 and all(c.passed for c in dbt_checks)
    quarantine_results = {c.asset_key.to_user_string(): c for c in checks if c.check_name == "quarantine_share_below_5pct"}
    assert set(quarantine_results) == {"raw/events", "raw/crm_customers", "raw/order_lines", "raw/firmographics",
                                       "raw/erasure_requests"}


def test_definitions_load_with_lineage_from_ingest_to_staging():
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    stg = graph.get(dg.AssetKey(["staging", "stg_segment__events"]))
    assert stg.parent_keys == {dg.AssetKey(["raw", "events"])}
    assert all(graph.get(k).owners for k in graph.get_all_asset_keys())
    assert defs.resolve_job_def("materialize_all") is not None
