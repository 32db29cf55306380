"""DiDeMo moment localisation, zero-shot: :class:`DiDeMoPredictor` scores the 21 candidate moments of each
description's video, :class:`DiDeMoMetric` computes Rank@1, Rank@5 and mean IoU (the protocol of
github.com/LisaAnne/LocalizingMoments ``utils/eval.py``).

A video is cut into 6 chunks of 5 seconds; the candidate moments (:data:`MOMENTS`) are the 6 single chunks then
the 15 spans ``(s, e)``, ``s < e``, in ``itertools.combinations`` order.  A moment's video vector is the mean of
the video encoder's last hidden states over its seconds ``5 s .. 5 (e + 1) - 1``; its score is the dot product
with the description's pooled text vector.

Per description, with ``times`` its annotators' moments: the rank of each annotated moment among the 21, the
mean of its 3 best ranks (Rank@k: that mean ``<= k``), and the IoU (in chunks, ends inclusive) of the top
moment with each annotated moment, the mean of the 3 largest (mean IoU).

Corrected (the default):

* a moment's mean covers only the seconds that have features (``vmasks``); a moment with none of them cannot be
  scored, gets the score ``-inf`` and ranks last (the original averaged padded positions into the moments);
* every annotated moment gets a rank, the ones past the video's features rank 21 (the original skipped them,
  so a description whose annotations all lay there had no rank and counted as a miss silently); their count is
  printed;
* ties count against the annotation: its rank is the number of moments scoring at least as high (itself
  included); the top moment of a tie is the first in :data:`MOMENTS` order.

``eval.metric_compat: original`` reproduces the original arithmetic instead (padded means, moments without
features left out of the ranking, annotations outside the ranking skipped, ranks by sorted position).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from tempclr.processors.didemo import (CHUNK_SECONDS, MOMENTS, N_MOMENTS, annotated_moments,  # noqa: F401
                                       moment_index)
from tempclr.utils.registry import register

from .metric_base import Metric, metric_compat
from .predictor_base import Predictor, model_device_dtype

__all__ = ["MOMENTS", "DiDeMoPredictor", "DiDeMoMetric", "moment_scores", "moment_index"]

def _moment_positions(length: int) -> torch.Tensor:
    """bool ``[21, length]``: which of the ``length`` video positions each moment covers."""
    cover = torch.zeros(N_MOMENTS, length, dtype=torch.bool)
    for i, (s, e) in enumerate(MOMENTS):
        cover[i, s * CHUNK_SECONDS:(e + 1) * CHUNK_SECONDS] = True
    return cover


def moment_scores(hidden_video: torch.Tensor, vmasks: torch.Tensor, pooled_text: torch.Tensor,
                  compat: str = "corrected") -> torch.Tensor:
    """Scores ``[B, 21]`` (float32, CPU) of the moments of ``hidden_video [B, Lv, H]`` (the video tokens' last hidden
    states, ``[CLS]`` and ``[SEP]`` removed) against ``pooled_text [B, H]``; ``vmasks [B, Lv]``.

    Corrected: masked means over the seconds with features, ``-inf`` for a moment without any.  ``original``:
    plain means over the moment's positions (padding included, ``torch.mean`` of each slice as the original),
    ``-inf`` for a moment without features (the original left those out of its ranking)."""
    hidden_video, pooled_text = hidden_video.float().cpu(), pooled_text.float().cpu()
    vmasks = vmasks.to(torch.bool).cpu()
    cover = _moment_positions(hidden_video.size(1))
    valid = (cover[None] & vmasks[:, None, :]).any(dim=-1)
    if compat == "original":
        pooled = torch.cat([torch.mean(hidden_video[:, s * CHUNK_SECONDS:(e + 1) * CHUNK_SECONDS, :], dim=1,
                                       keepdim=True) for s, e in MOMENTS], dim=1)
        scores = torch.bmm(pooled, pooled_text.unsqueeze(-1)).squeeze(-1)
    else:
        weights = (cover[None] & vmasks[:, None, :]).float()
        pooled = (weights @ hidden_video) / weights.sum(-1, keepdim=True).clamp(min=1.0)
        scores = torch.einsum("bmh,bh->bm", pooled, pooled_text)
    if not torch.isfinite(scores[valid]).all():
        raise ValueError("DiDeMoPredictor: the moment scores hold NaN or inf (the model's outputs are not finite)")
    return scores.masked_fill(~valid, float("-inf"))


def ranked_moments(scores: np.ndarray) -> List[List[Tuple[int, int]]]:
    """Per row of ``scores [N, 21]`` the moments from best to worst (ties in :data:`MOMENTS` order), moments
    scored ``-inf`` (no features) left out: the original's ``outputs``."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return [[MOMENTS[m] for m in row if np.isfinite(scores[n, m])] for n, row in enumerate(order)]


