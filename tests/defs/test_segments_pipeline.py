"""The consumer end of the chain through Dagster on generated data: ML scores, segment membership,
erasure with suppression at re-ingestion, and audience exports, checked against ground truth."""

from __future__ import annotations

import json
import os
import shutil

import dagster as dg
import pandas as pd
import pytest

from orchestration.defs.dbt.assets import tessera_dbt_models
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
from orchestration.defs.experiments.assets import experiment_assets, experiment_checks
from orchestration.defs.exports.assets import export_assets
from orchestration.defs.identity.definitions import defs as identity_defs
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.ml.assets import ml_assets
from orchestration.defs.ml.definitions import training_assets
from orchestration.defs.ml.recommendations import recommendation_assets
from orchestration.defs.partitions import all_days_tags
from orchestration.defs.privacy.assets import privacy_assets, privacy_checks, sweep_assets, sweep_checks
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.defs.segments.assets import segment_assets, segment_checks
from orchestration.defs.segments.kpis import kpi_assets, kpi_checks
from orchestration.lib.dbt_subprocess import dbt_target, run_dbt
from orchestration.lib.identifiers import sha256_hex
from orchestration.lib.settings import DBT_PROJECT_DIR, reload_settings
from orchestration.lib.warehouse import connect, table_fingerprint

pytestmark = pytest.mark.slow
CHAIN = [
    *ingest_assets,
    *tessera_dbt_models,
    *identity_defs.assets,
    *sweep_assets,
    *ml_assets,
    *recommendation_assets,
    *segment_assets,
    *segment_checks,
    *kpi_assets,
    *kpi_checks,
    *experiment_assets,
    *experiment_checks,
    *privacy_assets,
    *privacy_checks,
    *sweep_checks,
    *export_assets,
]
SEGMENT_TABLES = ("segment_membership", "segment_membership_history", "segment_report", "segment_overlap")


def _materialize(env, selection=None):
    return dg.materialize(
        CHAIN,
        selection=selection,
        instance=dg.DagsterInstance.ephemeral(),
        tags=all_days_tags(),
        resources={
            "warehouse": WarehouseResource(path=str(env["warehouse"])),
            "landing": LandingZoneResource(root=str(env["landing"])),
            "dbt": dbt_domain_defs.resources["dbt"],
            "settings": SettingsResource.from_settings(reload_settings()),
        },
    )


