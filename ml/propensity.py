"""Purchase propensity: will a person complete an order in the label window after a date?

Time-aware validation, with no leakage by construction:

- backtest set: features as of cutoff - window, labels from the window ending at the cutoff;
- training set: features as of the cutoff (scoring date - window), labels from the window
  ending at the scoring date;
- scoring set: features as of the scoring date (no labels yet).

Every candidate (logistic regression, random forest, histogram gradient boosting) is fitted on the
backtest set and evaluated on the training set, which lies entirely later in time. The best by
ROC-AUC is refitted on the training set, the most recent labelled data, and that model scores.

Where the frames carry BTYD summaries (ml.features.BTYD_COLUMNS), each pipeline first fits BG/NBD
(ml.clv) on its training rows and adds its expected purchases in the window and P(alive) as
features: what the 2005 model knows, beside what it cannot see.

Scores are probabilities: the chosen candidate's out-of-time scores on the training set fit a
calibrator (isotonic or sigmoid, whichever has the lower Brier score on held-out persons of
that set), and the refitted model's scores pass through it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml import clv
from ml.features import BTYD_COLUMNS, categorical_columns, numeric_columns

CANDIDATES = ("logistic_regression", "random_forest", "hist_gradient_boosting")
CALIBRATION_METHODS = ("isotonic", "sigmoid")
BG_NBD_FEATURES = ("bgnbd_expected_purchases", "bgnbd_p_alive")
GROUP_COLUMNS = ("primary_device_type", "country")


@dataclass(frozen=True)
class PropensityConfig:
    model_name: str = "purchase_30d"
    window_days: int = 30  # the label window: BG/NBD's expected purchases are counted over it
    candidates: tuple[str, ...] = CANDIDATES
    calibration_methods: tuple[str, ...] = CALIBRATION_METHODS
    max_train_rows: int = 200_000
    calibration_bins: int = 10
    min_group_size: int = 50  # per-group AUC only for groups this large with both classes
    seed: int = 42

    def __post_init__(self):
        unknown = set(self.candidates) - set(CANDIDATES)
        if unknown:
            raise ValueError(f"Unknown propensity models {sorted(unknown)}; choose from {list(CANDIDATES)}.")
        unknown = set(self.calibration_methods) - set(CALIBRATION_METHODS)
        if unknown or not self.calibration_methods:
            raise ValueError(f"Unknown calibration methods {sorted(unknown)}; choose from {list(CALIBRATION_METHODS)}.")


@dataclass
class Evaluation:
    roc_auc: float
    pr_auc: float
    brier: float
    ece: float  # expected calibration error: mean |predicted - observed| over equal-width bins, by rows
    threshold: float
    confusion: dict[str, int]
    calibration: pd.DataFrame  # mean_predicted, observed_rate
    by_group: pd.DataFrame  # group_column, group, rows, positives, roc_auc
    positives: int
    rows: int

    def metrics(self, prefix: str = "") -> dict[str, float]:
        out = {
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "brier": self.brier,
            "ece": self.ece,
            "threshold": self.threshold,
            "positive_rate": self.positives / self.rows if self.rows else float("nan"),
        }
        if len(self.by_group):
            out["group_roc_auc_min"] = float(self.by_group["roc_auc"].min())
            out["group_roc_auc_max"] = float(self.by_group["roc_auc"].max())
        return {f"{prefix}{k}": float(v) for k, v in out.items()}


@dataclass
class PropensityResult:
    model: CalibratedPropensity  # refitted on the training set, calibrated out of time
    chosen: str
    validation: dict[str, Evaluation]  # per candidate: fitted on backtest, scored on training set (uncalibrated)
    calibration: dict[str, Evaluation]  # per method: the chosen candidate's scores, calibrated on held-out persons
    calibration_method: str
    features: list[str] = field(default_factory=list)

    @property
    def chosen_validation(self) -> Evaluation:
        return self.validation[self.chosen]


def _estimator(name: str, seed: int):
    if name == "logistic_regression":
        return LogisticRegression(max_iter=2000, C=1.0)
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=300, min_samples_leaf=20, max_features="sqrt", n_jobs=-1, random_state=seed
        )
    # Small, regularised trees for a fixed number of rounds: with 31 leaves and early stopping it
    # overfitted a few thousand real customers (benchmarks/btyd_propensity.py).
    return HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=8,
        min_samples_leaf=100,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )


class BgNbdFeatures(BaseEstimator, TransformerMixin):
    """Replaces the BTYD summaries with BG/NBD's expected purchases over `days` and P(alive), from
    BG/NBD fitted on the rows it is fitted on. With too few repeat buyers both are 0."""

    def __init__(self, days: int = 30):
        self.days = days

    def fit(self, X: pd.DataFrame, y=None):
        try:
            self.params_ = clv.fit_bg_nbd(_btyd_summary(X))
        except clv.NotEnoughBuyersError:
            self.params_ = None
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.drop(columns=list(BTYD_COLUMNS))
        summary = _btyd_summary(X)
        if self.params_ is None:
            out[list(BG_NBD_FEATURES)] = 0.0
            return out
        alive, (expected,) = clv.purchase_outlook(self.params_, summary, (self.days,))
        out[BG_NBD_FEATURES[0]], out[BG_NBD_FEATURES[1]] = expected, alive
        return out


def _btyd_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frequency": frame["btyd_frequency"],
            "recency": frame["btyd_recency_days"],
            "T": frame["btyd_age_days"],
            "monetary_value": 0.0,
        },
        index=frame.index,
    )


def build_pipeline(
    name: str,
    numeric: list[str],
    categorical: list[str],
    seed: int,
    window_days: int | None = None,
    memory: joblib.Memory | None = None,
) -> Pipeline:
    """The candidate `name` behind its encoders; with `window_days`, behind a BG/NBD step too
    (the frames then carry BTYD_COLUMNS, which the step turns into BG_NBD_FEATURES). `memory`:
    scikit-learn's cache of fitted steps, so that candidates fitted on the same rows fit BG/NBD once."""
    if window_days is not None:
        numeric = [*numeric, *BG_NBD_FEATURES]
    pre = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            (
                "categorical",
                OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, sparse_output=False),
                categorical,
            ),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    steps = [("btyd", BgNbdFeatures(window_days))] if window_days is not None else []
    return Pipeline([*steps, ("features", pre), ("model", _estimator(name, seed))], memory=memory)


