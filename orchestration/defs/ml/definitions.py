import dagster as dg

from orchestration.defs.ml.assets import ml_assets

defs = dg.Definitions(assets=ml_assets)
