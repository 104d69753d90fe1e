"""The whole chain on the messy corpus (orchestration/sample_data/messy.py), written independently
of the clean generator: records kept, fields nulled, quarantine by reason, who is opted out, who
reaches segments and exports, and every buyer's monetary total, each against planted truth."""

from __future__ import annotations

import csv
import json
from collections import Counter
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
from orchestration.lib.identifiers import sha256_hex
from orchestration.lib.settings import reload_settings
from orchestration.lib.warehouse import connect
from orchestration.sample_data.messy import CONSENT, MessyConfig, generate_messy

pytestmark = pytest.mark.slow
PERSONS = 12 * len(CONSENT)  # every consent scenario a dozen times


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    planted = generate_messy(root / "landing", MessyConfig(persons=PERSONS), truth_dir=root / "truth")
    with (root / "truth" / "persons.csv").open(encoding="utf-8") as fh:
        persons = list(csv.DictReader(fh))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_WAREHOUSE", str(root / "warehouse.duckdb"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("TESSERA_EXPORTS_DIR", str(root / "exports"))
        mp.setenv("TESSERA_REPORTS_DIR", str(root / "reports"))
        result = dg.materialize(
            [
                *ingest_assets,
                *tessera_dbt_models,
                *identity_defs.assets,
                *sweep_assets,
                *ml_assets,
                *segment_assets,
                *export_assets,
            ],
            instance=dg.DagsterInstance.ephemeral(),
            tags=all_days_tags(),
            resources={
                "warehouse": WarehouseResource(path=str(root / "warehouse.duckdb")),
                "landing": LandingZoneResource(root=str(root / "landing")),
                "dbt": dbt_domain_defs.resources["dbt"],
                "settings": SettingsResource.from_settings(reload_settings()),
            },
        )
        yield {
            "root": root,
            "planted": planted,
            "persons": persons,
            "result": result,
            "warehouse": root / "warehouse.duckdb",
            "exports": root / "exports",
        }


def _person_of(con, kind: str, value: str) -> str | None:
    row = con.execute(
        "SELECT person_id FROM marts.identity_map WHERE identifier_type = ? AND identifier = ?", [kind, value]
    ).fetchone()
    return row[0] if row else None


def test_the_whole_chain_completes(messy):
    assert messy["result"].success


def test_every_record_whose_key_is_usable_is_kept(messy):
    planted = messy["planted"]
    quarantined = Counter()
    for key, n in planted["quarantined"].items():
        quarantined[key.split("/")[0]] += n
    with connect(messy["warehouse"], read_only=True) as con:
        crm = con.execute("SELECT count(*) FROM raw.crm_customers").fetchone()[0]
        orders = con.execute("SELECT count(*) FROM raw.order_lines").fetchone()[0]
        events = con.execute("SELECT count(*) FROM raw.events").fetchone()[0]
        giant = con.execute("SELECT length(properties) FROM raw.events WHERE message_id = 'm-giant'").fetchone()
    assert crm == planted["records"]["crm"] - quarantined["crm"]
    assert orders == planted["records"]["orders"] - quarantined["orders"]
    assert events == planted["records"]["events"] - quarantined["events"]
    assert giant and giant[0] > 3 * 1024**2  # a 3 MB line loads like any other


def test_quarantine_and_field_issues_are_exactly_what_was_planted(messy):
    with connect(messy["warehouse"], read_only=True) as con:
        quarantined = {
            f"{s}/{c}": n
            for s, c, n in con.execute(
                "SELECT source, reason_code, count(*) FROM raw.quarantine GROUP BY ALL"
            ).fetchall()
        }
        issues = {
            f"{s}/{col}/{c}": n
            for s, col, c, n in con.execute(
                "SELECT source, column_name, reason_code, count(*) FROM raw.field_issues GROUP BY ALL"
            ).fetchall()
        }
        conflict = con.execute("SELECT raw FROM raw.quarantine WHERE reason_code = 'conflicting_duplicate'").fetchone()
    assert quarantined == messy["planted"]["quarantined"]
    assert issues == messy["planted"]["field_issues"]
    both = json.loads(conflict[0])  # both texts: the copy kept and the one quarantined
    assert both["conflicting"]["properties"]["revenue"] == 99999 and "revenue" not in both["kept"]["properties"]


def test_consent_fails_closed_for_every_scenario(messy):
    checked = Counter()
    with connect(messy["warehouse"], read_only=True) as con:
        for p in messy["persons"]:
            if p["lookalike_email"] == "True":
                continue  # their CRM email was refused, so their record and their login are two persons
            person = _person_of(con, "user_id", p["user_id"])
            opt_in = con.execute(
                "SELECT personalization_opt_in FROM marts.profiles WHERE person_id = ?", [person]
            ).fetchone()[0]
            expected = None if p["consent_evidence"] == "False" else p["opted_out"] == "False"
            assert opt_in is expected, (p["scenario"], p["index"], opt_in)
            checked[p["scenario"]] += 1
    assert set(checked) == set(CONSENT) and min(checked.values()) >= 10


def test_no_opted_out_person_reaches_a_segment_or_an_export(messy):
    with connect(messy["warehouse"], read_only=True) as con:
        opted_out = {_person_of(con, "user_id", p["user_id"]) for p in messy["persons"] if p["opted_out"] == "True"}
        members = {r[0] for r in con.execute("SELECT DISTINCT person_id FROM marts.segment_membership").fetchall()}
        left_out = con.execute(
            "SELECT sum(excluded_by_consent) FROM marts.segment_report "
            "WHERE as_of = (SELECT max(as_of) FROM marts.segment_report)"
        ).fetchone()[0]
    assert None not in opted_out and len(opted_out) >= 50
    assert not opted_out & members
    assert left_out > 0 and len(members) > 50  # the rules did select them: consent left them out
    exported = set()
    for path in messy["exports"].rglob("members.parquet"):
        exported |= set(pd.read_parquet(path)["person_id"])
    assert exported and not opted_out & exported
    emails = {sha256_hex(p["email"]) for p in messy["persons"] if p["opted_out"] == "True"}
    for path in messy["exports"].rglob("members.csv"):
        assert not any(e in path.read_text(encoding="utf-8") for e in emails)


def test_monetary_total_is_exact_for_every_buyer(messy):
    buyers = [p for p in messy["persons"] if Decimal(p["monetary_total"]) > 0]
    assert len(buyers) >= 50
    with connect(messy["warehouse"], read_only=True) as con:
        for p in buyers:
            person = _person_of(con, "customer_id", p["customer_id"])
            total = con.execute(
                "SELECT monetary_total FROM marts.user_features WHERE person_id = ? AND as_of = "
                "(SELECT max(as_of) FROM marts.user_features)",
                [person],
            ).fetchone()
            assert total is not None and Decimal(str(total[0])).quantize(Decimal("0.01")) == Decimal(
                p["monetary_total"]
            ), (p["index"], total, p["monetary_total"])
