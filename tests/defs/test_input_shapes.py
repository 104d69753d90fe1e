"""Every input shape runs end to end: the messy corpus with only some of its sources (orders alone is
tests/defs/test_online_retail_example.py, all three tests/defs/test_messy_corpus.py). Each shape
must give every loaded key a person, features that come only from the sources present, CRM
duplicates merged (a CRM-only input is deduplication), consent honoured, and segments and exports."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from decimal import Decimal

import dagster as dg
import pandas as pd
import pytest

from orchestration.defs.dbt.assets import tessera_dbt_models
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
from orchestration.defs.exports.assets import export_assets
from orchestration.defs.identity.definitions import defs as identity_defs
from orchestration.defs.ingest.assets import ingest_assets
from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.ml.assets import ml_assets
from orchestration.defs.partitions import all_days_tags
from orchestration.defs.privacy.assets import sweep_assets
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.defs.segments.assets import segment_assets
from orchestration.lib.settings import reload_settings
from orchestration.lib.warehouse import connect
from orchestration.sample_data.messy import CONSENT, MessyConfig, generate_messy

pytestmark = pytest.mark.slow
SHAPES = {
    "events": ("events",),
    "crm": ("crm",),
    "events+crm": ("events", "crm"),
    "events+orders": ("events", "orders"),
    "crm+orders": ("crm", "orders"),
}
ASSETS = [
    *ingest_assets,
    *tessera_dbt_models,
    *identity_defs.assets,
    *sweep_assets,
    *ml_assets,
    *segment_assets,
    *export_assets,
]


def _materialize(root, landing):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_WAREHOUSE", str(root / "warehouse.duckdb"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("TESSERA_EXPORTS_DIR", str(root / "exports"))
        mp.setenv("TESSERA_REPORTS_DIR", str(root / "reports"))
        mp.delenv("TESSERA_AS_OF", raising=False)
        return dg.materialize(
            ASSETS,
            instance=dg.DagsterInstance.ephemeral(),
            tags=all_days_tags(),
            raise_on_error=False,
            resources={
                "warehouse": WarehouseResource(path=str(root / "warehouse.duckdb")),
                "landing": LandingZoneResource(root=str(landing)),
                "dbt": dbt_domain_defs.resources["dbt"],
                "settings": SettingsResource.from_settings(reload_settings()),
            },
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_messy(root / "landing", MessyConfig(persons=6 * len(CONSENT)), truth_dir=root / "truth")
    with (root / "truth" / "persons.csv").open(encoding="utf-8") as fh:
        return root, list(csv.DictReader(fh))


@pytest.fixture(scope="module", params=list(SHAPES))
def shape(request, corpus, tmp_path_factory):
    source_root, persons = corpus
    root = tmp_path_factory.mktemp(request.param.replace("+", "_"))
    for source in SHAPES[request.param]:
        shutil.copytree(source_root / "landing" / source, root / "landing" / source)
    result = _materialize(root, root / "landing")
    return {
        "name": request.param,
        "sources": SHAPES[request.param],
        "persons": persons,
        "result": result,
        "warehouse": root / "warehouse.duckdb",
        "exports": root / "exports",
    }


def test_the_whole_chain_completes_on_each_shape(shape):
    failures = [e.step_key for e in shape["result"].all_events if e.is_step_failure]
    assert shape["result"].success, failures
    with connect(shape["warehouse"], read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.segment_report").fetchone()[0] > 0
        published = {
            r[0] for r in con.execute("SELECT segment_name FROM marts.segment_report WHERE published").fetchall()
        }
        clustered = con.execute("SELECT count(*) FROM marts.cluster_assignments").fetchone()[0]
    # CRM records alone carry no behaviour, so no behavioural segment reaches its minimum size there.
    assert bool(published) == (shape["sources"] != ("crm",))
    assert {p.parent.parent.name for p in shape["exports"].rglob("members.parquet")} == published
    clustering = shape["result"].asset_materializations_for_node("ml__clustering_model")[0].metadata
    if shape["sources"] == ("crm",):  # no behaviour to cluster: said so, and the rest runs
        assert clustering["trained"].value is False and "selection rule" in clustering["reason"].value
        assert clustered == 0
    else:
        assert clustered > 0


def test_every_loaded_key_has_a_person_and_features(shape):
    with connect(shape["warehouse"], read_only=True) as con:
        keys = con.execute("""
            SELECT 'customer_id', customer_id FROM raw.crm_customers
            UNION SELECT 'customer_id', customer_id FROM raw.order_lines WHERE customer_id IS NOT NULL
            UNION SELECT 'user_id', user_id FROM raw.events WHERE user_id IS NOT NULL
            UNION SELECT 'anonymous_id', anonymous_id FROM raw.events WHERE anonymous_id IS NOT NULL""").fetchall()
        mapped = set(con.execute("SELECT identifier_type, identifier FROM marts.identity_map").fetchall())
        features = con.execute(
            "SELECT * FROM marts.user_features WHERE as_of = (SELECT max(as_of) FROM marts.user_features)"
        ).df()
        persons = con.execute("SELECT count(DISTINCT person_id) FROM marts.identity_map").fetchone()[0]
    assert keys and not set(keys) - mapped
    assert len(features) == persons and features["person_id"].is_unique
    if "orders" not in shape["sources"] and "events" not in shape["sources"]:
        assert (features["frequency_orders"] == 0).all() and (features["monetary_total"] == 0).all()
    if "events" not in shape["sources"]:
        assert (features["events_total"] == 0).all() and (features["sessions_total"] == 0).all()
    else:
        assert (features["events_total"] > 0).sum() >= len(shape["persons"]) * 0.9


def test_each_persons_keys_merge_and_no_two_people_do(shape):
    """A CRM-only input is deduplication: one person's several records (two exports) become one."""
    with connect(shape["warehouse"], read_only=True) as con:
        person_of = {
            (t, i): p
            for t, i, p in con.execute(
                "SELECT identifier_type, identifier, person_id FROM marts.identity_map"
            ).fetchall()
        }
        crm_records = con.execute("SELECT count(*), count(DISTINCT customer_id) FROM raw.crm_customers").fetchone()
        # Without CRM records, only an order that carries its buyer's email ties the customer to the login.
        emailed = {
            r[0]
            for r in con.execute(
                "SELECT customer_id FROM raw.order_lines WHERE email_normalised IS NOT NULL"
            ).fetchall()
        }
    owners = defaultdict(set)
    for p in shape["persons"]:
        keys = [("customer_id", p["customer_id"]), ("user_id", p["user_id"]), ("anonymous_id", p["anonymous_id"])]
        found = {person_of[k] for k in keys if k in person_of}
        linkable = "crm" in shape["sources"] or "orders" not in shape["sources"] or p["customer_id"] in emailed
        if p["lookalike_email"] == "False":  # a refused look-alike email leaves the CRM record apart from the login
            assert len(found) <= (1 if linkable else 2), (p["index"], found)
        for person in found:
            owners[person].add(p["index"])
    assert len(owners) >= 0.8 * len(shape["persons"]) and all(len(truth) == 1 for truth in owners.values())
    if "crm" in shape["sources"]:
        assert crm_records[0] > crm_records[1]  # several records per customer were there to merge


