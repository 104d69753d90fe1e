"""Propensity models on data with a planted signal, and their evaluation."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from ml.features import categorical_columns, numeric_columns
from ml.propensity import (
    OneClassLabelsError,
    PropensityConfig,
    _path_effects,
    build_pipeline,
    calibrate,
    evaluate,
    expected_calibration_error,
    fit_calibrator,
    model_inputs,
    score,
    top_contributions,
    train_propensity,
)


def cohort(seed: int, n: int = 1500, as_of: str = "2026-09-01") -> tuple[pd.DataFrame, pd.Series]:
    """Recent, frequent buyers purchase more: the label depends on two features through a logistic link."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(1.0, n)
    frequency = rng.poisson(2, n).astype(float)
    frame = pd.DataFrame(
        {
            "person_id": [f"p{seed}-{i}" for i in range(n)],
            "as_of": pd.Timestamp(as_of),
            "recency_days_log1p_capped": recency,
            "frequency_orders_log1p_capped": np.log1p(frequency),
            "irrelevant": rng.normal(0, 1, n),
            "primary_device_type": rng.choice(["mobile", "desktop", "tablet"], n),
            "country": rng.choice(["GB", "DE"], n),
        }
    )
    logit = -1.0 - 1.5 * recency + 1.2 * np.log1p(frequency)
    return frame, pd.Series(rng.random(n) < 1 / (1 + np.exp(-logit)), index=frame.index)


def test_planted_signal_beats_a_random_baseline():
    back, y_back = cohort(1, as_of="2026-08-01")
    train, y_train = cohort(2, as_of="2026-09-01")
    result = train_propensity(back, y_back, train, y_train, PropensityConfig(max_train_rows=5000))
    assert set(result.validation) == {"logistic_regression", "random_forest", "hist_gradient_boosting"}
    assert result.chosen == max(result.validation, key=lambda m: result.validation[m].roc_auc)
    fresh, y_fresh = cohort(3, as_of="2026-10-01")
    auc = roc_auc_score(y_fresh, score(result.model, fresh))
    baseline = roc_auc_score(y_fresh, np.random.default_rng(0).random(len(y_fresh)))
    assert auc > 0.75 > baseline + 0.15
    groups = result.chosen_validation.by_group
    assert set(groups["group_column"]) == {"primary_device_type", "country"}
    assert (groups["roc_auc"] > 0.6).all()


@pytest.mark.parametrize("n, says", [(0, "has no persons"), (40, "only negative labels")])
def test_training_without_both_label_classes_says_why(n, says):
    back, y_back = cohort(1, n=n)
    train, y_train = cohort(2)
    with pytest.raises(OneClassLabelsError, match=says):
        train_propensity(back, y_back & False, train, y_train)


def test_evaluation_counts_and_calibration():
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0, 1, 1] * 10)
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.4, 0.7, 0.2, 0.6, 0.95] * 10)
    ev = evaluate(y, p, pd.DataFrame(index=range(len(y))), PropensityConfig(calibration_bins=5))
    assert ev.roc_auc == 1.0
    assert ev.threshold == 0.6
    assert ev.confusion == {"true_negative": 50, "false_positive": 0, "false_negative": 0, "true_positive": 50}
    assert ev.calibration["observed_rate"].is_monotonic_increasing


class WholePipeline:
    """The model seen only through predict_proba: top_contributions re-runs it whole per column."""

    def __init__(self, model):
        self.model = model

    def predict_proba(self, inputs):
        return self.model.predict_proba(inputs)


def fitted_on_cohort(name: str):
    frame, y = cohort(4, n=800)
    inputs = model_inputs(frame)
    return build_pipeline(name, numeric_columns(inputs), categorical_columns(inputs), 42).fit(inputs, y), frame


def assert_the_planted_signal_explains_the_likeliest_buyers(model, frame, explanations):
    likeliest = np.argsort(-score(model, frame))[:50]
    named = [c["feature"] for i in likeliest for c in explanations[i][:1]]
    assert named.count("recency_days_log1p_capped") + named.count("frequency_orders_log1p_capped") > 0.8 * len(named)


@pytest.mark.parametrize("name", ["logistic_regression", "hist_gradient_boosting"])
def test_occlusion_from_encoded_rows_equals_re_running_the_whole_pipeline(name):
    model, frame = fitted_on_cohort(name)
    fast, whole = top_contributions(model, frame), top_contributions(WholePipeline(model), frame)
    assert fast == whole
    assert_the_planted_signal_explains_the_likeliest_buyers(model, frame, fast)


