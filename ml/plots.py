"""Figures logged with MLflow runs (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def elbow(elbow: pd.DataFrame, chosen_k: int | None):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(elbow["k"], elbow["inertia"], marker="o")
    if chosen_k in set(elbow["k"]):
        ax.axvline(chosen_k, color="grey", linestyle="--", label=f"chosen k={chosen_k}")
        ax.legend()
    ax.set(xlabel="k", ylabel="KMeans inertia", title="Elbow curve")
    fig.tight_layout()
    return fig


def z_score_heatmap(z: pd.DataFrame, names: dict[int, str]):
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * z.shape[1] + 3), 0.5 * len(z) + 2))
    im = ax.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_yticks(range(len(z)), [f"{i}: {names.get(int(i), i)}" for i in z.index])
    ax.set_xticks(range(z.shape[1]), [c.removesuffix("_log1p_capped") for c in z.columns], rotation=70, ha="right")
    fig.colorbar(im, ax=ax, label="z-score vs all persons")
    ax.set_title("Cluster profiles")
    fig.tight_layout()
    return fig


def calibration(curve: pd.DataFrame, title: str):
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    ax.plot(curve["mean_predicted"], curve["observed_rate"], marker="o", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed purchase rate", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def confusion(counts: dict[str, int], threshold: float):
    fig, ax = plt.subplots(figsize=(4, 3.5))
    grid = [[counts["true_negative"], counts["false_positive"]], [counts["false_negative"], counts["true_positive"]]]
    ax.imshow(grid, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{grid[i][j]:,}", ha="center", va="center")
    ax.set_xticks([0, 1], ["predicted no", "predicted yes"])
    ax.set_yticks([0, 1], ["actual no", "actual yes"])
    ax.set_title(f"Confusion at threshold {threshold:.3f}")
    fig.tight_layout()
    return fig


def predicted_by_decile(by_decile: pd.DataFrame, title: str):
    """Mean predicted against mean actual per decile of the prediction (1 = highest)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(by_decile["decile"] - 0.2, by_decile["predicted"], width=0.4, label="predicted")
    ax.bar(by_decile["decile"] + 0.2, by_decile["actual"], width=0.4, label="actual")
    ax.set(xlabel="decile of predicted purchases", ylabel="purchase days per buyer", title=title)
    ax.set_xticks(by_decile["decile"])
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
