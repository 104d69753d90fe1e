"""Are two warehouses' marts the same? For a change that must not alter results (issue 33's "the
marts equal before and after"): build the same landing zone with the old and the new code, then

    .venv/bin/python benchmarks/compare_marts.py before.duckdb after.duckdb

For every table in `marts` (or the schemas given with --schemas), the rows only in one of the two (`EXCEPT ALL` both ways) over the columns both have, leaving out what differs by run: when
the run happened (evaluated_at, entered_at) and the model registry's version numbers. Exits 1 if
any table differs, and prints the first differing rows.
"""

from __future__ import annotations

import argparse
import sys

import duckdb

VOLATILE = {"evaluated_at", "entered_at", "model_version", "dbt_invocation_id", "loaded_at"}


def columns(con, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def compare(before: str, after: str, schemas: tuple[str, ...], show: int) -> dict[str, tuple[int, int, int]]:
    con = duckdb.connect()
    con.execute(f"ATTACH '{before}' AS b (READ_ONLY)")
    con.execute(f"ATTACH '{after}' AS a (READ_ONLY)")
    result = {}
    for schema in schemas:
        in_before, in_after = _tables(con, "b", schema), _tables(con, "a", schema)
        for name in sorted(in_before | in_after):
            left, right = f"b.{schema}.{name}", f"a.{schema}.{name}"
            if name not in in_before or name not in in_after:
                print(f"{schema}.{name}: only in {'after' if name in in_after else 'before'}")
                result[f"{schema}.{name}"] = (-1, -1, -1)
                continue
            shared = [c for c in columns(con, left) if c in set(columns(con, right)) and c not in VOLATILE]
            select = ", ".join(f'"{c}"' for c in shared)
            only_before = con.execute(
                f"SELECT count(*) FROM (SELECT {select} FROM {left} EXCEPT ALL SELECT {select} FROM {right})"
            ).fetchone()[0]
            only_after = con.execute(
                f"SELECT count(*) FROM (SELECT {select} FROM {right} EXCEPT ALL SELECT {select} FROM {left})"
            ).fetchone()[0]
            rows = con.execute(f"SELECT count(*) FROM {right}").fetchone()[0]
            result[f"{schema}.{name}"] = (rows, only_before, only_after)
            print(f"{schema}.{name}: {rows} rows, {only_before} only before, {only_after} only after")
            if (only_before or only_after) and show:
                print(
                    con.execute(
                        f"(SELECT 'before' AS side, {select} FROM {left} EXCEPT ALL SELECT 'before', {select} FROM {right}) "
                        f"UNION ALL (SELECT 'after', {select} FROM {right} EXCEPT ALL SELECT 'after', {select} FROM {left}) "
                        f"LIMIT {show}"
                    )
                    .df()
                    .to_string()
                )
    return result


def _tables(con, catalog: str, schema: str) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?", [catalog, schema]
    ).fetchall()
    return {r[0] for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--schemas", default="marts", help="comma-separated schemas (default: marts)")
    parser.add_argument("--show", type=int, default=6, help="differing rows to print per table")
    args = parser.parse_args()
    result = compare(args.before, args.after, tuple(args.schemas.split(",")), args.show)
    differing = [t for t, (_, b, a) in result.items() if b or a]
    print(
        f"{len(result)} tables compared, {len(differing)} differ" + (f": {', '.join(differing)}" if differing else "")
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
