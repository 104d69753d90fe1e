"""Lifetime value (ml.clv) on customers simulated from BG/NBD and Gamma-Gamma with known parameters."""

import numpy as np
import pytest

from ml import clv
from tests.ml.btyd_simulation import SPEND, TRUTH, simulate


@pytest.fixture(scope="module")
def customers():
    return simulate(4000, seed=7)


@pytest.fixture(scope="module")
def model(customers):
    return clv.ClvModel().fit(customers)  # Pareto/NBD: not the process that made the data


def test_bg_nbd_recovers_the_parameters_that_made_the_data(customers):
    params = clv.fit_bg_nbd(customers)
    # Purchase rate r / alpha and the dropout a / (a + b) are what the data pins down best.
    assert params["r"] / params["alpha"] == pytest.approx(TRUTH["r"] / TRUTH["alpha"], rel=0.2)
    assert params["a"] / (params["a"] + params["b"]) == pytest.approx(TRUTH["a"] / (TRUTH["a"] + TRUTH["b"]), rel=0.3)


def test_gamma_gamma_recovers_the_mean_spend(model):
    spend = model.gamma_gamma["v"] * model.gamma_gamma["p"] / (model.gamma_gamma["q"] - 1)
    assert spend == pytest.approx(SPEND["v"] * SPEND["p"] / (SPEND["q"] - 1), rel=0.15)


def test_the_holdout_is_predicted_in_total_and_ranked_by_decile(customers, model):
    check = clv.validate(model, customers, 30, customers["holdout_purchases"], customers["holdout_value"])
    assert check.predicted_total == pytest.approx(check.actual_total, rel=0.12)
    # Decile 1 (highest predicted) buys most; the mean of each decile is close to what it did.
    by_decile = check.by_decile.set_index("decile")
    assert by_decile.loc[1, "actual"] > 3 * by_decile.loc[10, "actual"]
    assert (abs(by_decile["predicted"] - by_decile["actual"]) < 0.25).all()
    assert check.purchases_auc > 0.75 and check.p_alive_auc > 0.6
    naive = np.mean(np.abs(customers["holdout_purchases"] - customers["holdout_purchases"].mean()))
    assert check.mae_purchases < naive  # better than predicting everyone the average


def test_scores_follow_the_history(model):
    frame = simulate(1, seed=1).iloc[[0, 0, 0, 0]].reset_index(drop=True)
    frame[["frequency", "recency", "T", "monetary_value"]] = [
        [0, 0, 100, 0.0],  # one purchase, 100 days ago
        [6, 150, 160, 40.0],  # bought 10 days ago
        [6, 20, 160, 40.0],  # same count, silent for 140 days
        [6, 150, 160, 80.0],
    ]  # as the second, spending double
    out = model.predict(frame)
    assert out["p_alive"].iloc[0] < 0.9  # a one-time buyer silent for 100 days may have left (BG/NBD would say 1)
    assert out["p_alive"].iloc[1] > 0.8 > 0.2 > out["p_alive"].iloc[2]
    assert out["expected_purchases_30d"].iloc[1] > 5 * out["expected_purchases_30d"].iloc[2]
    assert (out["expected_purchases_horizon"] > out["expected_purchases_30d"]).all()
    assert out["expected_value_horizon"].iloc[3] > 1.5 * out["expected_value_horizon"].iloc[1]


def test_too_few_repeat_buyers_is_a_reason_not_a_crash():
    few = simulate(200, seed=3)
    few.loc[few.index[10:], ["frequency", "recency"]] = 0
    with pytest.raises(
        clv.NotEnoughBuyersError, match=r"only \d persons bought more than once \(pareto_nbd needs 20\)"
    ):
        clv.ClvModel().fit(few)
