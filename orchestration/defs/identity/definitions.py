import dagster as dg

from orchestration.defs.identity.assets import crm_match_pairs, identity_assignments

# The erasure sweep that follows identity_assignments, before dbt reads them, is the privacy
# domain's (orchestration/defs/privacy/definitions.py).
defs = dg.Definitions(assets=[crm_match_pairs, identity_assignments])
