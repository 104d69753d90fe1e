"""Small matplotlib figures for Dagster metadata and the segment report, as inline PNG.

Dagster renders markdown metadata with images, and the report page must open without a server,
so figures travel as base64 data URIs rather than files.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def data_uri(fig) -> str:
    """The figure as a `data:image/png;base64,...` URI; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def markdown_image(fig, alt: str) -> str:
    return f"![{alt}]({data_uri(fig)})"


def histogram(counts: pd.Series, title: str, xlabel: str, log_y: bool = True):
    """Bars of `counts` (index: value, values: how many)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(counts.index.astype(str), counts.to_numpy(), color="#4477aa")
    if log_y:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel="persons")
    ax.tick_params(axis="x", labelrotation=0, labelsize=8)
    fig.tight_layout()
    return fig


def lines(frame: pd.DataFrame, title: str, ylabel: str, max_series: int = 12):
    """One line per column of `frame` (index: x). Beyond `max_series`, the largest are kept."""
    if len(frame) < 2:  # one run so far: its values as bars, not points on an empty time axis
        last = frame.iloc[-1].dropna().sort_values() if len(frame) else pd.Series(dtype=float)
        fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(last) + 1.2)))
        ax.barh([str(i) for i in last.index], last.to_numpy(), color="#4477aa")
        ax.set(title=f"{title} (one run so far)", xlabel=ylabel)
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        return fig
    if frame.shape[1] > max_series:
        frame = frame[frame.iloc[-1].sort_values(ascending=False).index[:max_series]]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for column in frame.columns:
        ax.plot(frame.index, frame[column], marker="o", markersize=3, label=str(column))
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def heatmap(
    frame: pd.DataFrame,
    title: str,
    cmap: str = "Blues",
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "",
    annotate: bool = False,
):
    fig, ax = plt.subplots(figsize=(max(5.0, 0.42 * frame.shape[1] + 3), max(3.0, 0.36 * frame.shape[0] + 1.6)))
    im = ax.imshow(frame.to_numpy(dtype=float), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_yticks(range(frame.shape[0]), [str(i) for i in frame.index], fontsize=8)
    ax.set_xticks(range(frame.shape[1]), [str(c) for c in frame.columns], rotation=70, ha="right", fontsize=8)
    if annotate and frame.size <= 400:
        for (i, j), value in pd.DataFrame(frame.to_numpy(dtype=float)).stack().items():
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def bars(values: pd.Series, title: str, xlabel: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([str(i) for i in values.index], values.to_numpy(), color="#66aa55")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.tight_layout()
    return fig
