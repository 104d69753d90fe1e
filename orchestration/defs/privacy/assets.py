"""Erasure as a path of its own: requests are applied first in every run (and by `tessera erase`),
before any other source loads, whatever else fails later; a sweep after identity resolution
catches data that arrived under another of the person's identifiers; a check scans every store.

Both assets form the `privacy` asset group, registered by orchestration/defs/privacy/definitions.py. They
meet the other domains through asset keys (the requests, the identity assignments; ingestion,
dbt and the segments depend on them by key) and through the shared modules of orchestration/lib:
the export folders (export_folders), the suppression list, and on Spark the dbt rebuild (spark)."""

import datetime as dt
import time
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
from mlflow.tracking import MlflowClient

from ml import tracking
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.metadata import frame_table, table_metadata
from orchestration.defs.privacy.erasure import ErasureReport, process_erasures, remaining_traces, sweep
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib import suppression
from orchestration.lib.dbt_subprocess import run_vars
from orchestration.lib.export_folders import export_traces, scrub_audiences
from orchestration.lib.lake import lake_dir
from orchestration.lib.settings import DBT_PROJECT_DIR, redis_url
from orchestration.lib.spark import rebuild_after_erasure
from orchestration.lib.traces import file_traces
from orchestration.lib.warehouse import compact
from orchestration.realtime import broker
from orchestration.realtime import erasure as realtime_erasure

OWNER = "team:privacy"
ERASURE_LOG = dg.AssetKey(["privacy", "erasure_log"])
ERASURE_SWEEP = dg.AssetKey(["privacy", "erasure_sweep"])


def _mlflow_paths(tracking_uri: str) -> list[Path]:
    """The MLflow store's database file and every experiment's artifact folder."""
    paths = [Path(tracking_uri.removeprefix("sqlite:///"))] if tracking_uri.startswith("sqlite:///") else []
    try:
        experiments = MlflowClient().search_experiments()
    except Exception:  # no store yet: nothing trained, nothing to search
        return paths
    return paths + [
        Path(urlparse(e.artifact_location).path)
        for e in experiments
        if urlparse(e.artifact_location).scheme in ("", "file")
    ]


def _stores(warehouse: WarehouseResource, settings: SettingsResource) -> dict[str, list[Path]]:
    """Every place outside the warehouse tables where a run writes: each is searched byte by byte."""
    return {
        "warehouse file": [Path(warehouse.path), Path(f"{warehouse.path}.wal")],
        "exports": [Path(settings.exports_dir)],
        "reports": [Path(settings.reports_dir)],
        "mlflow": _mlflow_paths(settings.mlflow_tracking_uri),
        "dagster home": [Path(settings.dagster_home)],
        "great expectations": [Path(warehouse.path).parent / "gx"],
        "parquet lake": [lake_dir()] if warehouse.on_spark else [],
        "dbt target and logs": [DBT_PROJECT_DIR / "target", DBT_PROJECT_DIR / "logs"],
    }


def _finish(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing: LandingZoneResource,
    settings: SettingsResource,
    report: ErasureReport,
    in_the_identity_chain: bool = False,
) -> dict:
    """After rows went (here, or at ingestion since the last compaction): compact the DuckDB file
    (freed blocks keep the values), rebuild Spark's tables from the scrubbed ones (in the identity
    chain, those dbt built before it), and flag the models trained before; metadata of each."""
    out = {}
    with warehouse.connect(read_only=True) as con:
        due = suppression.compaction_due(con)
    if due:  # on Spark too: the file holds the tables Python writes
        started = time.perf_counter()
        before, after = compact(warehouse.path)
        with warehouse.connect() as con:
            suppression.clear_compaction_due(con)
        out |= {
            "compaction_seconds": round(time.perf_counter() - started, 2),
            "file_bytes_before": before,
            "file_bytes_after": after,
        }
    out |= _erase_in_redis(context, warehouse, settings)
    if not report.identifiers_suppressed:
        return out
    scrubbed = sorted(
        {t for removed in (report.rows_removed, report.text_rows_removed) for t, n in removed.items() if n}
    )
    if warehouse.on_spark and (scrubbed or report.requests):
        with (
            warehouse.connect() as con
        ):  # the lake's copies of the tables Python writes; requests lost their identifier
            warehouse.publish(con, [*scrubbed, *(["raw.erasure_requests"] if report.requests else [])])
        if scrubbed or report.persons:  # Spark's tables are views here: dbt rebuilds them without the person
            context.log.info("Rebuilding the dbt models on Spark from the scrubbed sources")
            rebuild_after_erasure(
                warehouse.path,
                run_vars(landing.config(), settings.as_of),
                only_before_identity_graph=in_the_identity_chain,
            )
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    flagged = tracking.flag_versions_before(now_ms, f"erasure of {dt.date.today().isoformat()}")
    if flagged:
        context.log.info(
            f"Model versions flagged as trained before an erasure (the next training replaces a flagged "
            f"champion): {', '.join(flagged)}"
        )
    return out | {"model_versions_flagged": len(flagged)}


