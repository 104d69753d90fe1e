"""Quality gate for raw.events (what ingestion let through)."""

from __future__ import annotations

from expectations.runner import gx_expectations, row_count_sanity

TABLE = "raw.events"
SAMPLE_ROWS = 500_000  # about this many rows of a large table; dbt tests check keys over all rows
SAMPLE_KEY = "message_id"


def expectations(previous_row_count: int | None = None) -> list:
    e = gx_expectations()
    suite: list = []
    for col in ("message_id", "type", "occurred_at", "source_file", "loaded_at"):
        suite.append(e.ExpectColumnValuesToNotBeNull(column=col))
    suite.append(e.ExpectColumnValuesToBeUnique(column="message_id"))
    suite.append(e.ExpectColumnValuesToBeInSet(column="type", value_set=["track", "page", "screen", "identify"]))
    suite.append(
        e.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="loaded_at", column_B="occurred_at", or_equal=True, ignore_row_if="either_value_is_missing"
        )
    )
    suite += row_count_sanity(previous_row_count)
    return suite
