"""Erasure on a hand-built warehouse: every request type resolves, every row goes, a second run
knows it is done, and ingestion drops the person's rows when they come back."""

from __future__ import annotations

import datetime as dt
import json

from orchestration.defs.ingest.loaders import load_source
from orchestration.defs.privacy.assets import _report_metadata
from orchestration.defs.privacy.erasure import process_erasures, remaining_traces
from orchestration.lib.identifiers import sha256_hex
from orchestration.lib.warehouse import connect

ANN_PHONE = "+12015550123"
REQUESTS = [("phone", "201.555.0123"), ("email", "nobody@example.com")]


def _warehouse(path, requests: list[tuple[str, str]]):
    with connect(path) as con:
        con.execute(
            """CREATE TABLE raw.crm_customers AS SELECT * FROM (VALUES
            ('C1', 'Ann@Example.com', '(201) 555-0123', ?, 'US'),
            ('C2', 'bob@example.com', NULL, NULL, 'GB')) t(customer_id, email, phone, phone_e164, country)""",
            [ANN_PHONE],
        )
        con.execute(
            """CREATE TABLE marts.identity_map AS SELECT * FROM (VALUES
            ('customer_id', 'C1', 'p_ann'), ('user_id', 'u1', 'p_ann'), ('anonymous_id', 'a1', 'p_ann'),
            ('email_sha256', ?, 'p_ann'), ('phone_sha256', ?, 'p_ann'),
            ('customer_id', 'C2', 'p_bob')) t(identifier_type, identifier, person_id)""",
            [sha256_hex("ann@example.com"), sha256_hex(ANN_PHONE)],
        )
        con.execute("""CREATE TABLE raw.events AS SELECT * FROM (VALUES
            ('m1', 'u1', NULL, '{"email": "ann@example.com"}'::JSON), ('m2', NULL, 'a1', NULL::JSON),
            ('m3', 'u2', 'a2', NULL::JSON)) t(message_id, user_id, anonymous_id, traits)""")
        con.execute(
            "CREATE TABLE marts.segment_membership AS SELECT * FROM (VALUES ('p_ann', 'vip'), ('p_bob', 'vip')) "
            "t(person_id, segment_name)"
        )
        con.execute(
            "INSERT INTO raw.quarantine VALUES ('orders', 'orders/x.csv', 2, 'invalid_date', 'bad date', "
            "'O9,C1,ann@example.com,yesterday,10,USD,completed,web', TIMESTAMP '2026-10-01')"
        )
        con.execute(
            "CREATE TABLE raw.erasure_requests (requested_at TIMESTAMP, identifier_type VARCHAR, "
            "identifier VARCHAR, identifier_sha256 VARCHAR)"
        )
        con.executemany(
            "INSERT INTO raw.erasure_requests VALUES (TIMESTAMP '2026-10-30', ?, ?, sha256(?))",
            [(t, i, i) for t, i in requests],
        )


