import datetime as dt
import warnings

import dagster as dg

from orchestration.defs.segments.assets import segment_assets, segment_checks
from orchestration.defs.segments.loading import segment_catalog

# Validate segments/*.yml when the code location loads: a bad rule stops it with the file, the
# segment, the position and a fix, instead of failing a run later.
segment_catalog()

# Segments feed campaigns: they must be rebuilt daily. The daily refresh runs at 03:00 UTC, so a
# segment table not updated in the 27 hours before 06:00 UTC fails its freshness check. Dagster 1.13
# prefers FreshnessPolicy; checks sit beside the other checks on the asset and alert like them.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.SupersessionWarning)
    freshness_checks = dg.build_last_update_freshness_checks(
        assets=[dg.AssetKey(["marts", "segment_membership"]), dg.AssetKey(["marts", "segment_membership_history"])],
        lower_bound_delta=dt.timedelta(hours=27), deadline_cron="0 6 * * *", timezone="UTC",
        severity=dg.AssetCheckSeverity.ERROR)
    freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks, name="segment_freshness_sensor",
        default_status=dg.DefaultSensorStatus.STOPPED)

defs = dg.Definitions(assets=segment_assets, asset_checks=[*segment_checks, *freshness_checks],
                      sensors=[freshness_sensor])
