"""Erased persons in every store, before and after: the bar of docs/privacy.md, on the messy corpus.

    .venv/bin/python benchmarks/erasure_traces.py --persons 2000 --erase 20

Writes the messy corpus (data unlike the generator's), runs the whole pipeline (checks, models,
segments, exports, with a file-backed Dagster instance) and searches every file the run wrote for
the persons to be erased; then drops erasure requests for them into privacy/ (by email in odd
case and spacing, by national phone, by user id), runs again, and searches again. The search is
independent of the pipeline's own check: it knows the identifiers in clear and looks for every
written form (identifiers.written_forms) as a token, URL-decoded and JSON-unescaped, and for
every phone number as its digits, in the bytes of each file. Results: hits per store, before and
after, in benchmarks/results/erasure_traces.json.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._pipeline import run_pipeline, save_result  # noqa: E402

TOKEN = re.compile(rb"[A-Za-z0-9_.+@%\\-]{5,320}")
PHONE = re.compile(rb"\+?\(?[0-9][0-9 ().\-]{6,20}[0-9]")


def _persons(truth: Path, landing: Path, n: int) -> list[dict]:
    """The first `n` persons with a CRM record, an email and a login, with their phone as written."""
    with (truth / "persons.csv").open(encoding="utf-8") as fh:
        persons = [p for p in csv.DictReader(fh) if p["lookalike_email"] == "False" and p["scenario"] != "no_crm"]
    phones = {}
    for path in sorted((landing / "crm").glob("*.csv")):
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("phone", "").strip() and row["phone"].strip().upper() != "N/A":
                    phones.setdefault(row["customer_id"], row["phone"].strip())
    chosen = [p | {"phone": phones.get(p["customer_id"], "")} for p in persons if phones.get(p["customer_id"])]
    return chosen[:n]


def _needles(persons: list[dict]) -> tuple[set[bytes], set[bytes]]:
    """(lower-cased text forms, digit strings of phones) of every identifier of `persons`."""
    from orchestration.lib.identifiers import normalise_phone, written_forms

    forms: set[str] = set()
    digits: set[bytes] = set()
    for p in persons:
        for kind in ("customer_id", "user_id", "anonymous_id", "email"):
            forms |= written_forms(kind, p[kind])
        e164 = normalise_phone(p["phone"], "GB" if p["phone"].startswith("0") else "US")
        if e164:
            forms |= written_forms("phone_e164", e164)
            digits |= {
                e164.lstrip("+").encode(),
                e164[2:].encode() if e164.startswith("+1") else ("0" + e164[3:]).encode(),
            }
    return {f.lower().encode() for f in forms}, digits


def _hits(path: Path, forms: set[bytes], digits: set[bytes]) -> int:
    data = path.read_bytes()
    hits = 0
    for match in TOKEN.finditer(data):
        token = match.group().lower()
        variants = {token, token.replace(b"\\u0040", b"@")}
        if b"%" in token:
            variants.add(urllib.parse.unquote_to_bytes(token).lower())
        variants |= {v.strip(b".-_") for v in variants}
        hits += any(v in forms for v in variants)
    for match in PHONE.finditer(data):
        if re.sub(rb"[^0-9]", b"", match.group()) in digits:
            hits += 1
    return hits


def _stores(work: Path) -> dict[str, list[Path]]:
    return {
        "warehouse file": [work / "warehouse.duckdb", work / "warehouse.duckdb.wal"],
        "exports": [work / "exports"],
        "reports": [work / "reports"],
        "mlflow": [work / "mlflow.db", work / "mlruns"],
        "dagster home": [work / "dagster_home"],
        "great expectations": [work / "gx"],
        "dbt target and logs": [ROOT / "dbt_project" / "target", ROOT / "dbt_project" / "logs"],
    }


def _search(work: Path, persons: list[dict]) -> dict[str, dict]:
    forms, digits = _needles(persons)
    out = {}
    for store, roots in _stores(work).items():
        files = [f for r in roots if r.exists() for f in ([r] if r.is_file() else sorted(r.rglob("*"))) if f.is_file()]
        hits = Counter({str(f.relative_to(f.anchor)): n for f in files if (n := _hits(f, forms, digits))})
        out[store] = {
            "files_searched": len(files),
            "bytes_searched": sum(f.stat().st_size for f in files),
            "hits": sum(hits.values()),
            "files_with_hits": dict(hits.most_common(5)),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--erase", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench" / "erasure_traces")
    args = ap.parse_args()

    import shutil

    import dagster as dg

    from orchestration.sample_data.messy import MessyConfig, generate_messy

    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chdir(work)  # MLflow's default artifact root (./mlruns) lands here
    for name, value in {
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "TESSERA_EXPORTS_DIR": work / "exports",
        "TESSERA_REPORTS_DIR": work / "reports",
        "DAGSTER_HOME": work / "dagster_home",
        "TESSERA_WAREHOUSE": work / "warehouse.duckdb",
    }.items():
        os.environ[name] = str(value)
    (work / "dagster_home").mkdir()
    generate_messy(work / "landing", MessyConfig(persons=args.persons), truth_dir=work / "truth")
    persons = _persons(work / "truth", work / "landing", args.erase)
    instance = dg.DagsterInstance.local_temp(str(work / "dagster_home"))
    result: dict = {"persons": args.persons, "erased": len(persons)}

    def run(label: str) -> None:
        started = time.perf_counter()
        run_pipeline(
            work / "landing",
            work / "warehouse.duckdb",
            with_checks=True,
            with_ml=True,
            with_privacy=True,
            with_exports=True,
            instance=instance,
        )
        result[f"{label}_run_s"] = round(time.perf_counter() - started, 1)
        result[f"hits_{label}"] = _search(work, persons)

    run("before")
    (work / "landing" / "privacy").mkdir(exist_ok=True)
    with (work / "landing" / "privacy" / "requests.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["requested_at", "identifier_type", "identifier"])
        for i, p in enumerate(persons):
            kind, value = [
                ("email", f"  {p['email'].upper()} "),
                ("phone", p["phone"]),
                ("user_id", p["user_id"]),
                ("customer_id", p["customer_id"]),
            ][i % 4]
            writer.writerow(["2026-11-01T09:00:00Z", kind, value])
    run("after")
    import duckdb

    with duckdb.connect(str(work / "warehouse.duckdb"), read_only=True) as con:
        result["erasure_log"] = dict(
            con.execute("SELECT outcome, count(*) FROM privacy.erasure_log GROUP BY 1").fetchall()
        )
    result["total_hits_before"] = sum(s["hits"] for s in result["hits_before"].values())
    result["total_hits_after"] = sum(s["hits"] for s in result["hits_after"].values())
    save_result("erasure_traces", result)
    return 0 if result["total_hits_after"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
