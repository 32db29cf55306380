"""Evaluation metrics: the ``Metric`` base, HowTo100M-style retrieval recall, and CrossTask step recall.

Every metric class is built from the run config by class name (``metric: CrossTaskMetric`` in YAML ->
``CrossTaskMetric(config)``); the base takes ``(config, metric_names)`` and each subclass gives its names as the
default of ``metric_names``.  ``compute_metrics`` takes the predictor's output dict as keyword arguments (the
evaluator calls ``metric.compute_metrics(**predictor.predict_loop(...))``) with the original's parameter names and
order — ``outputs`` first, then ``texts`` (retrieval) or ``targets`` (CrossTask) — and returns a plain dict of
Python floats, ``metric_names[0]`` being the model-selection metric.

Changes from MMPT ``mmpt/evaluators/metric.py``:

* ``save_metrics`` writes JSON atomically (the original called ``json.dump(fw, metrics)``, arguments swapped).
* ``RetrievalMetric`` gives every query exactly one rank.  The HowTo100M formula found the true score's
  position(s) in the sorted row and produced one entry per tied position, over-counting on ties.  Here the
  rank is the number of *other* candidates scoring ``>=`` the true one (pessimistic: a constant scorer gets
  R@1 = 0).  Without ties this equals the original.
* ``CrossTaskMetric`` raises on a ground-truth video without a prediction, on mismatched shapes, and on a task
  with no ground-truth step at all (the original silently skipped the first and divided by zero on the last).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from tempclr.utils.fileio import write_json_atomic
from tempclr.utils.registry import register

__all__ = ["Metric", "RetrievalMetric", "CrossTaskMetric", "pessimistic_ranks"]


def _to_json(value: Any) -> Any:
    """``json.dump`` default: numpy scalars and arrays to Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metric value of type {type(value).__name__} is not JSON serialisable")


class Metric(ABC):
    """Base class: ``metric_names[0]`` is the metric used to pick the best checkpoint."""

    def __init__(self, config: Any, metric_names: Sequence[str]):
        if not metric_names:
            raise ValueError(f"{type(self).__name__}: metric_names must name at least one metric")
        self.config = config
        self.metric_names = list(metric_names)

    @abstractmethod
    def compute_metrics(self, **outputs: Any) -> dict:
        """Metrics from the predictor's outputs (keyword arguments, as the evaluator unpacks them)."""

    @abstractmethod
    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Print ``metrics`` in the original's format."""

    def best_metric(self, metric: Mapping[str, Any]) -> float:
        """``metric[metric_names[0]]`` as a float (``metric``: the computed metrics dict, the original's name)."""
        name = self.metric_names[0]
        if name not in metric:
            raise KeyError(f"{type(self).__name__}.best_metric: '{name}' missing from the computed metrics "
                           f"(have {sorted(metric)})")
        return float(metric[name])

    def save_metrics(self, fn: str, metrics: Mapping[str, Any]) -> None:
        """Write ``metrics`` to ``fn`` as JSON (numpy values converted), atomically via a temp file."""
        write_json_atomic(fn, dict(metrics), default=_to_json)


# --------------------------------------------------------------------------------------------------------------
# retrieval


