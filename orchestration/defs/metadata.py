"""Metadata every asset carries in the Dagster UI: row count, column schema, and a preview of
the first rows with personal data left out."""

from __future__ import annotations

import re

import dagster as dg

PREVIEW_ROWS = 5
# Columns that hold, or may hold, personal data: never shown in a preview. Tables in the `pii`
# schema get no preview at all.
PERSONAL_COLUMN = re.compile(
    r"email|phone|first_name|last_name|full_name|birth|street|postcode|city|^ip$|user_agent|identifier(?!_type)|^raw$"
    r"|traits|context|properties|^name$|query|page_url|referrer|company_name|message|reason"
    # Keys and their hashes: person, user, device and order ids, graph edge ends, any SHA-256.
    r"|_id(_[lr])?$|_ids$|^id$|_key$|_keys$|^left_|^right_|device|sha256|decided_by",
    re.IGNORECASE)


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return (text[:40] + "…" if len(text) > 40 else text).replace("|", "\\|").replace("\n", " ")


def table_metadata(con, table: str, descriptions: dict[str, str | None] | None = None,
                   dbt_invocation_id: str | None = None) -> dict:
    """`dagster/row_count`, `dagster/column_schema` (types from DuckDB, descriptions from dbt YAML
    where given) and a markdown `preview` of `schema.table`. An incremental model that marks its rows
    with the dbt run that wrote them (a `dbt_invocation_id` column) also gets `rows_written`: how
    many rows that run wrote."""
    described = con.execute(f"DESCRIBE {table}").fetchall()
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    written = {}
    if dbt_invocation_id and any(name == "dbt_invocation_id" for name, *_ in described):
        written = {"rows_written": con.execute(f"SELECT count(*) FROM {table} WHERE dbt_invocation_id = ?",
                                               [dbt_invocation_id]).fetchone()[0]}
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind, description=(descriptions or {}).get(name))
                                     for name, kind, *_ in described])
    shown = [name for name, *_ in described if not PERSONAL_COLUMN.search(name)]
    if table.startswith("pii."):
        preview = "_No preview: this table holds personal data._"
    elif not shown or not rows:
        preview = "_No rows._" if not rows else "_No column without personal data to show._"
    else:
        quoted = ", ".join(f'"{c}"' for c in shown)
        sample = con.execute(f"SELECT {quoted} FROM {table} LIMIT {PREVIEW_ROWS}").fetchall()
        hidden = len(described) - len(shown)
        preview = "\n".join([
            "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown),
            *["| " + " | ".join(_cell(v) for v in row) + " |" for row in sample],
        ]) + (f"\n\n_{hidden} column(s) with personal data not shown._" if hidden else "")
    return {"dagster/row_count": rows, **written, "dagster/column_schema": schema, "preview": dg.MetadataValue.md(preview)}
