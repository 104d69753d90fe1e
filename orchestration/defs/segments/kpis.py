"""Each published segment's KPIs at each scoring date, kept over time, and a control chart on them.

`marts.segment_kpis`, one row per segment and run (`as_of`):
- size: its members;
- conversion_30d: the share of members with a completed order in the 30 days up to as_of;
- revenue_per_person_30d: the revenue of those orders per member;
- lifetime_value_12m: the members' mean expected 12-month value (the lifetime-value champion; 0
  for a member who never bought);
- retention_30d: of the members 30 days earlier, the share still members (empty until the
  membership history reaches back that far).

The check `segment_kpis_within_control_limits` puts each segment's size and conversion on an
individuals (XmR) control chart: the centre is the mean of its earlier runs, the limits the centre
plus or minus 2.66 times their mean moving range (Wheeler's constant for 3 sigma). A run outside
them is flagged, once a segment has CONTROL_RUNS earlier runs.
"""

import dagster as dg
import pandas as pd

from orchestration.defs.metadata import frame_table, table_metadata
from orchestration.defs.resources import WarehouseResource
from orchestration.lib.warehouse import table_exists, transaction

KPIS = "marts.segment_kpis"
CONTROL_RUNS = 7
XMR = 2.66
CHARTED = ("size", "conversion_30d")


def compute_kpis(con) -> pd.DataFrame:
    """This run's KPIs per published segment (the latest as_of of marts.segment_membership)."""
    lifetime = (
        "coalesce(v.expected_value_12m, 0)"
        if table_exists(con, "marts", "customer_lifetime_values")
        else "CAST(NULL AS DOUBLE)"
    )
    clv_join = (
        "LEFT JOIN marts.customer_lifetime_values v ON v.person_id = m.person_id"
        if table_exists(con, "marts", "customer_lifetime_values")
        else ""
    )
    return con.execute(
        f"""
        WITH run AS (SELECT max(as_of) AS as_of FROM marts.segment_membership),
        recent AS (
            SELECT o.person_id, count(*) AS orders, sum(o.amount) AS revenue
            FROM intermediate.int_orders o, run
            WHERE o.status = 'completed' AND o.ordered_at > run.as_of - INTERVAL 30 DAY
              AND o.ordered_at < run.as_of + INTERVAL 1 DAY
            GROUP BY 1
        ),
        earlier AS (  -- members 30 days before, from the intervals of the membership history
            SELECT h.segment_name, h.person_id
            FROM marts.segment_membership_history h, run
            WHERE h.valid_from <= run.as_of - INTERVAL 30 DAY
              AND (h.valid_to IS NULL OR h.valid_to > run.as_of - INTERVAL 30 DAY)
        ),
        retained AS (
            SELECT e.segment_name, count(*) AS before, count(m.person_id) AS still
            FROM earlier e LEFT JOIN marts.segment_membership m
              ON m.segment_name = e.segment_name AND m.person_id = e.person_id
            GROUP BY 1
        )
        SELECT m.segment_name, CAST(run.as_of AS DATE) AS as_of, count(*) AS size,
               avg(CASE WHEN r.orders > 0 THEN 1.0 ELSE 0.0 END) AS conversion_30d,
               CAST(coalesce(sum(r.revenue), 0) AS DOUBLE) / count(*) AS revenue_per_person_30d,
               avg({lifetime}) AS lifetime_value_12m,
               any_value(CAST(t.still AS DOUBLE) / nullif(t.before, 0)) AS retention_30d
        FROM marts.segment_membership m CROSS JOIN run
        LEFT JOIN recent r ON r.person_id = m.person_id
        {clv_join}
        LEFT JOIN retained t ON t.segment_name = m.segment_name
        GROUP BY m.segment_name, run.as_of
        ORDER BY m.segment_name"""
    ).df()


def out_of_control(history: pd.DataFrame, minimum_runs: int = CONTROL_RUNS) -> pd.DataFrame:
    """The latest run's KPIs (CHARTED) outside their XmR limits, per segment: segment_name, kpi,
    value, low, high. `history` has segment_name, as_of and the charted columns."""
    flagged = []
    for segment, runs in history.sort_values("as_of").groupby("segment_name"):
        if len(runs) <= minimum_runs:
            continue
        earlier, latest = runs.iloc[:-1], runs.iloc[-1]
        for kpi in CHARTED:
            values = earlier[kpi].astype(float).dropna()
            if len(values) < minimum_runs or pd.isna(latest[kpi]):
                continue
            centre, spread = values.mean(), values.diff().abs().mean()
            slack = 1e-9 * max(1.0, abs(centre))  # a KPI that never moved stays in control at its value
            low, high = centre - XMR * spread - slack, centre + XMR * spread + slack
            if not low <= float(latest[kpi]) <= high:
                flagged.append((segment, kpi, float(latest[kpi]), low, high))
    return pd.DataFrame(flagged, columns=["segment_name", "kpi", "value", "low", "high"])


@dg.asset(
    key=["marts", "segment_kpis"],
    deps=[
        dg.AssetKey(["marts", "segment_membership"]),
        dg.AssetKey(["marts", "segment_membership_history"]),
        dg.AssetKey(["intermediate", "int_orders"]),
        dg.AssetKey(["marts", "customer_lifetime_values"]),
    ],
    group_name="segments",
    owners=["team:marketing-analytics"],
    kinds={"duckdb", "python"},
    pool="duckdb",
    description="One row per published segment and run: size, 30-day conversion and revenue per member, mean "
    "12-month lifetime value and 30-day retention, kept over time (a rerun of a day replaces its rows).",
)
def segment_kpis(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        today = compute_kpis(con)
        with transaction(con):
            con.execute(f"""CREATE TABLE IF NOT EXISTS {KPIS} (
                segment_name VARCHAR NOT NULL, as_of DATE NOT NULL, size BIGINT, conversion_30d DOUBLE,
                revenue_per_person_30d DOUBLE, lifetime_value_12m DOUBLE, retention_30d DOUBLE,
                PRIMARY KEY (segment_name, as_of))""")
            if len(today):
                con.execute(f"DELETE FROM {KPIS} WHERE as_of = ?", [today["as_of"].iloc[0]])
                con.register("_today", today)
                con.execute(f"INSERT INTO {KPIS} BY NAME SELECT * FROM _today")
                con.unregister("_today")
        metadata = table_metadata(con, KPIS)
    return dg.MaterializeResult(metadata={**metadata, "this_run": frame_table(today)})


@dg.asset_check(
    asset=segment_kpis,
    pool="duckdb",
    description=f"Each segment's size and 30-day conversion stay within their XmR control limits (the mean of its "
    f"earlier runs plus or minus {XMR} mean moving ranges), once it has {CONTROL_RUNS} earlier runs.",
)
def segment_kpis_within_control_limits(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as con:
        history = con.execute(f"SELECT * FROM {KPIS}").df() if table_exists(con, "marts", "segment_kpis") else None
    flagged = out_of_control(history) if history is not None and len(history) else pd.DataFrame()
    return dg.AssetCheckResult(
        passed=flagged.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description="Every charted segment within its limits."
        if flagged.empty
        else "Out of control: "
        + ", ".join(
            f"{r.segment_name} {r.kpi} {r.value:.4g} (limits {r.low:.4g} to {r.high:.4g})" for r in flagged.itertuples()
        ),
        metadata={"out_of_control": len(flagged), **({"flagged": frame_table(flagged)} if len(flagged) else {})},
    )


kpi_assets = [segment_kpis]
kpi_checks = [segment_kpis_within_control_limits]
