"""The segment report: one static, self-contained HTML page per scoring date.

`data/reports/<as_of>/index.html` holds each segment's definition, size, trend, entries and exits
and overlap; the cluster profiles; the propensity deciles and calibration; lifetime value by decile;
and data-quality status.
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
from orchestration.lib import figures
from orchestration.lib.warehouse import table_exists

TEMPLATE = Path(__file__).with_name("report.html.j2")
TREND_RUNS = 8  # sizes shown per segment in the trend column


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
    sections = ("segments", "overlap", "clusters", "propensity", "lifetime-value", "quality")
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
