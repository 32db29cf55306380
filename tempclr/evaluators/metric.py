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
  R@1 = 0).  Without ties this equals the original; ``eval.metric_compat: original`` restores its counting.
* ``CrossTaskMetric`` raises on a ground-truth video without a prediction, on mismatched shapes, and on a task
  with no ground-truth step at all (the original silently skipped the first and divided by zero on the last).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from tempclr.evaluators.fullvideo import mean_max_scores, pair_costs, segments_by_counts, segments_by_id
from tempclr.evaluators.fullvideo_compat import (
    argsort_recall,
    background_alignment_scores,
    caption_average_scores,
    fullvideo_alignment_scores,
    substring_blocks,
)
from tempclr.evaluators.metric_base import METRIC_COMPAT_KEY, Metric, metric_compat
from tempclr.evaluators.retrieval_compat import tied_position_metrics
from tempclr.utils.registry import register

__all__ = ["Metric", "RetrievalMetric", "CrossTaskMetric", "pessimistic_ranks", "FullVideoRetrievalMetric",
           "FullVideoBGRetrievalMetric", "metric_compat", "COINActionSegmentationMetric", "DiDeMoMetric", "QAMetric"]


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
        self.compat = metric_compat(config)

    def compute_metrics(self, outputs: np.ndarray, texts: Optional[Sequence[str]] = None, **kwargs: Any) -> dict:
        """``outputs`` [N, N] scores (captions x clips, row ``i``'s true clip is ``i``).  ``texts`` (the decoded
        captions) and the other predictor outputs (``video_ids``, ...) are accepted and unused.  ``MR`` is
        ``median(rank) + 1``.  ``eval.metric_compat: original`` counts a query tied with ``t`` other candidates
        ``t + 1`` times, as the original did (:mod:`tempclr.evaluators.retrieval_compat`)."""
        if self.compat == "original":
            scores = np.asarray(outputs)
            if scores.ndim != 2 or scores.size == 0 or scores.shape[0] != scores.shape[1]:
                raise ValueError(f"RetrievalMetric: outputs must be a non-empty square [N, N] score matrix (query i "
                                 f"matches candidate i), got shape {scores.shape}")
            _compat_dtype(scores, type(self).__name__)
            return tied_position_metrics(scores)
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


# --------------------------------------------------------------------------------------------------------------
# YouCook2 full-video retrieval (caption average, DTW, OTAM)

FULL_VIDEO_METRIC_NAMES = ["R1", "R5", "R10", "DTW-R1", "DTW-R5", "DTW-R10", "OTAM-R1", "OTAM-R5", "OTAM-R10"]
def _finite_scores(outputs: Any, name: str) -> np.ndarray:
    """``outputs`` as a 2-D non-empty real array with no NaN or infinite entry (dtype kept)."""
    scores = np.asarray(outputs)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"{name}: outputs must be a non-empty 2-D score matrix, got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"{name}: outputs must hold real numbers, got dtype {scores.dtype}")
    for bad, what in ((np.isnan(scores), "NaN"), (np.isinf(scores), "infinite")):
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"{name}: outputs contain {int(bad.sum())} {what} score(s) (first at row {row}, "
                             f"column {col}); retrieval ranks are undefined")
    return scores


def _compat_dtype(scores: np.ndarray, name: str) -> None:
    if scores.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} ({METRIC_COMPAT_KEY}: original): the original arithmetic runs on float32 or "
                         f"float64 scores; got {scores.dtype} (cast the outputs, or remove {METRIC_COMPAT_KEY})")


def _recall_at(ranks: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(np.mean(ranks < k)) for k in (1, 5, 10))


def _full_video_metrics(similarities: Mapping[str, np.ndarray], compat: str) -> dict:
    """R@1/5/10 of the three [n_videos, n_videos] similarity matrices (query video i's true candidate is i)."""
    metrics = {}
    for prefix, key in (("", "caption_average"), ("DTW-", "dtw"), ("OTAM-", "otam")):
        if compat == "original":
            values = argsort_recall(similarities[key])
        else:
            values = _recall_at(pessimistic_ranks(similarities[key]))
        metrics.update({f"{prefix}R{k}": v for k, v in zip((1, 5, 10), values)})
    return metrics


def _print_full_video_metrics(metrics: Mapping[str, Any]) -> None:
    blocks = (("Caption Average:", ""), ("DTW:", "DTW-"), ("OTAM", "OTAM-"))
    lines = []
    for title, prefix in blocks:
        lines.append(title)
        lines.append("R@1: {:.4f} - R@5: {:.4f} - R@10: {:.4f}".format(
            metrics[f"{prefix}R1"], metrics[f"{prefix}R5"], metrics[f"{prefix}R10"]))
    print("\n".join(lines))


