"""The segment report: one static, self-contained HTML page per scoring date.

`data/reports/<as_of>/index.html` holds each segment's definition, size, trend, entries and exits
and overlap; each segment's KPIs over time and their control chart; the cluster profiles; the
propensity deciles and calibration; lifetime value by decile; the recommendations and the
experiments; and data-quality status.
Everything is an aggregate (no identifier, no personal data), styles and figures are inline, and
it opens from disk without a server. Plain Python over DuckDB (no Dagster); the asset is exports/segment_report_page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from ml import plots
from ml.clustering import profile_z_scores
from ml.features import numeric_columns, numeric_matrix
from orchestration.defs.segments.kpis import CONTROL_RUNS, out_of_control
from orchestration.lib import figures
from orchestration.lib.warehouse import table_exists

TEMPLATE = Path(__file__).with_name("report.html.j2")
TREND_RUNS = 8  # sizes shown per segment in the trend column
COHORTS = 4  # entry months shown per segment in the KPI table


@dataclass(frozen=True)
class ReportResult:
    path: Path
    as_of: dt.date
    segments: int
    sections: tuple[str, ...]


def _segments(con, as_of) -> tuple[pd.DataFrame, pd.DataFrame]:
    current = con.execute(
        "SELECT * FROM marts.segment_report WHERE as_of = ? ORDER BY segment_type, segment_name", [as_of]
    ).df()
    history = con.execute(
        "SELECT as_of, segment_name, size FROM marts.segment_report WHERE as_of <= ? ORDER BY as_of", [as_of]
    ).df()
    sizes = history.pivot(index="as_of", columns="segment_name", values="size")
    current["trend"] = [
        " → ".join(f"{int(v):,}" for v in sizes[name].dropna().tail(TREND_RUNS)) for name in current["segment_name"]
    ]
    return current, sizes


def _overlap_figure(con, as_of, published: list[str]) -> str | None:
    if len(published) < 2:
        return None
    pairs = con.execute("SELECT segment_a, segment_b, jaccard FROM marts.segment_overlap WHERE as_of = ?", [as_of]).df()
    matrix = pd.DataFrame(0.0, index=published, columns=published)
    for a, b, j in pairs.itertuples(index=False):
        if a in matrix.index and b in matrix.index:
            matrix.loc[a, b] = matrix.loc[b, a] = j
    for name in published:
        matrix.loc[name, name] = 1.0
    return figures.data_uri(
        figures.heatmap(
            matrix, "Overlap of published segments (Jaccard)", vmin=0, vmax=1, label="Jaccard", annotate=True
        )
    )


def _traits(z_row: pd.Series, n: int = 3) -> str:
    """The features furthest from average, for example 'monetary_total +1.8σ, recency_days -0.9σ'."""
    return ", ".join(f"{f.removesuffix('_log1p_capped')} {z_row[f]:+.1f}σ" for f in z_row.abs().nlargest(n).index)


def _clusters(con) -> tuple[pd.DataFrame, str | None]:
    if not table_exists(con, "marts", "cluster_assignments"):
        return pd.DataFrame(), None
    frame = con.execute("""
        SELECT f.*, c.cluster_id, c.cluster_name
        FROM marts.user_features_model_ready f
        JOIN marts.cluster_assignments c ON c.person_id = f.person_id AND c.as_of = f.as_of
    """).df()
    if not len(frame):
        return pd.DataFrame(), None
    labels = frame.pop("cluster_id").to_numpy()
    names = dict(zip(labels, frame.pop("cluster_name"), strict=True))
    features = [c for c in numeric_columns(frame) if frame[c].notna().any()]
    z = profile_z_scores(numeric_matrix(frame, features), labels)
    sizes = pd.Series(labels).value_counts()
    table = pd.DataFrame(
        {
            "cluster_id": z.index,
            "name": [names[i] for i in z.index],
            "persons": [int(sizes.get(i, 0)) for i in z.index],
            "defining traits": [_traits(row) for _, row in z.iterrows()],
        }
    )
    return table, figures.data_uri(plots.z_score_heatmap(z, {int(i): n for i, n in names.items()}))


def _propensity(con, calibration: pd.DataFrame | None) -> tuple[pd.DataFrame, str | None]:
    if not table_exists(con, "marts", "propensity_scores"):
        return pd.DataFrame(), None
    deciles = con.execute("""
        SELECT decile, count(*) AS persons, round(avg(score), 4) AS mean_score, round(min(score), 4) AS min_score,
               round(max(score), 4) AS max_score
        FROM (SELECT score, ntile(10) OVER (ORDER BY score DESC) AS decile
              FROM marts.propensity_scores WHERE model_name = 'purchase_30d')
        GROUP BY decile ORDER BY decile
    """).df()
    figure = None
    if calibration is not None and len(calibration):
        figure = figures.data_uri(plots.calibration(calibration, "purchase_30d champion: reliability (calibrated)"))
    return deciles, figure


def _lifetime_value(con) -> pd.DataFrame:
    if not table_exists(con, "marts", "customer_lifetime_values"):
        return pd.DataFrame()
    return con.execute("""
        SELECT decile, count(*) AS buyers, round(avg(p_alive), 3) AS mean_p_alive,
               round(avg(expected_purchases_12m), 2) AS mean_expected_purchases_12m,
               avg(expected_value_12m) AS mean_expected_value_12m, count(*) FILTER (WHERE p_alive < 0.5) AS likely_churned
        FROM (SELECT *, ntile(10) OVER (ORDER BY expected_value_12m DESC, person_id) AS decile
              FROM marts.customer_lifetime_values)
        GROUP BY decile ORDER BY decile
    """).df()


def _kpis(con, as_of) -> tuple[pd.DataFrame, str | None]:
    """Each segment's KPIs at this run, its entry cohorts' retention, and conversion over the runs."""
    if not table_exists(con, "marts", "segment_kpis"):
        return pd.DataFrame(), None
    history = con.execute("SELECT * FROM marts.segment_kpis WHERE as_of <= ? ORDER BY as_of", [as_of]).df()
    current = history[history["as_of"] == history["as_of"].max()].copy()
    flagged = out_of_control(history)
    runs = history.groupby("segment_name")["as_of"].nunique()
    current["control"] = [
        ", ".join(f"{r.kpi} out of limits" for r in flagged[flagged["segment_name"] == name].itertuples())
        or ("in control" if runs[name] > CONTROL_RUNS else f"charted from run {CONTROL_RUNS + 1} ({runs[name]} so far)")
        for name in current["segment_name"]
    ]
    cohorts = con.execute(
        """SELECT h.segment_name, strftime(date_trunc('month', h.valid_from), '%Y-%m') AS cohort, count(*) AS entered,
                  avg(CASE WHEN m.person_id IS NOT NULL THEN 1.0 ELSE 0.0 END) AS still
           FROM marts.segment_membership_history h
           LEFT JOIN marts.segment_membership m ON m.person_id = h.person_id AND m.segment_name = h.segment_name
           GROUP BY ALL ORDER BY cohort DESC"""
    ).df()
    current["cohorts"] = [
        "; ".join(
            f"{r.cohort}: {r.still:.0%} of {r.entered:,}"
            for r in cohorts[cohorts["segment_name"] == name].head(COHORTS).itertuples()
        )
        for name in current["segment_name"]
    ]
    conversion = history.pivot(index="as_of", columns="segment_name", values="conversion_30d")
    figure = figures.data_uri(figures.lines(conversion, "30-day conversion per segment", "share of members"))
    return current.sort_values("segment_name"), figure


def _recommendations(con) -> dict | None:
    """Aggregates only: who gets recommendations and why, and the products most recommended."""
    if not table_exists(con, "marts", "recommendations"):
        return None
    summary = (
        con.execute(
            """SELECT count(DISTINCT person_id) AS persons, count(DISTINCT item_id) AS products, any_value(model) AS model
           FROM marts.recommendations WHERE model LIKE 'tessera_recommender%' OR model = 'buy again'"""
        )
        .df()
        .iloc[0]
        .to_dict()
    )
    reasons = con.execute(
        """SELECT regexp_extract(reason, '^(bought before|bought with|popular in|popular now)') AS reason,
                  count(*) AS recommendations, count(DISTINCT person_id) AS persons
           FROM marts.recommendations GROUP BY 1 ORDER BY 2 DESC"""
    ).df()
    top = con.execute(
        """SELECT item_id, count(*) AS persons, round(avg(rank), 1) AS mean_rank
           FROM marts.recommendations GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"""
    ).df()
    cold = con.execute(
        "SELECT count(DISTINCT person_id) FROM marts.recommendations WHERE model = 'popularity'"
    ).fetchone()
    return {
        **summary,
        "cold_start": cold[0],
        "reasons": reasons.to_dict("records"),
        "top": top.to_dict("records"),
    }


def _experiments(con) -> pd.DataFrame:
    if not table_exists(con, "marts", "experiment_results"):
        return pd.DataFrame()
    return con.execute(
        """SELECT * FROM marts.experiment_results
           WHERE as_of = (SELECT max(as_of) FROM marts.experiment_results) ORDER BY experiment, variant <> 'control', variant"""
    ).df()


def _quality(con) -> tuple[pd.DataFrame, pd.DataFrame]:
    gates = pd.DataFrame()
    if table_exists(con, "quality", "gate_history"):
        gates = con.execute("""
            SELECT table_name, checked_at, row_count, success, json_array_length(failures) AS failed_expectations
            FROM quality.gate_history
            QUALIFY row_number() OVER (PARTITION BY table_name ORDER BY checked_at DESC) = 1
            ORDER BY table_name
        """).df()
    quarantine = (
        con.execute(
            "SELECT source, reason_code, count(*) AS rows FROM raw.quarantine GROUP BY ALL ORDER BY source, rows DESC"
        ).df()
        if table_exists(con, "raw", "quarantine")
        else pd.DataFrame()
    )
    return gates, quarantine


def champion_calibration(warn: Callable[[str], None]) -> pd.DataFrame | None:
    """The purchase_30d champion's calibration from MLflow; None (with a warning) without it, since
    the page is still useful."""
    from ml import workflows

    try:
        return workflows.champion_calibration()
    except Exception as exc:
        warn(f"No calibration from MLflow ({exc}); the page leaves it out.")
        return None


def build_report(con, out_root: Path, calibration: pd.DataFrame | None = None) -> ReportResult:
    """Write `<out_root>/<as_of>/index.html` for the latest membership run, atomically."""
    as_of = (
        con.execute("SELECT max(as_of) FROM marts.segment_report").fetchone()[0]
        if table_exists(con, "marts", "segment_report")
        else None
    )
    if as_of is None:
        raise ValueError("marts.segment_report is empty: materialise segment_membership first.")
    segments, sizes = _segments(con, as_of)
    published = segments.loc[segments["published"], "segment_name"].tolist()
    clusters, cluster_figure = _clusters(con)
    deciles, calibration_figure = _propensity(con, calibration)
    gates, quarantine = _quality(con)
    persons = con.execute("SELECT count(*) FROM marts.segment_attributes").fetchone()[0]
    trend_figure = (
        figures.data_uri(figures.lines(sizes[published], "Published segment sizes per run", "members"))
        if published
        else None
    )
    lifetime_value = _lifetime_value(con)
    kpis, conversion_figure = _kpis(con, as_of)
    experiments = _experiments(con)
    sections = (
        "segments",
        "kpis",
        "overlap",
        "clusters",
        "propensity",
        "lifetime-value",
        "recommendations",
        "experiments",
        "quality",
    )
    html = (
        jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        .from_string(TEMPLATE.read_text(encoding="utf-8"))
        .render(
            as_of=pd.Timestamp(as_of).date(),
            generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            persons=persons,
            segments=segments.to_dict("records"),
            published=len(published),
            trend_figure=trend_figure,
            overlap_figure=_overlap_figure(con, as_of, published),
            clusters=clusters.to_dict("records"),
            cluster_figure=cluster_figure,
            deciles=deciles.to_dict("records"),
            calibration_figure=calibration_figure,
            lifetime_value=lifetime_value.to_dict("records"),
            kpis=kpis.to_dict("records"),
            conversion_figure=conversion_figure,
            recommendations=_recommendations(con),
            experiments=experiments.to_dict("records"),
            gates=gates.to_dict("records"),
            quarantine=quarantine.to_dict("records"),
            gates_failing=int((~gates["success"]).sum()) if len(gates) else 0,
            sections=sections,
        )
    )
    folder = out_root / str(pd.Timestamp(as_of).date())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    partial = folder / ".index.html.partial"
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)  # readers see the old page or the new one, never half of one
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "as_of": str(pd.Timestamp(as_of).date()),
                "persons": persons,
                "segments": len(segments),
                "published": len(published),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return ReportResult(path, pd.Timestamp(as_of).date(), len(segments), sections)
