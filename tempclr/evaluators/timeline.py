"""Timeline picture of one CrossTask prediction: predicted step seconds over the ground-truth intervals.

One row per step (the task's step names as labels, first step on top): grey bars are the step's annotated
intervals, a marker is the second the DP placed the step at: green when inside one of its intervals (``floor(start)
<= t < ceil(end)``, as the metric counts it), red when outside, grey for a step the video does not annotate (the
DP places every step; the metric ignores unannotated ones).  Rendered with matplotlib's Agg backend (no display
needed) and written atomically as PNG.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from tempclr.utils.fileio import atomic_path

__all__ = ["plot_timeline"]

Interval = Tuple[int, float, float]  # (step, 0-based; start_s; end_s)


def _check(y_pred: np.ndarray, intervals: Sequence[Interval], step_names: Sequence[str]) -> np.ndarray:
    y_pred = np.asarray(y_pred)
    if y_pred.ndim != 2 or y_pred.shape[1] != len(step_names):
        raise ValueError(f"plot_timeline: y_pred must be [T, K] with K = {len(step_names)} step names, "
                         f"got shape {y_pred.shape}")
    for step, start, end in intervals:
        if not 0 <= step < len(step_names) or end < start:
            raise ValueError(f"plot_timeline: interval ({step}, {start}, {end}) needs 0 <= step < "
                             f"{len(step_names)} and start <= end")
    return y_pred


def plot_timeline(y_pred: np.ndarray, intervals: Sequence[Interval], step_names: Sequence[str], path: str,
                  title: Optional[str] = None) -> str:
    """Draw ``y_pred [T, K]`` (1 where a step is placed) against ``intervals`` and write a PNG to ``path``.

    ``intervals``: ``[(step, start_s, end_s), ...]`` with 0-based steps (as :func:`read_annotation` returns).
    Returns ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    y_pred = _check(y_pred, intervals, step_names)
    n_seconds, n_steps = y_pred.shape
    figure, axes = plt.subplots(figsize=(10, 0.45 * n_steps + 1.4), dpi=100)
    try:
        for step, start, end in intervals:
            row = n_steps - 1 - step
            axes.broken_barh([(start, max(end - start, 0.5))], (row - 0.35, 0.7), color="0.75")
        for second, step in zip(*np.nonzero(y_pred)):
            row = n_steps - 1 - step
            annotated = [(start, end) for s, start, end in intervals if s == step]
            hit = any(math.floor(start) <= second < math.ceil(end) for start, end in annotated)
            color = "tab:green" if hit else "tab:red" if annotated else "0.55"
            axes.plot([second + 0.5], [row], marker="v", markersize=9, linestyle="none", color=color)
        axes.set_yticks(range(n_steps))
        axes.set_yticklabels(list(reversed([str(name) for name in step_names])))
        axes.set_xlim(0, n_seconds)
        axes.set_ylim(-0.6, n_steps - 0.4)
        axes.set_xlabel("second")
        axes.grid(axis="x", alpha=0.3)
        axes.set_title(title or "predicted step (marker) vs annotated interval (bar)", fontsize=10)
        figure.tight_layout()
        _save_atomic(figure, path)
    finally:
        plt.close(figure)
    return path


def _save_atomic(figure, path: str) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
