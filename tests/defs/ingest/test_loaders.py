"""Ingestion: every bad line quarantined with its reason, nothing valid lost, re-runs identical,
and a run killed mid-write leaving the previous tables."""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from orchestration.defs.ingest.assets import report_metadata
from orchestration.defs.ingest.loaders import SOURCES, load_source
from orchestration.defs.ingest.loaders.common import LoadReport
from orchestration.defs.ingest.loaders.crm import CRM
from orchestration.defs.ingest.loaders.events import EVENT_COLUMNS, load_events
from orchestration.defs.ingest.loaders.orders import ORDERS
from orchestration.defs.ingest.loaders.tabular import load_csv_source
from orchestration.lib import reason_codes as F
from orchestration.lib import suppression
from orchestration.lib.day_window import DayWindow
from orchestration.lib.warehouse import connect, table_exists, table_fingerprint

NOW = dt.datetime(2026, 11, 1, 6, 0, 0)
RAW_TABLES = (
    "raw.events",
    "raw.crm_customers",
    "raw.order_lines",
    "raw.firmographics",
    "raw.erasure_requests",
    "raw.quarantine",
    "raw.ingested_files",
)


def _load_all(warehouse: Path, landing: Path, now=NOW) -> dict:
    with connect(warehouse) as con:
        return {s: load_source(con, landing, s, now) for s in SOURCES}


def _fingerprints(warehouse: Path) -> dict:
    with connect(warehouse, read_only=True) as con:
        return {t: table_fingerprint(con, t) for t in RAW_TABLES}


def _per_source(warehouse: Path) -> dict:
    """Fingerprints of each source's own table and of its rows in the tables sources share."""
    with connect(warehouse, read_only=True) as con:
        out = {t: table_fingerprint(con, t) for t in RAW_TABLES if t not in ("raw.quarantine", "raw.ingested_files")}
        for shared in ("raw.quarantine", "raw.ingested_files"):
            for source in SOURCES:
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW _of_source AS SELECT * FROM {shared} WHERE source = '{source}'"
                )
                out[(shared, source)] = table_fingerprint(con, "_of_source")
    return out