@register("predictor")
class DiDeMoPredictor(Predictor):
    """Scores the 21 moments of every description (:func:`moment_scores`; ``eval.metric_compat`` selects the
    arithmetic).  ``finalize`` returns ``{"outputs": ranked moments per description, "targets": the records,
    "scores": [N, 21]}``, what :class:`DiDeMoMetric` takes, and pickles it as ``<output_file>.pkl``."""

    def __init__(self, config: Any):
        super().__init__(config)
        self.compat = metric_compat(config)
        self.possible_segments = list(MOMENTS)
        self.full_scores: List[torch.Tensor] = []
        self.annotations: Optional[Dict[str, np.ndarray]] = None

    @torch.no_grad()
    def predict_loop(self, model, eval_dataloader, output_file: Optional[str] = "didemo") -> Dict[str, Any]:
        meta = getattr(getattr(eval_dataloader, "dataset", None), "meta_processor", None)
        self.test_data = getattr(meta, "records", None)
        self.annotations = getattr(meta, "annotations", None)
        if self.test_data is None:
            raise ValueError("DiDeMoPredictor needs a loader over DiDeMoMetaProcessor (its records are the targets)")
        self.full_scores = []
        model.eval()
        device, dtype = model_device_dtype(model)
        for data in eval_dataloader:
            data = self.to_ctx(data, device, dtype)
            hidden_video = model.forward_video(data["vfeats"], data["vmasks"], data["caps"], data["cmasks"],
                                               output_hidden_states=True)
            pooled_text = model.forward_text(data["caps"], data["cmasks"])
            outputs = {"hidden_video": hidden_video, "pooled_text": pooled_text}
            outputs.update(data)
            self(outputs)
        return self.finalize(output_file)

    def __call__(self, sample: Dict[str, Any]) -> None:
        self.full_scores.append(moment_scores(sample["hidden_video"][:, 1:-1, :], sample["vmasks"],
                                              sample["pooled_text"], self.compat))

    def finalize(self, output_file: Optional[str] = None) -> Dict[str, Any]:
        """``{"outputs", "targets", "scores"}`` (see the class); with ``output_file`` also pickled to
        ``<eval.save_path>/<output_file>.pkl``, so that ``Evaluator()`` can score it again."""
        if not self.full_scores:
            raise ValueError("DiDeMoPredictor: the evaluation loader gave no batch")
        scores = self._aggregate_scores(self.full_scores)
        if len(scores) != len(self.test_data):
            raise ValueError(f"DiDeMoPredictor: {len(scores)} scored descriptions but {len(self.test_data)} records")
        result = {"outputs": ranked_moments(scores), "targets": list(self.test_data), "scores": scores}
        if self.annotations is not None:
            result["annotations"] = self.annotations
        if output_file is not None:
            self.save_predictions(output_file, result)
        return result

    def _aggregate_scores(self, scores: List[torch.Tensor]) -> np.ndarray:
        """The batches' ``[B, 21]`` scores as one ``[N, 21]`` float32 array; resets ``full_scores``."""
        self.full_scores = []
        return torch.cat(scores).numpy()


