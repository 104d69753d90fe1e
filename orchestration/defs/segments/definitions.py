import dagster as dg

from orchestration.defs.segments.assets import segment_assets, segment_checks

defs = dg.Definitions(assets=segment_assets, asset_checks=segment_checks)
