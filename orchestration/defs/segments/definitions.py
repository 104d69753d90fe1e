import dagster as dg

from orchestration.defs.segments.assets import segment_assets, segment_checks
from orchestration.defs.segments.kpis import kpi_assets, kpi_checks
from orchestration.defs.segments.loading import segment_catalog

# Validate segments/*.yml when the code location loads: a bad rule stops it with the file, the
# segment, the position and a fix, instead of failing a run later.
segment_catalog()

# The segment tables' freshness is a FreshnessPolicy on their specs (assets.py), not a check.
defs = dg.Definitions(assets=[*segment_assets, *kpi_assets], asset_checks=[*segment_checks, *kpi_checks])
