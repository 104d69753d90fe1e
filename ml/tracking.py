"""MLflow runs, the model registry, and champion/challenger promotion.

Every trained model is registered and gets the alias `challenger`. It becomes `champion` only when
it passes the policy's minimums and beats the current champion, measured on the same data, by the
policy's margin. Scoring always loads `models:/<name>@champion`. Aliases, never stages.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

CHAMPION, CHALLENGER = "champion", "challenger"
REQUIREMENTS = ("scikit-learn", "pandas", "numpy", "scipy", "skops", "pymc-marketing")
# Models are saved with skops, which loads only allow-listed types. We trust the types our own
# package and scikit-learn put into models we trained ourselves, and nothing else.
TRUSTED_MODULES = ("ml.", "sklearn.")


@dataclass(frozen=True)
class PromotionPolicy:
    metric: str
    margin: float = 0.0
    minimums: dict[str, float] = field(default_factory=dict)
    lower_is_better: bool = False  # an error (MAE) rather than a score

    def beats(self, challenger: float, champion: float) -> bool:
        if self.lower_is_better:
            return challenger <= champion - self.margin
        return challenger >= champion + self.margin


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_version: str
    challenger_metric: float
    champion_version: str | None = None
    champion_metric: float | None = None


def decide(
    policy: PromotionPolicy,
    challenger: dict[str, float],
    champion_metric: float | None,
    champion_version: str | None,
    challenger_version: str,
    champion_flag: str | None = None,
) -> PromotionDecision:
    """Promote when every minimum holds and the challenger beats the champion by the margin, or
    replaces a champion flagged as trained on data that held an erased person (`champion_flag`)."""
    value = challenger[policy.metric]

    def made(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promoted, reason, challenger_version, value, champion_version, champion_metric)

    failed = [
        f"{m} {challenger.get(m, float('nan')):.4f} < minimum {floor}"
        for m, floor in policy.minimums.items()
        if not challenger.get(m, float("nan")) >= floor
    ]
    if failed:
        return made(False, "Refused: " + "; ".join(failed) + ".")
    if champion_version is None:
        return made(True, f"Promoted: no champion yet, and {policy.metric} {value:.4f} passes every minimum.")
    if champion_flag:
        return made(
            True,
            f"Promoted: champion v{champion_version} was trained on data that held an erased person "
            f"({champion_flag}); {policy.metric} {value:.4f} passes every minimum.",
        )
    if champion_metric is None or math.isnan(champion_metric):
        return made(
            True,
            f"Promoted: champion v{champion_version} cannot score the current features "
            f"(schema changed); {policy.metric} {value:.4f} passes every minimum.",
        )
    if policy.beats(value, champion_metric):
        return made(
            True,
            f"Promoted: {policy.metric} {value:.4f} beats champion v{champion_version} "
            f"({champion_metric:.4f}) by at least the margin {policy.margin}.",
        )
    return made(
        False,
        f"Refused: {policy.metric} {value:.4f} does not beat champion v{champion_version} "
        f"({champion_metric:.4f}) by the margin {policy.margin}.",
    )


def ensure_store(tracking_uri: str) -> None:
    """Create a missing SQLite tracking store whole or not at all. MLflow builds a new store by running
    its schema migrations one by one; a process killed among them leaves a store that no later
    process can open ("table _alembic_tmp_experiments already exists"). So the store is built in a
    temporary file and linked into place, which fails harmlessly when another process got there first."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.building-*"):  # left by a killed process
        with contextlib.suppress(ValueError, OSError):
            if not _alive(int(stale.name.split(".building-")[1].split("-")[0])):  # its journal too
                stale.unlink()
    building = path.with_name(f".{path.name}.building-{os.getpid()}")
    try:
        MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()
        with contextlib.suppress(FileExistsError):
            os.link(building, path)
    finally:
        building.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run(experiment: str, run_name: str, description: str, tags: dict[str, str]):
    """An MLflow run in `experiment`, with a description and tags (engine, as_of, data version, ...)."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(
        run_name=run_name, description=description, tags={k: str(v) for k, v in tags.items() if v is not None}
    ) as active:
        yield active


def pip_requirements() -> list[str]:
    return [f"{p}=={importlib.metadata.version(p)}" for p in REQUIREMENTS]


def trusted_types(model) -> list[str]:
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return [t for t in untrusted if t.startswith(TRUSTED_MODULES)]


EXAMPLE_QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


def synthetic_example(frame: pd.DataFrame) -> pd.DataFrame:
    """Five rows shaped like `frame` that belong to nobody: row i holds each column's i-th quantile
    (numbers, dates) or i-th most frequent value (the rest), so no row is a person's row. MLflow
    stores the input example with the model, and a person's row there would outlive an erasure."""
    out = {}
    for name, column in frame.items():
        values = column.dropna()
        if values.empty:
            out[name] = column.iloc[:0].reindex(range(len(EXAMPLE_QUANTILES)))
        elif pd.api.types.is_bool_dtype(column):
            out[name] = pd.Series([i % 2 == 0 for i in range(len(EXAMPLE_QUANTILES))], dtype=column.dtype)
        elif pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
            q = values.quantile(list(EXAMPLE_QUANTILES)).reset_index(drop=True)
            out[name] = (q.round() if pd.api.types.is_integer_dtype(column) else q).astype(column.dtype)
        else:
            common = values.value_counts().index.tolist()
            out[name] = pd.Series([common[i % len(common)] for i in range(len(EXAMPLE_QUANTILES))], dtype=column.dtype)
    return pd.DataFrame(out, columns=frame.columns)


