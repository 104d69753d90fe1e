import hashlib
import json

import dagster as dg

from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.privacy.assets import ERASURE_LOG, privacy_assets, privacy_checks, sweep_assets, sweep_checks

erase = dg.define_asset_job(
    "erase",
    selection=dg.AssetSelection.assets(["raw", "erasure_requests"], ERASURE_LOG),
    description="Erasure alone: load the privacy/ requests and apply them to every store, compact the warehouse "
    "file and check that no trace is left. Needs nothing else to succeed (`tessera erase`).",
)


@dg.sensor(
    job=erase,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Runs `erase` when a request file lands in privacy/, so a request waits for no other step.",
)
def erasure_requests_sensor(context: dg.SensorEvaluationContext, landing: LandingZoneResource) -> dg.SensorResult:
    plan = landing.files("privacy")
    stamps = {plan.relative(p): max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in plan.files}
    cursor = json.dumps(sorted(stamps.items()))
    if cursor == (context.cursor or json.dumps([])):
        return dg.SensorResult(cursor=cursor, skip_reason="No new or changed request files.")
    return dg.SensorResult(
        cursor=cursor, run_requests=[dg.RunRequest(run_key=f"erase@{hashlib.sha256(cursor.encode()).hexdigest()[:16]}")]
    )


defs = dg.Definitions(
    assets=[*privacy_assets, *sweep_assets],
    asset_checks=[*privacy_checks, *sweep_checks],
    jobs=[erase],
    sensors=[erasure_requests_sensor],
)