def pessimistic_ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of the true candidate of every query: ``ranks[i] = #{j != i : scores[i, j] >= scores[i, i]}``.

    ``scores`` [N, N] (queries x candidates, the true candidate of query ``i`` is ``i``); returns int64 [N]."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] == 0:
        raise ValueError(f"retrieval scores must be a non-empty square [N, N] matrix (query i matches "
                         f"candidate i), got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("retrieval scores contain NaN; ranks are undefined")
    true_scores = np.diagonal(scores)[:, None]
    return (scores >= true_scores).sum(axis=1).astype(np.int64) - 1


@register("metric")
class RetrievalMetric(Metric):
    """R@1, R@5, R@10 and median rank of text-to-video retrieval (HowTo100M formula, ties counted once)."""

    def __init__(self, config: Any, metric_names: Sequence[str] = ("R1", "R5", "R10", "MR")):
        super().__init__(config, metric_names)

    def compute_metrics(self, outputs: np.ndarray, texts: Optional[Sequence[str]] = None, **kwargs: Any) -> dict:
        """``outputs`` [N, N] scores (captions x clips, row ``i``'s true clip is ``i``).  ``texts`` (the decoded
        captions) and the other predictor outputs (``video_ids``, ...) are accepted and unused.  ``MR`` is
        ``median(rank) + 1``."""
        ranks = pessimistic_ranks(outputs)
        return {
            "R1": float(np.mean(ranks == 0)),
            "R5": float(np.mean(ranks < 5)),
            "R10": float(np.mean(ranks < 10)),
            "MR": float(np.median(ranks) + 1),
        }

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        print("R@1: {:.4f} - R@5: {:.4f} - R@10: {:.4f} - Median R: {}".format(
            metrics["R1"], metrics["R5"], metrics["R10"], metrics["MR"]))


# --------------------------------------------------------------------------------------------------------------
# CrossTask


@register("metric")
class CrossTaskMetric(Metric):
    """CrossTask step recall (``train.py`` of DmZhukov/CrossTask): per task, the fraction of ground-truth
    steps whose predicted second(s) fall inside one of that step's annotated intervals."""

    def __init__(self, config: Any, metric_names: Sequence[str] = ("recall",)):
        super().__init__(config, metric_names)

    def compute_metrics(self, outputs: Mapping[str, Mapping[str, np.ndarray]],
                        targets: Mapping[str, Mapping[str, np.ndarray]], **kwargs: Any) -> dict:
        """``outputs`` (predicted, ``Y_pred``) / ``targets`` (ground truth, ``Y_true``): ``{task: {vid: [T, K]
        array}}``, as :class:`CrossTaskPredictor` returns them (its pickle stores them as ``Y_pred`` / ``Y_true``).

        Per task over its ground-truth videos: ``recall = sum(y_true * y_pred) / #{steps with a true frame}``.
        Returns ``{task: recall, ..., "recall": mean over tasks}``.  Videos and tasks present only in
        ``outputs`` (no annotation) are ignored, as in the original."""
        Y_pred, Y_true = outputs, targets
        if not Y_true:
            raise ValueError("CrossTaskMetric: Y_true is empty (no annotated test video was predicted)")
        results = {}
        for task, true_by_vid in Y_true.items():
            task_key = str(task)
            if task_key == "recall":
                raise ValueError("CrossTaskMetric: a task id 'recall' would clash with the mean recall key")
            results[task_key] = self._task_recall(task_key, Y_pred.get(task, {}), true_by_vid)
        results["recall"] = float(np.mean(list(results.values())))
        return results

    @staticmethod
    def _task_recall(task: str, pred_by_vid: Mapping[str, np.ndarray],
                     true_by_vid: Mapping[str, np.ndarray]) -> float:
        matched = 0.0
        n_true_steps = 0
        for vid, y_true in true_by_vid.items():
            if vid not in pred_by_vid:
                raise ValueError(f"CrossTaskMetric: task {task}, video {vid} has ground truth but no prediction")
            y_true = np.asarray(y_true)
            y_pred = np.asarray(pred_by_vid[vid])
            if y_true.shape != y_pred.shape:
                raise ValueError(f"CrossTaskMetric: task {task}, video {vid}: prediction shape {y_pred.shape} "
                                 f"!= ground-truth shape {y_true.shape} (both [T, K])")
            n_true_steps += int((y_true.sum(axis=0) > 0).sum())
            matched += float((y_true.astype(np.float64) * y_pred).sum())
        if n_true_steps == 0:
            raise ValueError(f"CrossTaskMetric: task {task} has no annotated step in any of its "
                             f"{len(true_by_vid)} videos; its recall is undefined")
        return matched / n_true_steps

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        print("Recall: {0:0.3f}".format(metrics["recall"]))
        for task, value in metrics.items():
            if task != "recall":
                print("Task {0}. Recall = {1:0.3f}".format(task, value))
