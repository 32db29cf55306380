"""Pictures: the clip × caption distance matrix with the soft alignment drawn over it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .fileio import atomic_path


def save_figure_atomic(figure, path: str, dpi: int = 120) -> str:
    """Save a matplotlib figure as PNG through a temp file in the target folder."""
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


def plot_alignment(distance: np.ndarray, alignment: np.ndarray, row_labels: Sequence[str],
                   col_labels: Sequence[str], path: str, title: str = "") -> str:
    """``distance [L, M]`` as a grey heat map (dark = close), ``alignment [L, M]`` (expected alignment, 0..1)
    as red discs whose area follows the probability mass.  Rows are captions, columns clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    distance, alignment = np.asarray(distance, dtype=float), np.asarray(alignment, dtype=float)
    if distance.shape != alignment.shape or distance.ndim != 2:
        raise ValueError(f"distance {distance.shape} and alignment {alignment.shape} must be the same [L, M]")
    rows, cols = distance.shape
    figure, axis = plt.subplots(figsize=(2 + 0.45 * cols, 1 + 0.4 * rows))
    image = axis.imshow(distance, cmap="Greys_r", aspect="auto")
    figure.colorbar(image, ax=axis, label="1 - cos(caption, clip)")
    ys, xs = np.nonzero(alignment > 1e-3)
    axis.scatter(xs, ys, s=300 * alignment[ys, xs], color="red", alpha=0.75, label="expected alignment")
    axis.set_yticks(range(rows), [str(label)[:48] for label in row_labels], fontsize=7)
    axis.set_xticks(range(cols), list(col_labels), fontsize=7, rotation=60)
    axis.set_ylabel("caption")
    axis.set_xlabel("clip (seconds)")
    axis.set_title(title, fontsize=9)
    axis.legend(loc="upper right", fontsize=7)
    try:
        return save_figure_atomic(figure, path)
    finally:
        plt.close(figure)
