"""Erasure requests: suppress every identifier of the person, delete every row and every written form.

Plain Python over DuckDB. Requests come from raw.erasure_requests (the privacy/ landing folder).
Each request's identifier goes on the suppression list (SHA-256 hashes), found or not, so that
later data is dropped at ingestion (orchestration/lib/suppression.py). The list then grows over
every table that ties identifiers together (the identity map, an identify event's anonymous id, a
CRM record's customer id) until it holds the whole person. Before the rows go, every form the
person's identifiers take in free text (URL-encoded, JSON-escaped, phone formats, hashes) is
collected, and rows whose text holds one go too: quarantined lines and field issues keep the text
as it was sent. The request's own identifier is then cleared from raw.erasure_requests: the log
and the list keep hashes only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import phonenumbers

from orchestration.lib import suppression
from orchestration.lib.identifiers import (
    PLAIN_TYPES,
    IdentifierError,
    lookup_key,
    normalise_phone,
    sha256_hex,
    written_forms,
)
from orchestration.lib.warehouse import table_exists, transaction


@dataclass
class ErasureReport:
    requests: int = 0
    erased: int = 0  # requests whose person was found this run
    already_erased: int = 0  # requests for persons erased by an earlier run
    not_found: int = 0  # nobody holds the identifier yet: it is suppressed all the same
    persons: int = 0
    identifiers_suppressed: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)
    text_rows_removed: dict[str, int] = field(default_factory=dict)  # rows whose free text held a written form
    export_rows_removed: int = 0
    seconds_since_landing: float | None = None  # the oldest request this run completed: file landed -> done

    @property
    def total_rows_removed(self) -> int:
        return sum(self.rows_removed.values()) + sum(self.text_rows_removed.values()) + self.export_rows_removed


def _national_phone_key(con, text: str) -> tuple[str, str] | None:
    """A phone without a country code: its reading in any region that the identity map or the
    suppression list (an earlier erasure) knows. Two known readings are ambiguous: nothing is erased."""
    readings = {
        sha256_hex(e164) for region in phonenumbers.SUPPORTED_REGIONS if (e164 := normalise_phone(text, region))
    }
    if not readings:
        return None
    known_sql = (
        "SELECT identifier_sha256 AS identifier FROM privacy.suppression_list WHERE identifier_type = 'phone_sha256'"
    )
    if table_exists(con, "marts", "identity_map"):
        known_sql += " UNION ALL SELECT identifier FROM marts.identity_map WHERE identifier_type = 'phone_sha256'"
    if table_exists(con, "raw", "crm_customers") and "phone_e164" in _columns(con, "raw.crm_customers"):
        # A phone the numbering plan does not assign links nobody, so the map lacks it; the CRM has it.
        known_sql += " UNION ALL SELECT sha256(phone_e164) FROM raw.crm_customers WHERE phone_e164 IS NOT NULL"
    known = con.execute(
        f"SELECT DISTINCT identifier FROM ({known_sql}) WHERE identifier IN (SELECT unnest(?))", [sorted(readings)]
    ).fetchall()
    return ("phone_sha256", known[0][0]) if len(known) == 1 else None


def _request_key(con, identifier_type: str, identifier: str) -> tuple[str, str] | None:
    try:
        return lookup_key(identifier_type, identifier)
    except IdentifierError:
        return _national_phone_key(con, identifier) if identifier_type == "phone" else None


def _suppression_value(kind: str, identifier: str) -> str:
    return identifier if kind in suppression.HASHED_TYPES else sha256_hex(identifier)


def _columns(con, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _listed(con, kind: str, value_sha256: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM privacy.suppression_list WHERE identifier_type = ? AND identifier_sha256 = ?",
            [kind, value_sha256],
        ).fetchone()[0]
    )


# Cleartext columns whose values are written forms of a person's identifiers: (column, kind).
_CLEARTEXT = {
    "customer_id": "customer_id",
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "email": "email",
    "email_normalised": "email",
    "phone": "phone",
    "phone_e164": "phone_e164",
    "traits_phone_e164": "phone_e164",
}


def _written_forms_of_listed(con, tables: dict[str, list[str]], requests: list[tuple[str, str]]) -> set[str]:
    """Every form (identifiers.written_forms) of the cleartext identifiers that rows of listed persons
    hold, and of the requests' own identifiers."""
    values: set[tuple[str, str]] = set(requests)
    for table, cols in tables.items():
        erased = suppression.predicate(cols)
        for col in cols:
            kind = _CLEARTEXT.get(col)
            if kind is None and col == "traits":
                values |= {
                    ("email", v)
                    for (v,) in con.execute(
                        f"SELECT DISTINCT json_extract_string(t.traits, '$.email') FROM {table} t WHERE {erased}"
                    ).fetchall()
                    if v
                }
            elif kind is not None:
                values |= {
                    (kind, str(v))
                    for (v,) in con.execute(f'SELECT DISTINCT t."{col}" FROM {table} t WHERE {erased}').fetchall()
                    if v is not None
                }
        if {"identifier_type", "identifier"} <= set(cols):
            values |= set(
                con.execute(
                    f"SELECT DISTINCT identifier_type, identifier FROM {table} t WHERE {erased} AND "
                    f"identifier_type IN {PLAIN_TYPES}"
                ).fetchall()
            )
    blocked = set(suppression.blocked_values())
    shared = {v for (v,) in con.execute("SELECT anonymous_id FROM _shared_devices").fetchall()}  # from extend()
    values = {(kind, v) for kind, v in values if not (kind == "anonymous_id" and v in shared)}
    _remember_phone_regions(con, [v for kind, v in values if kind in ("phone", "phone_e164")])
    return {
        form for kind, value in values if value.strip().lower() not in blocked for form in written_forms(kind, value)
    }


