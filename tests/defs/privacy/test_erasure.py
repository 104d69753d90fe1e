"""Erasure on a hand-built warehouse: every request type resolves, every row goes, a second run
knows it is done, and ingestion drops the person's rows when they come back."""

from __future__ import annotations

import datetime as dt

from orchestration.defs.ingest.loaders import load_source
from orchestration.defs.privacy.erasure import process_erasures, remaining_traces
from orchestration.lib.identifiers import sha256_hex
from orchestration.lib.warehouse import connect

ANN_PHONE = "+12015550123"


def _warehouse(path, requests: list[tuple[str, str]]):
    with connect(path) as con:
        con.execute("""CREATE TABLE raw.crm_customers AS SELECT * FROM (VALUES
            ('C1', 'Ann@Example.com', '(201) 555-0123', ?, 'US'),
            ('C2', 'bob@example.com', NULL, NULL, 'GB')) t(customer_id, email, phone, phone_e164, country)""",
                    [ANN_PHONE])
        con.execute("""CREATE TABLE marts.identity_map AS SELECT * FROM (VALUES
            ('customer_id', 'C1', 'p_ann'), ('user_id', 'u1', 'p_ann'), ('anonymous_id', 'a1', 'p_ann'),
            ('email_sha256', ?, 'p_ann'), ('phone_sha256', ?, 'p_ann'),
            ('customer_id', 'C2', 'p_bob')) t(identifier_type, identifier, person_id)""",
                    [sha256_hex("ann@example.com"), sha256_hex(ANN_PHONE)])
        con.execute("""CREATE TABLE raw.events AS SELECT * FROM (VALUES
            ('m1', 'u1', NULL, '{"email": "ann@example.com"}'::JSON), ('m2', NULL, 'a1', NULL::JSON),
            ('m3', 'u2', 'a2', NULL::JSON)) t(message_id, user_id, anonymous_id, traits)""")
        con.execute("CREATE TABLE marts.segment_membership AS SELECT * FROM (VALUES ('p_ann', 'vip'), ('p_bob', 'vip')) "
                    "t(person_id, segment_name)")
        con.execute("INSERT INTO raw.quarantine VALUES ('orders', 'orders/x.csv', 2, 'invalid_date', 'bad date', "
                    "'O9,C1,ann@example.com,yesterday,10,USD,completed,web', TIMESTAMP '2026-10-01')")
        con.execute("CREATE TABLE raw.erasure_requests (requested_at TIMESTAMP, identifier_type VARCHAR, "
                    "identifier VARCHAR)")
        con.executemany("INSERT INTO raw.erasure_requests VALUES (TIMESTAMP '2026-10-30', ?, ?)", requests)


def test_a_national_phone_request_erases_everything_once(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    _warehouse(warehouse, [("phone", "201.555.0123"), ("email", "nobody@example.com")])
    with connect(warehouse) as con:
        first = process_erasures(con, now=dt.datetime(2026, 11, 1))
        assert (first.erased, first.not_found, first.persons) == (1, 1, 1)
        assert first.identifiers_suppressed == 6  # five identifiers and the person_id
        assert first.rows_removed == {"marts.identity_map": 5, "marts.segment_membership": 1, "raw.crm_customers": 1,
                                      "raw.events": 2, "raw.field_issues": 0, "raw.quarantine": 1}
        assert remaining_traces(con) == {}
        assert con.execute("SELECT customer_id FROM raw.crm_customers").fetchall() == [("C2",)]
        assert con.execute("SELECT message_id FROM raw.events").fetchall() == [("m3",)]
        second = process_erasures(con, now=dt.datetime(2026, 11, 2))
        assert (second.erased, second.already_erased, second.not_found) == (0, 1, 1)
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
        "O4,C1,,not-a-date,10.00,USD,completed,web\n")
    with connect(warehouse) as con:
        process_erasures(con)
        report = load_source(con, landing, "orders")
        orders = con.execute("SELECT order_id FROM raw.order_lines").fetchall()
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine WHERE source = 'orders'").fetchone()[0]
    assert orders == [("O3",)]
    assert (report.rows_suppressed, report.quarantine_suppressed, quarantined) == (2, 1, 0)
