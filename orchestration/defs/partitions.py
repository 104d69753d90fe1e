"""Daily event partitions, shared by event ingestion and the incremental dbt event models.

A partition is a UTC day of `occurred_at`. The first partition also holds every earlier event,
and the last (today) every later one, so no event falls outside the partitions. A run for some
days rebuilds them plus a late-arrival lookback before them; `full_refresh` rebuilds everything.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from orchestration.lib.day_window import DayWindow
from orchestration.lib.settings import load_settings

# The partitions and the default lookback are part of the definitions, built when the code location
# loads: from the process's settings (read once), not from a resource, which only runs receive.
_settings = load_settings()

daily_event_partitions = dg.DailyPartitionsDefinition(
    start_date=_settings.partitions_start.isoformat(), end_offset=1, timezone="UTC"
)

# A backfill of many days runs once over the whole range, not once per day.
single_run = dg.BackfillPolicy.single_run()


class FullRefreshConfig(dg.Config):
    """Run config of the incremental dbt models kept in step with their sources (int_person_events,
    int_session_days)."""

    full_refresh: bool = False
    """Rebuild the incremental models from scratch (dbt `--full-refresh`)."""


class IncrementalConfig(FullRefreshConfig):
    """Run config of the partitioned event assets. `full_refresh` rebuilds every day from all
    landing files, whatever the partitions."""

    lookback_days: int = _settings.lookback_days
    """Days before the partition window that the run rebuilds too, for events that arrived late."""


def partition_window(context: dg.AssetExecutionContext) -> DayWindow:
    """The run's partition days, with open ends at the first and last partitions."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return DayWindow()
    window = context.partition_time_window
    keys = daily_event_partitions.get_partition_keys()
    first, last = dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
    start, end = window.start.date(), window.end.date()
    return DayWindow(None if start <= first else start, None if end > last else end)


def window_to_rebuild(context: dg.AssetExecutionContext, config: IncrementalConfig) -> DayWindow:
    """The days a run replaces: its partitions widened by the lookback, or all of them."""
    window = partition_window(context)
    if config.full_refresh or window.everything:
        return DayWindow()
    start = window.start - dt.timedelta(days=config.lookback_days) if window.start else None
    return DayWindow(start, window.end)


def all_days_tags() -> dict[str, str]:
    """Run tags that put every daily partition in one run (a full load), as `tessera run` does."""
    keys = daily_event_partitions.get_partition_keys()
    return {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
