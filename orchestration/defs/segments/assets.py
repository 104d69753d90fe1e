"""Segment membership, its SCD2 history, the per-run report and overlaps, from segments/*.yml."""

import datetime as dt

import dagster as dg
import pandas as pd

from orchestration.defs.metadata import frame_table, table_metadata
from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.defs.segments.loading import segment_catalog
from orchestration.defs.segments.membership import MembershipError, build_membership, reset_history
from orchestration.lib import figures

OWNER = "team:marketing-analytics"
ATTRIBUTES = dg.AssetKey(["marts", "segment_attributes"])
MEMBERSHIP = dg.AssetKey(["marts", "segment_membership"])
ERASURE_LOG = dg.AssetKey(["privacy", "erasure_log"])  # erasures first: no erased person is a member
TABLES = {
    "segment_membership": "Current members of every published segment: person_id, segment_name, segment_type, "
    "entered_at (start of the open interval), as_of.",
    "segment_membership_history": "SCD2 intervals per person and segment (valid_from, valid_to; NULL while a member), "
    "derived by comparing each run with the open intervals.",
    "segment_report": "Per run and segment: matched, excluded by consent, size, entered, exited, minimum size, "
    "and whether it was published.",
    "segment_overlap": "Per run, pairs of published segments sharing members: both_members and Jaccard index.",
}

# Segments feed campaigns and are rebuilt daily: the refresh runs at 03:00 UTC, so a segment table not
# materialised since the 06:00 UTC deadline of the day before fails at 06:00 UTC. A cron policy's
# window cannot exceed its interval (a day here); Dagster's daemon evaluates it (docs/operations.md).
SEGMENT_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 6 * * *", lower_bound_delta=dt.timedelta(hours=24), timezone="UTC"
)
FRESH_TABLES = ("segment_membership", "segment_membership_history")


class SegmentMembershipConfig(dg.Config):
    reset_history: bool = False  # drop past intervals first (history otherwise only moves forward)


@dg.multi_asset(
    name="segment_membership",
    specs=[
        dg.AssetSpec(
            ["marts", name],
            description=text,
            deps=[ATTRIBUTES, ERASURE_LOG],
            group_name="segments",
            owners=[OWNER],
            kinds={"duckdb", "python"},
            freshness_policy=SEGMENT_FRESHNESS if name in FRESH_TABLES else None,
        )
        for name, text in TABLES.items()
    ],
    pool="duckdb",
)
def segment_membership(
    context: dg.AssetExecutionContext,
    config: SegmentMembershipConfig,
    warehouse: WarehouseResource,
    settings: SettingsResource,
):
    catalog = segment_catalog()
    with warehouse.connect() as con:
        if config.reset_history:
            reset_history(con)
        try:
            report = build_membership(con, catalog, settings.consent_default_allowed)
        except MembershipError as exc:
            raise dg.Failure(description=str(exc)) from None
        overlap = con.execute(
            """SELECT segment_a, segment_b, both_members, round(jaccard, 3) AS jaccard
                                 FROM marts.segment_overlap WHERE as_of = ? ORDER BY jaccard DESC LIMIT 10""",
            [report.as_of],
        ).df()
        tables = {name: table_metadata(con, f"marts.{name}") for name in TABLES}
        sizes_over_time = (
            con.execute("SELECT as_of, segment_name, size FROM marts.segment_report WHERE published ORDER BY as_of")
            .df()
            .pivot(index="as_of", columns="segment_name", values="size")
        )
    table = pd.DataFrame(
        [
            {
                "segment": s.name,
                "type": s.type,
                "size": s.size,
                "entered": s.entered,
                "exited": s.exited,
                "left out (consent)": s.excluded_by_consent,
                "min size": s.min_size,
                "published": s.published,
            }
            for s in report.segments
        ]
    )
    if report.unpublished:
        context.log.warning(f"Below their minimum size, not published: {', '.join(report.unpublished)}")
    members = int(table.loc[table["published"], "size"].sum())
    report_table = frame_table(table)
    sizes_plot = dg.MetadataValue.md(
        figures.markdown_image(
            figures.lines(sizes_over_time, "Published segment sizes per run", "members"), "segment sizes over time"
        )
        if len(sizes_over_time)
        else "none"
    )
    yield dg.MaterializeResult(
        asset_key=MEMBERSHIP,
        metadata={
            **tables["segment_membership"],
            "dagster/row_count": members,
            "as_of": str(report.as_of.date()),
            "segments": len(report.segments),
            "segments_published": len(report.segments) - len(report.unpublished),
            "segments_below_minimum": dg.MetadataValue.text(", ".join(report.unpublished) or "none"),
            "persons": report.persons,
            "persons_left_out_for_consent": report.persons_without_consent,
            "persons_consent_by_default": report.persons_without_consent_evidence,
            "memberships_left_out_for_consent": int(table["left out (consent)"].sum()),
            "entered": int(table["entered"].sum()),
            "exited": int(table["exited"].sum()),
            "rerun_of_as_of": report.rewound,
            "segment_report": report_table,
            "segment_sizes_over_time": sizes_plot,
        },
    )
    yield dg.MaterializeResult(
        asset_key=["marts", "segment_membership_history"], metadata=tables["segment_membership_history"]
    )
    yield dg.MaterializeResult(
        asset_key=["marts", "segment_report"],
        metadata={**tables["segment_report"], "segment_report": report_table, "segment_sizes_over_time": sizes_plot},
    )
    yield dg.MaterializeResult(
        asset_key=["marts", "segment_overlap"],
        metadata={**tables["segment_overlap"], "top_overlaps": frame_table(overlap)},
    )


@dg.asset_check(
    asset=MEMBERSHIP, pool="duckdb", description="Every segment reaches its min_size; smaller ones are not published."
)
def segments_meet_minimum_size(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        rows = con.execute("""
            SELECT segment_name, size, min_size FROM marts.segment_report
            WHERE as_of = (SELECT max(as_of) FROM marts.segment_report) AND NOT published ORDER BY 1""").fetchall()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        description="Below minimum and not published: " + ", ".join(f"{n} ({s} < {m})" for n, s, m in rows)
        if rows
        else "All segments reached their minimum size.",
        metadata={"segments_below_minimum": len(rows)},
    )


segment_assets = [segment_membership]
segment_checks = [segments_meet_minimum_size]
