"""The original HowTo100M / MMPT retrieval recall arithmetic, vectorised (``RetrievalMetric`` with
``eval.metric_compat: original``).

The original sorted each row of ``-scores``, subtracted the true score and took every position where the
difference is exactly 0 as a rank: a query whose true score ties with ``t`` other candidates contributes ``t + 1``
ranks (``k, k + 1, ..., k + t`` with ``k`` candidates strictly above), and the recalls and the median are taken over
all those entries.  A row whose true score is NaN or infinite contributes none (``inf - inf`` is NaN).  Here the
same entries are counted without sorting.
"""
from __future__ import annotations

import numpy as np

__all__ = ["tied_position_ranks", "tied_position_metrics"]


def tied_position_ranks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first [N], count [N])`` int64 of the original's rank entries of each query row of ``scores [N, M]``
    (true candidate of row ``i`` is column ``i``): entries ``first[i], ..., first[i] + count[i] - 1``, with
    ``first[i] = #{j : s[i, j] > s[i, i]}`` and ``count[i] = #{j : s[i, j] == s[i, i]}`` (0 where ``s[i, i]`` is
    not finite)."""
    x = np.asarray(scores)
    n = min(x.shape)
    x = x[:n]
    true = np.diagonal(x)[:, None]
    first = (x > true).sum(axis=1).astype(np.int64)
    count = (x == true).sum(axis=1).astype(np.int64)
    count[~np.isfinite(true[:, 0])] = 0
    return first, count


def tied_position_metrics(scores: np.ndarray) -> dict:
    """``{"R1", "R5", "R10", "MR"}`` over the original's rank entries (:func:`tied_position_ranks`): ``R@k`` the
    share of entries below ``k``, ``MR`` their median + 1.  No entry at all is a ``ValueError`` (the original
    divided by zero)."""
    first, count = tied_position_ranks(scores)
    total = int(count.sum())
    if total == 0:
        raise ValueError("RetrievalMetric (eval.metric_compat: original): no query has a finite true score, so "
                         "the original arithmetic has no rank entry (it divided by zero)")
    metrics = {f"R{k}": float(np.clip(k - first, 0, count).sum()) / total for k in (1, 5, 10)}
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    metrics["MR"] = float(np.median(np.repeat(first, count) + offsets) + 1)
    return metrics