@register("metric")
class FullVideoRetrievalMetric(Metric):
    """Full-video text-to-video retrieval from clip-level scores: a query is all captions of one video, a
    candidate all clips of one video.  Three similarities per (query, candidate) video pair:

    * caption average: per caption the best score over the candidate's clips, averaged over the query's captions;
    * DTW / OTAM: minus the hard DTW cost and minus the hard two-way OTAM cost of the distance grid
      ``1 - scores[query captions, candidate clips]`` (clips in their order in the outputs), each divided by the
      grid's cell count (:mod:`tempclr.evaluators.fullvideo`).

    Metrics ``R1 R5 R10 DTW-R1 ... OTAM-R10``: the fraction of query videos whose own video ranks in the top k,
    each query's rank counting every other video that scores at least as high (ties count against the query).
    Videos are grouped by exact id and a video's clips need not be next to each other.

    ``eval.metric_compat: original`` reproduces the original TempCLR arithmetic exactly instead (substring id
    matching, contiguous blocks, padded grids with their zeroed rows, the OTAM column-1 sign, the
    ``Lmax^2 / (|i| |j|)`` scaling, argsort recall: :mod:`tempclr.evaluators.fullvideo_compat`), to compare with
    published numbers."""

    def __init__(self, config: Any):
        super().__init__(config, FULL_VIDEO_METRIC_NAMES)
        self.compat = metric_compat(config)
        self.engine = "kernel"

    def similarities(self, outputs: np.ndarray, video_ids: Sequence[Any]) -> dict:
        """``{"video_ids": [n_videos], "caption_average" | "dtw" | "otam": [n_videos, n_videos]}`` (query rows,
        candidate columns, higher = more similar; video order: first appearance, compat ``original`` too).

        outputs [n_captions, n_clips] with row i the caption of clip i; video_ids [n_clips] the parent video of
        each clip."""
        name = type(self).__name__
        scores = _finite_scores(outputs, name)
        if scores.shape[0] != scores.shape[1]:
            raise ValueError(f"{name}: outputs has {scores.shape[0]} caption rows and {scores.shape[1]} clip columns; "
                             f"it must be square [n_captions, n_clips], row i the caption of clip i")
        if video_ids is None:
            raise ValueError(f"{name}: compute_metrics needs video_ids, the parent video id of each clip")
        video_ids = list(video_ids)
        if len(video_ids) != scores.shape[1]:
            raise ValueError(f"{name}: video_ids has {len(video_ids)} entries for {scores.shape[1]} clips "
                             f"(one parent video id per clip)")
        if self.compat == "original":
            _compat_dtype(scores, name)
            videos = list(dict.fromkeys(video_ids))
            blocks = substring_blocks(video_ids, videos, "clips", name)
            dtw, otam = fullvideo_alignment_scores(scores, blocks)
            return {"video_ids": videos, "caption_average": caption_average_scores(scores, blocks, blocks),
                    "dtw": dtw, "otam": otam}
        groups = segments_by_id(video_ids)
        dtw, otam = pair_costs(scores, groups, groups, engine=self.engine)
        return {"video_ids": list(groups.ids), "caption_average": mean_max_scores(scores, groups, groups),
                "dtw": -dtw, "otam": -otam}

    def compute_metrics(self, outputs: np.ndarray, texts: Any = None, video_ids: Optional[Sequence[Any]] = None,
                        **predictor_extras: Any) -> dict:
        """``outputs`` [n_captions, n_clips] clip-level scores (dot products), row i the caption of clip i;
        ``video_ids`` [n_clips] the parent video of each clip.  ``texts`` and other predictor outputs are unused.
        Returns the nine recalls as floats."""
        return _full_video_metrics(self.similarities(outputs, video_ids), self.compat)

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        _print_full_video_metrics(metrics)


def _video_counts(counts: Any, key: str, n_videos: int, total: int, axis: str, name: str) -> list[int]:
    if counts is None:
        raise ValueError(f"{name}: compute_metrics needs {key}, the {axis} count of each video")
    values = [int(c) for c in counts]
    if len(values) != n_videos:
        raise ValueError(f"{name}: {key} has {len(values)} entries for {n_videos} video_ids (one count per video)")
    if min(values) < 1:
        raise ValueError(f"{name}: {key} must be >= 1 for every video; video {values.index(min(values))} has "
                         f"{min(values)}")
    if sum(values) != total:
        raise ValueError(f"{name}: {key} sum to {sum(values)} but outputs has {total} {axis} "
                         f"{'rows' if axis == 'caption' else 'columns'} (the counts of each video, in video_ids "
                         f"order, must cover the matrix)")
    return values


