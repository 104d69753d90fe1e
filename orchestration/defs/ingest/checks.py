"""Warnings on how much of each source was rejected; quarantine never blocks the pipeline."""

import dagster as dg

from orchestration.defs.ingest.assets import SOURCE_TABLES
from orchestration.defs.resources import WarehouseResource

MAX_QUARANTINE_SHARE = 0.05


def build_quarantine_check(source: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", SOURCE_TABLES[source]]),
        name="quarantine_share_below_5pct",
        pool="duckdb",
        blocking=False,
        description=f"Warns when more than {MAX_QUARANTINE_SHARE:.0%} of {source} rows are rejected.",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect(read_only=True) as con:
            read, rejected = con.execute(
                "SELECT coalesce(sum(rows_read), 0), coalesce(sum(rows_quarantined), 0) FROM raw.ingested_files WHERE source = ?",
                [source],
            ).fetchone()
            files_rejected = con.execute(
                "SELECT count(*) FROM raw.ingested_files WHERE source = ? AND status = 'rejected'", [source]
            ).fetchone()[0]
        share = rejected / read if read else 0.0
        return dg.AssetCheckResult(
            passed=share <= MAX_QUARANTINE_SHARE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "rows_read": int(read),
                "rows_quarantined": int(rejected),
                "quarantine_share": float(round(share, 5)),
                "files_rejected": int(files_rejected),
            },
        )

    return _check


quarantine_checks = [build_quarantine_check(source) for source in SOURCE_TABLES]
