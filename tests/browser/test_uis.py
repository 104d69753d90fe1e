"""What people see, in a real browser: the Dagster UI after a materialisation, the MLflow UI, and
the segment report opened from disk. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser
LOCATION = "orchestration.definitions"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
PHONE = re.compile(r"\+\d{8,15}\b|\(?\d{3}\)?[ -]\d{3}[ -]\d{4}")


def _open(page, url: str, ready_text: str, screenshot: str | None = None) -> str:
    page.goto(url)
    page.get_by_text(ready_text, exact=False).first.wait_for(timeout=60_000)
    if "/#/" not in url and url.startswith("http") and not getattr(page, "dialog_dismissed", False):
        # Dagster opens a "Join the Dagster community" dialog over the first page a browser visits.
        skip = page.get_by_role("button", name="Skip")
        try:
            skip.first.wait_for(timeout=8000)
            skip.first.click()
        except PlaywrightTimeout:
            pass
        page.dialog_dismissed = True
    page.wait_for_timeout(1500)  # let late panels settle before the screenshot
    if screenshot:
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    return page.inner_text("body")


def _shown(name: str, labels: set[str]) -> bool:
    """A node shows its name, or, in a zoomed-out graph, the name shortened around an ellipsis."""
    if name in labels:
        return True
    return any(
        head and tail and name.startswith(head) and name.endswith(tail)
        for head, tail in (label.split("…", 1) for label in labels if label.count("…") == 1)
    )


def _groups() -> dict[str, list[str]]:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    groups: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, []).append(key.path[-1])
    return groups


def test_the_asset_graph_shows_every_group_with_its_assets(deployment, dagster_url, page):
    groups = _groups()
    assert set(groups) <= {
        "privacy",
        "ingest",
        "identity",
        "features",
        "quality",
        "ml",
        "segments",
        "experiments",
        "exports",
        "realtime",
    }
    overview = _open(page, f"{dagster_url}/asset-groups", "Global asset lineage", "dagster_global_lineage.png")
    for group in groups:
        assert group in overview
    for group, names in groups.items():
        # A group with an observable source (realtime/stream) offers "Observe sources" beside "Materialize".
        _open(page, f"{dagster_url}/locations/{LOCATION}/asset-groups/{group}", "Materialize")
        for _ in range(30):  # the graph lays out after the page has loaded
            labels = {line.strip() for line in page.inner_text("body").splitlines() if line.strip()}
            missing = [n for n in names if not _shown(n, labels)]
            if not missing:
                break
            page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / f"dagster_group_{group}.png"), full_page=True)
        assert not missing, f"group {group}: not shown {missing}"


def test_a_check_result_and_the_schedule_are_visible(deployment, dagster_url, page):
    checks = _open(
        page,
        f"{dagster_url}/assets/marts/user_features?view=checks",
        "great_expectations_gate",
        "dagster_user_features_checks.png",
    )
    assert "great_expectations_gate" in checks and "feature_drift" in checks
    assert "This is a blocking asset check." in checks or "Succeeded" in checks
    assert "Succeeded" in checks and "Failed" not in checks
    automation = _open(page, f"{dagster_url}/automation", "daily_refresh", "dagster_automation.png")
    assert "daily_refresh" in automation and "03:00" in automation and "weekly_model_training" in automation
    for sensor in ("landing_events_sensor", "eager_downstream", "erasure_requests_sensor"):
        assert sensor in automation
    segment_checks = _open(
        page,
        f"{dagster_url}/assets/marts/segment_membership?view=checks",
        "segments_meet_minimum_size",
        "dagster_segment_membership_checks.png",
    )
    assert "segments_meet_minimum_size" in segment_checks
    # The freshness policy: the daemon of `dagster dev` evaluates it about every 30 s after it starts.
    for _ in range(12):
        overview = _open(page, f"{dagster_url}/assets/marts/segment_membership", "Fresh if materialized")
        if "Passing" in overview:
            break
        page.wait_for_timeout(10_000)
    page.screenshot(path=str(ARTIFACTS / "dagster_segment_membership_freshness.png"), full_page=True)
    assert "Freshness policy" in overview and "Passing" in overview, overview
    assert "Deadline: At 06:00 AM UTC" in overview
    assert "Fresh if materialized no earlier than 24 hours before each deadline" in overview
    partitions = _open(
        page, f"{dagster_url}/assets/raw/events?view=partitions", "Partitions", "dagster_raw_events_partitions.png"
    )
    assert "Materialized" in partitions
    runs = _open(page, f"{dagster_url}/runs", "materialize_all", "dagster_runs.png")
    assert "Success" in runs


def test_mlflow_shows_the_experiments_and_the_champion_alias(deployment, mlflow_url, page):
    experiments = _open(page, f"{mlflow_url}/#/experiments", "tessera-clustering", "mlflow_experiments.png")
    assert "tessera-clustering" in experiments and "tessera-propensity-purchase_30d" in experiments
    models = _open(page, f"{mlflow_url}/#/models", "tessera_purchase_30d", "mlflow_models.png")
    assert "tessera_clustering" in models and "tessera_purchase_30d" in models
    model = _open(page, f"{mlflow_url}/#/models/tessera_purchase_30d", "Version 1", "mlflow_purchase_30d.png")
    assert "champion" in model and "Promoted: no champion yet" in model
    assert "completed order in the label window" in model  # the registered model's description


def test_the_report_opens_from_disk_with_its_sections_and_no_personal_data(deployment, page):
    reports = sorted((deployment["root"] / "reports").glob("*/index.html"))
    assert len(reports) == 1 and str(reports[0]) in deployment["run_output"]
    text = _open(page, reports[0].as_uri(), "Segment report", "segment_report.png")
    for heading in (
        "Segments",
        "Overlap",
        "Clusters",
        "Propensity: purchase_30d",
        "Lifetime value and churn",
        "Segment KPIs",
        "Recommendations",
        "Experiments",
        "Data quality",
    ):
        assert page.get_by_role("heading", name=heading).count() == 1, heading
    images = page.locator("img")
    assert images.count() == 5  # sizes, conversion, overlap, cluster profiles, calibration
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0") for i in range(5))
    assert not EMAIL.search(text) and not PHONE.search(text)