@register("metric")
class FullVideoBGRetrievalMetric(Metric):
    """Full-video retrieval with background kept: scores of every caption against every 16-second window of every
    video, so a candidate video is all its windows, including those no caption describes.

    * caption average: per caption the best score over all of the candidate's windows, averaged over the query's
      captions;
    * DTW / OTAM: per pair only the ``min(int(1.3 * L_i), W_j)`` windows nearest to any of the query's ``L_i``
      captions are kept (distance ``1 - score``; the earlier window first on an exact tie), in temporal order,
      then the normalised hard DTW / two-way OTAM costs as :class:`FullVideoRetrievalMetric`.

    Same metric names, ranks and ``eval.metric_compat: original`` switch as :class:`FullVideoRetrievalMetric`
    (compat also pads the transposed OTAM grid to the untransposed targets, as the original did).  The original
    also declared ``Combined-*`` metric names it never computed; they are not listed."""

    def __init__(self, config: Any):
        super().__init__(config, FULL_VIDEO_METRIC_NAMES)
        self.compat = metric_compat(config)
        self.engine = "kernel"

    def similarities(self, outputs: np.ndarray, video_ids: Sequence[Any], text_lengths: Sequence[int],
                     video_lengths: Sequence[int]) -> dict:
        """``{"video_ids", "caption_average", "dtw", "otam"}`` as :meth:`FullVideoRetrievalMetric.similarities`
        (video order: as given; compat ``original``: sorted ids, as the original).

        outputs [sum(text_lengths), sum(video_lengths)] (all captions x all windows, each video's captions and
        windows consecutive, videos in video_ids order); video_ids [n_videos] distinct; text_lengths /
        video_lengths [n_videos] caption and window counts."""
        name = type(self).__name__
        scores = _finite_scores(outputs, name)
        if video_ids is None:
            raise ValueError(f"{name}: compute_metrics needs video_ids, one id per video")
        video_ids = list(video_ids)
        duplicated = [vid for vid, n in Counter(video_ids).items() if n > 1]
        if duplicated:
            raise ValueError(f"{name}: video_ids must name each video once; repeated: {duplicated[:5]}")
        n_caps = _video_counts(text_lengths, "text_lengths", len(video_ids), scores.shape[0], "caption", name)
        n_wins = _video_counts(video_lengths, "video_lengths", len(video_ids), scores.shape[1], "window", name)
        if self.compat == "original":
            _compat_dtype(scores, name)
            videos = sorted(video_ids)
            caption_ids = [vid for vid, n in zip(video_ids, n_caps) for _ in range(n)]
            window_ids = [vid for vid, n in zip(video_ids, n_wins) for _ in range(n)]
            text_blocks = substring_blocks(caption_ids, videos, "captions", name)
            window_blocks = substring_blocks(window_ids, videos, "windows", name)
            dtw, otam = background_alignment_scores(scores, text_blocks, window_blocks)
            return {"video_ids": videos, "caption_average": caption_average_scores(scores, window_blocks, text_blocks),
                    "dtw": dtw, "otam": otam}
        rows = segments_by_counts(video_ids, n_caps)
        cols = segments_by_counts(video_ids, n_wins)
        keep = [int(1.3 * n) for n in n_caps]
        dtw, otam = pair_costs(scores, rows, cols, keep=keep, engine=self.engine)
        return {"video_ids": video_ids, "caption_average": mean_max_scores(scores, rows, cols),
                "dtw": -dtw, "otam": -otam}

    def compute_metrics(self, outputs: np.ndarray, texts: Any = None, video_ids: Optional[Sequence[Any]] = None,
                        text_lengths: Optional[Sequence[int]] = None, video_lengths: Optional[Sequence[int]] = None,
                        **predictor_extras: Any) -> dict:
        """``outputs`` [all captions, all windows] scores; ``video_ids`` [n_videos]; ``text_lengths`` /
        ``video_lengths`` [n_videos] each video's caption and window counts, in order.  Returns the nine recalls."""
        return _full_video_metrics(self.similarities(outputs, video_ids, text_lengths, video_lengths), self.compat)

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        _print_full_video_metrics(metrics)


# the MSR-VTT QA, COIN and DiDeMo metrics live in their own modules; MMPT's module path keeps naming them
from tempclr.evaluators.coin import COINActionSegmentationMetric  # noqa: E402
from tempclr.evaluators.didemo import DiDeMoMetric  # noqa: E402
from tempclr.evaluators.qa import QAMetric  # noqa: E402
