"""Quality gate for marts.user_features: it protects every model and segment, so it blocks."""

from __future__ import annotations

from expectations.runner import gx_expectations, row_count_sanity

TABLE = "marts.user_features"
SHARES = [
    "cart_abandonment_rate",
    "video_completion_share",
    "deep_scroll_share",
    "mobile_share",
    "weekend_share",
    "business_hours_share",
]
NON_NEGATIVE = [
    "recency_days",
    "frequency_orders",
    "monetary_total",
    "sessions_total",
    "events_total",
    "product_views",
    "add_to_cart_count",
    "searches",
    "category_breadth",
    "tenure_days",
    "decayed_engagement",
]


def expectations(previous_row_count: int | None = None) -> list:
    e = gx_expectations()
    suite: list = []
    for col in ("person_id", "as_of", "recency_days", "frequency_orders", "monetary_total", "r_score"):
        suite.append(e.ExpectColumnValuesToNotBeNull(column=col))
    suite.append(e.ExpectCompoundColumnsToBeUnique(column_list=["person_id", "as_of"]))
    for col in NON_NEGATIVE:
        suite.append(e.ExpectColumnValuesToBeBetween(column=col, min_value=0))
    for col in ("r_score", "f_score", "m_score"):
        suite.append(e.ExpectColumnValuesToBeBetween(column=col, min_value=1, max_value=5))
    for col in SHARES:
        suite.append(e.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=1))
    suite.append(e.ExpectColumnValuesToBeBetween(column="engagement_trend", min_value=-1, max_value=1))
    suite.append(e.ExpectColumnValuesToBeBetween(column="preferred_local_hour", min_value=0, max_value=23))
    suite.append(e.ExpectColumnValuesToBeBetween(column="preferred_local_weekday", min_value=1, max_value=7))
    suite.append(
        e.ExpectColumnValuesToBeInSet(
            column="preferred_daypart", value_set=["morning", "afternoon", "evening", "night"]
        )
    )
    suite.append(
        e.ExpectColumnValuesToBeInSet(column="primary_device_type", value_set=["desktop", "mobile", "tablet", "other"])
    )
    suite.append(e.ExpectColumnValuesToMatchRegex(column="country", regex=r"^[A-Z]{2}$"))
    suite.append(e.ExpectColumnValuesToMatchRegex(column="rfm_code", regex=r"^[1-5]{3}$"))
    suite += row_count_sanity(previous_row_count)
    return suite
