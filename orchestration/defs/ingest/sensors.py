"""New event files in the landing zone start ingestion of exactly the days they hold.

The sensor reads only the files that appeared since its last tick (the cursor is the newest
change time: unlike the modification time, it is set when a file is moved in or copied with its
old time kept, as `mv`, `cp -p` and `rsync -t` do), finds the UTC days of their valid messages with the loader's own checks, in memory, and
requests one run per day. A file of late events for an earlier day requests that day. The warehouse
is never opened here, so a tick cannot collide with a run holding DuckDB's lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import dagster as dg

from orchestration.defs.ingest.assets import ingest_events
from orchestration.defs.ingest.loaders.events import event_days
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.partitions import daily_event_partitions

ingest_daily_events = dg.define_asset_job(
    "ingest_daily_events",
    selection=dg.AssetSelection.assets(ingest_events)
    | dg.AssetSelection.assets(
        ["staging", "stg_segment__events"],
        ["staging", "stg_segment__user_agents"],
        ["intermediate", "int_segment__events"],
    ),
    description="One day of events: ingestion and the incremental dbt event models (with the lookback before it). "
    "Everything downstream follows by declarative automation.",
)


def partitions_for(days: dict[str, list[dt.date]], keys: list[str]) -> dict[str, list[str]]:
    """Partition key -> the new files that hold its events. Days before the first partition belong
    to it, days after the last to the last; a file without a valid message goes to the last (its
    quarantined lines are owned by the day that first reads it)."""
    first, last = dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
    out: dict[str, list[str]] = {}
    for file, file_days in sorted(days.items()):
        for day in file_days or [last]:
            key = min(max(day, first), last).isoformat()
            out.setdefault(key, []).append(file)
    return out


@dg.sensor(
    job=ingest_daily_events,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests the daily event partitions that new landing files hold (late events included).",
)
def landing_events_sensor(context: dg.SensorEvaluationContext, landing: LandingZoneResource) -> dg.SensorResult:
    plan = landing.files("events")
    mtimes = {plan.relative(p): max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in plan.files}
    newest = max(mtimes.values(), default=0)
    cursor = json.dumps({"mtime_ns": newest, "files": sorted(f for f, m in mtimes.items() if m == newest)})
    if not context.cursor:  # history is loaded by a backfill or `tessera run`, not by a flood of runs
        return dg.SensorResult(
            cursor=cursor,
            skip_reason=(
                f"Started watching {len(mtimes):,} event files under {plan.root}; files that arrive from now on start "
                "runs. Load the history with a backfill or `tessera run`."
            ),
        )
    seen = json.loads(context.cursor)
    new = [
        p
        for p in plan.files
        if mtimes[plan.relative(p)] > seen["mtime_ns"]
        or (mtimes[plan.relative(p)] == seen["mtime_ns"] and plan.relative(p) not in seen["files"])
    ]
    if not new:
        return dg.SensorResult(cursor=context.cursor, skip_reason="No new event files.")
    by_partition = partitions_for(
        event_days(dataclasses.replace(plan, files=new)), daily_event_partitions.get_partition_keys()
    )
    context.log.info(f"{len(new)} new event files hold the days {', '.join(sorted(by_partition))}.")
    # Two ticks can see the same newest time (a bulk copy): the run key names the files, too.
    return dg.SensorResult(
        cursor=cursor,
        run_requests=[
            dg.RunRequest(
                partition_key=key,
                tags={"tessera/new_files": str(len(files))},
                run_key=f"{key}@{newest}:{hashlib.sha256(' '.join(files).encode()).hexdigest()[:12]}",
            )
            for key, files in sorted(by_partition.items())
        ],
    )