def _listed(warehouse: WarehouseResource) -> list[str]:
    with warehouse.connect(read_only=True) as con:
        if not suppression.has_suppressions(con):
            return []
        return [r[0] for r in con.execute("SELECT identifier_sha256 FROM privacy.suppression_list").fetchall()]


def _erase_in_redis(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dict:
    """The real-time path's copies (docs/realtime.md), when its Redis runs; when it does not, the
    stream processor erases them as it starts (realtime/erasure.py)."""
    client = broker.reachable(redis_url(settings.redis_port))
    if client is None:
        return {}
    found = realtime_erasure.erase(client, _listed(warehouse))
    if found:
        context.log.info(f"Erased {sum(found.values())} traces of erased persons from {len(found)} Redis keys")
    return {"redis_values_removed": sum(found.values())}


def _report_metadata(report: ErasureReport) -> dict:
    removed = pd.DataFrame(
        sorted(
            (
                (t, n)
                for t, n in {
                    **report.rows_removed,
                    **{f"{t} (text)": n for t, n in report.text_rows_removed.items()},
                }.items()
                if n
            ),
            key=lambda r: -r[1],
        ),
        columns=["table", "rows removed"],
    ).astype({"rows removed": "int64"})
    return {
        "requests": report.requests,
        "erased_now": report.erased,
        "already_erased": report.already_erased,
        "not_found_but_suppressed": report.not_found,
        "persons_erased_now": report.persons,
        "identifiers_suppressed_now": report.identifiers_suppressed,
        "rows_removed": sum(report.rows_removed.values()) + sum(report.text_rows_removed.values()),
        "export_rows_removed": report.export_rows_removed,
        "rows_removed_by_table": frame_table(removed),
    }


@dg.asset(
    key=ERASURE_LOG,
    deps=[dg.AssetKey(["raw", "erasure_requests"])],
    group_name="privacy",
    owners=[OWNER],
    kinds={"duckdb", "python"},
    pool="duckdb",
    description="Applies erasure requests (privacy/ folder) before any other source loads: each identifier goes on "
    "privacy.suppression_list as a SHA-256 hash (found or not), the list grows over every table that ties "
    "the person's identifiers together, and every row of the person goes from every table, with every row "
    "whose text holds one of their identifiers in any written form (quarantine and field issues "
    "included), and from every export. The DuckDB file is then rewritten so that no freed block keeps a "
    "value, and model versions trained before are flagged. Depends on nothing but the requests.",
)
def erasure_log(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing: LandingZoneResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    exports_dir = Path(settings.exports_dir)
    with warehouse.connect() as con:
        report = process_erasures(con, scrub_exports=lambda c: scrub_audiences(c, exports_dir))
        metadata = table_metadata(con, "privacy.erasure_log")
    finished = _finish(context, warehouse, landing, settings, report)
    context.log.info(
        f"{report.requests} erasure requests: {report.erased} erased now, {report.already_erased} "
        f"earlier, {report.not_found} not found (suppressed all the same); "
        f"{report.total_rows_removed:,} rows removed"
    )
    landed = (
        {}
        if report.seconds_since_landing is None
        else {"seconds_from_request_landing_to_done": round(report.seconds_since_landing, 1)}
    )
    return dg.MaterializeResult(metadata={**metadata, **_report_metadata(report), **finished, **landed})


@dg.asset(
    key=ERASURE_SWEEP,
    deps=[dg.AssetKey(["intermediate", "identity_assignments"])],
    group_name="privacy",
    owners=[OWNER],
    kinds={"duckdb", "python"},
    pool="duckdb",
    description="After the identity graph, before dbt reads it: a person whom the new assignments tie to a "
    "suppressed identifier (data that arrived under another of their identifiers) is erased whole, so "
    "no feature, model or segment of this run counts them.",
)
def erasure_sweep(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    landing: LandingZoneResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    exports_dir = Path(settings.exports_dir)
    with warehouse.connect() as con:
        report = sweep(con, scrub_exports=lambda c: scrub_audiences(c, exports_dir))
        metadata = table_metadata(con, "intermediate.identity_assignments")  # dbt reads the swept table as this asset
    finished = _finish(context, warehouse, landing, settings, report, in_the_identity_chain=True)
    if report.identifiers_suppressed:
        context.log.info(
            f"{report.identifiers_suppressed} identifiers of erased persons found in new data; "
            f"{report.total_rows_removed:,} rows removed"
        )
    return dg.MaterializeResult(metadata={**metadata, **_report_metadata(report), **finished})


def _traces(warehouse: WarehouseResource, settings: SettingsResource) -> dict[str, int]:
    exports_dir = Path(settings.exports_dir)
    listed = _listed(warehouse)
    if not listed:
        return {}
    with warehouse.connect(read_only=True) as con:
        traces = remaining_traces(con, lambda c: export_traces(c, exports_dir), include_views=warehouse.on_spark)
    if (client := broker.reachable(redis_url(settings.redis_port))) is not None:
        traces |= {f"redis: {key}": n for key, n in realtime_erasure.traces(client, listed).items()}
    stores = _stores(warehouse, settings)
    roots = [root for paths in stores.values() for root in paths]
    found = file_traces(roots, listed, cache=Path(settings.dagster_home) / "trace_scan_cache.json")
    for path, n in found.items():
        store = next((s for s, paths in stores.items() if any(Path(path).is_relative_to(r) for r in paths)), "file")
        traces[f"{store}: {path}"] = n
    return traces


def _searched(warehouse: WarehouseResource, settings: SettingsResource) -> list[str]:
    running = broker.reachable(redis_url(settings.redis_port)) is not None
    return [*_stores(warehouse, settings), "redis" if running else "redis (not running: erased as the stream starts)"]


def _no_trace_result(traces: dict[str, int], stores: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not traces,
        description="No trace left in any table, export, or file the run writes."
        if not traces
        else "Traces of erased persons remain: " + ", ".join(f"{t} ({n})" for t, n in traces.items()),
        metadata={
            "stores_with_traces": len(traces),
            "traces_left": sum(traces.values()),
            "stores_searched": ", ".join(["warehouse tables", *stores]),
        },
    )


@dg.asset_check(
    asset=ERASURE_LOG,
    blocking=True,
    pool="duckdb",
    description="No table (any identifier column, and tokens of quarantined text in any written form), "
    "no export folder (temporaries included), and no byte of any file the run writes "
    "(warehouse file, exports, reports, MLflow, Dagster home, Data Docs, dbt target), and no key of the "
    "real-time path's Redis, holds "
    "an identifier of an erased person.",
)
def no_trace_of_erased_persons(warehouse: WarehouseResource, settings: SettingsResource) -> dg.AssetCheckResult:
    return _no_trace_result(_traces(warehouse, settings), _searched(warehouse, settings))


@dg.asset_check(
    asset=ERASURE_SWEEP, blocking=True, pool="duckdb", description="As no_trace_of_erased_persons, after the sweep."
)
def no_trace_after_sweep(warehouse: WarehouseResource, settings: SettingsResource) -> dg.AssetCheckResult:
    return _no_trace_result(_traces(warehouse, settings), _searched(warehouse, settings))


privacy_assets = [erasure_log]
privacy_checks = [no_trace_of_erased_persons]
# A link of the identity chain: dbt reads the assignments only after the sweep
# (dbt_project/models/staging/_staging__sources.yml), so whatever materialises the identity graph
# and the dbt models after it needs the sweep too.
sweep_assets = [erasure_sweep]
sweep_checks = [no_trace_after_sweep]
