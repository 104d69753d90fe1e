import dagster as dg

from orchestration.defs.realtime.assets import realtime_assets, realtime_checks

reconcile_realtime = dg.define_asset_job(
    "reconcile_realtime",
    selection=dg.AssetSelection.assets(["realtime", "reconciliation"]),
    description="Compare the stream's end-of-day membership with the daily run's (docs/realtime.md).",
)

defs = dg.Definitions(assets=realtime_assets, asset_checks=realtime_checks, jobs=[reconcile_realtime])
