"""What leaves the warehouse for people and tools: audience files per published segment (built after
erasures, so never an erased person), and the segment report page."""

from pathlib import Path

import dagster as dg
import pandas as pd

from orchestration.defs.exports.audiences import write_audiences
from orchestration.defs.exports.report import build_report, champion_calibration
from orchestration.defs.metadata import frame_table
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.defs.segments.assets import MEMBERSHIP
from orchestration.defs.segments.loading import segment_catalog
from orchestration.defs.segments.membership import concrete_segments, scoring_as_of


@dg.asset(
    key=["exports", "audiences"],
    deps=[MEMBERSHIP, dg.AssetKey(["marts", "recommendations"])],
    group_name="exports",
    owners=["team:marketing-analytics"],
    kinds={"parquet", "csv"},
    pool="duckdb",
    description="data/exports/<segment>/<as_of>/: members.parquet and members.csv (person_id, SHA-256 of the "
    "normalised email, the segment's export_attributes and, with export_recommendations, the member's top "
    "recommended products) with manifest.json, for each published "
    "segment. People without personalisation consent are never members, so never exported.",
)
def audiences(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    exports_dir = Path(settings.exports_dir)
    # The export reads the published membership; the connection is read-write only for COPY's temp table.
    with warehouse.connect() as con:
        as_of = scoring_as_of(con)
        segments = concrete_segments(con, segment_catalog())
        published = {
            r[0]
            for r in con.execute(
                "SELECT segment_name FROM marts.segment_report WHERE as_of = ? AND published", [as_of]
            ).fetchall()
        }
        manifests = write_audiences(con, exports_dir, segments, published, as_of)
    table = pd.DataFrame(
        [(m["segment"], m["rows"], ", ".join(m["columns"])) for m in manifests], columns=["segment", "rows", "columns"]
    ).astype({"rows": "int64"})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(table["rows"].sum()),
            "folder": dg.MetadataValue.path(str(exports_dir)),
            "as_of": str(as_of.date()),
            "segments_exported": len(manifests),
            "exports": frame_table(table),
        }
    )


@dg.asset(
    key=["exports", "segment_report_page"],
    deps=[
        MEMBERSHIP,
        dg.AssetKey(["marts", "cluster_assignments"]),
        dg.AssetKey(["marts", "propensity_scores"]),
        dg.AssetKey(["marts", "segment_kpis"]),
        dg.AssetKey(["marts", "recommendations"]),
        dg.AssetKey(["marts", "experiment_results"]),
    ],
    group_name="exports",
    owners=["team:marketing-analytics"],
    kinds={"html"},
    pool="duckdb",
    description="data/reports/<as_of>/index.html: one self-contained page (inline styles and figures, no personal "
    "data) with each segment's definition, size, trend, entries and exits, overlap and KPIs over time, the "
    "cluster profiles, the propensity deciles and calibration, lifetime value, the recommendations, the "
    "experiments, and data-quality status. Opens from disk.",
)
def segment_report_page(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    calibration = champion_calibration(context.log.warning)
    with warehouse.connect(read_only=True) as con:
        try:
            page = build_report(con, Path(settings.reports_dir), calibration)
        except ValueError as exc:
            raise dg.Failure(description=str(exc)) from None
    context.log.info(f"Segment report: {page.path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(page.path)),
            "open": dg.MetadataValue.url(page.path.as_uri()),
            "as_of": str(page.as_of),
            "segments": page.segments,
            "bytes": page.path.stat().st_size,
        }
    )


export_assets = [audiences, segment_report_page]
