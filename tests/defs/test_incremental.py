"""Daily partitions and incremental models: a full refresh then daily runs over new days must give
exactly what a full rebuild gives, late events included."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs.dbt.assets import dbt_after_identity_graph, dbt_before_identity_graph, dbt_daily_events
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
from orchestration.defs.identity.definitions import defs as identity_defs
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.loaders.events import load_events
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.partitions import all_days_tags
from orchestration.defs.privacy.assets import sweep_assets
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib.day_window import DayWindow
from orchestration.lib.settings import reload_settings
from orchestration.lib.warehouse import connect, table_fingerprint

CHAIN = [
    *ingest_assets,
    dbt_daily_events,
    dbt_before_identity_graph,
    dbt_after_identity_graph,
    *identity_defs.assets,
    *sweep_assets,
]
# Differ by design: the time a file was first seen and a digest over it, the dbt run that wrote a row,
# and ids derived from person_id (see _fingerprints).
RUN_DEPENDENT_COLUMNS = (
    "loaded_at",
    "device_digest",
    "day_digest",
    "dbt_invocation_id",
    "session_id",
    "session_day_id",
    "person_as_of_key",
)


def _file_day(path: Path) -> dt.date:
    """The generator names event files by the day they arrived; its broken files arrive first."""
    try:
        return dt.date.fromisoformat(path.name[:10])
    except ValueError:
        return dt.date.min


def _landing_until(sample_landing: Path, target: Path, last_day: dt.date) -> None:
    """The sample's landing zone as it stood at the end of `last_day`: event files that arrived later are held back."""
    if not target.exists():
        shutil.copytree(
            sample_landing,
            target,
            ignore=lambda d, names: [n for n in names if d.endswith("events") and _file_day(Path(n)) > last_day],
        )
        return
    for path in (sample_landing / "events").iterdir():
        if _file_day(path) <= last_day and not (target / "events" / path.name).exists():
            shutil.copy2(path, target / "events" / path.name)


def _change_old_files(landing: Path, days: list[dt.date]) -> None:
    """Outside the next daily window: an old file is re-sent with fewer lines and a message moved to
    another day, another old file is withdrawn, and a very late file holds an old day's events."""
    old = sorted(
        p for p in (landing / "events").glob("20*.jsonl*") if p.name[:10] <= str(days[20]) and len(_lines(p)) >= 5
    )
    resent, withdrawn, late_copy = old[:3]
    lines = _lines(resent)
    moved = json.loads(lines[1])
    moved["timestamp"] = f"{days[8]}T12:00:00Z"
    _write_lines(resent, [lines[0], json.dumps(moved)] + lines[4:])
    withdrawn.unlink()
    _write_lines(
        landing / "events" / f"{days[-1]}-very-late.jsonl",
        [
            json.dumps({**json.loads(line), "messageId": f"late-{i}"})
            for i, line in enumerate(_lines(late_copy)[:20])
            if line.startswith("{")
        ],
    )


