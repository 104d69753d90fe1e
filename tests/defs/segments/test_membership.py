"""Membership across runs: entries, exits, SCD2 history, consent, the size guard and why()."""

from __future__ import annotations

import datetime as dt

import pytest

from orchestration.defs.segments.catalog import load_catalog
from orchestration.defs.segments.explain import explain, render
from orchestration.defs.segments.membership import MembershipError, build_membership
from orchestration.lib.warehouse import connect, table_fingerprint

SCHEMA = {
    "person_id": "text",
    "as_of": "timestamp",
    "recency_days": "number",
    "monetary_total": "number",
    "personalization_opt_in": "boolean",
    "timezone": "text",
    "last_seen_at": "timestamp",
    "cluster_id": "number",
    "cluster_name": "text",
    "distance_to_centroid": "number",
    "purchase_30d_score": "number",
    "purchase_30d_decile": "number",
}
SEGMENTS = """
segments:
  - name: recent
    description: Seen within 7 days.
    owner: team:test
    type: rule
    rule: recency_days <= 7
  - name: big_spenders
    description: Spent over 500.
    owner: team:test
    type: rule
    rule: monetary_total > 500
    min_size: 2
  - name: recent_big_spenders
    description: Both.
    owner: team:test
    type: rule
    rule: in_segment('recent') and in_segment('big_spenders')
"""


def write_attributes(con, as_of: dt.date, rows: list[tuple]) -> None:
    """rows: person, recency_days, monetary_total, personalization_opt_in."""
    con.execute("""CREATE OR REPLACE TABLE marts.segment_attributes (person_id VARCHAR, as_of TIMESTAMP,
                   recency_days BIGINT, monetary_total DOUBLE, personalization_opt_in BOOLEAN, timezone VARCHAR,
                   last_seen_at TIMESTAMP, cluster_id BIGINT, cluster_name VARCHAR, distance_to_centroid DOUBLE,
                   purchase_30d_score DOUBLE, purchase_30d_decile BIGINT, p_alive DOUBLE,
                   expected_purchases_30d DOUBLE, expected_purchases_12m DOUBLE, expected_value_12m DOUBLE)""")
    con.executemany(
        "INSERT INTO marts.segment_attributes VALUES (?, ?, ?, ?, ?, 'UTC', ?, 0, 'All', 1.0, 0.5, 5, "
        "0.4, 0.1, 1.2, 55.0)",
        [(p, as_of, r, m, c, as_of) for p, r, m, c in rows],
    )


def history(con) -> set[tuple]:
    return {
        (p, s, str(f.date()), str(t.date()) if t else None)
        for p, s, f, t in con.execute(
            "SELECT person_id, segment_name, valid_from, valid_to FROM marts.segment_membership_history"
        ).fetchall()
    }


@pytest.fixture()
def setup(tmp_path):
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "test.yml").write_text(SEGMENTS)
    return load_catalog(tmp_path / "segments", SCHEMA), tmp_path / "warehouse.duckdb"


def test_entries_and_exits_come_from_comparing_runs(setup):
    catalog, warehouse = setup
    with connect(warehouse) as con:
        write_attributes(
            con,
            dt.date(2026, 10, 1),
            [("p1", 2, 900, True), ("p2", 20, 600, True), ("p3", 3, 10, None), ("p4", 1, 1000, False)],
        )
        first = build_membership(con, catalog)
        write_attributes(
            con,
            dt.date(2026, 10, 8),
            [("p1", 30, 900, True), ("p2", 1, 600, True), ("p3", 3, 10, None), ("p4", 1, 1000, False)],
        )
        second = build_membership(con, catalog)
        assert history(con) == {
            ("p1", "recent", "2026-10-01", "2026-10-08"),
            ("p1", "big_spenders", "2026-10-01", None),
            ("p1", "recent_big_spenders", "2026-10-01", "2026-10-08"),
            ("p2", "big_spenders", "2026-10-01", None),
            ("p2", "recent", "2026-10-08", None),
            ("p2", "recent_big_spenders", "2026-10-08", None),
            ("p3", "recent", "2026-10-01", None),  # no CRM record: the default, allowed
        }
        current = {
            (p, s, str(e.date()))
            for p, s, e in con.execute(
                "SELECT person_id, segment_name, entered_at FROM marts.segment_membership"
            ).fetchall()
        }
        assert ("p1", "big_spenders", "2026-10-01") in current and ("p3", "recent", "2026-10-01") in current
        assert not any(p == "p4" for p, _, _ in current)  # personalization_opt_in = false: never a member
        report = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT segment_name, size, entered, exited, excluded_by_consent FROM marts.segment_report "
                "WHERE as_of = '2026-10-08'"
            ).fetchall()
        }
    assert report["recent"] == (2, 1, 1, 1)  # p2, p3; p2 in, p1 out; p4 left out for consent
    assert report["recent_big_spenders"] == (1, 1, 1, 1)
    assert {s.name: s.entered for s in first.segments} == {"recent": 2, "big_spenders": 2, "recent_big_spenders": 1}
    assert second.persons_without_consent == 1


