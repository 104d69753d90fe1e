"""Readable cluster names from centroid profiles.

A cluster's profile is the z-score of its mean for each feature against the whole population.
Names are built from rules over those z-scores (a noun for the dominant behaviour, plus up to two
qualifiers), so they follow the data, not a cluster's index.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

STRONG = 0.5  # |z| at which a trait is worth naming

# Model-ready feature names (ml.features) the rules read; a missing feature counts as z = 0.
MONETARY = "monetary_total_log1p_capped"
FREQUENCY = "frequency_orders_log1p_capped"
RECENCY = "recency_days_log1p_capped"
TENURE = "tenure_days_log1p_capped"
PRODUCT_VIEWS = "product_views_log1p_capped"
CART_ABANDONMENT = "cart_abandonment_rate"
VIDEO = "video_completion_share"
SCROLL = "deep_scroll_share"
MOBILE = "mobile_share"
TREND = "engagement_trend"
SESSIONS = "sessions_total_log1p_capped"


def _noun(z: Mapping[str, float]) -> str:
    buyer = z.get(FREQUENCY, 0.0) >= STRONG or z.get(MONETARY, 0.0) >= STRONG
    if z.get(RECENCY, 0.0) >= 2 * STRONG:
        return "Lapsed Customers" if z.get(FREQUENCY, 0.0) >= 0 else "Dormant Visitors"
    if z.get(TENURE, 0.0) <= -2 * STRONG:
        return "Newcomers"
    if buyer:
        return "Buyers"
    if max(z.get(VIDEO, 0.0), z.get(SCROLL, 0.0)) >= STRONG:
        return "Content Readers"
    if z.get(CART_ABANDONMENT, 0.0) >= STRONG:
        return "Cart Abandoners"
    if z.get(PRODUCT_VIEWS, 0.0) >= STRONG:
        return "Browsers"
    return "Casual Visitors"


def _qualifiers(z: Mapping[str, float], noun: str) -> list[str]:
    out = []
    if z.get(MONETARY, 0.0) >= STRONG:
        out.append("High-Value")
    if z.get(FREQUENCY, 0.0) >= STRONG and noun != "Lapsed Customers":
        out.append("Frequent")
    if z.get(MOBILE, 0.0) >= STRONG:
        out.append("Mobile")
    elif z.get(MOBILE, 0.0) <= -STRONG:
        out.append("Desktop")
    if z.get(TREND, 0.0) >= STRONG and noun not in ("Newcomers", "Lapsed Customers", "Dormant Visitors"):
        out.append("Rising")
    if z.get(SESSIONS, 0.0) >= STRONG and "Frequent" not in out:
        out.append("Engaged")
    return out[:2]


def cluster_name(z: Mapping[str, float]) -> str:
    """For example "High-Value Frequent Buyers" or "Mobile Content Readers"."""
    noun = _noun(z)
    return " ".join([*_qualifiers(z, noun), noun])


def name_clusters(z_scores: pd.DataFrame) -> dict[int, str]:
    """Names for every cluster (rows of z_scores: cluster ids; columns: features), made unique.

    When two clusters earn the same name, each gets its most distinctive remaining trait in brackets.
    """
    names = {int(cid): cluster_name(row.to_dict()) for cid, row in z_scores.iterrows()}
    counts = pd.Series(names).value_counts()
    for cid, name in list(names.items()):
        if counts[name] > 1:
            row = z_scores.loc[cid]
            feature = row.abs().idxmax()
            direction = "high" if row[feature] > 0 else "low"
            label = feature.removesuffix("_log1p_capped").replace("_", " ")
            names[cid] = f"{name} ({direction} {label})"
    seen: dict[str, int] = {}
    for cid in sorted(names):  # still equal: number them, in cluster order
        seen[names[cid]] = seen.get(names[cid], 0) + 1
        if seen[names[cid]] > 1:
            names[cid] = f"{names[cid]} {seen[names[cid]]}"
    return names
