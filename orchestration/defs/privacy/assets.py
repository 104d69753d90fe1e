"""Erasure requests applied across the warehouse and the exports, and a check that no trace is left."""

import dagster as dg
import pandas as pd

from orchestration.defs.dbt.assets import rebuild_after_erasure
from orchestration.defs.exports.audiences import export_traces, scrub_audiences
from orchestration.defs.metadata import table_metadata
from orchestration.defs.privacy.erasure import process_erasures, remaining_traces
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.settings import load_settings

OWNER = "team:privacy"
ERASURE_LOG = dg.AssetKey(["privacy", "erasure_log"])


@dg.asset(
    key=ERASURE_LOG,
    # After every table that holds person rows, before membership and exports read them.
    deps=[dg.AssetKey(["raw", "erasure_requests"]), dg.AssetKey(["marts", "identity_map"]),
          dg.AssetKey(["marts", "segment_attributes"]), dg.AssetKey(["marts", "propensity_scores"]),
          dg.AssetKey(["marts", "cluster_assignments"])],
    group_name="segments", owners=[OWNER], kinds={"duckdb", "python"}, pool="duckdb",
    description="Applies erasure requests (privacy/ folder): each resolves through marts.identity_map to a person, "
                "whose identifiers join privacy.suppression_list as SHA-256 hashes, and whose rows leave every "
                "raw, pii, intermediate and marts table (membership history included) and every audience export, "
                "before this run's membership is built; the dbt models are then rebuilt from the scrubbed sources, so "
                "no decile or quintile still counts the person. Later data for the person is dropped at ingestion. "
                "The log keeps hashes only.",
)
def erasure_log(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    exports_dir = load_settings().exports_dir
    with warehouse.connect() as con:
        report = process_erasures(con, scrub_exports=lambda c: scrub_audiences(c, exports_dir))
        metadata = table_metadata(con, "privacy.erasure_log")
    if any(report.rows_removed.values()):
        context.log.info(f"Rebuilding the dbt models on {warehouse.engine} from the scrubbed sources")
        rebuild_after_erasure(warehouse)
    removed = pd.DataFrame(sorted(((t, n) for t, n in report.rows_removed.items() if n), key=lambda r: -r[1]),
                           columns=["table", "rows removed"])
    context.log.info(f"{report.requests} erasure requests: {report.erased} erased now, {report.already_erased} "
                     f"earlier, {report.not_found} not found; {report.total_rows_removed:,} rows removed")
    return dg.MaterializeResult(metadata={
        **metadata, "requests": report.requests, "erased_now": report.erased, "already_erased": report.already_erased,
        "not_found": report.not_found, "persons_erased_now": report.persons,
        "identifiers_suppressed_now": report.identifiers_suppressed,
        "rows_removed": sum(report.rows_removed.values()), "export_rows_removed": report.export_rows_removed,
        "rows_removed_by_table": dg.MetadataValue.md(removed.to_markdown(index=False) if len(removed) else "none"),
    })


@dg.asset_check(asset=ERASURE_LOG, blocking=True, pool="duckdb",
                description="No table and no export holds a row of an erased person (by any hashed identifier).")
def no_trace_of_erased_persons(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    exports_dir = load_settings().exports_dir
    with warehouse.connect() as con:
        traces = remaining_traces(con, lambda c: export_traces(c, exports_dir), include_views=warehouse.on_spark)
    return dg.AssetCheckResult(
        passed=not traces,
        description="No trace left." if not traces else
        "Rows of erased persons remain: " + ", ".join(f"{t} ({n})" for t, n in traces.items()),
        metadata={"tables_with_traces": len(traces), "rows_left": sum(traces.values())})


privacy_assets = [erasure_log]
privacy_checks = [no_trace_of_erased_persons]
