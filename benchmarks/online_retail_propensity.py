"""purchase-propensity on real data: UCI Online Retail, 90 days after 2011-09-08.

    .venv/bin/python benchmarks/online_retail_propensity.py

Orders are invoices (cancellations, numbered "C...", are excluded and counted per customer; guest
lines without a CustomerID are dropped). Features are what orders alone allow, computed as of a
date from orders up to that date only, in the model-ready form (log1p of counts and amounts).
Three scorers on the same split, all ranked against "ordered in (2011-09-08, 2011-12-07]":

1. Tessera's propensity (ml.propensity): candidates fitted on features at T-180 with labels in
   (T-180, T-90], chosen on (T-90 features, (T-90, T] labels), refitted there, scoring at T;
2. BG/NBD (lifetimes), fitted on all transactions up to T, ranked by expected purchases in 90 days;
3. a plain logistic regression on frequency, recency, tenure and monetary value, fitted at T-90.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402
from ml.propensity import PropensityConfig, score, train_propensity  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail_2010-2011.parquet"
LOG_COLUMNS = ["frequency_orders", "monetary_total", "avg_order_value", "recency_days", "tenure_days",
               "orders_30d", "orders_90d", "orders_180d", "monetary_90d", "distinct_products", "cancelled_orders",
               "mean_days_between_orders", "items_per_order"]


def load(con, path: Path) -> None:
    con.execute(f"""
        CREATE TABLE lines AS SELECT * FROM read_parquet('{path}');
        CREATE TABLE orders AS
        SELECT InvoiceNo AS order_id, CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer_id,
               min(InvoiceDate) AS ordered_at, sum(Quantity * UnitPrice) AS amount, sum(Quantity) AS items,
               any_value(Country) AS country, starts_with(InvoiceNo, 'C') AS cancelled
        FROM lines WHERE CustomerID IS NOT NULL
        GROUP BY InvoiceNo, CustomerID;
        CREATE TABLE products AS
        SELECT DISTINCT CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer_id, StockCode, InvoiceDate
        FROM lines WHERE CustomerID IS NOT NULL AND NOT starts_with(InvoiceNo, 'C');
    """)


def features(con, as_of: dt.date) -> pd.DataFrame:
    """One row per customer with a completed order up to as_of; nothing after as_of is read."""
    frame = con.execute("""
        WITH o AS (SELECT * FROM orders WHERE CAST(ordered_at AS DATE) <= ?),
        done AS (SELECT * FROM o WHERE NOT cancelled)
        SELECT customer_id AS person_id, CAST(? AS TIMESTAMP) AS as_of,
               count(*) AS frequency_orders, sum(amount) AS monetary_total, avg(amount) AS avg_order_value,
               date_diff('day', CAST(max(ordered_at) AS DATE), CAST(? AS DATE)) AS recency_days,
               date_diff('day', CAST(min(ordered_at) AS DATE), CAST(? AS DATE)) AS tenure_days,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), CAST(? AS DATE)) < 30) AS orders_30d,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), CAST(? AS DATE)) < 90) AS orders_90d,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), CAST(? AS DATE)) < 180) AS orders_180d,
               coalesce(sum(amount) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), CAST(? AS DATE)) < 90), 0)
                   AS monetary_90d,
               (SELECT count(DISTINCT p.StockCode) FROM products p
                WHERE p.customer_id = done.customer_id AND CAST(p.InvoiceDate AS DATE) <= ?) AS distinct_products,
               (SELECT count(*) FROM o c WHERE c.cancelled AND c.customer_id = done.customer_id) AS cancelled_orders,
               CASE WHEN count(*) > 1 THEN date_diff('day', CAST(min(ordered_at) AS DATE), CAST(max(ordered_at) AS DATE))
                    / (count(*) - 1) ELSE 0 END AS mean_days_between_orders,
               avg(items) AS items_per_order,
               any_value(country) AS country
        FROM done GROUP BY customer_id ORDER BY customer_id
    """, [as_of] * 9).df()
    raw = frame[["frequency_orders", "recency_days", "tenure_days", "monetary_total"]].copy()
    for col in LOG_COLUMNS:
        frame[col] = np.log1p(frame[col].astype(float).clip(lower=0))
    return frame.join(raw.add_prefix("raw_"))


def labels(con, people: pd.Series, start: dt.date, days: int) -> pd.Series:
    buyers = {r[0] for r in con.execute("""
        SELECT DISTINCT customer_id FROM orders
        WHERE NOT cancelled AND CAST(ordered_at AS DATE) > ? AND CAST(ordered_at AS DATE) <= ?""",
        [start, start + dt.timedelta(days=days)]).fetchall()}
    return people.isin(buyers)


def bg_nbd(con, scoring: pd.DataFrame, cutoff: dt.date, days: int) -> np.ndarray:
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import summary_data_from_transaction_data

    tx = con.execute("SELECT customer_id, CAST(ordered_at AS DATE) AS d FROM orders "
                     "WHERE NOT cancelled AND CAST(ordered_at AS DATE) <= ?", [cutoff]).df()
    summary = summary_data_from_transaction_data(tx, "customer_id", "d", observation_period_end=pd.Timestamp(cutoff),
                                                 freq="D")
    model = BetaGeoFitter(penalizer_coef=0.001).fit(summary["frequency"], summary["recency"], summary["T"], tol=1e-4)
    expected = model.conditional_expected_number_of_purchases_up_to_time(days, summary["frequency"], summary["recency"],
                                                                          summary["T"])
    return expected.reindex(scoring["person_id"]).fillna(0).to_numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cutoff", type=dt.date.fromisoformat, default=dt.date(2011, 9, 8))
    ap.add_argument("--window-days", type=int, default=90)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    window, cutoff = args.window_days, args.cutoff
    con = duckdb.connect()
    load(con, args.data)
    training_cutoff, backtest_cutoff = cutoff - dt.timedelta(days=window), cutoff - dt.timedelta(days=2 * window)
    backtest, training, scoring = (features(con, d) for d in (backtest_cutoff, training_cutoff, cutoff))
    y_back = labels(con, backtest["person_id"], backtest_cutoff, window)
    y_train = labels(con, training["person_id"], training_cutoff, window)
    y_true = labels(con, scoring["person_id"], cutoff, window)

    started = time.perf_counter()
    model_cols = [c for c in scoring.columns if not c.startswith("raw_")]
    result = train_propensity(backtest[model_cols], y_back, training[model_cols], y_train, PropensityConfig())
    tessera = score(result.model, scoring[model_cols])
    train_s = time.perf_counter() - started

    rfm = ["raw_frequency_orders", "raw_recency_days", "raw_tenure_days", "raw_monetary_total"]
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(training[rfm], y_train)
    out = {
        "cutoff": cutoff.isoformat(), "window_days": window,
        "customers_scored": len(scoring), "positive_rate": round(float(y_true.mean()), 4),
        "roc_auc": {
            "tessera_propensity": round(float(roc_auc_score(y_true, tessera)), 4),
            "bg_nbd_expected_purchases": round(float(roc_auc_score(y_true, bg_nbd(con, scoring, cutoff, window))), 4),
            "logistic_regression_rfmt": round(float(roc_auc_score(y_true, plain.predict_proba(scoring[rfm])[:, 1])), 4),
        },
        "tessera_chosen_model": result.chosen,
        "tessera_out_of_time_validation_roc_auc": {n: round(e.roc_auc, 4) for n, e in result.validation.items()},
        "tessera_train_s": round(train_s, 1),
    }
    save_result("online_retail_propensity", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
