"""Which columns of marts.user_features_model_ready the models use."""

from __future__ import annotations

import pandas as pd

KEY_COLUMNS = ("person_id", "as_of")
CATEGORICAL_COLUMNS = ("primary_device_type", "country", "preferred_daypart")
# BTYD summaries in days (repeat purchase days, first to last purchase day, first purchase day to
# as_of): not features themselves, the propensity model's BG/NBD step reads them (ml.propensity).
BTYD_COLUMNS = ("btyd_frequency", "btyd_recency_days", "btyd_age_days")


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Numeric feature columns, in the frame's order (keys, categoricals and BTYD summaries excluded)."""
    skip = set(KEY_COLUMNS) | set(CATEGORICAL_COLUMNS) | set(BTYD_COLUMNS)
    return [
        c
        for c in frame.columns
        if c not in skip and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]


# Columns that restate another behaviour, left out of clustering so that no behaviour weighs several
# times: activity in 30- and 90-day windows and decayed (beside the totals and the trend), the R/F/M
# quintiles (beside recency, frequency and monetary) and the average order value (monetary over
# frequency). With them, volume counted about eight times and the clusters followed it alone
# (benchmarks/planted_behaviour.py).
RESTATING_COLUMNS = (
    "sessions_30d",
    "sessions_90d",
    "events_30d",
    "events_90d",
    "decayed_engagement",
    "r_score",
    "f_score",
    "m_score",
    "avg_order_value",
)


def clustering_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric columns clustering reads: each behaviour once (RESTATING_COLUMNS left out)."""
    return [c for c in numeric_columns(frame) if c.removesuffix("_log1p_capped") not in RESTATING_COLUMNS]


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in CATEGORICAL_COLUMNS if c in frame.columns]


def numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The numeric features as float64, missing values as 0 (an absent behaviour)."""
    return frame[columns].astype("float64").fillna(0.0)
