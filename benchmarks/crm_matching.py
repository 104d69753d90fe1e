"""Probabilistic CRM matching (Splink) alone, at growing sizes: candidate pairs per blocking key,
wall time, and precision/recall against the ground truth; then FEBRL3 as the quality guard.

    .venv/bin/python benchmarks/crm_matching.py --persons 100000 1000000

Only the CRM side of each tier is generated. The records are the full generator's (a person's CRM
rows are drawn before their events), so the figures hold for `crm_match_pairs` in a full run.
Names are folded about as `int_crm__customer_records` folds them (lower case, accents stripped), and
rows a full run would quarantine are left out.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402
from benchmarks.identity_quality import febrl3  # noqa: E402
from orchestration.defs.identity.matching import (  # noqa: E402
    BLOCKING_KEYS,
    COLUMNS,
    MatchSettings,
    match_customer_records,
    prediction_blocking_rules,
    with_blocking_keys,
)
from orchestration.lib.identifiers import normalise_phone  # noqa: E402
from orchestration.lib.warehouse import scratch_database  # noqa: E402
from orchestration.sample_data.generator import CRM_COLUMNS, GeneratorConfig, Simulator  # noqa: E402


class _CrmOnly(Simulator):
    def _simulate(self, rng, p, household_tablet) -> None:  # no events: only persons and CRM rows
        return None


def _chunk(bounds: tuple[GeneratorConfig, int, int, int]) -> tuple[list[list[str]], dict[str, tuple[str, bool]]]:
    cfg, part, lo, hi = bounds
    w = _CrmOnly(cfg, part, lo, hi).run()
    rows = [row for name, rows in w.crm_rows.items() for row in rows]
    owner = {
        value: (person, linkable) for kind, value, person, linkable, *_ in w.truth_identifiers if kind == "customer_id"
    }
    return rows, owner


def _fold(s: pd.Series) -> pd.Series:
    folded = s.fillna("").map(lambda v: unicodedata.normalize("NFKD", v).encode("ascii", "ignore").decode())
    return folded.str.strip().str.lower().replace("", pd.NA)


def crm_records(persons: int) -> tuple[pd.DataFrame, dict[str, tuple[str, bool]]]:
    """The latest CRM record per customer_id of `persons` generated persons, and each id's person
    with whether the data can link it (a till account without birth date or address cannot)."""
    cfg = GeneratorConfig(persons=persons)
    bounds = [(cfg, i, lo, min(persons, lo + cfg.chunk_size)) for i, lo in enumerate(range(0, persons, cfg.chunk_size))]
    rows, owner = [], {}
    # spawn: a forked child would inherit the DuckDB threads of the tier before.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for chunk_rows, chunk_owner in pool.map(_chunk, bounds):
            rows.extend(r for r in chunk_rows if len(r) == len(CRM_COLUMNS))
            owner.update(chunk_owner)
    frame = (
        pd.DataFrame(rows, columns=CRM_COLUMNS).sort_values("updated_at").drop_duplicates("customer_id", keep="last")
    )
    for col in ("first_name", "last_name", "city", "street"):
        frame[col] = _fold(frame[col])
    frame["postcode"] = frame["postcode"].str.replace(" ", "").str.upper()
    frame["email"] = frame["email"].str.strip().str.lower()
    frame["phone"] = [
        normalise_phone(v, c) if v else None for v, c in zip(frame["phone"], frame["country"], strict=True)
    ]
    return frame.reindex(columns=[*COLUMNS, "email", "phone"]).reset_index(drop=True), owner


def comparisons_per_key(records: pd.DataFrame, settings: MatchSettings) -> list[dict]:
    """Candidate pairs each blocking key adds to the keys before it (Splink's own count, exact)."""
    from splink import DuckDBAPI
    from splink.blocking_analysis import count_comparisons_from_blocking_rules

    with scratch_database() as con:
        blocked = with_blocking_keys(con, records.reindex(columns=COLUMNS), settings.max_block_size)
        counts = count_comparisons_from_blocking_rules(
            DuckDBAPI(connection=con).register(blocked),
            blocking_rules=prediction_blocking_rules(),
            link_type="dedupe_only",
            unique_id_column_name="customer_id",
            record_sample_proportion=1.0,
        )
    return [
        {"key": " + ".join(parts), "pairs": int(c["marginal_comparison_count"])}
        for parts, c in zip(BLOCKING_KEYS, counts, strict=True)
    ]


def scored(pairs: pd.DataFrame, owner: dict[str, tuple[str, bool]], records: pd.DataFrame) -> dict:
    """Precision of the matched pairs, and recall over linkable same-person record pairs that share
    no email (pairs sharing one link deterministically, without Splink)."""
    person = {cid: p for cid, (p, _) in owner.items()}
    same = [
        person.get(a) is not None and person.get(a) == person.get(b)
        for a, b in zip(pairs["customer_id_l"], pairs["customer_id_r"], strict=True)
    ]
    linkable = records["customer_id"].map(lambda cid: owner.get(cid, (None, False))[1]).astype(bool)
    by_person = records[linkable].assign(person=records["customer_id"].map(person)).dropna(subset=["person"])
    true_pairs = set()
    for _, group in by_person.groupby("person"):
        ids = sorted(group["customer_id"])
        emails = dict(zip(group["customer_id"], group["email"], strict=True))
        true_pairs |= {(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :] if emails[a] != emails[b]}
    found = set(zip(pairs["customer_id_l"], pairs["customer_id_r"], strict=True)) & true_pairs
    return {
        "matched_pairs": len(pairs),
        "precision": round(sum(same) / len(pairs), 4) if len(pairs) else None,
        "same_person_pairs_without_shared_email": len(true_pairs),
        "recall": round(len(found) / len(true_pairs), 4) if true_pairs else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, nargs="+", default=[100_000])
    ap.add_argument("--name", default="crm_matching", help="result file name under benchmarks/results/")
    ap.add_argument("--max-block-size", type=int, default=MatchSettings.max_block_size)
    args = ap.parse_args()
    settings = MatchSettings(max_block_size=args.max_block_size)
    result: dict = {"max_block_size": settings.max_block_size, "tiers": {}}
    for persons in args.persons:
        started = time.perf_counter()
        records, owner = crm_records(persons)
        generated_s = time.perf_counter() - started
        per_key = comparisons_per_key(records, settings)
        started = time.perf_counter()
        pairs = match_customer_records(records, settings)
        seconds = time.perf_counter() - started
        result["tiers"][persons] = {
            "crm_records": len(records),
            "generate_s": round(generated_s, 1),
            "candidate_pairs": sum(r["pairs"] for r in per_key),
            "per_key": per_key,
            "match_s": round(seconds, 1),
            **scored(pairs, owner, records),
        }
        print(result["tiers"][persons], flush=True)
    result["febrl3"] = febrl3(settings)
    save_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
