"""Segment membership: current members, SCD2 history, the per-run report and overlaps.

Plain Python over DuckDB. Entries and exits come from comparing this run's members with the
open history intervals; the past is never recomputed. Re-running the same as_of first rewinds
that as_of's own changes, so a re-run gives the same tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from orchestration.defs.segments.catalog import Catalog, Segment, expand_clusters
from orchestration.lib.consent import personalisation_allowed_sql
from orchestration.lib.warehouse import table_exists, transaction

ATTRIBUTES = "marts.segment_attributes"

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS marts.segment_membership_history (
    person_id    VARCHAR NOT NULL,
    segment_name VARCHAR NOT NULL,
    valid_from   TIMESTAMP NOT NULL,
    valid_to     TIMESTAMP            -- NULL while the person is a member
)
"""
REPORT_DDL = """
CREATE TABLE IF NOT EXISTS marts.segment_report (
    as_of               TIMESTAMP NOT NULL,
    segment_name        VARCHAR NOT NULL,
    segment_type        VARCHAR NOT NULL,
    description         VARCHAR,
    owner               VARCHAR,
    rule                VARCHAR,
    min_size            BIGINT,
    matched             BIGINT,   -- persons the rule selects, before consent
    excluded_by_consent BIGINT,   -- of those, left out for personalization_opt_in = false
    size                BIGINT,   -- matched minus excluded
    entered             BIGINT,
    exited              BIGINT,
    published           BOOLEAN,
    status              VARCHAR   -- published, or below_minimum_size
)
"""
OVERLAP_DDL = """
CREATE TABLE IF NOT EXISTS marts.segment_overlap (
    as_of        TIMESTAMP NOT NULL,
    segment_a    VARCHAR NOT NULL,
    segment_b    VARCHAR NOT NULL,
    both_members BIGINT NOT NULL,
    jaccard      DOUBLE NOT NULL
)
"""


class MembershipError(RuntimeError):
    """Membership cannot be built; the message says why and what to do."""


@dataclass
class SegmentResult:
    name: str
    type: str
    matched: int
    excluded_by_consent: int
    size: int
    min_size: int
    entered: int = 0
    exited: int = 0

    @property
    def published(self) -> bool:
        return self.size >= self.min_size


@dataclass
class MembershipReport:
    as_of: dt.datetime
    segments: list[SegmentResult] = field(default_factory=list)
    persons: int = 0
    persons_without_consent: int = 0
    persons_without_consent_evidence: int = 0  # no explicit value anywhere: TESSERA_CONSENT_DEFAULT decides
    rewound: bool = False  # this as_of had been built before

    @property
    def unpublished(self) -> list[str]:
        return [s.name for s in self.segments if not s.published]


def scoring_as_of(con: duckdb.DuckDBPyConnection) -> dt.datetime:
    if not table_exists(con, "marts", "segment_attributes"):
        raise MembershipError(f"{ATTRIBUTES} does not exist yet: materialise the dbt segment_attributes model first.")
    dates = [r[0] for r in con.execute(f"SELECT DISTINCT as_of FROM {ATTRIBUTES}").fetchall()]
    if len(dates) != 1:
        raise MembershipError(
            f"{ATTRIBUTES} holds {len(dates)} as_of dates; it must hold exactly one (the scoring "
            "date). Rebuild it with dbt."
        )
    return dates[0]


def concrete_segments(con, catalog: Catalog) -> list[Segment]:
    clusters = con.execute(f"""
        SELECT DISTINCT cluster_id, cluster_name FROM {ATTRIBUTES}
        WHERE cluster_id IS NOT NULL AND cluster_id >= 0 ORDER BY cluster_id""").fetchall()
    return expand_clusters(catalog, clusters)


