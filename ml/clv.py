"""Lifetime value and churn: Pareto/NBD (or BG/NBD) for repeat purchases and P(alive), Gamma-Gamma
for spend.

The models are pymc-marketing's (`ParetoNBDModel`, `BetaGeoModel`, `GammaGammaModel`), fitted by
maximum a posteriori. A fitted model is kept as its population parameters only (four for the
purchase model, three for Gamma-Gamma): nothing about a person is stored, and scoring rebuilds the
library's model over the rows it scores.

Lifetime value uses Pareto/NBD: its customers can leave at any time, so a one-time buyer's P(alive)
falls as the silence grows, where BG/NBD holds it at 1 (and churn segments would never see them).
On CDNOW's 39-week holdout it also predicted the total closer (-7.5% against -14%) at the same MAE
(benchmarks/btyd_propensity.py). The propensity model's feature step uses BG/NBD, the issue's
baseline and half the fitting cost on small data.

Inputs are BTYD summaries, one row per person at a date, in days:
- `frequency`: repeat purchases (distinct purchase days after the first);
- `recency`: days from the first to the last purchase day;
- `T`: days from the first purchase day to the date;
- `monetary_value`: mean value of the repeat purchase days (0 without repeats).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")
# pymc-marketing's class and parameters for each purchase model
PURCHASE_MODELS = {
    "bg_nbd": ("BetaGeoModel", ("r", "alpha", "a", "b")),
    "pareto_nbd": ("ParetoNBDModel", ("r", "alpha", "s", "beta")),
}
GAMMA_GAMMA_PARAMETERS = ("p", "q", "v")
MIN_BUYERS = 20  # with fewer repeat buyers the four purchase-model parameters are not identified


class NotEnoughBuyersError(ValueError):
    """Too few repeat buyers to fit BG/NBD or Gamma-Gamma."""


@contextlib.contextmanager
def _quiet():
    """pymc prints a progress bar and warns about BLAS and sampling; none of it concerns a MAP fit."""
    loggers = [logging.getLogger(n) for n in ("pymc", "pytensor", "pymc_marketing")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _library_frame(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary[list(SUMMARY_COLUMNS)].astype("float64").reset_index(drop=True)
    out.insert(0, "customer_id", np.arange(len(out)))
    # Invalid histories cannot reach the likelihood: recency within [0, T], no repeats without recency.
    out["T"] = out["T"].clip(lower=0)
    out["recency"] = out["recency"].clip(lower=0).where(out["frequency"] > 0, 0.0).clip(upper=out["T"])
    out["frequency"] = out["frequency"].clip(lower=0)
    return out


def _posterior(params: dict[str, float]):
    import arviz as az

    return az.from_dict(posterior={k: np.array([[v]]) for k, v in params.items()})


def fit_purchases(summary: pd.DataFrame, kind: str = "bg_nbd") -> dict[str, float]:
    """The MAP parameters of the purchase model `kind` (bg_nbd or pareto_nbd) from BTYD summaries."""
    import pymc_marketing.clv as library

    cls, names = PURCHASE_MODELS[kind]
    data = _library_frame(summary)
    buyers = int((data["frequency"] > 0).sum())
    if buyers < MIN_BUYERS:
        raise NotEnoughBuyersError(f"only {buyers} persons bought more than once ({kind} needs {MIN_BUYERS})")
    with _quiet():
        model = getattr(library, cls)(data=data[["customer_id", "frequency", "recency", "T"]])
        model.fit(method="map", progressbar=False)
    return {k: float(model.fit_result[k].values.ravel()[0]) for k in names}


def fit_bg_nbd(summary: pd.DataFrame) -> dict[str, float]:
    return fit_purchases(summary, "bg_nbd")


def fit_gamma_gamma(summary: pd.DataFrame) -> dict[str, float]:
    """Gamma-Gamma's MAP parameters (p, q, v) from the repeat buyers' mean repeat spend."""
    from pymc_marketing.clv import GammaGammaModel

    data = _library_frame(summary)
    data = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
    if len(data) < MIN_BUYERS:
        raise NotEnoughBuyersError(
            f"only {len(data)} repeat buyers with a positive spend (Gamma-Gamma needs {MIN_BUYERS})"
        )
    with _quiet():
        model = GammaGammaModel(data=data[["customer_id", "frequency", "monetary_value"]])
        model.fit(method="map", progressbar=False)
    return {k: float(model.fit_result[k].values.ravel()[0]) for k in GAMMA_GAMMA_PARAMETERS}


def _kind(params: dict[str, float]) -> str:
    return next(kind for kind, (_, names) in PURCHASE_MODELS.items() if set(names) == set(params))


def _purchase_model(params: dict[str, float], data: pd.DataFrame):
    import pymc_marketing.clv as library

    cls, names = PURCHASE_MODELS[_kind(params)]
    model = getattr(library, cls)(data=data[["customer_id", "frequency", "recency", "T"]])
    model.build_model()  # the predictions read the model's coordinates
    model.fit_result = _posterior({k: params[k] for k in names})
    return model


def purchase_outlook(
    params: dict[str, float], summary: pd.DataFrame, days: tuple[float, ...]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per row of `summary`: the purchase model's probability that the person has not churned, and
    their expected repeat purchase days over each of `days`, from one library model."""
    data = _library_frame(summary)
    if data.empty:
        return np.zeros(0), [np.zeros(0) for _ in days]
    with _quiet():
        model = _purchase_model(params, data)
        alive = np.asarray(model.expected_probability_alive().values).reshape(-1)
        return alive, [np.asarray(model.expected_purchases(future_t=d).values).reshape(-1) for d in days]


