"""The shipped Online Retail example, end to end through Dagster on a sample of the real file: an
orders-only dataset (no events, no CRM) that must still give identities, RFM features, clusters,
propensity scores and segments, with figures checked against the file itself."""

from __future__ import annotations

import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.defs.dbt.assets import tessera_dbt_models
from orchestration.defs.dbt.definitions import defs as dbt_domain_defs
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

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).parents[2] / "examples" / "online_retail"
DATA_FILE = "online_retail_2010-2011.parquet"


def _sample(full: pd.DataFrame) -> pd.DataFrame:
    """Every line of one customer in ten (by id, not by row: their whole history), plus the guest
    lines of one guest invoice in ten."""
    customers = full["CustomerID"].notna() & (full["CustomerID"].fillna(0).astype(int) % 10 == 3)
    guest_invoices = full.loc[full["CustomerID"].isna(), "InvoiceNo"].drop_duplicates().iloc[::10]
    return full[customers | (full["CustomerID"].isna() & full["InvoiceNo"].isin(guest_invoices))].reset_index(drop=True)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("online_retail")
    lines = _sample(pd.read_parquet(EXAMPLE / DATA_FILE))
    lines.to_parquet(root / DATA_FILE, index=False)
    shutil.copy(EXAMPLE / "sources.yml", root / "sources.yml")  # the shipped mapping, unchanged
    (root / "landing").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TESSERA_WAREHOUSE", str(root / "warehouse.duckdb"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("TESSERA_EXPORTS_DIR", str(root / "exports"))
        result = dg.materialize(
            [*ingest_assets, *tessera_dbt_models, *identity_defs.assets, *sweep_assets, *ml_assets, *segment_assets],
            instance=dg.DagsterInstance.ephemeral(),
            tags=all_days_tags(),
            resources={
                "warehouse": WarehouseResource(path=str(root / "warehouse.duckdb")),
                "landing": LandingZoneResource(root=str(root / "landing"), sources_config=str(root / "sources.yml")),
                "dbt": dbt_domain_defs.resources["dbt"],
                "settings": SettingsResource.from_settings(reload_settings()),
            },
        )
        assert result.success
        yield {"lines": lines, "warehouse": root / "warehouse.duckdb", "result": result}


def _line_amount(quantity: int, price: float) -> Decimal:
    """A line's amount as the mapping computes it: the double product, rounded to cents."""
    return Decimal(repr(float(quantity * price))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_customers_orders_cancellations_and_guests_match_the_file(example):
    lines = example["lines"]
    known = lines[lines["CustomerID"].notna()]
    guests = lines[lines["CustomerID"].isna()]
    orders_metadata = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in example["result"].get_asset_materialization_events()
    }["raw/order_lines"]
    with connect(example["warehouse"], read_only=True) as con:
        persons = con.execute(
            "SELECT count(DISTINCT person_id), count(*) FROM marts.identity_map WHERE identifier_type = 'customer_id'"
        ).fetchone()
        orders = dict(con.execute("SELECT status, count(*) FROM intermediate.int_orders GROUP BY 1").fetchall())
        quarantined = dict(con.execute("SELECT reason_code, count(*) FROM raw.quarantine GROUP BY 1").fetchall())
    assert persons == (known["CustomerID"].nunique(), known["CustomerID"].nunique())
    cancelled = known.loc[known["InvoiceNo"].str.startswith("C"), "InvoiceNo"].nunique()
    assert orders == {"completed": known["InvoiceNo"].nunique() - cancelled, "cancelled": cancelled}
    assert quarantined == {"missing_customer": len(guests)}  # guests are reported, not resolved
    assert orders_metadata["guest_orders_unresolvable"].value == guests["InvoiceNo"].nunique()


def test_rfm_features_equal_the_file_exactly_and_families_without_data_are_empty(example):
    known = example["lines"][example["lines"]["CustomerID"].notna()].copy()
    known["amount"] = [_line_amount(q, p) for q, p in zip(known["Quantity"], known["UnitPrice"], strict=True)]
    completed = known[~known["InvoiceNo"].str.startswith("C")]
    truth = completed.groupby(completed["CustomerID"].astype(int).astype(str)).agg(
        frequency_orders=("InvoiceNo", "nunique"), monetary_total=("amount", "sum")
    )
    with connect(example["warehouse"], read_only=True) as con:
        features = (
            con.execute("""
            SELECT m.identifier AS customer_id, f.as_of, f.frequency_orders, f.monetary_total, f.sessions_30d,
                   f.product_views, f.primary_device_type
            FROM marts.user_features f JOIN marts.identity_map m USING (person_id)
            WHERE m.identifier_type = 'customer_id' AND f.as_of = (SELECT max(as_of) FROM marts.user_features)
        """)
            .df()
            .set_index("customer_id")
        )
    assert features["as_of"].iloc[0] == pd.Timestamp(known["InvoiceDate"].max().date())
    got = features.loc[truth.index]
    assert (got["frequency_orders"] == truth["frequency_orders"]).all()
    assert [Decimal(str(v)) for v in got["monetary_total"]] == list(truth["monetary_total"])
    assert not features["sessions_30d"].fillna(0).any() and not features["product_views"].fillna(0).any()
    assert features["primary_device_type"].isna().all()


def test_segments_clusters_and_propensity_come_out_of_orders_alone(example):
    with connect(example["warehouse"], read_only=True) as con:
        report = con.execute("SELECT segment_name, segment_type, size, status FROM marts.segment_report").df()
        scored = con.execute(
            "SELECT count(*) FROM marts.propensity_scores WHERE model_name = 'purchase_30d'"
        ).fetchone()[0]
        clusters = con.execute("SELECT count(DISTINCT cluster_id) FROM marts.cluster_assignments").fetchone()[0]
    sizes = report.set_index("segment_name")["size"]
    assert scored == example["lines"]["CustomerID"].nunique()
    assert clusters >= 2 and (report["segment_type"] == "cluster").sum() == clusters
    assert abs(sizes["purchase_30d_top_decile"] - scored / 10) <= 1
    for name in ("rfm_champions", "rfm_at_risk", "rfm_hibernating", "churned", "frequent_buyers"):
        assert sizes[name] > 0, name
    # Behaviour that needs events is empty here, and reported as such, not an error.
    assert sizes["deep_browsers"] == 0 and sizes["cart_abandoners"] == 0
