"""30-day purchase propensity against BG/NBD on real orders: CDNOW and UCI Online Retail, several dates.

    .venv/bin/python benchmarks/btyd_propensity.py [--window-days 30]

For each data set and scoring date T, on the same orders and dates:
1. Tessera's propensity (ml.propensity, as the pipeline trains it): candidates fitted on features at
   T-2w with labels in (T-2w, T-w], chosen and calibrated on (T-w features, (T-w, T] labels),
   refitted there, scoring at T; with its BG/NBD step (BTYD summaries) and, as an ablation, without;
2. BG/NBD (pymc-marketing, MAP) fitted on all orders up to T, ranked by expected purchases in w days;
3. recency alone (days since the last order, fewer is likelier).
And per data set, the lifetime-value model (ml.clv: BG/NBD + Gamma-Gamma) against a holdout:
fitted on the buyers up to a date, their predicted purchase days after it against the actual
ones (MAE, totals, by decile), beside the naive "past daily rate continues" forecast.
Everyone with a completed order up to T is scored against "ordered in (T, T+w]". Calibration is
measured on that future set too: ECE and Brier of the calibrated scores, and of the uncalibrated
ones (the chosen pipeline's raw scores); and on the out-of-time set the pipeline logs (the training
cutoff's persons, each half calibrated by a calibrator fitted on the other half). Features come from orders up to each date only.

Data: CDNOW (the 1/10 sample of the CDNOW master file shipped with the `lifetimes` package: 23,570
customers, first purchases in Q1 1997, orders to June 1998) and UCI Online Retail
(the copy shipped in examples/online_retail/: invoices of a UK online retailer, Dec 2010 to Dec 2011;
cancellations, numbered "C...", excluded and counted; guest lines without a CustomerID dropped).
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
from sklearn.metrics import brier_score_loss, roc_auc_score  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402
from ml import clv  # noqa: E402
from ml.features import BTYD_COLUMNS  # noqa: E402
from ml.propensity import (  # noqa: E402
    PropensityConfig,
    expected_calibration_error,
    model_inputs,
    score,
    train_propensity,
)

ONLINE_RETAIL = ROOT / "examples" / "online_retail" / "online_retail_2010-2011.parquet"
DATES = {
    "cdnow": ["1997-06-30", "1997-09-30", "1997-12-31", "1998-03-31"],
    "online_retail": ["2011-06-30", "2011-08-31", "2011-09-30", "2011-11-08"],
}
# Lifetime value: fitted up to the first date, predicting every buyer's purchase days up to the second
# (CDNOW's classic 39 + 39 weeks; Online Retail's last six months).
CLV_SPLITS = {"cdnow": ("1997-09-30", "1998-06-30"), "online_retail": ("2011-06-09", "2011-12-09")}
# Counts and amounts enter the models as log1p, like marts.user_features_model_ready.
LOG_COLUMNS = [
    "frequency_orders",
    "monetary_total",
    "avg_order_value",
    "recency_days",
    "tenure_days",
    "orders_14d",
    "orders_30d",
    "orders_60d",
    "recency_over_mean_gap",
    "orders_90d",
    "orders_180d",
    "monetary_90d",
    "distinct_products",
    "cancelled_orders",
    "mean_days_between_orders",
    "items_per_order",
]


def load_online_retail(con, path: Path = ONLINE_RETAIL) -> None:
    con.execute(f"""
        CREATE TABLE lines AS SELECT * FROM read_parquet('{path}');
        CREATE TABLE orders AS
        SELECT InvoiceNo AS order_id, CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer_id,
               min(InvoiceDate) AS ordered_at, sum(Quantity * UnitPrice) AS amount, sum(Quantity) AS items,
               any_value(Country) AS country, starts_with(InvoiceNo, 'C') AS cancelled
        FROM lines WHERE CustomerID IS NOT NULL
        GROUP BY InvoiceNo, CustomerID;
        CREATE TABLE products AS
        SELECT DISTINCT CAST(CAST(CustomerID AS BIGINT) AS VARCHAR) AS customer_id, StockCode AS product,
               InvoiceDate AS ordered_at
        FROM lines WHERE CustomerID IS NOT NULL AND NOT starts_with(InvoiceNo, 'C');
    """)


def load_cdnow(con) -> None:
    from lifetimes.datasets import load_dataset

    tx = load_dataset("CDNOW_master.txt", sep=r"\s+", dtype={"customer_id": str, "date": str})
    con.register("cdnow", tx)
    con.execute("""
        CREATE TABLE orders AS
        SELECT customer_id || '-' || row_number() OVER () AS order_id, customer_id,
               CAST(strptime(date, '%Y%m%d') AS TIMESTAMP) AS ordered_at, dollar_value AS amount,
               number_of_cds AS items, 'US' AS country, false AS cancelled
        FROM cdnow;
        CREATE TABLE products AS SELECT customer_id, NULL AS product, ordered_at FROM orders WHERE false;
    """)


def features(con, as_of: dt.date) -> pd.DataFrame:
    """One row per customer with a completed order up to as_of; nothing after as_of is read."""
    frame = con.execute(
        """
        WITH o AS (SELECT * FROM orders WHERE CAST(ordered_at AS DATE) <= $d),
        done AS (SELECT * FROM o WHERE NOT cancelled),
        days AS (SELECT customer_id, CAST(ordered_at AS DATE) AS day FROM done GROUP BY ALL),
        gaps AS (SELECT customer_id, date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap
                 FROM days),
        regularity AS (SELECT customer_id, stddev_pop(gap) / nullif(avg(gap), 0) AS order_gap_cv
                       FROM gaps WHERE gap IS NOT NULL GROUP BY customer_id),
        btyd AS (SELECT customer_id, count(*) - 1 AS btyd_frequency,
                        date_diff('day', min(day), max(day)) AS btyd_recency_days,
                        date_diff('day', min(day), $d) AS btyd_age_days
                 FROM days GROUP BY customer_id)
        SELECT done.customer_id AS person_id, CAST($d AS TIMESTAMP) AS as_of,
               count(*) AS frequency_orders, sum(amount) AS monetary_total, avg(amount) AS avg_order_value,
               date_diff('day', CAST(max(ordered_at) AS DATE), $d) AS recency_days,
               date_diff('day', CAST(min(ordered_at) AS DATE), $d) AS tenure_days,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), $d) < 14) AS orders_14d,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), $d) < 30) AS orders_30d,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), $d) < 60) AS orders_60d,
               CASE WHEN count(*) > 1 THEN date_diff('day', CAST(max(ordered_at) AS DATE), $d) * (count(*) - 1)
                    / greatest(date_diff('day', CAST(min(ordered_at) AS DATE), CAST(max(ordered_at) AS DATE)), 1)
                    ELSE 0 END AS recency_over_mean_gap,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), $d) < 90) AS orders_90d,
               count(*) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), $d) < 180) AS orders_180d,
               coalesce(sum(amount) FILTER (WHERE date_diff('day', CAST(ordered_at AS DATE), $d) < 90), 0)
                   AS monetary_90d,
               (SELECT count(DISTINCT p.product) FROM products p
                WHERE p.customer_id = done.customer_id AND CAST(p.ordered_at AS DATE) <= $d) AS distinct_products,
               (SELECT count(*) FROM o c WHERE c.cancelled AND c.customer_id = done.customer_id) AS cancelled_orders,
               CASE WHEN count(*) > 1 THEN date_diff('day', CAST(min(ordered_at) AS DATE), CAST(max(ordered_at) AS DATE))
                    / (count(*) - 1) ELSE 0 END AS mean_days_between_orders,
               avg(items) AS items_per_order,
               coalesce(any_value(r.order_gap_cv), 0) AS order_gap_cv,
               any_value(b.btyd_frequency) AS btyd_frequency, any_value(b.btyd_recency_days) AS btyd_recency_days,
               any_value(b.btyd_age_days) AS btyd_age_days,
               any_value(country) AS country
        FROM done
        JOIN btyd b USING (customer_id)
        LEFT JOIN regularity r USING (customer_id)
        GROUP BY done.customer_id ORDER BY done.customer_id
    """,
        {"d": as_of},
    ).df()
    raw = frame[["recency_days"]].copy()
    for col in LOG_COLUMNS:
        frame[col] = np.log1p(frame[col].astype(float).clip(lower=0))
    return frame.join(raw.add_prefix("raw_"))


def labels(con, people: pd.Series, start: dt.date, days: int) -> pd.Series:
    buyers = {
        r[0]
        for r in con.execute(
            """
        SELECT DISTINCT customer_id FROM orders
        WHERE NOT cancelled AND CAST(ordered_at AS DATE) > ? AND CAST(ordered_at AS DATE) <= ?""",
            [start, start + dt.timedelta(days=days)],
        ).fetchall()
    }
    return people.isin(buyers)


def bg_nbd(con, scoring: pd.DataFrame, cutoff: dt.date, days: int) -> np.ndarray:
    """BG/NBD (pymc-marketing, MAP) fitted on every completed order up to `cutoff`: each scored
    customer's expected purchase days in the next `days`."""
    summary = features(con, cutoff).set_index("person_id")
    btyd = summary[list(BTYD_COLUMNS)].set_axis(["frequency", "recency", "T"], axis=1).assign(monetary_value=0.0)
    expected = pd.Series(clv.expected_purchases(clv.fit_bg_nbd(btyd), btyd, days), index=btyd.index)
    return expected.reindex(scoring["person_id"]).fillna(0).to_numpy()


