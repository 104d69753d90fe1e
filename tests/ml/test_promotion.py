"""Champion/challenger promotion, against a real MLflow store."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ml import workflows
from ml.tracking import PromotionPolicy, decide

POLICY = PromotionPolicy(metric="roc_auc", margin=0.01, minimums={"roc_auc": 0.6})


def test_decide_refuses_a_worse_or_weak_challenger_and_says_why():
    worse = decide(POLICY, {"roc_auc": 0.80}, champion_metric=0.85, champion_version="3", challenger_version="4")
    assert not worse.promoted and "does not beat champion v3 (0.8500)" in worse.reason
    tie = decide(POLICY, {"roc_auc": 0.855}, champion_metric=0.85, champion_version="3", challenger_version="4")
    assert not tie.promoted  # better, but not by the margin
    weak = decide(POLICY, {"roc_auc": 0.55}, champion_metric=None, champion_version=None, challenger_version="1")
    assert not weak.promoted and "roc_auc 0.5500 < minimum 0.6" in weak.reason
    better = decide(POLICY, {"roc_auc": 0.87}, champion_metric=0.85, champion_version="3", challenger_version="4")
    assert better.promoted
    # A champion trained before an erasure is replaced whatever the margin, by a challenger that passes.
    flagged = decide(
        POLICY,
        {"roc_auc": 0.80},
        champion_metric=0.85,
        champion_version="3",
        challenger_version="4",
        champion_flag="erasure of 2026-11-01",
    )
    assert flagged.promoted and "trained on data that held an erased person" in flagged.reason
    assert not decide(
        POLICY,
        {"roc_auc": 0.55},
        champion_metric=0.85,
        champion_version="3",
        challenger_version="4",
        champion_flag="erasure of 2026-11-01",
    ).promoted


def _frame(seed: int, n: int, as_of: str, x_weight: float = 3.0, z_weight: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(0, 1, n), rng.normal(0, 1, n)
    return pd.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(n)],
            "as_of": pd.Timestamp(as_of),
            "x": x,
            "z": z,
            "purchased_in_window": rng.random(n) < 1 / (1 + np.exp(-(x_weight * x + z_weight * z))),
        }
    )


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return MlflowClient()


def test_a_worse_challenger_is_registered_but_champion_keeps_scoring(mlflow_store):
    ctx = workflows.RunContext(as_of="2026-10-31", data_version="v1", dagster_run_id="run-1")
    strong = workflows.train_propensity_model(_frame(1, 600, "2026-09-01"), _frame(2, 600, "2026-10-01"), ctx)
    assert strong["promoted"] and strong["model_version"] == "1"
    # Same dates, but backtest labels driven mostly by z: a model that passes the minimum, yet ranks worse.
    weak = workflows.train_propensity_model(
        _frame(3, 600, "2026-09-01", x_weight=2.0, z_weight=2.0), _frame(4, 600, "2026-10-01"), ctx
    )
    assert not weak["promoted"] and weak["model_version"] == "2"

    name = workflows.propensity_registered_name("purchase_30d")
    assert str(mlflow_store.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(mlflow_store.get_model_version_by_alias(name, "challenger").version) == "2"
    assert "does not beat champion v1" in mlflow_store.get_model_version(name, "2").description
    run = mlflow_store.get_run(weak["run_id"])
    assert run.data.tags["promotion.decision"] == "refused"
    assert run.data.tags["dagster.run_id"] == "run-1" and run.data.tags["tessera.as_of"] == "2026-10-31"
    artifacts = {a.path for a in mlflow_store.list_artifacts(weak["run_id"])}
    assert {"summary.md", "calibration.png", "confusion_matrix.png", "roc_auc_by_group.json"} <= artifacts
    assert (
        run.info.run_name == "purchase_30d 2026-10-31"
        and "chosen by out-of-time ROC-AUC" in run.data.tags["mlflow.note.content"]
    )
    # What the model is for and how it is promoted, for an analyst in the MLflow UI.
    described = mlflow_store.get_registered_model(name).description
    assert (
        "completed order" in described
        and "roc_auc (higher is better) beats the champion's by at least 0.005" in described
    )
    experiment = mlflow_store.get_experiment_by_name(workflows.propensity_experiment("purchase_30d"))
    assert experiment.tags["mlflow.note.content"] == described

    scores = workflows.score_propensity(_frame(5, 50, "2026-10-31"))
    assert set(scores["model_version"]) == {"1"} and scores["score"].between(0, 1).all()


def test_after_an_erasure_the_next_training_replaces_the_flagged_champion(mlflow_store):
    import time

    from ml import tracking

    ctx = workflows.RunContext(as_of="2026-10-31", data_version="v1", dagster_run_id="run-1")
    assert workflows.train_propensity_model(_frame(1, 600, "2026-09-01"), _frame(2, 600, "2026-10-01"), ctx)["promoted"]
    flagged = tracking.flag_versions_before(int(time.time() * 1000) + 1, "erasure of 2026-11-01")
    name = workflows.propensity_registered_name("purchase_30d")
    assert flagged == [f"{name} v1"] and tracking.flag_versions_before(int(time.time() * 1000) + 1, "again") == []
    # The same weaker challenger that the unflagged champion refuses (test above) now replaces it.
    weak = workflows.train_propensity_model(
        _frame(3, 600, "2026-09-01", x_weight=2.0, z_weight=2.0), _frame(4, 600, "2026-10-01"), ctx
    )
    assert weak["promoted"] and str(mlflow_store.get_model_version_by_alias(name, "champion").version) == "2"


def test_the_models_input_example_is_nobodys_row(mlflow_store):
    ctx = workflows.RunContext(as_of="2026-10-31", data_version="v1", dagster_run_id="run-1")
    training = _frame(2, 600, "2026-10-01")
    workflows.train_propensity_model(_frame(1, 600, "2026-09-01"), training, ctx)
    name = workflows.propensity_registered_name("purchase_30d")
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1"))
    example = json.loads((folder / "input_example.json").read_text())
    rows = pd.DataFrame(example["data"], columns=example["columns"])
    assert len(rows) == 5 and "person_id" not in rows
    persons = set(training[["x", "z"]].itertuples(index=False, name=None))
    assert not persons & set(rows[["x", "z"]].itertuples(index=False, name=None))
    assert rows["x"].is_monotonic_increasing  # quantiles of the column, not a sample of people


def test_scoring_without_a_champion_explains_itself(mlflow_store):
    with pytest.raises(workflows.NoChampionError, match="has no champion yet"):
        workflows.assign_clusters(pd.DataFrame({"person_id": ["p1"]}))


def test_scoring_again_explains_only_the_persons_whose_score_or_model_changed(mlflow_store, monkeypatch):
    ctx = workflows.RunContext(as_of="2026-10-31", data_version="v1", dagster_run_id="run-1")
    workflows.train_propensity_model(_frame(1, 600, "2026-09-01"), _frame(2, 600, "2026-10-01"), ctx)
    frame = _frame(5, 80, "2026-10-31")
    first = workflows.score_propensity(frame)

    explained: list[int] = []
    real = workflows.top_contributions
    monkeypatch.setattr(
        workflows, "top_contributions", lambda model, rows: explained.append(len(rows)) or real(model, rows)
    )
    # The next day: two persons' features moved (their scores change), the others did not.
    moved = frame.copy()
    moved.loc[[3, 40], "x"] += 2.5
    again = workflows.score_propensity(moved, previous=first)
    assert explained == [2]
    assert (again["score"] != first["score"]).sum() == 2
    # Kept or new, each explanation is the one a full scoring gives: the model explains against the
    # typical row it learned, not against the population scored with it.
    pd.testing.assert_frame_equal(again, workflows.score_propensity(moved))
    pd.testing.assert_frame_equal(workflows.score_propensity(moved.head(10)), again.head(10))

    # A previous scoring by another model version explains everyone again.
    explained.clear()
    workflows.score_propensity(moved, previous=first.assign(model_version="0"))
    assert explained == [len(moved)]


def test_a_store_whose_creation_was_killed_is_built_whole_by_the_next_process(tmp_path):
    """SIGKILL among MLflow's schema migrations (they take seconds) used to leave a store no process
    could open; `ensure_store` builds it aside, so a killed build leaves nothing in its place."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ml.tracking import ensure_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    builder = subprocess.Popen(
        [sys.executable, "-c", f"from ml.tracking import ensure_store; ensure_store({uri!r})"],
        cwd=Path(__file__).parents[2],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Kill it once MLflow has begun migrating (its first log line), well before the last migration.
    assert "Creating initial MLflow database tables" in builder.stderr.readline()
    time.sleep(0.3)
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait()
    assert not (tmp_path / "mlflow.db").exists()
    assert {p.name.removesuffix("-journal") for p in tmp_path.iterdir()} == {f".mlflow.db.building-{builder.pid}"}

    ensure_store(uri)
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]  # the killed build's file went too
    assert [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()] == ["Default"]
