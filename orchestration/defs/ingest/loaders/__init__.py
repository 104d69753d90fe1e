"""Landing files -> typed raw tables, with every rejected line in raw.quarantine.

Plain Python over DuckDB (no Dagster), so tests and benchmarks call it directly. One module per
kind of source: events (events.py), and the tabular sources, loaded by tabular.py from their specs
in crm.py, orders.py, firmographics.py and erasure_requests.py; common.py holds what they share.

Each load rebuilds one raw table from all files in its folder, then swaps it in with its
quarantine rows in a single transaction: a run killed half-way leaves the previous tables.
Events may instead be loaded for a window of days (a Dagster daily partition): only the files
with events on those days are read, and only those days are replaced.
A row's `loaded_at` is the time its file was first seen (raw.ingested_files), so re-running on
the same files gives identical tables.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from orchestration.defs.ingest.loaders.common import LoadReport
from orchestration.defs.ingest.loaders.crm import CRM
from orchestration.defs.ingest.loaders.erasure_requests import PRIVACY
from orchestration.defs.ingest.loaders.events import load_events
from orchestration.defs.ingest.loaders.firmographics import ENRICHMENT
from orchestration.defs.ingest.loaders.orders import ORDERS
from orchestration.defs.ingest.loaders.tabular import load_csv_source
from orchestration.defs.ingest.mapping import SourceFiles
from orchestration.lib.day_window import DayWindow

CSV_SOURCES = (CRM, ORDERS, ENRICHMENT, PRIVACY)


def load_source(
    con: duckdb.DuckDBPyConnection,
    files: Path | SourceFiles,
    source: str,
    now: dt.datetime | None = None,
    window: DayWindow = DayWindow(),
) -> LoadReport:
    """`window` narrows an events load to some days; the other sources are always loaded whole."""
    if source == "events":
        return load_events(con, files, now, window=window)
    spec = next(s for s in CSV_SOURCES if s.name == source)
    return load_csv_source(con, files, spec, now)


SOURCES = ("events",) + tuple(s.name for s in CSV_SOURCES)