def _msg(**overrides) -> dict:
    base = {
        "messageId": "m-1",
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": "a-1",
        "userId": None,
        "timestamp": "2026-10-01T12:00:00.000Z",
        "receivedAt": "2026-10-01T12:00:01.000Z",
        "properties": {"sku": "X"},
        "context": {"ip": "198.51.100.1"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


# ---------------------------------------------------------------------------------------------
# Against the generated ground truth
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(sample, tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    reports = _load_all(warehouse, sample.landing)
    return warehouse, reports


def test_every_planted_fault_is_quarantined_with_its_reason_and_nothing_else(sample, loaded):
    warehouse, _ = loaded
    planted = collections.Counter(
        (f["source"], f["file"], f["reason_code"], f["raw"] if not f["reason_code"].startswith("file_") else "")
        for f in sample.truth_rows("faults")
        if not f["column"]
    )
    with connect(warehouse, read_only=True) as con:
        rows = con.execute("SELECT source, file, reason_code, raw, reason FROM raw.quarantine").fetchall()
    got = collections.Counter((s, f, c, "" if c.startswith("file_") else r) for s, f, c, r, _ in rows)
    assert planted - got == collections.Counter(), "planted faults that were not quarantined (or got another reason)"
    assert got - planted == collections.Counter(), "valid input that was wrongly rejected"
    assert all(reason and len(reason) > 10 for *_, reason in rows)


def test_a_bad_optional_field_is_nulled_and_recorded_and_its_record_loads(sample, loaded):
    warehouse, _ = loaded
    planted = [f for f in sample.truth_rows("faults") if f["column"]]
    assert {f["column"] for f in planted} >= {
        "email",
        "phone",
        "birth_date",
        "personalization_opt_in",
        "employee_count",
    }
    with connect(warehouse, read_only=True) as con:
        issues = con.execute("SELECT source, file, column_name, reason_code, reason FROM raw.field_issues").fetchall()
        crm_lines = {
            (f, n) for f, n in con.execute("SELECT source_file, source_line FROM raw.crm_customers").fetchall()
        }
    got = collections.Counter((s, f, c, code) for s, f, c, code, _ in issues)
    expected = collections.Counter((f["source"], f["file"], f["column"], f["reason_code"]) for f in planted)
    assert expected - got == collections.Counter(), "planted bad fields that were not recorded"
    assert got - expected == collections.Counter(), "valid fields recorded as issues"
    assert all(len(reason) > 10 for *_, reason in issues)
    # Each CRM record with a bad field loaded, at its own line, with that field NULL.
    for f in (f for f in planted if f["source"] == "crm"):
        customer_id = f["raw"].split(",")[0]
        with connect(warehouse, read_only=True) as con:
            values = con.execute(
                f"SELECT {f['column']} FROM raw.crm_customers WHERE customer_id = ? AND source_file = ?",
                [customer_id, f["file"]],
            ).fetchall()
        assert (None,) in values, (f["column"], customer_id)
    assert crm_lines


def test_collector_duplicates_count_once(sample, loaded):
    warehouse, reports = loaded
    assert reports["events"].deduplicated == sample.summary["counts"]["duplicate_messages"]
    with connect(warehouse, read_only=True) as con:
        total, distinct = con.execute("SELECT count(*), count(DISTINCT message_id) FROM raw.events").fetchone()
    assert total == distinct == sample.summary["counts"]["event_messages"]


def test_report_counts_add_up(loaded):
    warehouse, reports = loaded
    for source, r in reports.items():
        # Every line read is loaded, quarantined or a collapsed duplicate; whole-file rejects add one row each.
        assert r.rows_read == r.rows_loaded + r.deduplicated + r.rows_quarantined - len(r.files_rejected), source
        assert sum(r.quarantine_by_reason.values()) == r.rows_quarantined


def test_rerun_on_same_files_changes_nothing(sample, loaded, tmp_path):
    warehouse, _ = loaded
    before = _fingerprints(warehouse)
    _load_all(warehouse, sample.landing, now=NOW + dt.timedelta(days=3))
    assert _fingerprints(warehouse) == before


def test_an_unchanged_snapshot_is_not_read_again_and_a_changed_one_is(sample, tmp_path, monkeypatch):
    """A daily run of a snapshot source whose files are as at its last load reads nothing and keeps
    tables equal to a fresh load; an edited, added or removed file makes it read everything again."""
    from orchestration.defs.ingest.loaders import tabular

    landing = tmp_path / "landing"
    shutil.copytree(sample.landing / "crm", landing / "crm")
    # When a file was first seen differs between warehouses that saw the files on different days.
    crm_tables = [
        "(SELECT * EXCLUDE (loaded_at) FROM raw.crm_customers)",
        "(SELECT * EXCLUDE (loaded_at) FROM raw.quarantine WHERE source = 'crm')",
        "(SELECT * EXCLUDE (loaded_at) FROM raw.ingested_files WHERE source = 'crm')",
    ]

    def load(warehouse: Path, now: dt.datetime):
        with connect(warehouse) as con:
            report = load_csv_source(con, landing, CRM, now)
            return report, [table_fingerprint(con, t) for t in crm_tables]

    first, stored = load(tmp_path / "daily.duckdb", NOW)
    read_csv = tabular._read_csv_rows
    with monkeypatch.context() as mp:
        mp.setattr(tabular, "_read_csv_rows", lambda *a: pytest.fail("an unchanged snapshot was read again"))
        again, kept = load(tmp_path / "daily.duckdb", NOW + dt.timedelta(days=1))
    fresh, reloaded = load(tmp_path / "fresh.duckdb", NOW)
    assert (first.reused, again.reused, fresh.reused) == (False, True, False)
    assert kept == stored == reloaded
    assert (again.rows_read, again.rows_loaded, again.rows_quarantined, again.deduplicated) == (
        first.rows_read,
        first.rows_loaded,
        first.rows_quarantined,
        first.deduplicated,
    )

    files = sorted((landing / "crm").glob("*.csv"))
    with files[0].open("a", encoding="utf-8") as fh:  # edited: one more (malformed) row
        fh.write("not,enough,fields\n")
    files[1].unlink()
    calls = []
    monkeypatch.setattr(tabular, "_read_csv_rows", lambda *a: calls.append(1) or read_csv(*a))
    changed, _ = load(tmp_path / "daily.duckdb", NOW + dt.timedelta(days=2))
    assert calls and not changed.reused
    assert changed.files_seen == first.files_seen - 1 and changed.rows_quarantined >= 1
    monkeypatch.setattr(tabular, "_read_csv_rows", read_csv)
    assert load(tmp_path / "daily.duckdb", NOW)[1] == load(tmp_path / "fresh2.duckdb", NOW)[1]  # reused, as reloaded


def test_killed_run_leaves_previous_tables(sample, loaded, tmp_path):
    """A process that dies inside the swap transaction (os._exit: no cleanup, no rollback) loses nothing."""
    warehouse, _ = loaded
    copy = tmp_path / "warehouse.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    before = _fingerprints(copy)
    (sample.landing / "events" / "zz-extra.jsonl").write_text(json.dumps(_msg(messageId="new-1")) + "\n")
    try:
        script = textwrap.dedent(f"""
            import os
            from pathlib import Path
            from orchestration.defs.ingest.loaders.events import load_events
            from orchestration.lib.warehouse import connect

            class DiesMidSwap:
                def __init__(self, con): self.con = con
                def execute(self, sql, *args):
                    if sql.startswith("INSERT INTO raw.quarantine"):
                        os._exit(9)
                    return self.con.execute(sql, *args)
                def __getattr__(self, name): return getattr(self.con, name)

            with connect({str(copy)!r}) as con:
                load_events(DiesMidSwap(con), Path({str(sample.landing)!r}))
        """)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 9, proc.stderr
        assert _fingerprints(copy) == before
        import duckdb

        with duckdb.connect(str(copy), read_only=True) as raw_con:  # the kill left its staging table...
            assert table_exists(raw_con, "raw", "_events_loading")
        with connect(copy) as con:  # ...which the next write connection, any step's, drops
            assert not table_exists(con, "raw", "_events_loading")
            # Its values stay in the file's freed blocks until the next erasure step compacts it.
            assert suppression.compaction_due(con)
            load_events(con, sample.landing, now=NOW)
            assert not table_exists(con, "raw", "_events_loading")
            assert con.execute("SELECT count(*) FROM raw.events WHERE message_id = 'new-1'").fetchone()[0] == 1
    finally:
        (sample.landing / "events" / "zz-extra.jsonl").unlink()


@pytest.mark.parametrize("kill_after_s", [0.5, 2.0, 4.0])
def test_a_load_killed_with_sigkill_at_any_point_leaves_the_before_or_the_after(sample, loaded, tmp_path, kill_after_s):
    """SIGKILL (no cleanup, no rollback) at several points of a load of every source that has new
    data: each table is as before or as after, never half, and no staging table outlives the next
    connection; loading again gives what an unkilled load gives."""
    import signal

    warehouse, _ = loaded
    landing = tmp_path / "landing"
    shutil.copytree(sample.landing, landing)
    (landing / "events" / "zz-extra.jsonl").write_text(json.dumps(_msg(messageId="new-1")) + "\n")
    crm = sorted((landing / "crm").glob("*.csv"))[0]
    crm.write_text(crm.read_text() + "C-new-1,new@example.com,,,,,,,,GB,,2026-10-30T10:00:00Z,,\n")
    when = dt.datetime(2026, 11, 2, 6)

    def load_all(path: Path) -> None:
        with connect(path) as con:
            for source in SOURCES:
                load_source(con, landing, source, when)

    clean = tmp_path / "clean.duckdb"
    clean.write_bytes(warehouse.read_bytes())
    load_all(clean)
    assert _fingerprints(warehouse) != _fingerprints(clean)
    killed = tmp_path / "killed.duckdb"
    killed.write_bytes(warehouse.read_bytes())
    script = textwrap.dedent(f"""
        import datetime as dt
        from pathlib import Path
        from orchestration.defs.ingest.loaders import SOURCES, load_source
        from orchestration.lib.warehouse import connect
        with connect({str(killed)!r}) as con:
            for source in SOURCES:
                load_source(con, Path({str(landing)!r}), source, dt.datetime(2026, 11, 2, 6))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    time.sleep(kill_after_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # Each source commits alone: its own table and its rows of the shared ones are before or after.
    state = _per_source(killed)
    before, after = _per_source(warehouse), _per_source(clean)
    assert all(state[k] in (before[k], after[k]) for k in state), [
        k for k in state if state[k] not in (before[k], after[k])
    ]
    with connect(killed) as con:
        assert not con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND starts_with(table_name, '_')"
        ).fetchone()[0]
    load_all(killed)
    assert _fingerprints(killed) == _fingerprints(clean)


# ---------------------------------------------------------------------------------------------
# Hand-built fixtures with known answers
# ---------------------------------------------------------------------------------------------


def test_event_lines_get_the_expected_reason(tmp_path):
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    lines = {
        "ok-plain": json.dumps(_msg(messageId="ok-1")),
        "ok-offset": json.dumps(_msg(messageId="ok-2", timestamp="2026-10-01T14:00:00.000+02:00")),
        "ok-numeric-user": json.dumps(_msg(messageId="ok-3", userId=12345, anonymousId=None)),
        "ok-identify": json.dumps(_msg(messageId="ok-4", type="identify", event=..., traits={"email": "A@B.com"})),
        F.INVALID_JSON: '{"messageId": "x", "type": "track"',
        F.NOT_AN_OBJECT: '["track"]',
        F.MISSING_MESSAGE_ID: json.dumps(_msg(messageId=...)),
        F.UNKNOWN_TYPE: json.dumps(_msg(messageId="bad-1", type="group")),
        F.MISSING_IDS: json.dumps(_msg(messageId="bad-2", anonymousId=None, userId="  ")),
        F.MISSING_TIMESTAMP: json.dumps(_msg(messageId="bad-3", timestamp=...)),
        F.INVALID_TIMESTAMP: json.dumps(_msg(messageId="bad-4", timestamp="31/10/2026")),
        F.FUTURE_TIMESTAMP: json.dumps(_msg(messageId="bad-5", timestamp="2027-01-01T00:00:00Z")),
        F.MISSING_EVENT_NAME: json.dumps(_msg(messageId="bad-6", event="")),
        F.INVALID_FIELD_TYPE: json.dumps(_msg(messageId="bad-7", properties="sku=X")),
    }
    (landing / "events" / "a.jsonl").write_text("\r\n".join(lines.values()) + "\r\n\r\n", encoding="utf-8")
    with gzip.open(landing / "events" / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        # The same message from the server collector, received later: it must count once.
        fh.write(json.dumps(_msg(messageId="ok-1", receivedAt="2026-10-01T12:00:05.000Z")) + "\n")
    (landing / "events" / "c.jsonl.gz").write_bytes(b"plain text, not gzip")
    (landing / "events" / "d.jsonl").write_bytes(b'{"messageId": "caf\xe9"}\n')
    # A truncated gzip named like a readable file: DuckDB's error names f.jsonl.gz, which contains
    # the readable f.jsonl's path; only the broken one may be rejected.
    (landing / "events" / "f.jsonl").write_text(json.dumps(_msg(messageId="ok-5")) + "\n")
    (landing / "events" / "f.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines.values()) * 50).encode())[:200])

    with connect(tmp_path / "wh.duckdb") as con:
        report = load_events(con, landing, NOW)
        loaded = {
            r[0]: r[1:]
            for r in con.execute("SELECT message_id, user_id, occurred_at, source_file FROM raw.events").fetchall()
        }
        reasons = dict(con.execute("SELECT raw, reason_code FROM raw.quarantine WHERE line IS NOT NULL").fetchall())
        files = dict(con.execute("SELECT file, reason_code FROM raw.quarantine WHERE line IS NULL").fetchall())

    assert set(loaded) == {"ok-1", "ok-2", "ok-3", "ok-4", "ok-5"}
    assert loaded["ok-1"][2] == "events/a.jsonl", "the first-received copy wins"
    assert loaded["ok-2"][1] == dt.datetime(2026, 10, 1, 12, 0), "offsets are converted to UTC"
    assert loaded["ok-3"][0] == "12345"
    expected = {line: code for code, line in lines.items() if not code.startswith("ok-")}
    assert reasons == expected
    assert files == {
        "events/c.jsonl.gz": F.FILE_NOT_GZIP,
        "events/d.jsonl": F.FILE_NOT_UTF8,
        "events/f.jsonl.gz": F.FILE_UNREADABLE,
    }
    assert report.deduplicated == 1


def test_csv_rows_keep_their_exact_text_and_columns_are_matched_by_name(tmp_path):
    landing = tmp_path / "landing"
    (landing / "orders").mkdir(parents=True)
    text = (
        "\ufeffstatus,order_id,amount,currency,ordered_at,customer_id,email,channel,note\n"
        'completed,O1,10.50,USD,2026-10-01T10:00:00Z,C1,,web,"a note\nover two lines"\n'
        "refunded,O2,5,usd,2026-10-02T10:00:00Z,,Guest@Example.com ,store,\n"
        'completed,O3,"12,50",USD,2026-10-02T10:00:00Z,C1,,web,\n'
        "completed,O4,1.00,USD,2026-10-02T10:00:00Z,C1,,web\n"
        "\n"
        "pending,O5,1.00,USD,2026-10-02T10:00:00Z,C1,,web,\n"
    )
    (landing / "orders" / "o.csv").write_text(text, encoding="utf-8")
    (landing / "orders" / "headerless.csv").write_text("completed,O9,1,USD,2026-10-01T10:00:00Z,C1,,web\n")
    (landing / "orders" / "empty.csv").write_text("")
    with connect(tmp_path / "wh.duckdb") as con:
        load_csv_source(con, landing, ORDERS, NOW)
        rows = con.execute(
            "SELECT order_id, amount, currency, status, email, source_line FROM raw.order_lines ORDER BY order_id"
        ).fetchall()
        quarantine = con.execute(
            "SELECT file, line, reason_code, raw FROM raw.quarantine ORDER BY file, line"
        ).fetchall()
    assert [r[0] for r in rows] == ["O1", "O2"]
    assert float(rows[1][1]) == 5.0 and rows[1][2] == "USD" and rows[1][4] == "Guest@Example.com"
    assert rows[1][5] == 4, "line numbers count the physical lines of a multi-line record"
    assert quarantine == [
        ("orders/empty.csv", None, F.FILE_MISSING_HEADER, ""),
        ("orders/headerless.csv", None, F.FILE_MISSING_HEADER, "completed,O9,1,USD,2026-10-01T10:00:00Z,C1,,web\n"),
        ("orders/o.csv", 5, F.INVALID_NUMBER, 'completed,O3,"12,50",USD,2026-10-02T10:00:00Z,C1,,web,'),
        ("orders/o.csv", 6, F.WRONG_FIELD_COUNT, "completed,O4,1.00,USD,2026-10-02T10:00:00Z,C1,,web"),
        ("orders/o.csv", 8, F.INVALID_VALUE, "pending,O5,1.00,USD,2026-10-02T10:00:00Z,C1,,web,"),
    ]


def test_a_file_with_only_some_columns_loads_them_and_says_which_are_absent(tmp_path):
    landing = tmp_path / "landing"
    (landing / "crm").mkdir(parents=True)
    (landing / "crm" / "partial.csv").write_text("Updated_At,customer_id,email\n2026-01-01,C1,a@example.com\n")
    (landing / "crm" / "no_date.csv").write_text("customer_id,email\nC2,b@example.com\n")
    with connect(tmp_path / "wh.duckdb") as con:
        report = load_csv_source(con, landing, CRM, NOW)
        rows = con.execute("SELECT customer_id, email_normalised, phone, country FROM raw.crm_customers").fetchall()
        quarantine = con.execute("SELECT file, reason_code, reason FROM raw.quarantine").fetchall()
    assert rows == [("C1", "a@example.com", None, None)]
    assert report.columns_absent == {
        "crm/partial.csv": ", ".join(c for c in CRM.columns if c not in ("customer_id", "email", "updated_at"))
    }
    [(file, code, reason)] = quarantine
    assert (file, code) == ("crm/no_date.csv", F.FILE_MISSING_HEADER)
    assert "lacks the required column(s) updated_at" in reason and "sources.yml" in reason


def test_the_load_report_reaches_dagster_as_tables_largest_count_first():
    report = LoadReport(
        "crm",
        "crm_customers",
        quarantine_by_reason={F.INVALID_EMAIL: 2, F.MISSING_REQUIRED: 5},
        files_rejected={"crm/b.csv": F.FILE_NOT_UTF8, "crm/a.csv": F.FILE_MISSING_HEADER},
        columns_absent={"crm/c.csv": "phone, country"},
    )
    metadata = report_metadata(report, DayWindow())

    def table(key: str) -> tuple[dict, list[dict]]:
        return {c.name: c.type for c in metadata[key].schema.columns}, [r.data for r in metadata[key].records]

    assert table("quarantine_by_reason") == (
        {"reason": "string", "rows": "int"},
        [{"reason": F.MISSING_REQUIRED, "rows": 5}, {"reason": F.INVALID_EMAIL, "rows": 2}],
    )
    assert table("field_issues_by_reason") == ({"reason": "string", "fields nulled": "int"}, [])
    assert table("files_rejected") == (
        {"file": "string", "reason": "string"},
        [{"file": "crm/a.csv", "reason": F.FILE_MISSING_HEADER}, {"file": "crm/b.csv", "reason": F.FILE_NOT_UTF8}],
    )
    assert table("columns_absent") == (
        {"file": "string", "columns": "string"},
        [{"file": "crm/c.csv", "columns": "phone, country"}],
    )


def test_crm_phones_are_normalised_to_e164_with_the_record_country(tmp_path):
    landing = tmp_path / "landing"
    (landing / "crm").mkdir(parents=True)
    header = ",".join(CRM.columns)
    rows = [
        "C1,a@x.com,020 7946 0958,A,B,1980-01-01,,,,GB,,2026-01-01T00:00:00Z,yes,TRUE",
        "C2,b@x.com,+44 20 7946 0958,A,B,,,,,GB,,2026-01-01T00:00:00Z,0,false",
        "C3,c@x.com,(201) 555-0123,A,B,,,,,US,,2026-01-01T00:00:00Z,,",
        "C4,d@x.com,call me,A,B,,,,,US,,2026-01-01T00:00:00Z,,",
        # Possible but unassigned (area codes 286 and 471 do not exist): kept, flagged not valid.
        "C5,e@x.com,(286) 746-7627,A,B,,,,,US,,2026-01-01T00:00:00Z,,",
        "C6,f@x.com,+1 471-305-6985,A,B,,,,,,,2026-01-01T00:00:00Z,,",
    ]
    (landing / "crm" / "c.csv").write_text("\n".join([header, *rows]) + "\n")
    with connect(tmp_path / "wh.duckdb") as con:
        load_csv_source(con, landing, CRM, NOW)
        got = con.execute(
            "SELECT customer_id, phone, phone_e164, phone_valid, marketing_opt_in, personalization_opt_in "
            "FROM raw.crm_customers ORDER BY 1"
        ).fetchall()
        rejected = con.execute("SELECT reason_code FROM raw.quarantine").fetchall()
        issues = con.execute("SELECT line, column_name, reason_code, raw, customer_id FROM raw.field_issues").fetchall()
    assert got == [
        ("C1", "020 7946 0958", "+442079460958", True, True, True),
        ("C2", "+44 20 7946 0958", "+442079460958", True, False, False),
        ("C3", "(201) 555-0123", "+12015550123", True, None, None),
        ("C4", None, None, None, None, None),
        ("C5", "(286) 746-7627", "+12867467627", False, None, None),
        ("C6", "+1 471-305-6985", "+14713056985", False, None, None),
    ]
    assert rejected == []
    assert issues == [(5, "phone", F.INVALID_PHONE, "call me", "C4")]


def test_missing_source_folder_gives_an_empty_table(tmp_path):
    (tmp_path / "landing").mkdir()
    with connect(tmp_path / "wh.duckdb") as con:
        report = load_source(con, tmp_path / "landing", "privacy", NOW)
        assert con.execute("SELECT count(*) FROM raw.erasure_requests").fetchone()[0] == 0
    assert report.rows_read == 0 and report.files_seen == 0


def test_batched_event_scans_give_the_same_tables(sample, loaded, tmp_path):
    warehouse, _ = loaded
    one_file_per_batch = tmp_path / "batched.duckdb"
    with connect(one_file_per_batch) as con:
        report = load_events(con, sample.landing, NOW, batch_bytes=1)
        for t in ("raw.events", "(SELECT * FROM raw.quarantine WHERE source = 'events')"):
            with connect(warehouse, read_only=True) as ref:
                assert table_fingerprint(con, t) == table_fingerprint(ref, t), t
    assert report.rows_read > 0


def test_user_agents_are_parsed_into_device_types(tmp_path):
    agents = {
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1": "tablet",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1": "mobile",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36": "desktop",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "bot",
    }
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    lines = [json.dumps(_msg(messageId=f"m{i}", context={"userAgent": ua})) for i, ua in enumerate(agents)]
    (landing / "events" / "e.jsonl").write_text("\n".join(lines) + "\n")
    with connect(tmp_path / "wh.duckdb") as con:
        load_events(con, landing, NOW)
        parsed = dict(con.execute("SELECT user_agent, device_type FROM raw.user_agents").fetchall())
    assert parsed == agents


def test_poison_event_values_never_load(tmp_path):
    """A far-future timestamp is judged by the load's clock, not by the message's own receivedAt; a
    far-future receivedAt alone is nulled; a look-alike trait email leaves the traits; a conflicting
    copy of a message is quarantined with both texts; a line of 3 MB loads like any other."""
    events = tmp_path / "landing" / "events"
    events.mkdir(parents=True)
    lines = [
        _msg(messageId="far", timestamp="9999-12-31T00:00:00Z", receivedAt="9999-12-31T00:00:00Z"),
        _msg(messageId="late-receipt", receivedAt="9999-12-31T00:00:00Z"),
        _msg(messageId="look", type="identify", event=..., traits={"email": "ann\u0456@example.com", "name": "Ann"}),
        _msg(messageId="dup", properties={"revenue": 10}),
        _msg(messageId="dup", properties={"revenue": 99999}, timestamp="2026-10-01T12:00:05.000Z"),
        _msg(messageId="dup", properties={"revenue": 10}, context={"library": {"name": "server"}}),
        _msg(messageId="giant", properties={"blob": "x" * (3 * 1024**2)}),
    ]
    (events / "e.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n")
    with connect(tmp_path / "wh.duckdb") as con:
        report = load_events(con, tmp_path / "landing", NOW)
        loaded = dict(con.execute("SELECT message_id, received_at FROM raw.events").fetchall())
        traits = con.execute("SELECT traits FROM raw.events WHERE message_id = 'look'").fetchone()[0]
        quarantined = con.execute("SELECT reason_code, raw FROM raw.quarantine ORDER BY line").fetchall()
        issues = con.execute(
            "SELECT column_name, reason_code, raw, anonymous_id FROM raw.field_issues ORDER BY line"
        ).fetchall()
    assert set(loaded) == {"late-receipt", "look", "dup", "giant"} and loaded["late-receipt"] is None
    assert json.loads(traits) == {"name": "Ann"}
    assert [code for code, _ in quarantined] == [F.FUTURE_TIMESTAMP, F.CONFLICTING_DUPLICATE]
    both = json.loads(quarantined[1][1])
    assert both["kept"]["properties"] == {"revenue": 10} and both["conflicting"]["properties"] == {"revenue": 99999}
    assert report.deduplicated == 1  # the third copy says what the first said (its context differs)
    assert issues == [
        ("receivedAt", F.FUTURE_TIMESTAMP, "9999-12-31 00:00:00", "a-1"),
        ("traits.email", F.MIXED_SCRIPT_EMAIL, "ann\u0456@example.com", "a-1"),
    ]


def test_opted_out_crm_records_that_cannot_load_still_withhold(tmp_path):
    landing = tmp_path / "landing"
    (landing / "crm").mkdir(parents=True)
    rows = [
        "C1,a@x.com,,A,B,,,,,GB,,2026-01-01T00:00:00Z,yes,yes",
        "C1,a@x.com,,A,B,,,,,GB,,,no,no",  # no updated_at
        ",b@x.com,,A,B,,,,,GB,,2026-01-01T00:00:00Z,,false",  # no customer_id
        ",c@x.com,,A,B,,,,,GB,,2026-01-01T00:00:00Z,,true",  # no opt-out: nothing to withhold
        "C4,Ann Müller <D@X.com>,555-0100,A,B,31/12/1985,,,,XX,,2026-01-01T00:00:00Z,N/A,",
    ]
    (landing / "crm" / "c.csv").write_text(",".join(CRM.columns) + "\n" + "\n".join(rows) + "\n")
    with connect(tmp_path / "wh.duckdb") as con:
        report = load_csv_source(con, landing, CRM, NOW)
        withheld = con.execute(
            "SELECT customer_id, email_normalised, updated_at, personalization_opt_in, source_line "
            "FROM raw.crm_rejected_opt_outs ORDER BY source_line"
        ).fetchall()
        c4 = con.execute(
            "SELECT email, email_normalised, phone, birth_date, country, marketing_opt_in "
            "FROM raw.crm_customers WHERE customer_id = 'C4'"
        ).fetchone()
    assert withheld == [("C1", "a@x.com", None, False, 3), (None, "b@x.com", dt.datetime(2026, 1, 1), False, 4)]
    assert report.withheld_opt_outs == 2
    assert c4 == ("Ann Müller <D@X.com>", "d@x.com", None, None, None, None)
    assert report.field_issues_by_reason == {
        F.INVALID_PHONE: 1,
        F.INVALID_DATE: 1,
        F.INVALID_VALUE: 1,
        F.INVALID_BOOLEAN: 1,
    }


def test_the_fields_the_product_reads_are_flattened_once_at_load_and_a_bad_number_is_nulled_and_recorded(tmp_path):
    """raw.events carries the Segment fields as typed columns (dbt's staging reads them, never the
    JSON): text trimmed, empty text as NULL, country upper-case, category and device type lower-case,
    numbers typed. A number that is not one is nulled and recorded; its message loads."""
    events = tmp_path / "landing" / "events"
    events.mkdir(parents=True)
    lines = [
        _msg(
            messageId="full",
            event="Order Completed",
            properties={"order_id": " o-7 ", "revenue": "12.5", "category": " Shoes", "product_id": "", "query": 3},
            context={
                "ip": "198.51.100.1",
                "userAgent": "  ",
                "location": {"country": "de "},
                "device": {"type": "Mobile"},
                "page": {"path": "/p", "url": "https://x.test/p", "referrer": "https://ref.test"},
                "campaign": {"source": "news", "medium": "email", "name": "spring"},
                "library": {"name": "analytics.js"},
                "locale": "de-DE",
                "timezone": "Europe/Berlin",
            },
        ),
        _msg(messageId="bad-number", properties={"revenue": "twelve", "percent": {"of": 3}, "percent_watched": 40}),
        _msg(messageId="bare", properties=..., context=...),
    ]
    (events / "e.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n")
    with connect(tmp_path / "wh.duckdb") as con:
        load_events(con, tmp_path / "landing", NOW)
        rows = {r["message_id"]: r for r in con.execute("SELECT * FROM raw.events").df().to_dict("records")}
        issues = con.execute(
            "SELECT line, column_name, reason_code, raw FROM raw.field_issues ORDER BY line, column_name"
        ).fetchall()
    full = rows["full"]
    assert (full["order_id"], float(full["revenue"]), full["category"], full["product_id"]) == (
        "o-7",
        12.5,
        "shoes",
        None,
    )
    assert (full["search_query"], full["user_agent"], full["country"], full["device_type_reported"]) == (
        "3",
        None,
        "DE",
        "mobile",
    )
    assert (full["page_path"], full["page_referrer"], full["campaign_medium"], full["library_name"]) == (
        "/p",
        "https://ref.test",
        "email",
        "analytics.js",
    )
    assert (full["locale"], full["timezone"], full["ip"]) == ("de-DE", "Europe/Berlin", "198.51.100.1")
    bad = rows["bad-number"]
    assert bad["video_percent_watched"] == 40.0 and pd.isna(bad["revenue"]) and pd.isna(bad["scroll_percent"])
    assert issues == [
        (2, "properties.percent", F.INVALID_NUMBER, '{"of":3}'),
        (2, "properties.revenue", F.INVALID_NUMBER, "twelve"),
    ]
    assert all(pd.isna(rows["bare"][c]) for c in ("ip", "order_id", "category", "country", "revenue"))


def test_a_warehouse_of_an_earlier_release_gets_its_events_loaded_again_whole(tmp_path):
    """A daily load cannot put a day's rows beside rows of other columns: when raw.events lacks a
    column (a warehouse written before the columns were flattened at load), the load reads every file."""
    events = tmp_path / "landing" / "events"
    events.mkdir(parents=True)
    days = ("2026-10-01", "2026-10-02")
    for i, day in enumerate(days):
        message = _msg(messageId=f"m{i}", timestamp=f"{day}T12:00:00Z", properties={"revenue": 5})
        (events / f"{day}.jsonl").write_text(json.dumps(message) + "\n")
    with connect(tmp_path / "wh.duckdb") as con:
        load_events(con, tmp_path / "landing", NOW)
        # EVENT_COLUMNS, which a load compares with the stored table, is what a load writes.
        assert tuple(r[0] for r in con.execute("DESCRIBE raw.events").fetchall()) == EVENT_COLUMNS
        con.execute("ALTER TABLE raw.events DROP COLUMN revenue")
        con.execute("ALTER TABLE raw.events DROP COLUMN traits_email")
        report = load_events(
            con, tmp_path / "landing", NOW, window=DayWindow(dt.date(2026, 10, 2), dt.date(2026, 10, 3))
        )
        columns = [r[0] for r in con.execute("DESCRIBE raw.events").fetchall()]
        revenue = con.execute("SELECT message_id, revenue FROM raw.events ORDER BY 1").fetchall()
    assert report.files_read == 2 and "traits_email" in columns
    assert [(m, float(r)) for m, r in revenue] == [("m0", 5.0), ("m1", 5.0)]


def test_an_order_lines_product_and_quantity_are_optional_and_a_bad_quantity_is_nulled_not_the_line(tmp_path):
    landing = tmp_path / "landing"
    (landing / "orders").mkdir(parents=True)
    (landing / "orders" / "o.csv").write_text(
        "order_id,customer_id,ordered_at,amount,status,product_id,quantity\n"
        "O1,C1,2026-10-01T10:00:00Z,10.00,completed, SKU-1 ,2\n"
        "O1,C1,2026-10-01T10:00:00Z,5.00,completed,SKU-2,two\n"
        "O2,C1,2026-10-02T10:00:00Z,5.00,completed,,\n"
        "O3,C1,2026-10-02T10:00:00Z,5.00,completed,SKU-3,-1\n"
    )
    with connect(tmp_path / "wh.duckdb") as con:
        load_csv_source(con, landing, ORDERS, NOW)
        rows = con.execute(
            "SELECT order_id, product_id, quantity FROM raw.order_lines ORDER BY order_id, amount DESC"
        ).fetchall()
        issues = con.execute("SELECT line, column_name, reason_code FROM raw.field_issues ORDER BY line").fetchall()
    assert rows == [("O1", "SKU-1", 2.0), ("O1", "SKU-2", None), ("O2", None, None), ("O3", "SKU-3", None)]
    assert issues == [(3, "quantity", F.INVALID_NUMBER), (5, "quantity", F.INVALID_NUMBER)]