@pytest.fixture(scope="module")
def chain(sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    env = {"landing": root / "landing", "warehouse": root / "warehouse.duckdb", "exports": root / "exports"}
    shutil.copytree(sample.landing, env["landing"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_WAREHOUSE", str(env["warehouse"]))
        mp.setenv("TESSERA_EXPORTS_DIR", str(env["exports"]))
        mp.setenv("TESSERA_REPORTS_DIR", str(root / "reports"))
        env["reports"] = root / "reports"
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        first = _materialize(env)
        assert first.success
        env["first"] = first
        yield env, mp


def _metadata(result) -> dict:
    return {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def _erased_truth_identifiers(sample) -> list[tuple[str, str]]:
    erased = {p["person_key"] for p in sample.truth_rows("persons") if p["erased"] == "True"}
    return [
        (r["identifier_type"], r["identifier"])
        for r in sample.truth_rows("identifiers")
        if r["person_key"] in erased and r["shared_device"] != "True"
    ]


def _traces(con, identifiers: list[tuple[str, str]]) -> list[str]:
    """Every place an identifier of an erased person still appears, in clear or hashed."""
    found = []
    checks = {
        "marts.identity_map": "identifier IN (?, ?)",
        "raw.events": "user_id = ? OR anonymous_id = ? OR traits::VARCHAR LIKE '%' || ? || '%'",
        "raw.crm_customers": "customer_id = ? OR lower(email) = ? OR phone_e164 = ?",
        "raw.order_lines": "customer_id = ? OR lower(email) = ?",
        "pii.person_contacts": "email = ? OR phone = ?",
        "raw.quarantine": "contains(lower(raw), ?)",
    }
    for kind, value in identifiers:
        plain = value.strip().lower() if kind == "email" else value
        hashed = sha256_hex(plain)
        for table, where in checks.items():
            params = {1: [plain], 2: [plain, hashed], 3: [plain, plain, plain]}[where.count("?")]
            if table == "marts.identity_map":
                params = [plain, hashed]
            if con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]:
                found.append(f"{table}: {kind} {value}")
    return found


def test_segments_are_built_with_consent_respected(chain):
    env, _ = chain
    metadata = _metadata(env["first"])["marts/segment_membership"]
    with connect(env["warehouse"], read_only=True) as con:
        no_consent = {
            r[0]
            for r in con.execute(
                "SELECT person_id FROM marts.segment_attributes WHERE personalization_opt_in = false"
            ).fetchall()
        }
        members = con.execute("SELECT person_id, segment_name, segment_type FROM marts.segment_membership").df()
        report = con.execute("SELECT * FROM marts.segment_report").df()
        overlaps = set(
            con.execute(
                "SELECT segment_a, segment_b, both_members, round(jaccard, 3) FROM marts.segment_overlap"
            ).fetchall()
        )
    # The run's report, as a table in the metadata of the membership and of the report asset.
    shown = {r.data["segment"]: r.data for r in metadata["segment_report"].value.records}
    assert shown == {
        row.segment_name: {
            "segment": row.segment_name,
            "type": row.segment_type,
            "size": row.size,
            "entered": row.entered,
            "exited": row.exited,
            "left out (consent)": row.excluded_by_consent,
            "min size": row.min_size,
            "published": row.published,
        }
        for row in report.itertuples()
    }
    assert _metadata(env["first"])["marts/segment_report"]["segment_report"].value == metadata["segment_report"].value
    top = _metadata(env["first"])["marts/segment_overlap"]["top_overlaps"].value
    top = [tuple(r.data.values()) for r in top.records]
    assert top and set(top) <= overlaps and len(top) == min(10, len(overlaps))
    assert [t[3] for t in top] == sorted((t[3] for t in top), reverse=True)
    assert no_consent and not (set(members["person_id"]) & no_consent)
    assert metadata["persons_left_out_for_consent"].value == len(no_consent)
    assert set(members["segment_type"]) == {"rule", "contextual", "cluster", "propensity"}
    sizes = members.groupby("segment_name").size()
    published = report[report["published"]].set_index("segment_name")["size"]
    assert sizes.sort_index().equals(published.sort_index().astype(sizes.dtype))
    assert (report["size"] == report["matched"] - report["excluded_by_consent"]).all()
    with connect(env["warehouse"], read_only=True) as con:
        scored = con.execute("SELECT count(*) FROM marts.segment_attributes").fetchone()[0]
    decile = report.set_index("segment_name").loc["purchase_30d_top_decile"]
    assert abs(decile["matched"] - scored / 10) <= 1  # ntile(10): a tenth of the scored persons, before consent


def test_dbt_unit_tests_pass_against_the_built_warehouse(chain):
    """Pipeline runs leave dbt's unit tests out (they test SQL on fixed rows, not the data); they run
    here, once, where every upstream relation exists for dbt to read column types from."""
    env, _ = chain
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    defined = len(manifest["unit_tests"])
    with dbt_target("unit_tests", env["warehouse"]) as target_path:
        output = run_dbt(["test", "--select", "test_type:unit"], "duckdb", target_path).stdout
    assert defined > 0 and f"PASS={defined} " in output, output[-2000:]


def test_erasure_removes_every_trace_of_the_requested_people(sample, chain):
    env, _ = chain
    identifiers = _erased_truth_identifiers(sample)
    first = _metadata(env["first"])
    checks = {e.asset_check_key.name: e.passed for e in env["first"].get_asset_check_evaluations()}
    assert checks["no_trace_of_erased_persons"] and checks["no_trace_after_sweep"]
    # A first run applies the requests before anything has loaded: each identifier is suppressed as it
    # stands, and the person's data is dropped as it loads, with every identifier it ties to.
    log = first["privacy/erasure_log"]
    erased = len({p["person_key"] for p in sample.truth_rows("persons") if p["erased"] == "True"})
    assert log["requests"].value >= erased and log["not_found_but_suppressed"].value == log["requests"].value
    removed = [(r.data["table"], r.data["rows removed"]) for r in log["rows_removed_by_table"].value.records]
    assert sum(n for _, n in removed) == log["rows_removed"].value and all(n > 0 for _, n in removed)
    assert first["raw/events"]["rows_suppressed_erased_persons"].value > 0
    assert first["raw/crm_customers"]["rows_suppressed_erased_persons"].value > 0
    with connect(env["warehouse"], read_only=True) as con:
        assert identifiers and _traces(con, identifiers) == []
        log = con.execute("SELECT * FROM privacy.erasure_log").df()
        listed = con.execute("SELECT identifier_sha256 FROM privacy.suppression_list").df()
    plain_values = {v for _, v in identifiers}
    assert not (plain_values & set(log.astype(str).to_numpy().ravel()))  # the log holds hashes only
    assert {sha256_hex(v.strip().lower() if k == "email" else v) for k, v in identifiers} <= set(
        listed["identifier_sha256"]
    )


def test_exports_hold_published_consenting_members_with_hashed_emails(chain):
    env, _ = chain
    with connect(env["warehouse"], read_only=True) as con:
        report = con.execute("SELECT segment_name, size, published, as_of FROM marts.segment_report").df()
        contacts = dict(
            con.execute("SELECT person_id, email FROM pii.person_contacts WHERE email IS NOT NULL").fetchall()
        )
        no_consent = {
            r[0]
            for r in con.execute("SELECT person_id FROM marts.profiles WHERE personalization_opt_in = false").fetchall()
        }
    folders = {p.parent.parent.name: p.parent for p in env["exports"].glob("*/*/manifest.json")}
    assert set(folders) == set(report.loc[report["published"], "segment_name"])
    exported = _metadata(env["first"])["exports/audiences"]["exports"].value
    assert {r.data["segment"]: r.data["rows"] for r in exported.records} == report[report["published"]].set_index(
        "segment_name"
    )["size"].to_dict()
    assert not list(env["exports"].glob("*/.*"))  # no half-written folders
    for _, row in report[report["published"]].iterrows():
        folder = folders[row["segment_name"]]
        manifest = json.loads((folder / "manifest.json").read_text())
        parquet = pd.read_parquet(folder / "members.parquet")
        csv = pd.read_csv(folder / "members.csv")
        assert manifest["rows"] == len(parquet) == len(csv) == row["size"]
        assert manifest["files"]["members.parquet"]["sha256"] == sha256_hex_file(folder / "members.parquet")
        assert not (set(parquet["person_id"]) & no_consent)
        for person, email_hash in parquet[["person_id", "email_sha256"]].dropna().itertuples(index=False):
            if person in contacts:
                assert email_hash == sha256_hex(contacts[person].strip().lower())


def test_recommendations_find_the_planted_favourites_and_leave_out_who_refused(sample, chain):
    """The generator plants a favourite product in each of a person's categories, bought again and
    again. Whoever bought a favourite twice before as_of finds it in their top three; whoever refused
    personalisation gets nothing; everyone else gets ten products with a reason, those without a
    purchase what is popular in their segment."""
    from mlflow.tracking import MlflowClient

    env, _ = chain
    with connect(env["warehouse"], read_only=True) as con:
        recs = con.execute("SELECT * FROM marts.recommendations").df()
        bought = con.execute(
            "SELECT person_id, product_id, count(DISTINCT order_id) AS orders FROM marts.purchased_items GROUP BY ALL"
        ).df()
        customers = dict(
            con.execute(
                "SELECT identifier, person_id FROM marts.identity_map WHERE identifier_type = 'customer_id'"
            ).fetchall()
        )
        allowed = {
            r[0]
            for r in con.execute(
                "SELECT person_id FROM marts.segment_attributes WHERE coalesce(personalization_opt_in, true)"
            ).fetchall()
        }
    person_of = {
        r["person_key"]: customers[r["identifier"]]
        for r in sample.truth_rows("identifiers")
        if r["identifier_type"] == "customer_id" and r["identifier"] in customers
    }
    favourites = {
        person_of[p["person_key"]]: set(p["favourite_products"].split("|"))
        for p in sample.truth_rows("persons")
        if p["person_key"] in person_of and p["favourite_products"]
    }
    twice = bought[bought["orders"] >= 2]
    expected = {
        person
        for person, product in zip(twice["person_id"], twice["product_id"], strict=True)
        if product in favourites.get(person, ()) and person in allowed
    }
    top3 = recs[recs["rank"] <= 3].groupby("person_id")["item_id"].agg(set)
    found = [bool(top3.get(person, set()) & favourites[person]) for person in expected]
    assert len(found) >= 20 and sum(found) / len(found) >= 0.9, (sum(found), len(found))

    assert set(recs["person_id"]) == allowed  # everyone who may be personalised for, and no one else
    counts = recs.groupby("person_id")["rank"].agg(["count", "min", "max"])
    assert (counts["count"] == 10).all() and (counts["min"] == 1).all() and (counts["max"] == 10).all()
    assert (
        recs["reason"].str.match(r"^(bought before( \(\d+ times\))?|bought with .+|popular in .+|popular now)$").all()
    )
    never_bought = allowed - set(bought["person_id"])
    cold = recs[recs["person_id"].isin(never_bought)]
    assert len(cold) and (cold["model"] == "popularity").all() and cold["reason"].str.startswith("popular").all()
    summary = _metadata(env["first"])["ml/recommendation_model"]
    version = MlflowClient().get_model_version("tessera_recommender", summary["model_version"].value)
    run = MlflowClient().get_run(version.run_id)
    assert {"ndcg_at_10", "buy_again.ndcg_at_10", "lift_over_best_baseline"} <= set(run.data.metrics)


def sha256_hex_file(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_rerun_suppresses_erased_people_at_ingestion_and_changes_no_segment(sample, chain):
    """The CRM export is sent again (a new mtime) with the erased people still in it: its re-read
    drops them. The orders, unchanged, are not read again. The rerun is the daily job's: the
    champions score, nothing retrains."""
    env, _ = chain
    with connect(env["warehouse"], read_only=True) as con:
        before = [table_fingerprint(con, f"marts.{t}") for t in SEGMENT_TABLES]
    resent = sorted((env["landing"] / "crm").glob("*.csv"))[0]
    os.utime(resent, ns=(resent.stat().st_atime_ns, resent.stat().st_mtime_ns + 10**9))
    again = _materialize(env, dg.AssetSelection.all() - training_assets)  # as the daily job: scored by the champions
    assert again.success
    metadata = _metadata(again)
    assert metadata["raw/events"]["rows_suppressed_erased_persons"].value > 0
    assert metadata["raw/crm_customers"]["reused_unchanged_files"].value is False
    assert metadata["raw/crm_customers"]["rows_suppressed_erased_persons"].value > 0
    assert metadata["raw/order_lines"]["reused_unchanged_files"].value is True
    assert metadata["privacy/erasure_log"]["persons_erased_now"].value == 0
    assert {e.asset_check_key.name: e.passed for e in again.get_asset_check_evaluations()}["no_trace_of_erased_persons"]
    assert metadata["marts/segment_membership"]["rerun_of_as_of"].value is True
    with connect(env["warehouse"], read_only=True) as con:
        assert _traces(con, _erased_truth_identifiers(sample)) == []
        after = [table_fingerprint(con, f"marts.{t}") for t in SEGMENT_TABLES]
    assert after == before


def test_the_report_page_is_self_contained_complete_and_free_of_personal_data(sample, chain):
    import re

    env, _ = chain
    metadata = _metadata(env["first"])["exports/segment_report_page"]
    with connect(env["warehouse"], read_only=True) as con:
        as_of = con.execute("SELECT max(as_of) FROM marts.segment_report").fetchone()[0]
        names = [
            r[0]
            for r in con.execute("SELECT segment_name FROM marts.segment_report WHERE as_of = ?", [as_of]).fetchall()
        ]
        clusters = [r[0] for r in con.execute("SELECT DISTINCT cluster_name FROM marts.cluster_assignments").fetchall()]
        sizes = con.execute(
            "SELECT cluster_id, cluster_name, count(*) FROM marts.cluster_assignments GROUP BY ALL ORDER BY 1"
        ).fetchall()
    # The cluster sizes the assignment asset reported are those of the table the page read.
    cluster_sizes = _metadata(env["first"])["marts/cluster_assignments"]["cluster_sizes"].value
    assert [tuple(r.data.values()) for r in cluster_sizes.records] == sizes and len(sizes) > 1
    page = env["reports"] / str(as_of.date()) / "index.html"
    assert metadata["path"].value == str(page)
    html = page.read_text(encoding="utf-8")
    for section in (
        "segments",
        "kpis",
        "overlap",
        "clusters",
        "propensity",
        "recommendations",
        "experiments",
        "quality",
    ):
        assert f'<section id="{section}">' in html
    # The new sections hold what the tables say, in aggregate.
    with connect(env["warehouse"], read_only=True) as con:
        top = con.execute(
            "SELECT item_id FROM marts.recommendations GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
        experiments = [r[0] for r in con.execute("SELECT DISTINCT experiment FROM marts.experiment_results").fetchall()]
    assert top and f"<td>{top[0]}</td>" in html and experiments and all(f"<td>{e}</td>" in html for e in experiments)
    assert all(f"<b>{name}</b>" in html for name in names) and all(name in html for name in clusters)
    images = re.findall(r'<img alt="([^"]+)" src="([^"]+)"', html)
    assert {alt for alt, _ in images} == {
        "segment sizes over time",
        "conversion per segment over time",
        "segment overlap heatmap",
        "cluster profiles heatmap",
        "calibration plot",
    }
    assert all(src.startswith("data:image/png;base64,") for _, src in images)
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)  # opens offline
    personal = [
        r["identifier"].strip()
        for r in sample.truth_rows("identifiers")
        if r["identifier_type"] in ("email", "phone", "user_id", "customer_id", "anonymous_id")
        and len(r["identifier"].strip()) > 6
    ]
    assert personal and not [p for p in personal if p in html]
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", html)  # no email address at all
