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
    return [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])]


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in CATEGORICAL_COLUMNS if c in frame.columns]


def numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The numeric features as float64, missing values as 0 (an absent behaviour)."""
    return frame[columns].astype("float64").fillna(0.0)