def _best_mean(values: np.ndarray, present: np.ndarray, smallest: bool) -> np.ndarray:
    """Per row the mean of the (up to) 3 smallest (or largest) ``values`` where ``present``, summed in ascending
    order as the original's ``np.mean(np.sort(v)[:3])`` / ``np.mean(np.sort(v)[-3:])``; NaN for a row with none."""
    ordered = np.sort(np.where(present, values.astype(np.float64), np.inf), axis=1)
    counts = present.sum(axis=1)
    taken = np.minimum(counts, 3)
    out = np.full(len(values), np.nan)
    for k in (1, 2, 3):
        rows = np.flatnonzero(taken == k)
        if rows.size == 0:
            continue
        first = np.zeros(rows.size, dtype=np.int64) if smallest else counts[rows] - k
        total = ordered[rows, first]
        for c in range(1, k):
            total = total + ordered[rows, first + c]
        out[rows] = total / k
    return out


def _score_positions(scores: np.ndarray, n: int) -> np.ndarray:
    """int64 ``[N, 21]``: each moment's 0-based position in :func:`ranked_moments` of ``scores`` (-1 for a moment
    scored -inf, left out of that ranking)."""
    if scores.shape != (n, N_MOMENTS) or np.isnan(scores).any():
        raise ValueError(f"DiDeMoMetric: scores must be [{n}, {N_MOMENTS}] without NaN, got shape {scores.shape}")
    order = np.argsort(-scores, axis=1, kind="stable")
    position = np.empty(scores.shape, dtype=np.int64)
    np.put_along_axis(position, order, np.arange(N_MOMENTS)[None, :], axis=1)
    position[np.isneginf(scores)] = -1
    return position


def _iou(top: np.ndarray, index: np.ndarray) -> np.ndarray:
    """IoU ``[N, A]`` in chunks (ends inclusive) of the moments ``top [N]`` and ``index [N, A]``."""
    bounds = np.asarray(MOMENTS, dtype=np.int64)
    p0, p1 = bounds[top, 0][:, None], bounds[top, 1][:, None]
    g0, g1 = bounds[index, 0], bounds[index, 1]
    intersection = np.maximum(0, np.minimum(p1, g1) + 1 - np.maximum(p0, g0))
    union = np.maximum(p1, g1) + 1 - np.minimum(p0, g0)
    return intersection / union