class CalibratedPropensity(BaseEstimator, ClassifierMixin):
    """A fitted propensity pipeline whose scores pass through a calibrator fitted out of time:
    isotonic regression on the score, or a logistic regression on its log-odds (Platt).

    `typical`: the training set's typical row ({column: value}, see typical_row), against which
    top_contributions explains a score, so that a person's explanation depends on the model and
    the person only, not on who else is scored with them."""

    def __init__(self, pipeline: Pipeline, calibrator, method: str, typical: dict | None = None):
        self.pipeline = pipeline
        self.calibrator = calibrator
        self.method = method
        self.typical = typical

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = calibrate(self.calibrator, self.method, self.pipeline.predict_proba(X)[:, 1])
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).reshape(-1, 1)


def fit_calibrator(method: str, raw: np.ndarray, y: np.ndarray):
    if method == "isotonic":
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return LogisticRegression(C=1e6, max_iter=1000).fit(_log_odds(raw), y)


def calibrate(calibrator, method: str, raw: np.ndarray) -> np.ndarray:
    if method == "isotonic":
        return np.clip(calibrator.predict(raw), 0.0, 1.0)
    return calibrator.predict_proba(_log_odds(raw))[:, 1]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |mean predicted - observed rate| over `bins` equal-width bins of the score, weighted by rows."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(index):
        inside = index == b
        total += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    return float(total / len(y)) if len(y) else float("nan")