def test_a_national_phone_request_erases_everything_once(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _warehouse(warehouse, REQUESTS)
    with connect(warehouse) as con:
        first = process_erasures(con, now=dt.datetime(2026, 11, 1))
        assert (first.erased, first.not_found, first.persons) == (1, 1, 1)
        # Five identifiers, the person_id, and the email nobody holds yet: its data is dropped when it comes.
        assert first.identifiers_suppressed == 7
        assert first.rows_removed == {
            "marts.identity_map": 5,
            "marts.segment_membership": 1,
            "raw.crm_customers": 1,
            "raw.events": 2,
            "raw.field_issues": 0,
            "raw.quarantine": 1,
        }
        # In the asset's metadata: the tables that lost rows, most first.
        assert [r.data for r in _report_metadata(first)["rows_removed_by_table"].records] == [
            {"table": "marts.identity_map", "rows removed": 5},
            {"table": "raw.events", "rows removed": 2},
            {"table": "marts.segment_membership", "rows removed": 1},
            {"table": "raw.crm_customers", "rows removed": 1},
            {"table": "raw.quarantine", "rows removed": 1},
        ]
        assert remaining_traces(con) == {}
        assert con.execute("SELECT customer_id FROM raw.crm_customers").fetchall() == [("C2",)]
        assert con.execute("SELECT message_id FROM raw.events").fetchall() == [("m3",)]
        # Processed requests keep their hash as proof, not the identifier.
        assert con.execute(
            "SELECT count(identifier), count(identifier_sha256) FROM raw.erasure_requests"
        ).fetchone() == (0, 2)
        # The same file loaded again: both are known, the one nobody held included (it was suppressed).
        con.execute("DELETE FROM raw.erasure_requests")
        con.executemany(
            "INSERT INTO raw.erasure_requests VALUES (TIMESTAMP '2026-10-30', ?, ?, sha256(?))",
            [(t, i, i) for t, i in REQUESTS],
        )
        second = process_erasures(con, now=dt.datetime(2026, 11, 2))
        assert (second.erased, second.already_erased, second.not_found) == (0, 2, 0)
        nothing = _report_metadata(second)["rows_removed_by_table"]
        assert nothing.records == [] and {c.name: c.type for c in nothing.schema.columns} == {
            "table": "string",
            "rows removed": "int",
        }
        log = con.execute("SELECT outcome, count(*) FROM privacy.erasure_log GROUP BY 1 ORDER BY 1").fetchall()
    assert log == [("erased", 1), ("not_found", 1)]


def test_ingestion_drops_an_erased_persons_rows(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _warehouse(warehouse, [("customer_id", "C1")])
    landing = tmp_path / "landing"
    (landing / "orders").mkdir(parents=True)
    (landing / "orders" / "late.csv").write_text(
        "order_id,customer_id,email,ordered_at,amount,currency,status,channel\n"
        "O1,,ANN@example.com ,2026-10-20T10:00:00Z,10.00,USD,completed,web\n"
        "O2,C1,,2026-10-20T10:00:00Z,10.00,USD,completed,web\n"
        "O3,C2,,2026-10-20T10:00:00Z,10.00,USD,completed,web\n"
        "O4,C1,,not-a-date,10.00,USD,completed,web\n"
    )
    with connect(warehouse) as con:
        process_erasures(con)
        report = load_source(con, landing, "orders")
        orders = con.execute("SELECT order_id FROM raw.order_lines").fetchall()
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine WHERE source = 'orders'").fetchone()[0]
    assert orders == [("O3",)]
    assert (report.rows_suppressed, report.quarantine_suppressed, quarantined) == (2, 1, 0)


def test_a_request_reaches_linked_rows_and_every_written_form_before_any_identity_map(tmp_path):
    """A first run: no identity map yet. The email links the CRM record, whose customer id links the
    order; the identify event links the user id and the device, whose events go too. Quarantined
    text holding the person in any form goes; other people's rows stay."""
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("""CREATE TABLE raw.crm_customers AS SELECT * FROM (VALUES
            ('C7', 'zoe@example.com', 'zoe@example.com', '(201) 555-0199', '+12015550199', 'US'),
            ('C8', 'max@example.com', 'max@example.com', NULL, NULL, 'US'))
            t(customer_id, email, email_normalised, phone, phone_e164, country)""")
        con.execute("""CREATE TABLE raw.events AS SELECT * FROM (VALUES
            ('m1', 'u7', 'a7', '{"email": "zoe@example.com"}'::JSON), ('m2', NULL, 'a7', NULL::JSON),
            ('m3', 'u7', NULL, NULL::JSON), ('m4', 'u8', 'a8', NULL::JSON)) t(message_id, user_id, anonymous_id, traits)""")
        con.execute(
            "CREATE TABLE raw.order_lines AS SELECT * FROM (VALUES ('O7', 'C7'), ('O8', 'C8')) t(order_id, customer_id)"
        )
        con.executemany(
            "INSERT INTO raw.quarantine VALUES ('events', 'events/x.jsonl', ?, 'invalid_json', 'bad', ?, "
            "TIMESTAMP '2026-10-01')",
            [
                (1, '{"context": {"page": {"url": "https://shop.example/?email=zoe%40example.com"}}'),
                (2, '{"traits": {"email": "zoe\\u0040example.com"}, "type": "identify"'),
                (3, "C9,Zoe Quinn,(201) 555-0199,12 High Street"),
                (4, '{"context": {"page": {"url": "https://shop.example/?email=max%40example.com"}}'),
            ],
        )
        con.execute(
            "INSERT INTO raw.field_issues (source, file, line, column_name, reason_code, reason, raw, loaded_at) "
            "VALUES ('crm', 'crm/c.csv', 9, 'email', 'invalid_email', 'email \"ZOE@example.com \" is bad', "
            "'C10,ZOE@example.com ', TIMESTAMP '2026-10-01')"
        )
        con.execute(
            "CREATE TABLE raw.erasure_requests AS SELECT TIMESTAMP '2026-10-30' AS requested_at, 'email' AS "
            "identifier_type, 'Zoe@Example.com' AS identifier, sha256('zoe@example.com') AS identifier_sha256"
        )
        report = process_erasures(con, now=dt.datetime(2026, 11, 1))
        left = {
            t: con.execute(q).fetchall()
            for t, q in {
                "crm": "SELECT customer_id FROM raw.crm_customers",
                "events": "SELECT message_id FROM raw.events",
                "orders": "SELECT order_id FROM raw.order_lines",
                "quarantine": "SELECT line FROM raw.quarantine",
                "field_issues": "SELECT line FROM raw.field_issues",
            }.items()
        }
        assert remaining_traces(con) == {}
    assert (report.erased, report.not_found) == (0, 1)  # nobody in a map yet; the rows went all the same
    assert left == {
        "crm": [("C8",)],
        "events": [("m4",)],
        "orders": [("O8",)],
        "quarantine": [(4,)],
        "field_issues": [],
    }


def test_a_first_run_drops_what_the_requested_identifier_ties_to_as_it_loads(tmp_path):
    """No identity map and no data yet: the request suppresses the email; the events that arrive
    then drop the identify call that gives it, and every event of the user and device it names."""
    landing = tmp_path / "landing"
    (landing / "events").mkdir(parents=True)
    lines = [
        {
            "messageId": "e1",
            "type": "identify",
            "userId": "u-kim-9",
            "anonymousId": "a-kim-9",
            "traits": {"email": "kim@example.org"},
            "timestamp": "2026-10-01T10:00:00Z",
        },
        {
            "messageId": "e2",
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": "a-kim-9",
            "timestamp": "2026-10-02T10:00:00Z",
        },
        {
            "messageId": "e3",
            "type": "track",
            "event": "Product Viewed",
            "userId": "u-kim-9",
            "timestamp": "2026-10-03T10:00:00Z",
        },
        {
            "messageId": "e4",
            "type": "track",
            "event": "Product Viewed",
            "userId": "u-lee-3",
            "timestamp": "2026-10-03T10:00:00Z",
        },
    ]
    (landing / "events" / "e.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n")
    with connect(tmp_path / "w.duckdb") as con:
        con.execute(
            "CREATE TABLE raw.erasure_requests AS SELECT TIMESTAMP '2026-10-30' AS requested_at, "
            "'email' AS identifier_type, 'Kim@Example.org' AS identifier, "
            "sha256('kim@example.org') AS identifier_sha256"
        )
        assert process_erasures(con).not_found == 1
        report = load_source(con, landing, "events", dt.datetime(2026, 11, 1))
        kept = con.execute("SELECT message_id FROM raw.events").fetchall()
    assert kept == [("e4",)] and report.rows_suppressed == 3


def test_a_shared_device_takes_nobody_else_with_it(tmp_path):
    """Kim and Lee both signed in on the tablet a-tab. Erasing Kim removes Kim's events, and neither
    Lee's events on the tablet nor Lee: the tablet is not Kim's alone, so it is not suppressed."""
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("""CREATE TABLE raw.events AS SELECT * FROM (VALUES
            ('e1', 'u-kim-9', 'a-tab', '{"email": "kim@example.org"}'::JSON), ('e2', 'u-kim-9', 'a-tab', NULL::JSON),
            ('e3', 'u-lee-3', 'a-tab', NULL::JSON), ('e4', 'u-lee-3', 'a-lee-phone', NULL::JSON),
            ('e5', 'u-kim-9', 'a-kim-phone', NULL::JSON)) t(message_id, user_id, anonymous_id, traits)""")
        con.execute("""CREATE TABLE marts.identity_map AS SELECT * FROM (VALUES
            ('user_id', 'u-kim-9', 'p_kim'), ('anonymous_id', 'a-tab', 'p_kim'), ('anonymous_id', 'a-kim-phone', 'p_kim'),
            ('user_id', 'u-lee-3', 'p_lee'), ('anonymous_id', 'a-lee-phone', 'p_lee')) t(identifier_type, identifier, person_id)""")
        con.execute(
            "CREATE TABLE raw.erasure_requests AS SELECT TIMESTAMP '2026-10-30' AS requested_at, "
            "'user_id' AS identifier_type, 'u-kim-9' AS identifier, sha256('u-kim-9') AS identifier_sha256"
        )
        assert process_erasures(con).erased == 1
        events = con.execute("SELECT message_id FROM raw.events ORDER BY 1").fetchall()
        people = con.execute("SELECT DISTINCT person_id FROM marts.identity_map").fetchall()
        listed = {t for (t,) in con.execute("SELECT identifier_type FROM privacy.suppression_list").fetchall()}
        assert remaining_traces(con) == {}
    assert events == [("e3",), ("e4",)] and people == [("p_lee",)]
    assert "anonymous_id" in listed  # Kim's own phone; the tablet is not listed


def test_a_request_by_a_phone_the_map_does_not_link_still_reaches_its_customer(tmp_path):
    """(201) 555-0147 is possible but not assigned, so it links nobody and the map lacks it; the CRM
    record that carries it is the requester's, and goes with the rest of them."""
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("""CREATE TABLE raw.crm_customers AS SELECT * FROM (VALUES
            ('C5', 'sam@example.org', '(201) 555-0147', '+12015550147', false, 'US'),
            ('C6', 'ida@example.org', NULL, NULL, NULL, 'US')) t(customer_id, email_normalised, phone, phone_e164, phone_valid, country)""")
        con.execute(
            """CREATE TABLE marts.identity_map AS SELECT * FROM (VALUES
            ('customer_id', 'C5', 'p_sam'), ('email_sha256', ?, 'p_sam'), ('customer_id', 'C6', 'p_ida'))
            t(identifier_type, identifier, person_id)""",
            [sha256_hex("sam@example.org")],
        )
        con.execute(
            "CREATE TABLE raw.erasure_requests AS SELECT TIMESTAMP '2026-10-30' AS requested_at, "
            "'phone' AS identifier_type, '201 555 0147' AS identifier, sha256('201 555 0147') AS identifier_sha256"
        )
        report = process_erasures(con)
        left = con.execute("SELECT customer_id FROM raw.crm_customers").fetchall()
        people = con.execute("SELECT DISTINCT person_id FROM marts.identity_map").fetchall()
        logged = con.execute("SELECT outcome, person_sha256 FROM privacy.erasure_log").fetchall()
    assert left == [("C6",)] and people == [("p_ida",)]
    assert (report.erased, report.not_found) == (1, 0) and logged == [("erased", sha256_hex("p_sam"))]