def _calibration(y: np.ndarray, p: np.ndarray) -> dict:
    return {"ece": round(expected_calibration_error(y, p), 4), "brier": round(float(brier_score_loss(y, p)), 4)}


def run_date(con, cutoff: dt.date, window: int) -> dict:
    training_cutoff, backtest_cutoff = cutoff - dt.timedelta(days=window), cutoff - dt.timedelta(days=2 * window)
    backtest, training, scoring = (features(con, d) for d in (backtest_cutoff, training_cutoff, cutoff))
    y_back = labels(con, backtest["person_id"], backtest_cutoff, window)
    y_train = labels(con, training["person_id"], training_cutoff, window)
    y_true = labels(con, scoring["person_id"], cutoff, window).astype(int).to_numpy()
    model_cols = [c for c in scoring.columns if not c.startswith("raw_")]
    plain_cols = [c for c in model_cols if c not in BTYD_COLUMNS]
    config = PropensityConfig(window_days=window)
    out = {
        "date": cutoff.isoformat(),
        "customers_scored": len(scoring),
        "positive_rate": round(float(y_true.mean()), 4),
    }
    auc, calibration = {}, {}
    for name, cols in (("tessera", model_cols), ("tessera_without_bg_nbd", plain_cols)):
        started = time.perf_counter()
        result = train_propensity(backtest[cols], y_back, training[cols], y_train, config)
        p = score(result.model, scoring[cols])
        auc[name] = round(float(roc_auc_score(y_true, p)), 4)
        if name == "tessera":
            raw = result.model.pipeline.predict_proba(model_inputs(scoring[cols]))[:, 1]
            held_out = result.calibration[result.calibration_method]
            calibration = {
                "calibrated": _calibration(y_true, p),
                "uncalibrated": _calibration(y_true, raw),
                # what the pipeline logs: the training cutoff's persons, each half calibrated by the other
                "out_of_time_set": {
                    "ece": round(held_out.ece, 4),
                    "brier": round(held_out.brier, 4),
                    "uncalibrated_ece": round(result.validation[result.chosen].ece, 4),
                },
                "method": result.calibration_method,
                "chosen_model": result.chosen,
                "train_s": round(time.perf_counter() - started, 1),
            }
    auc["bg_nbd"] = round(float(roc_auc_score(y_true, bg_nbd(con, scoring, cutoff, window))), 4)
    auc["recency_alone"] = round(float(roc_auc_score(y_true, -scoring["raw_recency_days"])), 4)
    return {**out, "roc_auc": auc, "calibration": calibration}