def test_rerunning_an_as_of_changes_nothing_and_history_never_moves_back(setup):
    catalog, warehouse = setup
    with connect(warehouse) as con:
        write_attributes(con, dt.date(2026, 10, 1), [("p1", 2, 900, True), ("p2", 20, 600, True)])
        build_membership(con, catalog)
        write_attributes(con, dt.date(2026, 10, 8), [("p1", 30, 900, True), ("p2", 1, 600, True)])
        build_membership(con, catalog)
        before = [
            table_fingerprint(con, f"marts.{t}")
            for t in ("segment_membership", "segment_membership_history", "segment_report", "segment_overlap")
        ]
        again = build_membership(con, catalog)
        after = [
            table_fingerprint(con, f"marts.{t}")
            for t in ("segment_membership", "segment_membership_history", "segment_report", "segment_overlap")
        ]
        assert again.rewound and after == before
        write_attributes(con, dt.date(2026, 9, 1), [("p1", 2, 900, True)])
        with pytest.raises(MembershipError, match="History only moves forward"):
            build_membership(con, catalog)


def test_small_segments_are_flagged_and_not_published(setup):
    catalog, warehouse = setup
    with connect(warehouse) as con:
        write_attributes(con, dt.date(2026, 10, 1), [("p1", 2, 900, True), ("p2", 20, 10, True)])
        report = build_membership(con, catalog)
        published = {
            r[0]: r[1:]
            for r in con.execute("SELECT segment_name, published, status, size FROM marts.segment_report").fetchall()
        }
        members = {r[0] for r in con.execute("SELECT DISTINCT segment_name FROM marts.segment_membership").fetchall()}
    assert report.unpublished == ["big_spenders"]
    assert published["big_spenders"] == (False, "below_minimum_size", 1)
    assert "big_spenders" not in members and "recent" in members


def test_consent_default_denied_keeps_people_without_a_crm_record_out(setup):
    catalog, warehouse = setup
    with connect(warehouse) as con:
        write_attributes(con, dt.date(2026, 10, 1), [("p1", 2, 900, True), ("p3", 3, 10, None)])
        report = build_membership(con, catalog, consent_default_allowed=False)
        members = {r[0] for r in con.execute("SELECT person_id FROM marts.segment_membership").fetchall()}
    assert members == {"p1"} and report.persons_without_consent == 1


def test_why_gives_each_clause_value_for_the_person(setup):
    catalog, warehouse = setup
    with connect(warehouse) as con:
        write_attributes(con, dt.date(2026, 10, 1), [("p1", 2, 900, True), ("p2", 20, 600, True)])
        build_membership(con, catalog)
        yes = explain(con, catalog, "p1", "recent_big_spenders")
        no = explain(con, catalog, "p2", "recent_big_spenders")
    assert yes["member"] and yes["rule_matches"]
    assert [(c["clause"], c["value"]) for c in no["clauses"]] == [
        ("in_segment('recent')", False),
        ("in_segment('big_spenders')", True),
    ]
    assert no["clauses"][0]["inputs"] == {"recency_days": 20} and not no["member"]
    assert yes["lifetime_value"] == {
        "p_alive": 0.4,
        "expected_purchases_30d": 0.1,
        "expected_purchases_12m": 1.2,
        "expected_value_12m": 55.0,
    }
    assert "P(alive) 0.4" in render(yes)
