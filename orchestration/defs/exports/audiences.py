"""Audience exports: one Parquet and one CSV file per published segment, with a manifest.

data/exports/<segment>/<as_of>/{members.parquet, members.csv, manifest.json}. Each folder is
written beside its target and renamed into place, so a reader never sees half a folder
(orchestration/lib/export_folders.py, which erasure uses to rewrite them). Rows carry the
person_id, the SHA-256 of the normalised email (the form ad platforms match on) and the attributes
the segment declares. Plain Python over DuckDB.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb

from orchestration.defs.segments.catalog import Segment
from orchestration.lib.export_folders import remove_leftovers, write_folder
from orchestration.lib.warehouse import table_exists


def write_audiences(
    con: duckdb.DuckDBPyConnection, exports_dir: Path, segments: list[Segment], published: set[str], as_of: dt.datetime
) -> list[dict]:
    """Write every published segment's audience for as_of; drop the as_of folder of unpublished ones,
    and what killed exports left behind."""
    remove_leftovers(exports_dir)
    manifests = []
    for segment in segments:
        target = exports_dir / segment.name / f"{as_of:%Y-%m-%d}"
        if segment.name not in published:
            shutil.rmtree(target, ignore_errors=True)
            continue
        attributes = "".join(f', a."{c}"' for c in segment.spec.export_attributes)
        top = segment.spec.export_recommendations
        with_products = bool(top) and table_exists(con, "marts", "recommendations")
        products = (  # the member's top products, best first, joined by "|"
            f"""LEFT JOIN (
                SELECT person_id, string_agg(item_id, '|' ORDER BY rank) AS recommended_products
                FROM marts.recommendations WHERE rank <= {top} GROUP BY person_id
            ) r ON r.person_id = m.person_id"""
            if with_products
            else ""
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _audience AS
            SELECT m.person_id, p.email_sha256{attributes}{", r.recommended_products" if with_products else ""}
            FROM marts.segment_membership m
            LEFT JOIN marts.profiles p ON p.person_id = m.person_id
            LEFT JOIN marts.segment_attributes a ON a.person_id = m.person_id
            {products}
            WHERE m.segment_name = ?""",
            [segment.name],
        )
        manifests.append(
            write_folder(
                con,
                "_audience",
                target,
                {
                    "segment": segment.name,
                    "segment_type": segment.spec.type,
                    "description": segment.spec.description,
                    "owner": segment.spec.owner,
                    "rule": segment.spec.rule.strip(),
                    "as_of": f"{as_of:%Y-%m-%d}",
                    "email_hash": "SHA-256 of the trimmed, lower-cased email",
                },
            )
        )
    con.execute("DROP TABLE IF EXISTS _audience")
    return manifests