def clv_holdout(con, calibration_end: dt.date, holdout_end: dt.date) -> dict:
    """ml.clv fitted on the buyers up to `calibration_end`, against their purchase days (and spend)
    in the holdout; beside it, the naive forecast that each buyer keeps their past daily rate."""
    buyers = features(con, calibration_end)
    later = (
        con.execute(
            """
        SELECT customer_id AS person_id, count(DISTINCT CAST(ordered_at AS DATE)) AS purchases, sum(amount) AS value
        FROM orders WHERE NOT cancelled AND CAST(ordered_at AS DATE) > ? AND CAST(ordered_at AS DATE) <= ?
        GROUP BY 1""",
            [calibration_end, holdout_end],
        )
        .df()
        .set_index("person_id")
    )
    summary = pd.DataFrame(
        {
            "frequency": buyers["btyd_frequency"],
            "recency": buyers["btyd_recency_days"],
            "T": buyers["btyd_age_days"],
            "monetary_value": np.expm1(buyers["avg_order_value"]),
        }
    ).astype("float64")
    actual = buyers["person_id"].map(later["purchases"]).fillna(0)
    spent = buyers["person_id"].map(later["value"]).fillna(0).clip(lower=0)
    days = (holdout_end - calibration_end).days
    started = time.perf_counter()
    model = clv.ClvModel().fit(summary)
    check = clv.validate(model, summary, days, actual, spent)
    naive = summary["frequency"] / summary["T"].clip(lower=1) * days
    return {
        "calibration_end": calibration_end.isoformat(),
        "holdout_days": days,
        "buyers": len(summary),
        "fit_s": round(time.perf_counter() - started, 1),
        **{k: round(v, 4) for k, v in check.metrics().items()},
        "naive_mae_purchases": round(float(np.mean(np.abs(naive - actual))), 4),
        "by_decile": check.by_decile.round(3).to_dict(orient="records"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window-days", type=int, default=30)
    ap.add_argument("--data-sets", nargs="+", default=list(DATES), choices=list(DATES))
    args = ap.parse_args()
    rows, lifetime_value = [], {}
    for data_set in args.data_sets:
        con = duckdb.connect()
        load_cdnow(con) if data_set == "cdnow" else load_online_retail(con)
        lifetime_value[data_set] = clv_holdout(con, *(dt.date.fromisoformat(d) for d in CLV_SPLITS[data_set]))
        print(
            data_set,
            "lifetime value:",
            {k: v for k, v in lifetime_value[data_set].items() if k != "by_decile"},
            flush=True,
        )
        for date in DATES[data_set]:
            row = {"data_set": data_set, **run_date(con, dt.date.fromisoformat(date), args.window_days)}
            print(row, flush=True)
            rows.append(row)
    gaps = [r["roc_auc"]["tessera"] - r["roc_auc"]["bg_nbd"] for r in rows]
    summary = {
        "window_days": args.window_days,
        "dates": rows,
        "mean_auc_gain_over_bg_nbd": round(float(np.mean(gaps)), 4),
        "min_auc_gain_over_bg_nbd": round(float(np.min(gaps)), 4),
        "max_calibrated_ece": max(r["calibration"]["calibrated"]["ece"] for r in rows),
        "lifetime_value": lifetime_value,
    }
    print(
        "\n| data set | date | customers | positives | Tessera | without BG/NBD step | BG/NBD | recency | "
        "ECE raw -> calibrated (future) | Brier raw -> calibrated (future) | ECE out-of-time set |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, c = r["roc_auc"], r["calibration"]
        print(
            f"| {r['data_set']} | {r['date']} | {r['customers_scored']:,} | {r['positive_rate']:.1%} | "
            f"{a['tessera']:.4f} | {a['tessera_without_bg_nbd']:.4f} | {a['bg_nbd']:.4f} | {a['recency_alone']:.4f} | "
            f"{c['uncalibrated']['ece']:.4f} -> {c['calibrated']['ece']:.4f} ({c['method']}) | "
            f"{c['uncalibrated']['brier']:.4f} -> {c['calibrated']['brier']:.4f} | "
            f"{c['out_of_time_set']['uncalibrated_ece']:.4f} -> {c['out_of_time_set']['ece']:.4f} |"
        )
    print(
        f"\nmean AUC gain over BG/NBD {summary['mean_auc_gain_over_bg_nbd']:+.4f}, "
        f"min {summary['min_auc_gain_over_bg_nbd']:+.4f}; max calibrated ECE {summary['max_calibrated_ece']:.4f}"
    )
    save_result("btyd_propensity", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
