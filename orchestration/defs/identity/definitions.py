import dagster as dg

from orchestration.defs.identity.assets import crm_match_pairs, identity_assignments
from orchestration.defs.privacy.assets import erasure_sweep, no_trace_after_sweep

# The erasure sweep is a link of the identity chain: dbt reads the assignments only after it
# (dbt_project/models/staging/_staging__sources.yml), so whoever materialises identity gets it.
defs = dg.Definitions(assets=[crm_match_pairs, identity_assignments, erasure_sweep], asset_checks=[no_trace_after_sweep])
