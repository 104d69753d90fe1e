import dagster as dg

from orchestration.defs.privacy.assets import privacy_assets, privacy_checks

defs = dg.Definitions(assets=privacy_assets, asset_checks=privacy_checks)
