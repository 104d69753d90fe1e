"""What the loaders of every kind of source share: the load report, rejection rules, the files
of a load (first-seen times, files rejected whole, mapped files scanned), and the normalised
phones and emails of a batch."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import phonenumbers

from orchestration.defs.ingest.mapping import SourceFiles, read_mapped
from orchestration.lib import reason_codes as F
from orchestration.lib.identifiers import check_email, normalise_phone
from orchestration.lib.warehouse import table_from_frame

MAX_FUTURE_SKEW = "INTERVAL 1 DAY"  # clock skew allowed past the load's own clock
MAX_LINE_BYTES = 64 * 1024**2  # the longest line (event) or field (CSV) a load reads; docs/input_contract.md
FIELD_ISSUES = "raw.field_issues"


@dataclass
class LoadReport:
    source: str
    table: str
    files_seen: int = 0
    files_rejected: dict[str, str] = field(default_factory=dict)
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    deduplicated: int = 0
    rows_suppressed: int = 0  # valid rows of erased persons, dropped (privacy.suppression_list)
    quarantine_suppressed: int = 0  # quarantined lines of erased persons, dropped
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    field_issues_by_reason: dict[str, int] = field(default_factory=dict)  # optional fields nulled (raw.field_issues)
    withheld_opt_outs: int = 0  # opt-outs read from rejected CRM records (raw.crm_rejected_opt_outs)
    guest_orders: int = 0  # orders with neither customer_id nor email: quarantined, they cannot be resolved
    files_read: int = 0  # the files this load read: a daily events load reads few, a reused snapshot none
    extra_days: int = 0  # events: days outside the window a daily load replaced (changed, new or gone files)
    reused: bool = False  # a snapshot source whose files and loader are as at its last load: nothing re-read
    columns_absent: dict[str, str] = field(default_factory=dict)  # file -> optional columns its header lacks (NULL)


@dataclass(frozen=True)
class Rule:
    """A row is rejected by the first rule whose condition holds (SQL over the text columns)."""

    code: str
    condition: str
    message: str  # SQL expression giving the human-readable reason


@dataclass(frozen=True)
class FieldCheck:
    """An optional field whose value fails `condition` is nulled; the record still loads, and the
    value, column and reason go to raw.field_issues. The first failing check of a column counts."""

    column: str
    code: str
    condition: str  # SQL over the text columns, true when the value is unusable
    message: str  # SQL expression giving the human-readable reason


CONTRACT_PATTERNS = {"events": ("*.jsonl", "*.jsonl.gz")}  # the CSV sources: *.csv


def contract_files(root: Path, source: str) -> SourceFiles:
    """The files of one landing-contract folder, `<root>/<source>/`."""
    base = root / source
    patterns = CONTRACT_PATTERNS.get(source, ("*.csv",))
    found = {p for pat in patterns for p in base.rglob(pat) if p.is_file()} if base.is_dir() else set()
    return SourceFiles(root=root, files=sorted(found))


def source_plan(files: Path | SourceFiles, source: str) -> SourceFiles:
    return files if isinstance(files, SourceFiles) else contract_files(files, source)


def _file_loaded_at(con, source: str, plan: SourceFiles, now: dt.datetime) -> dict[str, dt.datetime]:
    """First-seen time per file; a file whose size or mtime changed counts as new."""
    known = {
        (f, size, mtime): loaded
        for f, size, mtime, loaded in con.execute(
            "SELECT file, size_bytes, modified_ns, loaded_at FROM raw.ingested_files WHERE source = ?", [source]
        ).fetchall()
    }
    out = {}
    for path in plan.files:
        st = path.stat()
        rel = plan.relative(path)
        out[rel] = known.get((rel, st.st_size, st.st_mtime_ns), now)
    return out


def create_from_rows(con, name: str, columns: list[str], rows: list[tuple], dtypes: dict | None = None) -> None:
    """A temp table from Python rows in one statement (executemany costs a round trip per row)."""
    table_from_frame(con, name, pd.DataFrame.from_records(rows, columns=columns).astype(dtypes or {}), temp=True)


def whole_file_reason(exc: Exception) -> tuple[str, str]:
    text = str(exc)
    if "end of gzip stream" in text.lower():
        return F.FILE_UNREADABLE, "gzip stream is truncated (the upload was cut off); re-send the whole file"
    if "GZIP" in text.upper():
        return (
            F.FILE_NOT_GZIP,
            "file ends in .gz but is not a gzip stream; re-export it compressed, or rename it without .gz",
        )
    if "unicode" in text.lower() or "utf-8" in text.lower() or isinstance(exc, UnicodeDecodeError):
        return F.FILE_NOT_UTF8, "file is not UTF-8 text; re-export it as UTF-8"
    if missing := re.search(r'Referenced column "([^"]+)" not found', text):  # a mapped file unlike the others
        return F.FILE_UNREADABLE, (
            f'file has no column "{missing.group(1)}", which the sources config maps; '
            "check its delimiter, encoding and header row against the config"
        )
    return F.FILE_UNREADABLE, f"file could not be read: {text.splitlines()[0][:300]}"


def _file_preview(path: Path) -> str:
    return path.read_bytes()[:200].decode("utf-8", errors="backslashreplace")


def register_files(con, plan: SourceFiles, now: dt.datetime, source: str):
    loaded_at = _file_loaded_at(con, source, plan, now)
    stats = {plan.relative(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in plan.files}
    create_from_rows(
        con,
        "_files",
        ["file", "path", "loaded_at"],
        [(plan.relative(p), str(p), loaded_at[plan.relative(p)]) for p in plan.files],
        {"file": "string", "path": "string", "loaded_at": "datetime64[us]"},
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rejected_files (file VARCHAR, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)"
    )
    # Rows of mapped files that could not be parsed into columns (CSV rows that do not fit the header).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unparsed_rows "
        "(file VARCHAR, line_no BIGINT, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)"
    )
    return loaded_at, stats


def scan_files(con, plan: SourceFiles, files: list[Path], report: LoadReport, scan) -> None:
    """`scan(files)` over all files at once. A file DuckDB cannot read is named in its error:
    reject it, scan the rest."""
    pending = []
    for path in files:
        if path.suffix == ".gz" and _head(path, 2) != b"\x1f\x8b":  # not gzip: no need to scan it to know
            reject_file(con, plan, path, report, *whole_file_reason(OSError("not a GZIP stream")))
        else:
            pending.append(path)
    while True:
        try:
            scan(pending)
            return
        except (duckdb.Error, UnicodeDecodeError) as exc:
            named = [p for p in pending if str(p) in str(exc)]
            if len(named) == 1:
                errors = {named[0]: exc}
            else:  # named ambiguously (one path a prefix of another) or not at all: read each suspect
                errors = {p: e for p in (named or pending) if (e := _probe_error(scan, p)) is not None}
            if not errors:
                raise
            for path, error in errors.items():
                reject_file(con, plan, path, report, *whole_file_reason(error))
                pending.remove(path)


def _probe_error(scan, path: Path) -> Exception | None:
    try:
        scan([path])
        return None
    except (duckdb.Error, UnicodeDecodeError) as exc:
        return exc


def scan_mapped(con, plan: SourceFiles, select: list[str], files: list[Path]) -> None:
    """`_mapped(file, line_no, raw, ...)` and `_unparsed(path, line_no, reason, raw)` from mapped
    files. No side effect beyond these two tables, so scan_files may probe file by file."""
    if not files:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _mapped AS SELECT * FROM (SELECT NULL::VARCHAR AS file, "
            f"NULL::BIGINT AS line_no, NULL::VARCHAR AS raw, {', '.join(select)}) WHERE false"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _unparsed "
            "(path VARCHAR, line_no BIGINT, reason_code VARCHAR, reason VARCHAR, raw VARCHAR)"
        )
        return
    header = (1 if plan.csv.header else 0) + plan.csv.skip_rows if plan.format == "csv" else 0
    read_mapped(con, plan, files, select, header)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _mapped AS SELECT f.file, m.* EXCLUDE (path) "
        "FROM _mapped m JOIN _files f USING (path)"
    )


def keep_unparsed(con) -> None:
    """After a scan: its unparseable rows join the ones quarantined so far."""
    con.execute(
        "INSERT INTO _unparsed_rows SELECT f.file, u.line_no, u.reason_code, u.reason, u.raw "
        "FROM _unparsed u JOIN _files f USING (path)"
    )


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def reject_file(con, plan: SourceFiles, path: Path, report: LoadReport, code: str, reason: str) -> None:
    rel = plan.relative(path)
    con.execute("INSERT INTO _rejected_files VALUES (?, ?, ?, ?)", [rel, code, reason, _file_preview(path)])
    report.files_rejected[rel] = code


def reason_sql(rules: tuple[Rule, ...]) -> tuple[str, str]:
    code = "CASE " + " ".join(f"WHEN {r.condition} THEN '{r.code}'" for r in rules) + " END"
    message = "CASE " + " ".join(f"WHEN {r.condition} THEN {r.message}" for r in rules) + " END"
    return code, message


def normalise_phones(con, source: str = "_rows") -> None:
    """`_phones(phone, country, phone_e164, phone_valid)` for every distinct (phone, country).

    E.164 when phonenumbers finds a possible number (the right length for its country), NULL
    otherwise. `phone_valid` says whether the numbering plan assigns it: `is_possible_number` accepts
    unassigned US area codes such as (286) 746-7627, which real CRMs hold, and those are kept as
    contact data but never link identities (docs/input_contract.md)."""
    pairs = con.execute(
        f"SELECT DISTINCT phone, country FROM {source} WHERE nullif(trim(phone), '') IS NOT NULL"
    ).fetchall()
    out = []
    for phone, country in pairs:
        region = (country or "").strip().upper() or None
        e164, valid = normalise_phone(phone, region), False
        if e164 is not None:
            valid = phonenumbers.is_valid_number(phonenumbers.parse(e164))
        out.append((phone, country, e164, valid))
    create_from_rows(
        con,
        "_phones",
        ["phone", "country", "phone_e164", "phone_valid"],
        out,
        {"phone": "string", "country": "string", "phone_e164": "string", "phone_valid": "bool"},
    )


def normalise_emails(con, source: str = "_rows") -> None:
    """`_emails(email, email_normalised, email_issue, email_issue_reason)` for every distinct email
    in `source` (orchestration.lib.identifiers.check_email)."""
    out = []
    for (email,) in con.execute(
        f"SELECT DISTINCT email FROM {source} WHERE nullif(trim(email), '') IS NOT NULL"
    ).fetchall():
        checked = check_email(email)
        out.append((email, checked.key, checked.issue, checked.reason))
    create_from_rows(
        con,
        "_emails",
        ["email", "email_normalised", "email_issue", "email_issue_reason"],
        out,
        {"email": "string", "email_normalised": "string", "email_issue": "string", "email_issue_reason": "string"},
    )
