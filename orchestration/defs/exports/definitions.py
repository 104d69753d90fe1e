import dagster as dg

from orchestration.defs.exports.assets import export_assets

defs = dg.Definitions(assets=export_assets)
