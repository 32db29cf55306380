"""Picture of one full-video retrieval query: the top-ranked videos and the hard DTW path of the best match.

Left panel: the ``top`` videos ranked for the query video's captions, with their scores (the true video in green).
Right panel: the distance grid ``1 - scores`` between the query's captions (rows) and the best match's clips
(columns), with the hard DTW path (:func:`hard_dtw_path`) drawn over it.  Rendered with matplotlib's Agg backend
(no display needed) and written atomically as PNG.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import torch

from tempclr.modules.alignment import cumulative_cost
from tempclr.utils.plots import save_figure_atomic

__all__ = ["hard_dtw_path", "caption_average_scores", "plot_retrieval"]


def hard_dtw_path(distance: np.ndarray) -> List[Tuple[int, int]]:
    """The cheapest monotone path through ``distance [L, M]`` from ``(0, 0)`` to ``(L-1, M-1)`` (moves: down,
    right, diagonal), as a list of ``(row, col)`` cells.

    Backtracks the hard cumulative cost of :func:`tempclr.modules.alignment.cumulative_cost` (the min-plus DTW
    recursion, the one :func:`~tempclr.modules.alignment.hard_dtw` scores): from the end cell, step to the
    predecessor with the smallest cumulative cost (diagonal first on ties).  The sum of ``distance`` over the path
    is the hard DTW cost.
    """
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2 or 0 in distance.shape:
        raise ValueError(f"hard_dtw_path: distance must be a non-empty [L, M] grid, got shape {distance.shape}")
    if not np.isfinite(distance).all():
        raise ValueError("hard_dtw_path: distance holds NaN or inf; the path is undefined")
    cost = cumulative_cost(torch.from_numpy(distance), "dtw", gamma=0.0).numpy()
    i, j = distance.shape[0] - 1, distance.shape[1] - 1
    path = [(i, j)]
    while (i, j) != (0, 0):
        steps = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((s for s in steps if s[0] >= 0 and s[1] >= 0), key=lambda s: cost[s])
        path.append((i, j))
    return path[::-1]


def caption_average_scores(outputs: np.ndarray, rows: Sequence[int], video_ids: Sequence[str]) -> dict:
    """Score of every video for one query: the mean over the query's caption ``rows`` of the caption's best clip
    score in that video (``outputs [n_captions, n_clips]``, ``video_ids [n_clips]`` the parent video of each
    clip).  Returns ``{video_id: score}`` in first-appearance order."""
    outputs = np.asarray(outputs)
    columns: dict = {}
    for column, video_id in enumerate(video_ids):
        columns.setdefault(video_id, []).append(column)
    query = outputs[list(rows)]
    return {video_id: float(query[:, cols].max(axis=1).mean()) for video_id, cols in columns.items()}


def plot_retrieval(query_id: str, ranking: Sequence[Tuple[str, float]], distance: np.ndarray,
                   path: Sequence[Tuple[int, int]], row_labels: Sequence[str], col_labels: Sequence[str],
                   out_path: str, title: str = "", score_name: str = "score") -> str:
    """Draw the picture of the module docstring.

    ``ranking``: ``[(video_id, score), ...]`` best first (the top videos to show); ``distance [L, M]`` the grid of
    the query's ``L`` captions against the ``M`` clips of ``ranking[0]``; ``path`` its DTW cells; ``row_labels``
    (captions) and ``col_labels`` (clips).  Returns ``out_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    distance = np.asarray(distance, dtype=float)
    if distance.ndim != 2 or distance.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"plot_retrieval: distance {distance.shape} must be [len(row_labels), len(col_labels)] = "
                         f"[{len(row_labels)}, {len(col_labels)}]")
    if not ranking:
        raise ValueError("plot_retrieval: the ranking is empty")
    rows, cols = distance.shape
    figure, (bars, grid) = plt.subplots(1, 2, figsize=(8 + 0.5 * cols, 2.2 + 0.45 * max(rows, len(ranking))),
                                        gridspec_kw={"width_ratios": [1, max(1.0, 0.25 * cols)]},
                                        layout="constrained")
    names = [name for name, _ in ranking]
    scores = [score for _, score in ranking]
    colours = ["tab:green" if name == query_id else "tab:grey" for name in names]
    positions = np.arange(len(ranking))[::-1]
    bars.barh(positions, scores, color=colours)
    bars.set_yticks(positions, [f"{k + 1}. {name}" for k, name in enumerate(names)], fontsize=8)
    for position, score in zip(positions, scores):
        bars.text(score, position, f" {score:.3f}", va="center", fontsize=7)
    low, high = min(scores), max(scores)
    margin = 0.15 * (high - low) + 1e-6
    bars.set_xlim(low - margin, high + 3 * margin)
    bars.set_xlabel(score_name, fontsize=8)
    bars.set_title(f"top {len(ranking)} for the captions of {query_id}\n(green: the query's own video)", fontsize=9)
    image = grid.imshow(distance, cmap="Greys_r", aspect="auto")
    figure.colorbar(image, ax=grid, label="1 - score")
    ys, xs = zip(*path)
    grid.plot(xs, ys, color="red", marker="o", markersize=4, linewidth=1.5, label="hard DTW path")
    grid.set_yticks(range(rows), [str(label)[:40] for label in row_labels], fontsize=7)
    grid.set_xticks(range(cols), list(col_labels), fontsize=7, rotation=60)
    grid.set_ylabel(f"caption of {query_id}")
    grid.set_xlabel(f"clip of {names[0]} (seconds)")
    grid.legend(loc="upper right", fontsize=7)
    figure.suptitle(title, fontsize=9)
    try:
        return save_figure_atomic(figure, out_path)
    finally:
        plt.close(figure)
