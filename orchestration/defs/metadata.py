"""Metadata every asset carries in the Dagster UI: row count, column schema, and a preview of
the first rows with personal data left out; and `frame_table`, which every table in metadata goes
through."""

from __future__ import annotations

import math
import re

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 5
PREVIEW_CHARS = 40  # longer text is cut short in a preview
# Columns that hold, or may hold, personal data: never shown in a preview. Tables in the `pii`
# schema get no preview at all.
PERSONAL_COLUMN = re.compile(
    r"email|phone|first_name|last_name|full_name|birth|street|postcode|city|^ip$|user_agent|identifier(?!_type)|^raw$"
    r"|traits|context|properties|^name$|query|page_url|referrer|company_name|message|reason"
    # Keys and their hashes: person, user, device and order ids, graph edge ends, any SHA-256.
    r"|_id(_[lr])?$|_ids$|^id$|_key$|_keys$|^left_|^right_|device|sha256|decided_by",
    re.IGNORECASE,
)


def _column_type(column: pd.Series) -> str:
    """int, float, bool or string: the TableColumn types Dagster knows. Object columns (Python
    values, or nothing but NULLs) are typed by what they hold."""
    dtype = column.dtype
    if pd.api.types.is_object_dtype(dtype):
        dtype = {
            "boolean": "bool",
            "integer": "int64",
            "floating": "float64",
            "mixed-integer-float": "float64",
            "decimal": "float64",
        }.get(pd.api.types.infer_dtype(column, skipna=True), dtype)
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    return "string"


def _value(value, kind: str) -> str | int | float | bool | None:
    # TableRecord takes str, int, float, bool or None, and no numpy scalar. NaN and infinity would be
    # written into the event log as bare NaN / Infinity, which is not JSON: None instead.
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    if kind == "float":
        return float(value) if math.isfinite(float(value)) else None
    return {"int": int, "bool": bool}.get(kind, str)(value)


def frame_table(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableMetadataValue:
    """`frame` (its index left out) as a table in the Dagster UI, each column typed int, float, bool
    or string (anything else, such as timestamps, as its text); NULL, NaN and infinity become empty
    cells. An empty frame keeps its columns."""
    kinds = {str(name): _column_type(frame[name]) for name in frame.columns}
    columns = [dg.TableColumn(name, kind, description=(descriptions or {}).get(name)) for name, kind in kinds.items()]
    records = [
        dg.TableRecord({name: _value(v, kind) for (name, kind), v in zip(kinds.items(), row, strict=True)})
        for row in frame.itertuples(index=False, name=None)
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def table_metadata(
    con, table: str, descriptions: dict[str, str | None] | None = None, dbt_invocation_id: str | None = None
) -> dict:
    """`dagster/row_count`, `dagster/column_schema` (types from DuckDB, descriptions from dbt YAML
    where given) and a `preview` table of the first rows of `schema.table` without its personal columns
    (`preview_columns_hidden` counts them; a sentence instead where nothing can be shown). An
    incremental model that marks its rows with the dbt run that wrote them (a `dbt_invocation_id`
    column) also gets `rows_written`: how many rows that run wrote."""
    described = con.execute(f"DESCRIBE {table}").fetchall()
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    written = {}
    if dbt_invocation_id and any(name == "dbt_invocation_id" for name, *_ in described):
        written = {
            "rows_written": con.execute(
                f"SELECT count(*) FROM {table} WHERE dbt_invocation_id = ?", [dbt_invocation_id]
            ).fetchone()[0]
        }
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, kind, description=(descriptions or {}).get(name)) for name, kind, *_ in described]
    )
    shown = [name for name, *_ in described if not PERSONAL_COLUMN.search(name)]
    hidden = {}
    if table.startswith("pii."):
        preview = dg.MetadataValue.md("_No preview: this table holds personal data._")
    elif not shown:
        preview = dg.MetadataValue.md("_No column without personal data to show._")
    else:
        quoted = ", ".join(f'"{c}"' for c in shown)
        sample = con.execute(f"SELECT {quoted} FROM {table} LIMIT {PREVIEW_ROWS}").df()
        for name in sample.select_dtypes(include="object").columns:  # text, lists, structs
            sample[name] = sample[name].map(
                lambda v: v if v is None or len(str(v)) <= PREVIEW_CHARS else str(v)[:PREVIEW_CHARS] + "…"
            )
        preview = frame_table(sample)
        if len(described) > len(shown):
            hidden = {"preview_columns_hidden": len(described) - len(shown)}  # personal, left out of the preview
    return {"dagster/row_count": rows, **written, "dagster/column_schema": schema, "preview": preview, **hidden}


# What table_metadata gives that is large and the same for every day of a table.
PER_TABLE = ("preview", "dagster/column_schema")


def per_partition(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, metadata: dict
) -> tuple[dict, list[dg.AssetObservation]]:
    """(the metadata of each partition's materialization, observations to yield after it). A run
    over many days (a backfill in one run) records one materialization per day, each with the same
    metadata: the preview and the column schema then go once into an observation of the table
    instead of once per day (seconds and megabytes of event log for two years of days)."""
    if not context.has_partition_key_range or context.partition_key_range.start == context.partition_key_range.end:
        return metadata, []
    table = {key: value for key, value in metadata.items() if key in PER_TABLE}
    rest = {key: value for key, value in metadata.items() if key not in PER_TABLE}
    return rest, [dg.AssetObservation(asset_key=asset_key, metadata=table)] if table else []