def _cross_calibrated(method: str, raw: np.ndarray, y: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """Each half's scores calibrated by a calibrator fitted on the other half (persons held out)."""
    out = np.empty(len(raw))
    for half in (0, 1):
        fit, apply = halves != half, halves == half
        if len(np.unique(y[fit])) < 2:
            out[apply] = y[fit].mean() if fit.any() else raw[apply]
            continue
        out[apply] = calibrate(fit_calibrator(method, raw[fit], y[fit]), method, raw[apply])
    return out


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a propensity pipeline reads, typed for a stable MLflow signature."""
    numeric, categorical = numeric_columns(frame), categorical_columns(frame)
    btyd = list(BTYD_COLUMNS) if set(BTYD_COLUMNS) <= set(frame.columns) else []
    out = frame[numeric + btyd].astype("float64").fillna(0.0)
    for col in categorical:
        out[col] = frame[col].astype("object").where(frame[col].notna(), "unknown").astype(str)
    return out


def _best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    order = np.argsort(-p)
    tp = np.cumsum(y[order])
    fp = np.cumsum(1 - y[order])
    f1 = 2 * tp / (tp + fp + y.sum())
    return float(p[order][int(np.argmax(f1))])


def evaluate(
    y: np.ndarray, p: np.ndarray, groups: pd.DataFrame, config: PropensityConfig, threshold: float | None = None
) -> Evaluation:
    """Discrimination, calibration, a confusion matrix at the F1-best threshold, and AUC per group."""
    y = np.asarray(y).astype(int)
    threshold = _best_f1_threshold(y, p) if threshold is None else threshold
    tn, fp, fn, tp = confusion_matrix(y, p >= threshold, labels=[0, 1]).ravel()
    observed, predicted = calibration_curve(y, p, n_bins=config.calibration_bins, strategy="quantile")
    rows = []
    for col in groups.columns:
        for value, idx in groups.groupby(col, dropna=False).indices.items():
            yy = y[idx]
            if len(idx) >= config.min_group_size and 0 < yy.sum() < len(yy):
                rows.append(
                    {
                        "group_column": col,
                        "group": str(value),
                        "rows": len(idx),
                        "positives": int(yy.sum()),
                        "roc_auc": float(roc_auc_score(yy, p[idx])),
                    }
                )
    return Evaluation(
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p, config.calibration_bins),
        threshold=threshold,
        confusion={
            "true_negative": int(tn),
            "false_positive": int(fp),
            "false_negative": int(fn),
            "true_positive": int(tp),
        },
        calibration=pd.DataFrame({"mean_predicted": predicted, "observed_rate": observed}),
        by_group=pd.DataFrame(rows, columns=["group_column", "group", "rows", "positives", "roc_auc"]),
        positives=int(y.sum()),
        rows=len(y),
    )


class OneClassLabelsError(ValueError):
    """The labels hold one class only (or none): no propensity model can be fitted on them."""


def _check_labels(name: str, y: pd.Series) -> None:
    if y.empty:
        raise OneClassLabelsError(
            f"The {name} set has no persons: nobody was seen by its cutoff date. "
            "Use more history or a shorter label window."
        )
    if y.nunique() < 2:
        raise OneClassLabelsError(
            f"The {name} set has only {'positive' if y.iloc[0] else 'negative'} labels "
            f"({len(y)} persons); a propensity model needs both. Use more history or a longer "
            "window."
        )


def _cap(frame: pd.DataFrame, y: pd.Series, rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    if len(frame) <= rows:
        return frame, y
    idx = frame.sample(n=rows, random_state=seed).index
    return frame.loc[idx], y.loc[idx]


def train_propensity(
    backtest: pd.DataFrame,
    backtest_labels: pd.Series,
    training: pd.DataFrame,
    training_labels: pd.Series,
    config: PropensityConfig = PropensityConfig(),
) -> PropensityResult:
    """Choose a model out of time on (backtest -> training), calibrate its out-of-time scores,
    then refit it on the training set behind that calibrator.

    Frames are model-ready features (one row per person), with BTYD_COLUMNS where orders are known;
    labels are booleans aligned by index.
    """
    _check_labels("backtest", backtest_labels)
    _check_labels("training", training_labels)
    x_back, x_train = model_inputs(backtest), model_inputs(training)
    numeric = numeric_columns(x_train)
    categorical = categorical_columns(x_train)
    window = config.window_days if set(BTYD_COLUMNS) <= set(x_train.columns) else None
    x_back, y_back = _cap(x_back, backtest_labels.astype(int), config.max_train_rows, config.seed)
    y_train = training_labels.astype(int).to_numpy()
    groups = x_train[[c for c in GROUP_COLUMNS if c in x_train.columns]]
    validation, raw = {}, {}
    with tempfile.TemporaryDirectory(prefix="tessera-propensity-") as cache:
        memory = joblib.Memory(cache, verbose=0)
        for name in config.candidates:
            pipe = build_pipeline(name, numeric, categorical, config.seed, window, memory).fit(x_back, y_back)
            raw[name] = pipe.predict_proba(x_train)[:, 1]
            validation[name] = evaluate(y_train, raw[name], groups, config)
    chosen = max(validation, key=lambda n: validation[n].roc_auc)
    # Calibration methods compete on held-out persons: each half of the training set is calibrated
    # by the other half's fit. The winner is then fitted on all of it.
    persons = training["person_id"] if "person_id" in training else pd.Series(training.index.astype(str))
    halves = pd.util.hash_pandas_object(persons.astype(str), index=False).to_numpy() % 2
    calibration = {
        m: evaluate(y_train, _cross_calibrated(m, raw[chosen], y_train, halves), groups, config)
        for m in config.calibration_methods
    }
    # By Brier score, a proper score: isotonic's flat steps tie persons and lose ranking, which ECE alone
    # would not see.
    method = min(calibration, key=lambda m: (calibration[m].brier, calibration[m].ece))
    calibrator = fit_calibrator(method, raw[chosen], y_train)
    x_fit, y_fit = _cap(x_train, training_labels.astype(int), config.max_train_rows, config.seed)
    pipeline = build_pipeline(chosen, numeric, categorical, config.seed, window).fit(x_fit, y_fit)
    typical = {c: v.item() if isinstance(v, np.generic) else v for c, v in typical_row(x_train).iloc[0].items()}
    return PropensityResult(
        model=CalibratedPropensity(pipeline, calibrator, method, typical),
        chosen=chosen,
        validation=validation,
        calibration=calibration,
        calibration_method=method,
        features=list(x_train.columns),
    )


def score(model, frame: pd.DataFrame) -> np.ndarray:
    """Probabilities of the positive class for every row of `frame` (model-ready features)."""
    return model.predict_proba(model_inputs(frame))[:, 1]


def typical_row(inputs: pd.DataFrame) -> pd.DataFrame:
    """One row of each column's typical value: the median, or the most frequent category."""
    numeric = set(numeric_columns(inputs)) | set(BTYD_COLUMNS)
    return pd.DataFrame(
        {col: [inputs[col].median() if col in numeric else inputs[col].mode().iat[0]] for col in inputs.columns}
    ).astype(inputs.dtypes.to_dict())


def _encoded_columns(pre: ColumnTransformer, columns: list[str]) -> dict[str, np.ndarray] | None:
    """Per input column, the positions of the encoded columns it produces (scaled numbers map one to
    one; a category's one-hot columns are named <column>_<category>), or None if that is unclear."""
    names = list(pre.get_feature_names_out())
    owners = [max((c for c in columns if n == c or n.startswith(f"{c}_")), key=len, default=None) for n in names]
    if None in owners:
        return None
    return {c: np.array([i for i, owner in enumerate(owners) if owner == c]) for c in columns}


def _node_contributions(tree, positive: int) -> np.ndarray:
    """Per node of a fitted decision tree, the change in the positive share that each encoded column's
    splits made on the way from the root to the node (rows: nodes, columns: encoded columns)."""
    t = tree.tree_
    share = t.value[:, 0, positive] / t.value[:, 0, :].sum(axis=1)
    out = np.zeros((t.node_count, t.n_features))
    parents = np.array([0])
    while len(parents):
        parents = parents[t.children_left[parents] >= 0]  # leaves have no children
        for children in (t.children_left[parents], t.children_right[parents]):
            out[children] = out[parents]
            out[children, t.feature[parents]] += share[children] - share[parents]
        parents = np.concatenate([t.children_left[parents], t.children_right[parents]])
    return out


def _path_effects(forest, encoded: np.ndarray) -> np.ndarray:
    """Per row and encoded column of a random forest, how much the splits on that column moved the row's
    score away from the forest's average (path attribution, after Saabas): along the row's path in each
    tree, the change in the positive share at every split goes to the split's column. The effects add up
    to the score minus the average of the trees' root shares. It costs about one prediction; occluding
    each column instead would run every tree again per column."""
    leaves = forest.apply(encoded)
    effects = np.zeros(encoded.shape)
    for index, tree in enumerate(forest.estimators_):
        effects += np.take(_node_contributions(tree, positive=1), leaves[:, index], axis=0)
    return effects / len(forest.estimators_)


def _effects(model, inputs: pd.DataFrame, typical: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per input column, the score drop when that column is set to its typical value; for a random
    forest, its path attribution (_path_effects), summed over the column's encoded columns.

    A Tessera pipeline (features step, then an estimator) encodes the rows once: occluding a column
    then sets its encoded columns to the typical row's, and only the estimator runs again. That
    gives the same numbers as re-running the whole pipeline (the encoders work column by column),
    and rows that already hold the typical value are not re-scored. Any other model is re-run whole
    per column."""
    if isinstance(model, CalibratedPropensity):  # a monotone map: it keeps which features raise a score
        model = model.pipeline
    steps = getattr(model, "named_steps", {})
    if "btyd" in steps:  # explain what the estimator reads: BG/NBD's outputs stand for the BTYD summaries
        inputs, typical = steps["btyd"].transform(inputs), steps["btyd"].transform(typical)
        model = Pipeline(model.steps[1:])
        steps = model.named_steps
    pre, estimator = steps.get("features"), steps.get("model")
    positions = _encoded_columns(pre, list(inputs.columns)) if isinstance(pre, ColumnTransformer) else None
    if positions is not None and estimator is not None:
        encoded = np.asarray(pre.transform(inputs), dtype="float64")
        if isinstance(estimator, (RandomForestClassifier, ExtraTreesClassifier)):
            paths = _path_effects(estimator, encoded)
            return {col: paths[:, idx].sum(axis=1) for col, idx in positions.items()}
        typical_encoded = np.asarray(pre.transform(typical), dtype="float64")[0]
        base = estimator.predict_proba(encoded)[:, 1]
        effects = {}
        for col, idx in positions.items():
            # Rows that already hold the typical value do not change: only the others are re-scored.
            changed = np.flatnonzero((encoded[:, idx] != typical_encoded[idx]).any(axis=1))
            occluded = encoded[changed]
            occluded[:, idx] = typical_encoded[idx]
            effects[col] = np.zeros(len(encoded))
            if len(changed):
                effects[col][changed] = base[changed] - estimator.predict_proba(occluded)[:, 1]
        return effects
    base = model.predict_proba(inputs)[:, 1]
    effects = {}
    for col in inputs.columns:
        occluded = inputs.copy()
        occluded[col] = typical[col].iat[0]
        effects[col] = base - model.predict_proba(occluded)[:, 1]
    return effects


def baseline(model, inputs: pd.DataFrame) -> pd.DataFrame:
    """The row a model's scores are explained against: the training set's typical row that the
    model keeps, or (a model trained before it kept one) the typical row of `inputs`."""
    kept = getattr(model, "typical", None)
    if not kept or not set(inputs.columns) <= set(kept):
        return typical_row(inputs)
    return pd.DataFrame({c: [kept[c]] for c in inputs.columns}).astype(inputs.dtypes.to_dict())


def top_contributions(model, frame: pd.DataFrame, n: int = 3) -> list[list[dict]]:
    """Per row, the `n` features that raise its score most. For a random forest, by path attribution:
    what the splits on the feature added to the score along the row's paths. For any other model, by
    occlusion: the score drop when the feature is set to its typical value in the training set
    (median, or most frequent category: see baseline), which explains whichever candidate became
    champion."""
    inputs = model_inputs(frame)
    effects = _effects(model, inputs, baseline(model, inputs))
    names = np.array(list(effects))
    # Rounded before ranking, so that effects equal to the last bit rank by column order.
    values = np.round(np.column_stack(list(effects.values())), 4)
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    return [
        [{"feature": str(names[j]), "contribution": float(values[i, j])} for j in row if values[i, j] > 0]
        for i, row in enumerate(order)
    ]