def build_membership(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, consent_default_allowed: bool = True
) -> MembershipReport:
    """Evaluate every segment at the scoring date and update membership, history and report."""
    as_of = scoring_as_of(con)
    segments = concrete_segments(con, catalog)
    consent = personalisation_allowed_sql(consent_default_allowed)
    con.execute("CREATE OR REPLACE TEMP TABLE _matches (person_id VARCHAR, segment_name VARCHAR, consented BOOLEAN)")
    for segment in segments:
        sql = segment.compiled.sql
        con.execute(
            f"INSERT INTO _matches SELECT person_id, ?, {consent} FROM {ATTRIBUTES} WHERE {sql.text}",
            [segment.name, *sql.params],
        )
    counts = {
        name: (matched, excluded)
        for name, matched, excluded in con.execute("""
        SELECT segment_name, count(*), count(*) FILTER (WHERE NOT consented) FROM _matches GROUP BY 1""").fetchall()
    }
    report = MembershipReport(as_of)
    for segment in segments:
        matched, excluded = counts.get(segment.name, (0, 0))
        report.segments.append(
            SegmentResult(segment.name, segment.spec.type, matched, excluded, matched - excluded, segment.spec.min_size)
        )
    report.persons, report.persons_without_consent, report.persons_without_consent_evidence = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE NOT {consent}), count(*) FILTER (WHERE personalization_opt_in IS NULL) "
        f"FROM {ATTRIBUTES}"
    ).fetchone()
    published = [s.name for s in report.segments if s.published]
    con.execute("CREATE OR REPLACE TEMP TABLE _published (segment_name VARCHAR)")
    if published:
        con.executemany("INSERT INTO _published VALUES (?)", [[n] for n in published])
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _current AS
        SELECT DISTINCT m.person_id, m.segment_name FROM _matches m JOIN _published USING (segment_name)
        WHERE m.consented""")
    with transaction(con):
        for ddl in (HISTORY_DDL, REPORT_DDL, OVERLAP_DDL):
            con.execute(ddl)
        report.rewound = _apply_history(con, as_of)
        _write_membership(con, as_of, segments)
        _write_report(con, report, segments)
        _write_overlap(con, as_of)
    for temp in ("_matches", "_published", "_current", "_types"):
        con.execute(f"DROP TABLE IF EXISTS {temp}")
    return report


def _apply_history(con, as_of: dt.datetime) -> bool:
    latest = con.execute("""
        SELECT max(t) FROM (SELECT valid_from AS t FROM marts.segment_membership_history
                            UNION ALL SELECT valid_to FROM marts.segment_membership_history)""").fetchone()[0]
    if latest is not None and latest > as_of:
        raise MembershipError(
            f"Segment history already runs to {latest:%Y-%m-%d}, after this run's as_of {as_of:%Y-%m-%d}. History only "
            "moves forward: set TESSERA_AS_OF to a later date, or reset the history with the run config "
            "reset_history: true (this drops every past interval)."
        )
    rewound = latest == as_of
    if rewound:  # undo this as_of's own earlier changes, then apply them afresh
        con.execute("DELETE FROM marts.segment_membership_history WHERE valid_from = ?", [as_of])
        con.execute("UPDATE marts.segment_membership_history SET valid_to = NULL WHERE valid_to = ?", [as_of])
    con.execute(
        """
        UPDATE marts.segment_membership_history h SET valid_to = ?
        WHERE h.valid_to IS NULL
          AND NOT EXISTS (SELECT 1 FROM _current c WHERE c.person_id = h.person_id AND c.segment_name = h.segment_name)
    """,
        [as_of],
    )
    con.execute(
        """
        INSERT INTO marts.segment_membership_history
        SELECT c.person_id, c.segment_name, ?, NULL FROM _current c
        WHERE NOT EXISTS (SELECT 1 FROM marts.segment_membership_history h
                          WHERE h.valid_to IS NULL AND h.person_id = c.person_id AND h.segment_name = c.segment_name)
        ORDER BY c.segment_name, c.person_id
    """,
        [as_of],
    )
    return rewound


def _write_membership(con, as_of: dt.datetime, segments: list[Segment]) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _types (segment_name VARCHAR, segment_type VARCHAR)")
    con.executemany("INSERT INTO _types VALUES (?, ?)", [[s.name, s.spec.type] for s in segments])
    con.execute(
        """
        CREATE OR REPLACE TABLE marts.segment_membership AS
        SELECT h.person_id, h.segment_name, t.segment_type, h.valid_from AS entered_at, CAST(? AS TIMESTAMP) AS as_of
        FROM marts.segment_membership_history h JOIN _types t USING (segment_name)
        WHERE h.valid_to IS NULL
        ORDER BY h.segment_name, h.person_id
    """,
        [as_of],
    )


def _write_report(con, report: MembershipReport, segments: list[Segment]) -> None:
    changes = {
        name: (entered, exited)
        for name, entered, exited in con.execute(
            """
        SELECT segment_name, count(*) FILTER (WHERE valid_from = ?), count(*) FILTER (WHERE valid_to = ?)
        FROM marts.segment_membership_history GROUP BY 1""",
            [report.as_of, report.as_of],
        ).fetchall()
    }
    by_name = {s.name: s for s in segments}
    rows = []
    for result in report.segments:
        result.entered, result.exited = changes.get(result.name, (0, 0))
        spec = by_name[result.name].spec
        rows.append(
            [
                report.as_of,
                result.name,
                result.type,
                spec.description,
                spec.owner,
                spec.rule.strip(),
                result.min_size,
                result.matched,
                result.excluded_by_consent,
                result.size,
                result.entered,
                result.exited,
                result.published,
                "published" if result.published else "below_minimum_size",
            ]
        )
    con.execute("DELETE FROM marts.segment_report WHERE as_of = ?", [report.as_of])
    if rows:
        con.executemany(f"INSERT INTO marts.segment_report VALUES ({', '.join(['?'] * 14)})", rows)


def _write_overlap(con, as_of: dt.datetime) -> None:
    con.execute("DELETE FROM marts.segment_overlap WHERE as_of = ?", [as_of])
    con.execute(
        """
        INSERT INTO marts.segment_overlap
        WITH sizes AS (SELECT segment_name, count(*) AS n FROM marts.segment_membership GROUP BY 1),
        pairs AS (
            SELECT a.segment_name AS segment_a, b.segment_name AS segment_b, count(*) AS both_members
            FROM marts.segment_membership a
            JOIN marts.segment_membership b ON a.person_id = b.person_id AND a.segment_name < b.segment_name
            GROUP BY 1, 2)
        SELECT ?, p.segment_a, p.segment_b, p.both_members,
               p.both_members / (sa.n + sb.n - p.both_members)
        FROM pairs p JOIN sizes sa ON sa.segment_name = p.segment_a JOIN sizes sb ON sb.segment_name = p.segment_b
        ORDER BY 2, 3
    """,
        [as_of],
    )


def reset_history(con) -> None:
    for table in ("segment_membership_history", "segment_report", "segment_overlap", "segment_membership"):
        con.execute(f"DROP TABLE IF EXISTS marts.{table}")