def test_a_forest_explains_by_path_attribution_which_adds_up_to_its_score():
    model, frame = fitted_on_cohort("random_forest")
    forest, encoded = model.named_steps["model"], model.named_steps["features"].transform(model_inputs(frame))
    average = np.mean([t.tree_.value[0, 0, 1] / t.tree_.value[0, 0].sum() for t in forest.estimators_])
    np.testing.assert_allclose(_path_effects(forest, encoded).sum(axis=1) + average, score(model, frame), atol=1e-12)
    explanations = top_contributions(model, frame)
    assert explanations != top_contributions(WholePipeline(model), frame)  # occlusion is not what ran
    assert_the_planted_signal_explains_the_likeliest_buyers(model, frame, explanations)


def test_path_attribution_gives_each_split_its_change_in_the_positive_share():
    # y = x0 and x1. x1 splits first (its left side is pure), then x0 splits x1's right side.
    # Root: 4 positives of 11. x1 = 1: 4 of 5. Then x0 = 1: 4 of 4; x0 = 0: 0 of 1.
    rows = [((0, 0), 0)] * 4 + [((1, 0), 0)] * 2 + [((0, 1), 0)] + [((1, 1), 1)] * 4
    x, y = np.array([r for r, _ in rows], dtype=float), np.array([label for _, label in rows])
    forest = RandomForestClassifier(
        n_estimators=1, max_depth=2, bootstrap=False, max_features=None, random_state=0
    ).fit(x, y)
    effects = _path_effects(forest, np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]))
    np.testing.assert_allclose(effects, [[1.0 - 0.8, 0.8 - 4 / 11], [0.0 - 0.8, 0.8 - 4 / 11], [0.0, 0.0 - 4 / 11]])


def test_expected_calibration_error_measures_the_gap_between_score_and_rate():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    assert expected_calibration_error(rng.random(20000) < p, p) < 0.01
    assert expected_calibration_error(np.r_[np.ones(200), np.zeros(800)], np.full(1000, 0.5)) == pytest.approx(0.3)


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_a_calibrator_turns_distorted_scores_back_into_probabilities(method):
    rng = np.random.default_rng(1)
    truth = rng.beta(1, 4, 20000)
    y = rng.random(20000) < truth
    distorted = truth**0.3  # ranks right, reads far too high, as a class-weighted model's do
    calibrator = fit_calibrator(method, distorted[:10000], y[:10000])
    calibrated = calibrate(calibrator, method, distorted[10000:])
    assert expected_calibration_error(y[10000:], distorted[10000:]) > 0.25
    assert expected_calibration_error(y[10000:], calibrated) < 0.02
    assert roc_auc_score(y[10000:], calibrated) == pytest.approx(roc_auc_score(y[10000:], distorted[10000:]), abs=0.01)


def test_trained_scores_are_probabilities_out_of_time():
    back, y_back = cohort(1, n=3000, as_of="2026-08-01")
    train, y_train = cohort(2, n=3000, as_of="2026-09-01")
    result = train_propensity(back, y_back, train, y_train, PropensityConfig(max_train_rows=5000))
    assert set(result.calibration) == {"isotonic", "sigmoid"}
    assert result.calibration_method == min(result.calibration, key=lambda m: result.calibration[m].brier)
    fresh, y_fresh = cohort(3, n=6000, as_of="2026-10-01")
    p = score(result.model, fresh)
    assert expected_calibration_error(y_fresh, p) < 0.03
    assert p.mean() == pytest.approx(y_fresh.mean(), abs=0.02)


def test_the_bg_nbd_step_turns_purchase_histories_into_features():
    from tests.ml.btyd_simulation import simulate

    def frame(seed: int) -> tuple[pd.DataFrame, pd.Series]:
        people = simulate(2500, seed=seed)
        out = pd.DataFrame(
            {
                "person_id": people["person_id"],
                "as_of": pd.Timestamp("2026-09-01"),
                "btyd_frequency": people["frequency"],
                "btyd_recency_days": people["recency"],
                "btyd_age_days": people["T"],
                "noise": np.random.default_rng(seed).normal(size=len(people)),
            }
        )
        return out, people["holdout_purchases"] > 0

    (back, y_back), (train, y_train), (fresh, y_fresh) = frame(11), frame(12), frame(13)
    result = train_propensity(
        back, y_back, train, y_train, PropensityConfig(window_days=30, candidates=("logistic_regression",))
    )
    assert "btyd" in result.model.pipeline.named_steps
    auc = roc_auc_score(y_fresh, score(result.model, fresh))
    assert auc > 0.75  # the raw BTYD columns are not features: only BG/NBD's outputs carry the signal
    top = {t["feature"] for row in top_contributions(result.model, fresh.head(200)) for t in row}
    assert top & {"bgnbd_expected_purchases", "bgnbd_p_alive"}
    assert not top & {"btyd_frequency", "btyd_recency_days", "btyd_age_days"}