def expected_purchases(params: dict[str, float], summary: pd.DataFrame, days: float) -> np.ndarray:
    """The purchase model's expected repeat purchase days in the next `days`, per row of `summary`."""
    return purchase_outlook(params, summary, (days,))[1][0]


def expected_spend(params: dict[str, float], summary: pd.DataFrame) -> np.ndarray:
    """Gamma-Gamma's expected value of each person's future purchase days (the population mean for
    persons with no repeat purchase)."""
    from pymc_marketing.clv import GammaGammaModel

    data = _library_frame(summary)
    if data.empty:
        return np.zeros(0)
    data["monetary_value"] = data["monetary_value"].where(data["frequency"] > 0, 0.0).clip(lower=0)
    with _quiet():
        model = GammaGammaModel(
            data=data[["customer_id", "frequency", "monetary_value"]].assign(
                monetary_value=lambda d: d["monetary_value"].where(d["monetary_value"] > 0, 1.0)
            )
        )
        model.fit_result = _posterior({k: params[k] for k in GAMMA_GAMMA_PARAMETERS})
        return np.asarray(model.expected_customer_spend(data=data).values).reshape(-1)


@dataclass(frozen=True)
class ClvConfig:
    horizon_days: int = 365  # expected purchases and value over this horizon (the mart's "12m" columns)
    deciles: int = 10


class ClvModel(BaseEstimator):
    """Purchase-model + Gamma-Gamma parameters, scoring BTYD summaries: P(alive), expected purchases
    over 30 days and over the horizon, and the expected value over the horizon (undiscounted)."""

    def __init__(
        self,
        kind: str = "pareto_nbd",
        purchases: dict | None = None,
        gamma_gamma: dict | None = None,
        horizon_days: int = 365,
    ):
        self.kind = kind
        self.purchases = purchases
        self.gamma_gamma = gamma_gamma
        self.horizon_days = horizon_days

    def fit(self, summary: pd.DataFrame, y=None):
        self.purchases = fit_purchases(summary, self.kind)
        self.gamma_gamma = fit_gamma_gamma(summary)
        return self

    def predict(self, summary: pd.DataFrame) -> pd.DataFrame:
        alive, (month, horizon) = purchase_outlook(self.purchases, summary, (30, self.horizon_days))
        # The purchase model counts repeat purchase days; each expected one is worth the Gamma-Gamma spend.
        return pd.DataFrame(
            {
                "p_alive": alive,
                "expected_purchases_30d": month,
                "expected_purchases_horizon": horizon,
                "expected_value_horizon": horizon * expected_spend(self.gamma_gamma, summary),
            },
            index=summary.index,
        )


@dataclass
class ClvValidation:
    """Predicted against actual purchase days (and value) in the holdout, per person."""

    mae_purchases: float
    mae_value: float
    predicted_total: float
    actual_total: float
    purchases_auc: float  # how well expected purchases rank who bought in the holdout
    p_alive_auc: float  # the same for P(alive)
    by_decile: pd.DataFrame  # decile (1 = highest predicted), persons, predicted, actual (means)

    def metrics(self) -> dict[str, float]:
        return {
            "holdout_mae_purchases": self.mae_purchases,
            "holdout_mae_value": self.mae_value,
            "holdout_predicted_purchases": self.predicted_total,
            "holdout_actual_purchases": self.actual_total,
            "holdout_purchases_roc_auc": self.purchases_auc,
            "holdout_p_alive_roc_auc": self.p_alive_auc,
        }


def validate(
    model: ClvModel,
    calibration: pd.DataFrame,
    holdout_days: int,
    actual_purchases: pd.Series,
    actual_value: pd.Series,
    deciles: int = 10,
) -> ClvValidation:
    """Score `calibration` summaries (at the start of the holdout) for `holdout_days`, against what
    each person did in the holdout."""
    from sklearn.metrics import roc_auc_score

    alive, (predicted,) = purchase_outlook(model.purchases, calibration, (holdout_days,))
    value = predicted * expected_spend(model.gamma_gamma, calibration)
    actual = actual_purchases.to_numpy(dtype="float64")
    spent = actual_value.to_numpy(dtype="float64")
    bought = actual > 0

    def auc(scores: np.ndarray) -> float:
        return float(roc_auc_score(bought, scores)) if 0 < bought.sum() < len(bought) else float("nan")

    rank = pd.Series(predicted).rank(method="first", ascending=False)
    decile = np.ceil(rank * deciles / max(len(rank), 1)).astype(int)
    by_decile = (
        pd.DataFrame({"decile": decile, "predicted": predicted, "actual": actual})
        .groupby("decile")
        .agg(persons=("actual", "size"), predicted=("predicted", "mean"), actual=("actual", "mean"))
        .reset_index()
    )
    return ClvValidation(
        mae_purchases=float(np.mean(np.abs(predicted - actual))),
        mae_value=float(np.mean(np.abs(value - spent))),
        predicted_total=float(predicted.sum()),
        actual_total=float(actual.sum()),
        purchases_auc=auc(predicted),
        p_alive_auc=auc(alive),
        by_decile=by_decile,
    )