def _lines(path: Path) -> list[str]:
    return (
        (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8"))
        .read()
        .splitlines()
    )


def _write_lines(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") if path.suffix == ".gz" else path.open("w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _fingerprints(warehouse: Path, tables: list[str]) -> dict[str, str]:
    """Each table's content. person_id is stable across runs by design (a person keeps the id its
    identifiers had before), so a history of runs may label a person differently from one rebuild:
    persons are compared by who they are, their smallest identifier. Floating-point sums depend on
    row order (about 1e-14 here), so doubles are compared to 9 decimals."""
    with connect(warehouse, read_only=True) as con:
        con.execute(
            "CREATE TEMP TABLE person_keys AS SELECT person_id, min(identifier_type || ':' || identifier) "
            "AS person_key FROM marts.identity_map GROUP BY person_id"
        )
        out = {}
        for table in tables:
            columns = {
                r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in RUN_DEPENDENT_COLUMNS
            }
            select = ", ".join(
                "k.person_key" if c == "person_id" else f"round(t.{c}, 9)" if kind in ("DOUBLE", "FLOAT") else f"t.{c}"
                for c, kind in columns.items()
            )
            join = " LEFT JOIN person_keys k USING (person_id)" if "person_id" in columns else ""
            out[table] = table_fingerprint(con, f"(SELECT {select} FROM {table} t{join})")
        return out


def _tables(warehouse: Path) -> list[str]:
    with connect(warehouse, read_only=True) as con:
        return [
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name IN ('marts', 'intermediate', 'raw') "
                "ORDER BY 1, 2"
            ).fetchall()
        ]


def _persons_of_events(warehouse: Path) -> dict[str, tuple[str, dt.date]]:
    with connect(warehouse, read_only=True) as con:
        return {
            m: (p, d)
            for m, p, d in con.execute(
                "SELECT message_id, person_id, event_date FROM intermediate.int_person_events"
            ).fetchall()
        }


def _events_days(sample_landing: Path) -> list[dt.date]:
    return sorted({_file_day(p) for p in (sample_landing / "events").iterdir()} - {dt.date.min})


def test_windowed_event_loads_equal_one_full_load(sample, tmp_path):
    """Loader level: a full load, then daily loads as new files arrive, and one after old files were
    re-sent, withdrawn or arrived very late, equal one full load of all files (events, their
    quarantine, the file manifest); a daily load reads few files."""
    days = _events_days(sample.landing)
    cut = days[-3]
    landing = tmp_path / "landing"
    _landing_until(sample.landing, landing, cut)
    daily = tmp_path / "daily.duckdb"
    with connect(daily) as con:
        load_events(con, landing)
    reads = []
    for day in days[-2:]:
        _landing_until(sample.landing, landing, day)
        with connect(daily) as con:
            report = load_events(con, landing, window=DayWindow(day - dt.timedelta(days=3), None))
        reads.append(report.files_read / report.files_seen)
    _change_old_files(landing, days)
    with connect(daily) as con:
        load_events(con, landing, window=DayWindow(days[-1] - dt.timedelta(days=3), None))
    full = tmp_path / "full.duckdb"
    with connect(full) as con:
        load_events(con, landing)
    tables = [
        "raw.events",
        "(SELECT * FROM raw.quarantine WHERE source = 'events')",
        "(SELECT * EXCLUDE (loaded_at) FROM raw.ingested_files WHERE source = 'events')",
    ]
    with connect(daily, read_only=True) as a, connect(full, read_only=True) as b:
        for table in tables:
            columns = "* EXCLUDE (loaded_at)" if "ingested_files" not in table else "*"
            assert table_fingerprint(a, f"(SELECT {columns} FROM {table})") == table_fingerprint(
                b, f"(SELECT {columns} FROM {table})"
            ), table
        late = a.execute(
            "SELECT count(*) FROM raw.events WHERE CAST(occurred_at AS DATE) < "
            "try_cast(substr(split_part(source_file, '/', -1), 1, 10) AS DATE)"
        ).fetchone()[0]
    assert late > 0  # the arriving days carried events of earlier days, and they landed on their own day
    assert max(reads) < 0.2


def _run(landing: Path, warehouse: Path, **kwargs) -> dg.ExecuteInProcessResult:
    """The chain without its dbt tests: the tables themselves are compared."""
    result = dg.materialize(
        CHAIN,
        selection=dg.AssetSelection.all() - dg.AssetSelection.all_asset_checks(),
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "warehouse": WarehouseResource(path=str(warehouse)),
            "landing": LandingZoneResource(root=str(landing)),
            "dbt": dbt_domain_defs.resources["dbt"],
            "settings": SettingsResource.from_settings(reload_settings()),
        },
        **kwargs,
    )
    assert result.success
    return result


@pytest.mark.slow
def test_full_refresh_then_daily_runs_equal_a_full_rebuild(sample, tmp_path, monkeypatch):
    """Dagster and dbt: a full refresh through run config, then two daily partitions as their files
    arrive (late events for earlier days among them; before the second, old files are also re-sent,
    withdrawn or arrive very late), give the same marts, identity and event tables as one full
    rebuild over all files."""
    monkeypatch.setenv("TESSERA_AS_OF", "2026-10-31")
    days = _events_days(sample.landing)
    landing, daily = tmp_path / "landing", tmp_path / "daily.duckdb"
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(daily))
    _landing_until(sample.landing, landing, days[-3])
    refresh = {"full_refresh": True}
    _run(
        landing,
        daily,
        partition_key=days[-3].isoformat(),
        run_config={
            "ops": {
                op: {"config": refresh}
                for op in ("ingest_events", "dbt_daily_events", "dbt_before_identity_graph", "dbt_after_identity_graph")
            }
        },
    )
    moved = 0
    for day in days[-2:]:
        _landing_until(sample.landing, landing, day)
        if day == days[-1]:  # old files re-sent, withdrawn and very late too: this daily run also heals them
            _change_old_files(landing, days)
        before = _persons_of_events(daily)
        result = _run(landing, daily, partition_key=day.isoformat())
        metadata = {
            e.materialization.asset_key.path[-1]: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        assert (
            metadata["events"]["days_rebuilt"].value == f"[{day - dt.timedelta(days=3)}, {day + dt.timedelta(days=1)})"
        )
        assert metadata["events"]["files_read"].value < metadata["events"]["files_seen"].value / 5
        # The incremental models wrote only what changed: the new events and those identity moved, the
        # sessions of their devices, and the identity evidence of the changed days (a full rebuild
        # writes every row).
        for model, most in (("int_person_events", 0.1), ("int_session_days", 0.5), ("int_segment__event_days", 0.5)):
            assert 0 < metadata[model]["rows_written"].value < metadata[model]["dagster/row_count"].value * most, model
        after = _persons_of_events(daily)
        moved += sum(
            1
            for m, (person, event_day) in before.items()
            if event_day < day - dt.timedelta(days=3) and after.get(m, (person,))[0] != person
        )
    assert moved > 0  # the new days merged identities, so events of older days changed person

    full = tmp_path / "full.duckdb"
    monkeypatch.setenv("TESSERA_WAREHOUSE", str(full))
    _run(landing, full, tags=all_days_tags())
    tables = _tables(full)
    assert {
        "marts.identity_map",
        "marts.profiles",
        "marts.user_features",
        "intermediate.int_segment__events",
        "intermediate.int_sessions",
    } <= set(tables)
    assert _fingerprints(daily, tables) == _fingerprints(full, tables)
