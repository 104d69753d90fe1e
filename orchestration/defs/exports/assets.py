"""Audience files per published segment, from the membership (built after erasures, so never an erased person)."""

import dagster as dg
import pandas as pd

from orchestration.defs.exports.audiences import write_audiences
from orchestration.defs.resources import WarehouseResource
from orchestration.defs.segments.assets import MEMBERSHIP
from orchestration.defs.segments.loading import segment_catalog
from orchestration.defs.segments.membership import concrete_segments, scoring_as_of
from orchestration.lib.settings import load_settings


@dg.asset(
    key=["exports", "audiences"], deps=[MEMBERSHIP], group_name="exports",
    owners=["team:marketing-analytics"], kinds={"parquet", "csv"}, pool="duckdb",
    description="data/exports/<segment>/<as_of>/: members.parquet and members.csv (person_id, SHA-256 of the "
                "normalised email, the segment's export_attributes) with manifest.json, for each published "
                "segment. People without personalisation consent are never members, so never exported.",
)
def audiences(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    exports_dir = load_settings().exports_dir
    # The export reads the published membership; the connection is read-write only for COPY's temp table.
    with warehouse.connect() as con:
        as_of = scoring_as_of(con)
        segments = concrete_segments(con, segment_catalog())
        published = {r[0] for r in con.execute(
            "SELECT segment_name FROM marts.segment_report WHERE as_of = ? AND published", [as_of]).fetchall()}
        manifests = write_audiences(con, exports_dir, segments, published, as_of)
    table = pd.DataFrame([{"segment": m["segment"], "rows": m["rows"], "columns": ", ".join(m["columns"])}
                          for m in manifests])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(table["rows"].sum()) if len(table) else 0,
        "folder": dg.MetadataValue.path(str(exports_dir)), "as_of": str(as_of.date()),
        "segments_exported": len(manifests),
        "exports": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "none"),
    })


export_assets = [audiences]
