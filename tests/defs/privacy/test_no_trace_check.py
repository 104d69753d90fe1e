"""The no-trace check proves an erasure: one person planted in every store that erasure cleans, the
erasure asset run, and the check passes; with any one scrub switched off, the check fails and names
the store that still holds the person. A file the run writes (a report, the Dagster home) that
holds the person fails the check too."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from orchestration.defs.ingest.resources import LandingZoneResource
from orchestration.defs.privacy.assets import erasure_log, no_trace_of_erased_persons
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.lib.identifiers import sha256_hex
from orchestration.lib.settings import reload_settings
from orchestration.lib.warehouse import connect

USER = "u-ann-5f1c2e9d"  # many events: DuckDB keeps such a value in a dictionary, raw, in the file
PHONE = "+12015550147"
# Values found in no fixture of the repository: the check also searches dbt's target folder.

# Each scrub, and what switching it off leaves behind (the store the check must name).
SCRUBS = {
    # A key too short to search for in text (C71): only the column-by-column match removes its order.
    "table rows": ("orchestration.lib.suppression.scrub", lambda con: {}, "raw.order_lines"),
    "written forms in text": (
        "orchestration.lib.suppression.delete_text_matches",
        lambda con, forms: {},
        "raw.quarantine (phone in text)",
    ),
    "exports": ("orchestration.defs.privacy.assets.scrub_audiences", lambda con, exports_dir: 0, "vip/2026-10-30"),
    "export leftovers": (
        "orchestration.lib.export_folders.remove_leftovers",
        lambda exports_dir: [],
        ".2026-10-29.tmp-999",
    ),
    "file compaction": ("orchestration.defs.privacy.assets.compact", lambda path: (0, 0), "warehouse file"),
}


def _plant(root):
    warehouse = root / "warehouse.duckdb"
    with connect(warehouse) as con:
        con.execute(
            """CREATE TABLE raw.crm_customers AS SELECT * FROM (VALUES
            ('C71', 'ann.q7@example.org', 'ann.q7@example.org', '(201) 555-0147', ?, 'US'),
            ('C2', 'bob@example.com', 'bob@example.com', NULL, NULL, 'GB'))
            t(customer_id, email, email_normalised, phone, phone_e164, country)""",
            [PHONE],
        )
        con.execute(
            "CREATE TABLE raw.order_lines AS SELECT * FROM (VALUES ('O1', 'C71'), ('O2', 'C2')) t(order_id, customer_id)"
        )
        con.execute(f"""CREATE TABLE raw.events AS
            SELECT 'm' || i AS message_id, CASE WHEN i % 7 = 0 THEN '{USER}' ELSE 'u-' || (i % 300) END AS user_id
            FROM range(50000) r(i)""")
        con.execute(
            """CREATE TABLE marts.identity_map AS SELECT * FROM (VALUES
            ('customer_id', 'C71', 'p_ann'), ('user_id', ?, 'p_ann'), ('email_sha256', ?, 'p_ann'),
            ('phone_sha256', ?, 'p_ann'), ('customer_id', 'C2', 'p_bob')) t(identifier_type, identifier, person_id)""",
            [USER, sha256_hex("ann.q7@example.org"), sha256_hex(PHONE)],
        )
        con.execute(
            "INSERT INTO raw.quarantine VALUES ('crm', 'crm/x.csv', 9, 'missing_required', 'no customer_id', "
            "',Ann Lee,(201) 555-0147,1 High Street', TIMESTAMP '2026-10-01')"
        )
        con.execute(
            "CREATE TABLE raw.erasure_requests AS SELECT TIMESTAMP '2026-10-30' AS requested_at, "
            "'email' AS identifier_type, 'ann.q7@example.org' AS identifier, "
            "sha256('ann.q7@example.org') AS identifier_sha256, TIMESTAMP '2026-10-30' AS loaded_at"
        )
        con.execute("CHECKPOINT")
    members = pd.DataFrame({"person_id": ["p_ann", "p_bob"], "email_sha256": [sha256_hex("ann.q7@example.org"), None]})
    for folder in (root / "exports" / "vip" / "2026-10-30", root / "exports" / "vip" / ".2026-10-29.tmp-999"):
        folder.mkdir(parents=True)
        members.to_parquet(folder / "members.parquet")
        members.to_csv(folder / "members.csv", index=False)
        (folder / "manifest.json").write_text(json.dumps({"segment": "vip", "rows": 2}))
    return warehouse


def _erase(root, monkeypatch, switched_off: str | None = None):
    warehouse = _plant(root)
    for name, value in {
        "TESSERA_WAREHOUSE": warehouse,
        "TESSERA_EXPORTS_DIR": root / "exports",
        "TESSERA_REPORTS_DIR": root / "reports",
        "DAGSTER_HOME": root / "dagster_home",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }.items():
        monkeypatch.setenv(name, str(value))
    if switched_off:
        target, stub, _ = SCRUBS[switched_off]
        monkeypatch.setattr(target, stub)
    result = dg.materialize(
        [erasure_log, no_trace_of_erased_persons],
        raise_on_error=False,
        resources={
            "warehouse": WarehouseResource(path=str(warehouse)),
            "landing": LandingZoneResource(root=str(root / "landing")),
            "settings": SettingsResource.from_settings(reload_settings()),
        },
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_with_every_scrub_on_no_trace_is_left_anywhere(tmp_path, monkeypatch):
    evaluation = _erase(tmp_path, monkeypatch)
    assert evaluation.passed, evaluation.description
    assert USER.encode() not in (tmp_path / "warehouse.duckdb").read_bytes()
    assert not (tmp_path / "exports" / "vip" / ".2026-10-29.tmp-999").exists()


@pytest.mark.parametrize("scrub", list(SCRUBS))
def test_the_check_fails_when_one_scrub_is_switched_off(tmp_path, monkeypatch, scrub):
    evaluation = _erase(tmp_path, monkeypatch, switched_off=scrub)
    assert not evaluation.passed
    assert SCRUBS[scrub][2] in evaluation.description, evaluation.description


def test_a_file_the_run_wrote_that_names_the_person_fails_the_check(tmp_path, monkeypatch):
    page = tmp_path / "reports" / "2026-10-30" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(f"<td>{USER}</td>")
    evaluation = _erase(tmp_path, monkeypatch)
    assert not evaluation.passed and "reports" in evaluation.description and "index.html" in evaluation.description
