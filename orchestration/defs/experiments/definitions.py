import dagster as dg

from orchestration.defs.experiments.assets import experiment_assets, experiment_checks
from orchestration.defs.experiments.loading import experiment_catalog

experiment_catalog()  # a mistake in experiments/*.yml stops the code location here, with its message
defs = dg.Definitions(assets=experiment_assets, asset_checks=experiment_checks)
