"""Quality gate for intermediate.int_segment__events (typing and normalisation of the flattened events)."""

from __future__ import annotations

from expectations.runner import gx_expectations, row_count_sanity

TABLE = "intermediate.int_segment__events"
SAMPLE_ROWS = 500_000  # about this many rows of a large table; dbt tests check keys over all rows
SAMPLE_KEY = "message_id"


def expectations(previous_row_count: int | None = None) -> list:
    e = gx_expectations()
    suite: list = []
    suite.append(e.ExpectColumnValuesToBeUnique(column="message_id"))
    suite.append(
        e.ExpectColumnValuesToBeInSet(
            column="behaviour",
            value_set=[
                "page_view",
                "product_view",
                "add_to_cart",
                "purchase",
                "search",
                "video",
                "scroll",
                "identify",
                "other",
            ],
        )
    )
    suite.append(
        e.ExpectColumnValuesToBeInSet(column="device_type", value_set=["desktop", "mobile", "tablet", "bot", "other"])
    )
    suite.append(e.ExpectColumnValuesToMatchRegex(column="country", regex=r"^[A-Z]{2}$"))
    suite.append(e.ExpectColumnValuesToMatchRegex(column="traits_email_normalised", regex=r"^[^A-Z\s]+@[^A-Z\s]+$"))
    suite.append(e.ExpectColumnValuesToBeBetween(column="video_percent_watched", min_value=0, max_value=100))
    suite.append(e.ExpectColumnValuesToBeBetween(column="scroll_percent", min_value=0, max_value=100))
    suite += row_count_sanity(previous_row_count)
    return suite
