"""One ingestion asset per landing folder: files -> raw.<table>, rejects -> raw.quarantine.

Events are partitioned by day (orchestration/defs/partitions.py); the other sources are small
snapshots, read whole on every run.
"""

import dagster as dg
import pandas as pd

from orchestration.defs.ingest.loaders import CSV_SOURCES, load_source
from orchestration.defs.ingest.loaders.common import LoadReport
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.metadata import frame_table, per_partition, table_metadata
from orchestration.defs.partitions import IncrementalConfig, daily_event_partitions, single_run, window_to_rebuild
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.day_window import DayWindow

OWNER = "team:data-engineering"
SOURCE_TABLES = {"events": "events", **{s.name: s.table for s in CSV_SOURCES}}
DESCRIPTIONS = {
    "events": "Segment-spec messages from events/*.jsonl[.gz], one row per messageId (collector duplicates collapsed).",
    "crm": "CRM customer records from crm/*.csv, typed, with phones in E.164 and emails normalised; a bad optional "
    "field is nulled and recorded in raw.field_issues.",
    "orders": "Order lines from orders/*.csv (or the files a sources config maps); lines sharing an order_id "
    "form one order.",
    "enrichment": "Firmographics from enrichment/*.csv, keyed by email domain.",
    "privacy": "Erasure requests from privacy/*.csv.",
}


def _counts(counts: dict[str, int], label: str) -> dg.TableMetadataValue:
    """reason -> count as a table, largest first."""
    rows = sorted(counts.items(), key=lambda kv: -kv[1])
    return frame_table(pd.DataFrame(rows, columns=["reason", label]).astype({label: "int64"}))


def _by_file(by_file: dict[str, str], label: str, description: str) -> dg.TableMetadataValue:
    return frame_table(pd.DataFrame(sorted(by_file.items()), columns=["file", label], dtype=str), {label: description})


def report_metadata(report: LoadReport, window: DayWindow) -> dict:
    return (
        {
            "dagster/row_count": report.rows_loaded,
            "files_seen": report.files_seen,
            "files_read": report.files_read,
            "rows_read": report.rows_read,
            "rows_loaded": report.rows_loaded,
            "rows_quarantined": report.rows_quarantined,
            "rows_deduplicated": report.deduplicated,
            "rows_suppressed_erased_persons": report.rows_suppressed,
            "quarantined_lines_suppressed_erased_persons": report.quarantine_suppressed,
            "quarantine_by_reason": _counts(report.quarantine_by_reason, "rows"),
            "field_issues": sum(report.field_issues_by_reason.values()),
            "field_issues_by_reason": _counts(report.field_issues_by_reason, "fields nulled"),
            "files_rejected": _by_file(report.files_rejected, "reason", "why the whole file was not read"),
            "columns_absent": _by_file(
                report.columns_absent, "columns", "optional columns the file's header lacks, read as empty"
            ),
            "table": f"raw.{report.table}",
        }
        | ({"guest_orders_unresolvable": report.guest_orders} if report.source == "orders" else {})
        | ({"opt_outs_from_rejected_records": report.withheld_opt_outs} if report.source == "crm" else {})
        | (
            {"days_rebuilt": str(window), "other_days_rebuilt": report.extra_days}
            if report.source == "events"
            else {"reused_unchanged_files": report.reused}
        )
    )


# Tables an ingestion step writes beside its main table, in the same transaction.
COMPANIONS = {
    "crm": {
        "crm_rejected_opt_outs": "Opt-outs read from CRM records quarantined whole (no customer_id or no readable "
        "updated_at): they still withhold the person their customer_id or email names."
    },
    "events": {
        "user_agents": "Each distinct user agent in raw.events, parsed with the `user-agents` library: "
        "device type, browser, OS and whether it is a bot."
    },
}


# Erasure requests are applied before any other source loads: this run's new rows of an erased
# person are then dropped as they load, whatever fails after.
ERASURE_FIRST = [dg.AssetKey(["privacy", "erasure_log"])]


def _specs(source: str) -> list[dg.AssetSpec]:
    common = dict(
        group_name="ingest",
        owners=[OWNER],
        kinds={"duckdb", "python"},
        deps=[] if source == "privacy" else ERASURE_FIRST,
    )
    return [dg.AssetSpec(["raw", SOURCE_TABLES[source]], description=DESCRIPTIONS[source], **common)] + [
        dg.AssetSpec(["raw", name], description=text, **common) for name, text in COMPANIONS.get(source, {}).items()
    ]


def _ingest(
    context: dg.AssetExecutionContext,
    source: str,
    window: DayWindow,
    warehouse: WarehouseResource,
    landing: LandingZoneResource,
):
    table = SOURCE_TABLES[source]
    files = landing.files(source)
    if not files.files:
        context.log.warning(f"No {source} files (looked in {files.root}); raw.{table} will be empty.")
    with warehouse.connect() as con:
        report = load_source(con, files, source, window=window)
        tables = {name: table_metadata(con, f"raw.{name}") for name in [table, *COMPANIONS.get(source, {})]}
        warehouse.publish(con, [f"raw.{name}" for name in tables])
    if report.reused:
        context.log.info(
            f"{source}: the {report.files_seen} files are as at the last load, so raw.{table} stands "
            f"({report.rows_loaded:,} rows, {report.rows_quarantined:,} quarantined)"
        )
    else:
        context.log.info(
            f"{source}: read {report.rows_read:,} rows from {report.files_read} files"
            + (f" for the days {window}" if source == "events" else "")
            + f", loaded {report.rows_loaded:,}, "
            f"quarantined {report.rows_quarantined:,}, collapsed {report.deduplicated:,} duplicates"
        )
    tables[table] = {**tables[table], **report_metadata(report, window)}
    for name, metadata in tables.items():
        key = dg.AssetKey(["raw", name])
        metadata, observations = per_partition(context, key, metadata)
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        yield from observations


def build_ingest_asset(source: str) -> dg.AssetsDefinition:
    @dg.multi_asset(name=f"ingest_{source}", specs=_specs(source), pool="duckdb")
    def _snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingZoneResource):
        yield from _ingest(context, source, DayWindow(), warehouse, landing)

    return _snapshot


@dg.multi_asset(
    name="ingest_events",
    specs=_specs("events"),
    pool="duckdb",
    partitions_def=daily_event_partitions,
    backfill_policy=single_run,
)
def ingest_events(
    context: dg.AssetExecutionContext,
    config: IncrementalConfig,
    warehouse: WarehouseResource,
    landing: LandingZoneResource,
):
    """The partition's days of events (plus the lookback), from the files that hold them."""
    yield from _ingest(context, "events", window_to_rebuild(context, config), warehouse, landing)


ingest_assets = [ingest_events] + [build_ingest_asset(source) for source in SOURCE_TABLES if source != "events"]