def _remember_phone_regions(con, phones: list[str]) -> None:
    """The countries of erased phones (a country names nobody): text_phone_traces reads national
    formats in them once the records that named the country are gone."""
    regions = set()
    for phone in phones:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
        except phonenumbers.NumberParseException:
            continue
        if region and region != "ZZ":
            regions.add(region)
    con.execute("CREATE TABLE IF NOT EXISTS privacy.erased_phone_regions (region VARCHAR PRIMARY KEY)")
    if regions:
        con.executemany(
            "INSERT INTO privacy.erased_phone_regions VALUES (?) ON CONFLICT DO NOTHING", [[r] for r in sorted(regions)]
        )


def process_erasures(
    con: duckdb.DuckDBPyConnection, scrub_exports=None, now: dt.datetime | None = None
) -> ErasureReport:
    """Apply every request in raw.erasure_requests not yet processed. `scrub_exports()` removes the
    suppressed persons from export files and returns the rows it removed (orchestration/defs/exports)."""
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    suppression.ensure_tables(con)
    report = ErasureReport()
    has_requests = table_exists(con, "raw", "erasure_requests")
    landed = "loaded_at" if has_requests and "loaded_at" in _columns(con, "raw.erasure_requests") else "NULL"
    requests = (
        con.execute(
            f"SELECT requested_at, identifier_type, identifier, {landed} FROM raw.erasure_requests "
            "WHERE identifier IS NOT NULL ORDER BY requested_at, identifier_type, identifier"
        ).fetchall()
        if has_requests
        else []
    )
    report.requests = len(requests)
    logged = {
        r[0]: r[1] for r in con.execute("SELECT erasure_request_sha256, outcome FROM privacy.erasure_log").fetchall()
    }
    log_rows, keys, cleartext = [], {}, []
    for requested_at, kind, identifier, landed_at in requests:
        key = _request_key(con, kind, identifier)
        request_hash = sha256_hex(f"{kind}|{key[1] if key else identifier.strip().lower()}")
        cleartext.append((kind, identifier))
        if logged.get(request_hash) in ("erased", "already_erased") or (
            key and _listed(con, key[0], _suppression_value(*key))
        ):
            report.already_erased += 1
            if request_hash not in logged:
                log_rows.append([request_hash, kind, requested_at, now, "already_erased", None, 0, 0, landed_at])
            continue
        if key:
            keys[(key[0], _suppression_value(*key))] = request_hash
        log_rows.append([request_hash, kind, requested_at, now, None, None, 0, 0, landed_at])
    with transaction(con):
        before = con.execute("SELECT count(*) FROM privacy.suppression_list").fetchone()[0]
        # A request names its person through the map by any identifier, a phone included; from there
        # the list grows over link identifiers only (suppression.extend).
        persons = {req: _person_of_listed(con, key) for key, req in keys.items()}
        by_phone = {
            req: c
            for (t, h), req in keys.items()
            if t == "phone_sha256" and not persons[req] and (c := _sole_customer_with_phone(con, h))
        }
        persons |= {req: _person_of_listed(con, ("customer_id", sha256_hex(c))) for req, c in by_phone.items()}
        entries = [[t, h, req, now] for (t, h), req in keys.items()]
        entries += [["customer_id", sha256_hex(c), req, now] for req, c in by_phone.items()]
        entries += [["person_id", sha256_hex(p), req, now] for req, p in persons.items() if p]
        if entries:
            con.executemany("INSERT INTO privacy.suppression_list VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", entries)
        linked = suppression.link_tables(con)
        suppression.extend(con, linked, "linked to an erased identifier", now)
        for row in log_rows:
            if row[4] is not None:
                continue
            person = persons.get(row[0])
            row[4] = "erased" if person or row[0] in by_phone else "not_found"
            row[5] = sha256_hex(person) if person else None
        report.erased = sum(1 for r in log_rows if r[4] == "erased")
        report.not_found = sum(1 for r in log_rows if r[4] == "not_found")
        report.persons = len({r[5] for r in log_rows if r[5]})
        report.identifiers_suppressed = (
            con.execute("SELECT count(*) FROM privacy.suppression_list").fetchone()[0] - before
        )
        report.rows_removed, report.text_rows_removed = (
            _scrub(con, linked, cleartext) if report.identifiers_suppressed else ({}, {})
        )
        for r in log_rows:
            r[6] = report.identifiers_suppressed if r[4] == "erased" else 0
            r[7] = report.total_rows_removed if r[4] == "erased" else 0
        if log_rows:
            con.execute(
                "DELETE FROM privacy.erasure_log WHERE erasure_request_sha256 IN (SELECT unnest(?))",
                [[r[0] for r in log_rows]],
            )
            con.executemany(
                "INSERT INTO privacy.erasure_log (erasure_request_sha256, identifier_type, requested_at, "
                "processed_at, outcome, person_sha256, identifiers_suppressed, rows_removed, landed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                log_rows,
            )
        if has_requests:  # proof of the request stays as its hash (identifier_sha256); the identifier goes
            con.execute("UPDATE raw.erasure_requests SET identifier = NULL WHERE identifier IS NOT NULL")
    if scrub_exports is not None and suppression.has_suppressions(con):
        report.export_rows_removed = scrub_exports(con)
    landed = [r[8] for r in log_rows if r[8] is not None]
    if landed:
        report.seconds_since_landing = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - min(landed)).total_seconds()
    return report


