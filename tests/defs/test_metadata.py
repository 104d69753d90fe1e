"""Tables in Dagster metadata: `frame_table` types each column and writes only values the event log
can store and the UI can read; `table_metadata` previews a table without its personal columns."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from orchestration.defs.metadata import PREVIEW_ROWS, frame_table, table_metadata


def _types(value: dg.TableMetadataValue) -> dict[str, str]:
    return {c.name: c.type for c in value.schema.columns}


def test_frame_table_types_each_column_and_writes_python_values():
    frame = pd.DataFrame(
        {
            "segment": ["vip", "churn_risk"],
            "size": np.array([12, 3], dtype="int64"),
            "share": [0.8, 0.2],
            "published": [True, False],
            "as_of": pd.to_datetime(["2026-10-31", "2026-10-30"]),
            "total": [Decimal("1.50"), Decimal("2")],
            "count": pd.array([7, None], dtype="Int32"),
            "flag": pd.array([True, None], dtype="boolean"),
        },
        index=["a", "b"],
    )
    table = frame_table(frame, {"share": "of all persons"})
    assert _types(table) == {
        "segment": "string",
        "size": "int",
        "share": "float",
        "published": "bool",
        "as_of": "string",
        "total": "float",
        "count": "int",
        "flag": "bool",
    }
    assert [c.description for c in table.schema.columns if c.description] == ["of all persons"]
    assert [r.data for r in table.records] == [
        {
            "segment": "vip",
            "size": 12,
            "share": 0.8,
            "published": True,
            "as_of": "2026-10-31 00:00:00",
            "total": 1.5,
            "count": 7,
            "flag": True,
        },
        {
            "segment": "churn_risk",
            "size": 3,
            "share": 0.2,
            "published": False,
            "as_of": "2026-10-30 00:00:00",
            "total": 2.0,
            "count": None,
            "flag": None,
        },
    ]
    # No numpy scalar reaches a record (TableRecord refuses them; the index is left out).
    assert {type(v) for r in table.records for v in r.data.values()} <= {str, int, float, bool, type(None)}


def test_frame_table_writes_nan_infinity_and_missing_values_as_empty_cells():
    frame = pd.DataFrame(
        {
            "feature": ["recency_days", "mobile_share", None],
            "mean": [1.5, float("nan"), float("inf")],
            "previous": [None, None, None],
            "rows": pd.array([1, pd.NA, 3], dtype="Int64"),
            "when": pd.to_datetime(["2026-10-31", None, None]),
        }
    )
    table = frame_table(frame.astype({"previous": float}))
    assert _types(table) == {"feature": "string", "mean": "float", "previous": "float", "rows": "int", "when": "string"}
    assert [r.data for r in table.records] == [
        {"feature": "recency_days", "mean": 1.5, "previous": None, "rows": 1, "when": "2026-10-31 00:00:00"},
        {"feature": "mobile_share", "mean": None, "previous": None, "rows": None, "when": None},
        {"feature": None, "mean": None, "previous": None, "rows": 3, "when": None},
    ]
    # Stored as JSON the UI can parse: no bare NaN or Infinity.
    stored = dg.serialize_value(table)
    assert "NaN" not in stored and "Infinity" not in stored
    assert dg.deserialize_value(stored, dg.TableMetadataValue) == table


def test_frame_table_types_object_columns_by_their_values_and_keeps_an_empty_frames_columns():
    frame = pd.DataFrame(
        {"n": [1, 2], "x": [1, 2.5], "b": [True, False], "none": [None, None], "mixed": [1, "a"]}, dtype=object
    )
    table = frame_table(frame)
    assert _types(table) == {"n": "int", "x": "float", "b": "bool", "none": "string", "mixed": "string"}
    assert [r.data for r in table.records] == [
        {"n": 1, "x": 1.0, "b": True, "none": None, "mixed": "1"},
        {"n": 2, "x": 2.5, "b": False, "none": None, "mixed": "a"},
    ]
    empty = frame_table(pd.DataFrame(columns=["table", "rows removed"]).astype({"rows removed": "int64"}))
    assert empty.records == [] and _types(empty) == {"table": "string", "rows removed": "int"}


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA pii")
    con.execute("""CREATE TABLE marts.segment_report AS
        SELECT 'segment_' || i AS segment_name, 'email' || i || '@example.com' AS email, i AS size,
               i % 2 = 0 AS published, i / 4 AS share, repeat('x', 50) AS description, [i, i + 1] AS ranks,
               'p_' || i AS person_id
        FROM range(8) t(i)""")
    con.execute("CREATE TABLE marts.empty AS SELECT 1 AS size, 'a' AS segment_name WHERE false")
    con.execute("CREATE TABLE marts.only_ids AS SELECT 'p_1' AS person_id")
    con.execute("CREATE TABLE pii.person_contacts AS SELECT 'p_1' AS person_id, 'a@example.com' AS email")
    return con


def test_the_preview_is_a_table_of_the_first_rows_without_personal_columns():
    con = _warehouse()
    metadata = table_metadata(con, "marts.segment_report")
    preview = metadata["preview"]
    assert isinstance(preview, dg.TableMetadataValue)
    assert _types(preview) == {
        "segment_name": "string",
        "size": "int",
        "published": "bool",
        "share": "float",
        "description": "string",
        "ranks": "string",
    }
    assert metadata["preview_columns_hidden"] == 2  # email, person_id
    assert metadata["dagster/row_count"] == 8 and len(preview.records) == PREVIEW_ROWS
    first = preview.records[0].data
    assert first == {
        "segment_name": "segment_0",
        "size": 0,
        "published": True,
        "share": 0.0,
        "description": "x" * 40 + "…",
        "ranks": "[0 1]",
    }
    assert not any("@" in str(v) or str(v).startswith("p_") for r in preview.records for v in r.data.values())


def test_a_table_without_rows_previews_its_columns_and_one_without_anything_to_show_says_why():
    con = _warehouse()
    empty = table_metadata(con, "marts.empty")
    assert empty["preview"].records == [] and _types(empty["preview"]) == {"size": "int", "segment_name": "string"}
    assert "preview_columns_hidden" not in empty
    assert table_metadata(con, "marts.only_ids")["preview"] == dg.MetadataValue.md(
        "_No column without personal data to show._"
    )
    assert table_metadata(con, "pii.person_contacts")["preview"] == dg.MetadataValue.md(
        "_No preview: this table holds personal data._"
    )
