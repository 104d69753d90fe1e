"""Erasure requests: resolve each to a person, suppress every identifier, delete every row.

Plain Python over DuckDB. Requests come from raw.erasure_requests (the privacy/ landing folder).
Each is resolved through marts.identity_map; the person's identifiers go to the suppression list
as SHA-256 hashes, and every table, and every audience export, loses the person's rows in the
same run. Later data for the person is dropped at ingestion (orchestration/lib/suppression.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import phonenumbers

from orchestration.lib import suppression
from orchestration.lib.identifiers import IdentifierError, lookup_key, normalise_phone, person_of, sha256_hex
from orchestration.lib.warehouse import transaction


@dataclass
class ErasureReport:
    requests: int = 0
    erased: int = 0           # requests that found a person this run
    already_erased: int = 0   # requests for persons erased by an earlier run
    not_found: int = 0
    persons: int = 0
    identifiers_suppressed: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)
    export_rows_removed: int = 0

    @property
    def total_rows_removed(self) -> int:
        return sum(self.rows_removed.values()) + self.export_rows_removed


def _national_phone_key(con, text: str) -> tuple[str, str] | None:
    """A phone without a country code: its reading in any region that the identity map or the
    suppression list (an earlier erasure) knows. Two known readings are ambiguous: nothing is erased."""
    readings = {sha256_hex(e164) for region in phonenumbers.SUPPORTED_REGIONS
                if (e164 := normalise_phone(text, region))}
    if not readings:
        return None
    known = con.execute("""
        SELECT DISTINCT identifier FROM (
            SELECT identifier FROM marts.identity_map WHERE identifier_type = 'phone_sha256'
            UNION ALL
            SELECT identifier_sha256 FROM privacy.suppression_list WHERE identifier_type = 'phone_sha256')
        WHERE identifier IN (SELECT unnest(?))""", [sorted(readings)]).fetchall()
    return ("phone_sha256", known[0][0]) if len(known) == 1 else None


def _request_key(con, identifier_type: str, identifier: str) -> tuple[str, str] | None:
    try:
        return lookup_key(identifier_type, identifier)
    except IdentifierError:
        return _national_phone_key(con, identifier) if identifier_type == "phone" else None


def _suppression_value(kind: str, identifier: str) -> str:
    return identifier if kind in suppression.HASHED_TYPES else sha256_hex(identifier)


def process_erasures(con: duckdb.DuckDBPyConnection, scrub_exports=None, now: dt.datetime | None = None) -> ErasureReport:
    """Apply every request in raw.erasure_requests. `scrub_exports()` removes the suppressed persons
    from export files and returns the rows it removed (see orchestration/defs/exports)."""
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    suppression.ensure_tables(con)
    report = ErasureReport()
    requests = con.execute("SELECT requested_at, identifier_type, identifier FROM raw.erasure_requests "
                           "ORDER BY requested_at, identifier_type, identifier").fetchall()
    report.requests = len(requests)
    logged = {r[0]: r[1] for r in con.execute("SELECT erasure_request_sha256, outcome FROM privacy.erasure_log")
              .fetchall()}
    log_rows, list_rows, persons = [], {}, set()
    for requested_at, kind, identifier in requests:
        key = _request_key(con, kind, identifier)
        request_hash = sha256_hex(f"{kind}|{key[1] if key else identifier.strip().lower()}")
        if logged.get(request_hash) in ("erased", "already_erased"):
            report.already_erased += 1
            continue
        person = person_of(con, *key) if key else None
        if person is None:
            listed = key and con.execute("SELECT count(*) FROM privacy.suppression_list WHERE identifier_type = ? AND "
                                         "identifier_sha256 = ?", [key[0], _suppression_value(*key)]).fetchone()[0]
            outcome = "already_erased" if listed else "not_found"
            setattr(report, outcome, getattr(report, outcome) + 1)
            log_rows.append([request_hash, kind, requested_at, now, outcome, None, 0, 0])
            continue
        report.erased += 1
        persons.add(person)
        identifiers = con.execute("SELECT identifier_type, identifier FROM marts.identity_map WHERE person_id = ?",
                                  [person]).fetchall()
        entries = [("person_id", sha256_hex(person))] + [(t, _suppression_value(t, v)) for t, v in identifiers]
        for entry in entries:
            list_rows.setdefault(entry, request_hash)
        log_rows.append([request_hash, kind, requested_at, now, "erased", sha256_hex(person), len(entries), 0])
    report.persons = len(persons)
    with transaction(con):
        known = set(con.execute("SELECT identifier_type, identifier_sha256 FROM privacy.suppression_list").fetchall())
        new = [[t, h, req, now] for (t, h), req in list_rows.items() if (t, h) not in known]
        if new:
            con.executemany("INSERT INTO privacy.suppression_list VALUES (?, ?, ?, ?)", new)
        report.identifiers_suppressed = len(new)
        # Earlier erasures need no new scrub: ingestion drops their rows and the rest is rebuilt from raw.
        report.rows_removed = suppression.scrub(con) if new else {}
        if log_rows:
            for r in log_rows:  # the rows this run removed, for the requests it erased
                r[7] = sum(report.rows_removed.values()) if r[4] == "erased" else 0
            con.execute("DELETE FROM privacy.erasure_log WHERE erasure_request_sha256 IN (SELECT unnest(?))",
                        [[r[0] for r in log_rows]])
            con.executemany("INSERT INTO privacy.erasure_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", log_rows)
    if scrub_exports is not None and suppression.has_suppressions(con):
        report.export_rows_removed = scrub_exports(con)
    return report


def remaining_traces(con: duckdb.DuckDBPyConnection, count_export_traces=None,
                     include_views: bool = False) -> dict[str, int]:
    """Rows left for suppressed persons, per table (and view, if asked) and export folder; empty
    when none are left."""
    if not suppression.has_suppressions(con):
        return {}
    traces = {t: n for t, n in suppression.count_traces(con, include_views).items() if n}
    if count_export_traces is not None:
        traces.update({k: n for k, n in count_export_traces(con).items() if n})
    return traces