def log_model(
    model,
    registered_name: str,
    example: pd.DataFrame,
    output,
    *,
    predict_fn: str = "predict",
    code_paths: list[str] | None = None,
) -> str:
    """Log `model` to the active run with signature and input example, register it, return the version.
    `example` is synthetic (synthetic_example): MLflow keeps it beside the model."""
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=registered_name,
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(),
        pyfunc_predict_fn=predict_fn,
        code_paths=code_paths,
        skops_trusted_types=trusted_types(model),
    )
    return str(info.registered_model_version)


# Set on every model version registered before an erasure: its training data may have held the
# person. The next training replaces such a champion whatever the margin (docs/privacy.md).
ERASED_TAG = "tessera.trained_before_erasure"


def flag_versions_before(moment_ms: int, note: str) -> list[str]:
    """Tag every registered model version created before `moment_ms` (epoch milliseconds) that is
    not tagged yet; returns "name vN" of those tagged now."""
    client = MlflowClient()
    flagged = []
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            if version.creation_timestamp <= moment_ms and ERASED_TAG not in (version.tags or {}):
                client.set_model_version_tag(model.name, version.version, ERASED_TAG, note)
                flagged.append(f"{model.name} v{version.version}")
    return flagged


def erasure_flag(version) -> str | None:
    """The erasure note on a model version, if it was trained before an erasure."""
    return (version.tags or {}).get(ERASED_TAG) if version is not None else None


def champion(registered_name: str):
    """(model version, loaded sklearn model) of the current champion, or (None, None)."""
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(registered_name, CHAMPION)
    except MlflowException:
        return None, None
    return version, mlflow.sklearn.load_model(f"models:/{registered_name}@{CHAMPION}")


def apply(registered_name: str, decision: PromotionDecision) -> None:
    """Move the aliases, and record the decision on the model version and the active run."""
    client = MlflowClient()
    client.set_registered_model_alias(registered_name, CHALLENGER, decision.challenger_version)
    if decision.promoted:
        client.set_registered_model_alias(registered_name, CHAMPION, decision.challenger_version)
    client.update_model_version(registered_name, decision.challenger_version, description=decision.reason)
    client.set_model_version_tag(
        registered_name, decision.challenger_version, "promotion", "champion" if decision.promoted else "refused"
    )
    mlflow.set_tags(
        {"promotion.decision": "promoted" if decision.promoted else "refused", "promotion.reason": decision.reason}
    )
    mlflow.log_metric("promoted", 1.0 if decision.promoted else 0.0)


def describe(experiment: str, registered_name: str, purpose: str, policy: PromotionPolicy) -> None:
    """What the experiment and the registered model are for, and the promotion rule, where an
    analyst reads them in the MLflow UI (the experiment's note, the model's description)."""
    minimums = ", ".join(f"{m} at least {v}" for m, v in policy.minimums.items())
    direction = "lower" if policy.lower_is_better else "higher"
    text = (
        f"{purpose}\n\nPromotion: a new version gets the alias `{CHALLENGER}`; it becomes `{CHAMPION}` when "
        f"{minimums or 'it is valid'} and its {policy.metric} ({direction} is better) beats the champion's by at "
        f"least {policy.margin} on the same data. Each version's description says why it was promoted or refused."
    )
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    client.set_experiment_tag(experiment_id, "mlflow.note.content", text)
    client.update_registered_model(registered_name, description=text)
