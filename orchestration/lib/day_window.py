"""A window of event days, shared by event ingestion and the incremental dbt event models (through
the daily partitions, orchestration/defs/partitions.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class DayWindow:
    """The event days [start, end) (UTC) a load replaces in raw.events; None leaves that side open,
    so DayWindow() is the whole history. Dagster's daily partitions map onto it."""

    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def everything(self) -> bool:
        return self.start is None and self.end is None

    def holds(self, day_sql: str) -> str:
        """SQL: the DATE expression `day_sql` lies in the window."""
        bounds = ([f"{day_sql} >= DATE '{self.start}'"] if self.start else []) + (
            [f"{day_sql} < DATE '{self.end}'"] if self.end else []
        )
        return " AND ".join(bounds) or "true"

    def contains(self, day: dt.date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day < self.end)

    def __str__(self) -> str:
        return f"[{self.start or 'the first event'}, {self.end or 'the last event'})"
