"""Quality gate for marts.identity_map: every segment depends on who is who, so it blocks."""

from __future__ import annotations

from expectations.runner import gx_expectations, row_count_sanity

TABLE = "marts.identity_map"


def expectations(previous_row_count: int | None = None) -> list:
    e = gx_expectations()
    suite: list = []
    for col in ("identifier_type", "identifier", "person_id", "matched_by"):
        suite.append(e.ExpectColumnValuesToNotBeNull(column=col))
    suite.append(e.ExpectCompoundColumnsToBeUnique(column_list=["identifier_type", "identifier"]))
    suite.append(
        e.ExpectColumnValuesToBeInSet(
            column="identifier_type",
            value_set=["anonymous_id", "user_id", "customer_id", "email_sha256", "phone_sha256"],
        )
    )
    suite.append(e.ExpectColumnValuesToMatchRegex(column="person_id", regex=r"^p_[0-9a-f]{16}$"))
    suite.append(e.ExpectColumnValuesToBeBetween(column="match_score", min_value=0, max_value=1))
    suite += row_count_sanity(previous_row_count)
    return suite