def _sole_customer_with_phone(con, phone_sha256: str) -> str | None:
    """The one CRM customer whose records carry this phone (none when several share it): a request
    by a phone the map does not link (not assigned by the numbering plan) still names them."""
    if not (table_exists(con, "raw", "crm_customers") and "phone_e164" in _columns(con, "raw.crm_customers")):
        return None
    rows = con.execute(
        "SELECT DISTINCT customer_id FROM raw.crm_customers WHERE sha256(phone_e164) = ?", [phone_sha256]
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _person_of_listed(con, key: tuple[str, str]) -> str | None:
    """The person the identity map gives a suppressed key (as hashed on the list), if any."""
    if not table_exists(con, "marts", "identity_map"):
        return None
    row = con.execute(
        """
        SELECT any_value(person_id) FROM marts.identity_map
        WHERE identifier_type = ? AND (CASE WHEN identifier_type IN ('email_sha256', 'phone_sha256')
                                            THEN identifier ELSE sha256(identifier) END) = ?""",
        list(key),
    ).fetchone()
    return row[0] if row else None


def _scrub(con, linked: dict[str, list[str]], requests: list[tuple[str, str]]) -> tuple[dict[str, int], dict[str, int]]:
    """Inside the caller's transaction: the listed persons' written forms are read first (the rows
    that hold them in clear are about to go), then every row goes, then every row whose text holds a form."""
    forms = _written_forms_of_listed(con, linked, requests)
    rows = suppression.scrub(con)
    return rows, suppression.delete_text_matches(con, forms)


def sweep(con: duckdb.DuckDBPyConnection, scrub_exports=None, now: dt.datetime | None = None) -> ErasureReport:
    """After identity resolution: a person the new map ties to a suppressed identifier (data that
    arrived since the erasure, under another of their identifiers) is erased whole."""
    suppression.ensure_tables(con)
    report = ErasureReport()
    if not suppression.has_suppressions(con):
        return report
    with transaction(con):
        linked = suppression.link_tables(con)
        before = con.execute("SELECT count(*) FROM privacy.suppression_list").fetchone()[0]
        suppression.extend(con, linked, "linked to an erased identifier", now)
        report.identifiers_suppressed = (
            con.execute("SELECT count(*) FROM privacy.suppression_list").fetchone()[0] - before
        )
        if report.identifiers_suppressed:
            report.rows_removed, report.text_rows_removed = _scrub(con, linked, [])
    if report.identifiers_suppressed and scrub_exports is not None:
        report.export_rows_removed = scrub_exports(con)
    return report


def remaining_traces(
    con: duckdb.DuckDBPyConnection, count_export_traces=None, include_views: bool = False
) -> dict[str, int]:
    """Rows left for suppressed persons, per table (and view, if asked) and export folder; empty
    when none are left."""
    if not suppression.has_suppressions(con):
        return {}
    traces = {t: n for t, n in suppression.count_traces(con, include_views).items() if n}
    traces |= {f"{t} (phone in text)": n for t, n in text_phone_traces(con).items() if n}
    if count_export_traces is not None:
        traces.update({k: n for k, n in count_export_traces(con).items() if n})
    return traces


def text_phone_traces(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of free text (quarantined lines, field issues) holding a phone of an erased person in any
    format, read in every region the CRM records name: the token search finds E.164 only."""
    listed = {
        h
        for (h,) in con.execute(
            "SELECT identifier_sha256 FROM privacy.suppression_list WHERE identifier_type = 'phone_sha256'"
        ).fetchall()
    }
    if not listed:
        return {}
    regions = {"ZZ"}
    if table_exists(con, "privacy", "erased_phone_regions"):
        regions |= {r for (r,) in con.execute("SELECT region FROM privacy.erased_phone_regions").fetchall()}
    if table_exists(con, "raw", "crm_customers") and "country" in _columns(con, "raw.crm_customers"):
        regions |= {
            r
            for (r,) in con.execute(
                "SELECT DISTINCT upper(trim(country)) FROM raw.crm_customers WHERE country IS NOT NULL"
            ).fetchall()
        } & phonenumbers.SUPPORTED_REGIONS
    out = {}
    for table, cols in suppression.text_columns(con).items():
        text_cols = [c for c in cols if c in suppression.TEXT_COLUMNS]
        if not text_cols:
            continue
        rows = con.execute(f"SELECT concat_ws(' ', {', '.join(text_cols)}) FROM {table}").fetchall()
        out[table] = sum(
            1
            for (text,) in rows
            if text
            and any(
                sha256_hex(phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)) in listed
                for region in regions
                for m in phonenumbers.PhoneNumberMatcher(text, region)
            )
        )
    return out