def test_opted_out_people_reach_no_segment_and_monetary_totals_are_exact(shape):
    with connect(shape["warehouse"], read_only=True) as con:
        members = {r[0] for r in con.execute("SELECT DISTINCT person_id FROM marts.segment_membership").fetchall()}

        def person(p):
            kind, value = (
                ("user_id", p["user_id"]) if "events" in shape["sources"] else ("customer_id", p["customer_id"])
            )
            row = con.execute(
                "SELECT person_id FROM marts.identity_map WHERE identifier_type = ? AND identifier = ?", [kind, value]
            ).fetchone()
            return row[0] if row else None

        if "crm" in shape["sources"]:
            opted_out = {
                person(p) for p in shape["persons"] if p["opted_out"] == "True" and p["lookalike_email"] == "False"
            } - {None}
            assert len(opted_out) >= 15 and not opted_out & members
        if "orders" in shape["sources"]:
            buyers = [p for p in shape["persons"] if Decimal(p["monetary_total"]) > 0]
            for p in buyers:
                cid = con.execute(
                    "SELECT person_id FROM marts.identity_map WHERE identifier_type = 'customer_id' AND identifier = ?",
                    [p["customer_id"]],
                ).fetchone()[0]
                total = con.execute(
                    "SELECT monetary_total FROM marts.user_features WHERE person_id = ? AND as_of = "
                    "(SELECT max(as_of) FROM marts.user_features)",
                    [cid],
                ).fetchone()[0]
                assert Decimal(str(total)).quantize(Decimal("0.01")) == Decimal(p["monetary_total"]), p["index"]
    exported = set()
    for path in shape["exports"].rglob("members.parquet"):
        exported |= set(pd.read_parquet(path)["person_id"])
    assert exported <= members


def test_with_nothing_to_date_the_run_stops_saying_what_to_set(tmp_path):
    landing = tmp_path / "landing" / "crm"
    landing.mkdir(parents=True)
    (landing / "crm.csv").write_text("customer_id,email,updated_at\nC1,a@example.com,\nC2,b@example.com,\n")
    result = _materialize(tmp_path, tmp_path / "landing")
    failures = {e.step_key: e.step_failure_data.error.message for e in result.all_events if e.is_step_failure}
    assert not result.success and list(failures) == ["dbt_before_identity_graph"]
    assert "Nothing dates this run" in failures["dbt_before_identity_graph"]
    assert "set TESSERA_AS_OF=YYYY-MM-DD" in failures["dbt_before_identity_graph"]
    with connect(tmp_path / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.quarantine WHERE source = 'crm'").fetchone()[0] == 2


def test_an_input_too_small_to_cluster_still_gives_segments_and_exports(tmp_path):
    generate_messy(tmp_path / "landing", MessyConfig(persons=2 * len(CONSENT)), truth_dir=tmp_path / "truth")
    result = _materialize(tmp_path, tmp_path / "landing")
    assert result.success
    clustering = result.asset_materializations_for_node("ml__clustering_model")[0].metadata
    assert clustering["trained"].value is False and "at least 50 persons" in clustering["reason"].value
    with connect(tmp_path / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.cluster_assignments").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM marts.segment_membership").fetchone()[0] > 0
    assert any((tmp_path / "exports").rglob("members.parquet"))
