import dagster as dg

from orchestration.defs.identity.assets import crm_match_pairs, identity_assignments

defs = dg.Definitions(assets=[crm_match_pairs, identity_assignments])