@register("metric")
class DiDeMoMetric(Metric):
    """Rank@1, Rank@5 and mean IoU of DiDeMo moment localisation (see the module docstring)."""

    def __init__(self, config: Any, metric_names: Sequence[str] = ("rank1", "rank5", "miou")):
        super().__init__(config, metric_names)
        self.compat = metric_compat(config)

    def compute_metrics(self, outputs: Sequence[Sequence[Sequence[int]]], targets: Sequence[Mapping[str, Any]],
                        scores: Optional[np.ndarray] = None, annotations: Optional[Mapping[str, Any]] = None,
                        **kwargs: Any) -> dict:
        """``outputs``: per description its moments best first (the original's format); ``targets``: the records
        (``times``); ``scores [N, 21]`` (:class:`DiDeMoPredictor`): the moment scores, ``-inf`` for a moment
        without features.  The corrected metric ranks from ``scores`` when given (ties against the annotation),
        else from the order of ``outputs`` (a moment missing from it ranks 21).  ``annotations``
        (``{"index": [N, A], "present": [N, A]}``, what ``DiDeMoMetaProcessor.annotations`` parsed from the same
        records) spares reading the targets' ``times`` again."""
        if len(outputs) != len(targets):
            raise ValueError(f"DiDeMoMetric: {len(outputs)} predictions but {len(targets)} targets")
        if len(targets) == 0:
            raise ValueError("DiDeMoMetric: no description to evaluate")
        index, present = self._annotations(targets, annotations)
        rows = np.arange(len(targets))[:, None]
        if self.compat == "original":
            return self._original(outputs, index, present, scores)
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64)
            if scores.shape != (len(targets), N_MOMENTS):
                raise ValueError(f"DiDeMoMetric: scores must be [{len(targets)}, {N_MOMENTS}], got {scores.shape}")
            if np.isnan(scores).any():
                row = int(np.argwhere(np.isnan(scores))[0, 0])
                raise ValueError(f"DiDeMoMetric: scores of description {row} hold NaN; its ranks are undefined")
            if np.isneginf(scores).all(axis=1).any():
                row = int(np.argmax(np.isneginf(scores).all(axis=1)))
                raise ValueError(f"DiDeMoMetric: description {row} has no moment with features (all scores -inf)")
            annotated = scores[rows, index]
            ranks = np.count_nonzero(scores[:, None, :] >= annotated[:, :, None], axis=2)
            top = np.argmax(scores, axis=1)
            self.unscorable = int((np.isneginf(annotated) & present).sum())
        else:
            position = self._positions(outputs)
            ranks = np.where(position[rows, index] >= 0, position[rows, index] + 1, N_MOMENTS)
            top = np.argmax(position == 0, axis=1)
            self.unscorable = int(((position[rows, index] < 0) & present).sum())
        average_ranks = _best_mean(ranks, present, smallest=True)
        average_iou = _best_mean(_iou(top, index), present, smallest=False)
        return {"rank1": float(np.mean(average_ranks <= 1)), "rank5": float(np.mean(average_ranks <= 5)),
                "miou": float(np.mean(average_iou)), "unscorable_annotations": float(self.unscorable)}

    @staticmethod
    def _annotations(targets: Sequence[Mapping[str, Any]], annotations: Optional[Mapping[str, Any]]):
        if annotations is None:
            return annotated_moments(targets)
        index, present = np.asarray(annotations["index"]), np.asarray(annotations["present"])
        if (index.ndim != 2 or index.shape != present.shape or len(index) != len(targets) or present.dtype != bool
                or not np.issubdtype(index.dtype, np.integer) or not present.any(axis=1).all()
                or ((index < 0) | (index >= N_MOMENTS))[present].any()):
            raise ValueError(f"DiDeMoMetric: annotations must be index/present [{len(targets)}, A] arrays of moment "
                             "indices, at least one per target (DiDeMoMetaProcessor.annotations)")
        return index, present

    @staticmethod
    def _positions(outputs: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
        """int64 ``[N, 21]``: each moment's 0-based position in each row of ``outputs``, -1 when absent; an empty
        row is an error."""
        position = np.full((len(outputs), N_MOMENTS), -1, dtype=np.int64)
        for row, ranked in enumerate(outputs):
            if len(ranked) == 0:
                raise ValueError(f"DiDeMoMetric: prediction {row} ranks no moment")
            for rank, moment in enumerate(ranked):
                position[row, moment_index(moment)] = rank
        return position

    def _original(self, outputs: Sequence[Sequence[Sequence[int]]], index: np.ndarray, present: np.ndarray,
                  scores: Optional[np.ndarray] = None) -> dict:
        """The original arithmetic: ranks only of the annotated moments present in the ranking (by position),
        a description with none of them NaN (a miss), IoU of each ranking's first moment.  With ``scores`` (the
        predictor's, whose ranking ``outputs`` is) the positions come from them directly."""
        position = self._positions(outputs) if scores is None else _score_positions(np.asarray(scores), len(index))
        rows = np.arange(len(outputs))[:, None]
        found = position[rows, index]
        in_ranking = present & (found >= 0)
        average_ranks = _best_mean(found + 1, in_ranking, smallest=True)
        top = np.argmax(position == 0, axis=1)
        average_iou = _best_mean(_iou(top, index), present, smallest=False)
        self.unscorable = int((present & ~in_ranking).sum())
        return {"rank1": float(np.sum(average_ranks <= 1) / float(len(average_ranks))),
                "rank5": float(np.sum(average_ranks <= 5) / float(len(average_ranks))),
                "miou": float(np.mean(average_iou)), "unscorable_annotations": float(self.unscorable)}

    def print_computed_metrics(self, metrics: Mapping[str, Any]) -> None:
        print("Average rank@1: {:.4f} Average rank@5: {:.4f} Average iou: {:.4f}".format(
            metrics["rank1"], metrics["rank5"], metrics["miou"]))
        unscorable = int(metrics.get("unscorable_annotations", 0))
        if unscorable:
            how = ("skipped, as the original did" if self.compat == "original"
                   else "ranked last (21), counted")
            print(f"{unscorable} annotated moment(s) lie past their video's features: {how}")
