"""The original TempCLR / MMPT loops, written out plainly: the oracles of the tests and the baselines the
benchmarks time.  One copy of each, imported by both.

Four groups:

* one grid, cell by cell, float64 Python scalars (``dtw_cells``, ``otam_cells``): the DTW and one-way OTAM
  recurrences on a single [L, M] cost matrix, soft (gamma > 0, as in training) or hard (gamma = 0, as in the
  evaluation); slow and obviously right, for tiny cases;
* batched torch, in the original's own form (``original_dtw``, ``original_otam``, ``original_dtw_eval``,
  ``original_otam_eval``, ``original_pad``): one torch operation per cell over every grid of a batch
  [..., L, M], the cumulative costs written in place into one tensor as the original ``utils/metrics.py`` did;
  the soft ones are differentiable the original's way (autograd then copies that tensor once per cell, the
  quadratic backward the benchmarks time);
* the full-video retrieval metrics as the original computed them (``original_loop_clip``, ``original_loop_bg``,
  with ``original_recall`` and ``original_metrics``);
* MSR-VTT clip retrieval and multiple-choice QA (``original_retrieval_metrics``, ``original_qa_accuracy``).
* COIN action segmentation (``original_coin_merge_windows``, ``original_coin_zs_labels``,
  ``original_coin_frame_acc``) and DiDeMo moment localisation (``original_didemo_rankings``,
  ``original_didemo_eval``), the MMPT predictors' and metrics' loops.

The original's defects are reproduced on purpose and named in each docstring, so that the compat code can be
checked against them; where a test needs the fixed form too, a switch selects it (``column_one_sign``).  Only
numpy, torch and the standard library are imported here: nothing of the package that the tests check.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "METRIC_NAMES",
    "soft_min",
    "dtw_cells",
    "otam_cells",
    "zero_side_columns",
    "original_dtw",
    "original_otam",
    "original_dtw_eval",
    "original_otam_eval",
    "original_pad",
    "original_recall",
    "original_metrics",
    "original_loop_clip",
    "original_loop_bg",
    "original_retrieval_metrics",
    "original_qa_accuracy",
    "original_coin_merge_windows",
    "original_coin_zs_labels",
    "original_coin_frame_acc",
    "DIDEMO_SEGMENTS",
    "original_didemo_rankings",
    "original_didemo_eval",
]

METRIC_NAMES = ["R1", "R5", "R10", "DTW-R1", "DTW-R5", "DTW-R10", "OTAM-R1", "OTAM-R5", "OTAM-R10"]


# ----------------------------------------------------------------------------------------------------------------
# one grid, cell by cell (float64)
# ----------------------------------------------------------------------------------------------------------------
def soft_min(values: Sequence[float], gamma: float) -> float:
    """``-gamma log sum_v exp(-v / gamma)`` of a few scalars, computed around the smallest one (so +inf entries
    simply drop out); gamma = 0 gives the plain ``min``."""
    low = min(values)
    if gamma == 0:
        return low
    return low - gamma * math.log(sum(math.exp(-(v - low) / gamma) for v in values))


def dtw_cells(D, gamma: float = 0.0) -> float:
    """DTW cost of one cost matrix D [L, M] (nested lists, a numpy array or a CPU tensor), cell by cell in float64:
    ``R[0, 0] = D[0, 0]``, the first row and the first column are cumulative sums, and otherwise
    ``R[l, m] = D[l, m] + smin(R[l-1, m-1], R[l, m-1], R[l-1, m])``; returns ``R[L-1, M-1]``.  gamma > 0 is the
    soft-min of training (the original ``DTW_cum_dist``), gamma = 0 the hard min of evaluation
    (``DTW_eval_cum_dist``).  The recurrence is the original's, which had no defect here."""
    P = np.asarray(D, dtype=np.float64)
    L, M = P.shape
    R = np.zeros((L, M))
    R[0, 0] = P[0, 0]
    for m in range(1, M):
        R[0, m] = P[0, m] + R[0, m - 1]
    for l in range(1, L):
        R[l, 0] = P[l, 0] + R[l - 1, 0]
        for m in range(1, M):
            R[l, m] = P[l, m] + soft_min((R[l - 1, m - 1], R[l, m - 1], R[l - 1, m]), gamma)
    return float(R[-1, -1])


def otam_cells(D, gamma: float = 0.0) -> float:
    """One-way OTAM cost of one cost matrix D [L, M], cell by cell in float64.  P = D with a zero column on each
    side, [L, M + 2]; row 0 is the cumulative sum of P's row 0 (``R[0, 0] = 0``) and column 0 stays 0, so an
    alignment may start on any row for free; in rows l >= 1
    ``R[l, 1] = P[l, 1] + smin(R[l-1, 0], R[l-1, 1], R[l, 0])``, the middle columns have no vertical move,
    ``R[l, m] = P[l, m] + smin(R[l-1, m-1], R[l, m-1])``, and the last column is like column 1 (the alignment may
    end on any row); returns ``R[L-1, M+1]``.  The two-way score TempCLR trains with is
    ``otam_cells(D) + otam_cells(D^T)``.  gamma > 0: soft (``OTAM_cum_dist``); gamma = 0: hard.  This is the
    correct recurrence; the evaluation's sign defect in column 1 is reproduced by :func:`original_otam_eval`."""
    D = np.asarray(D, dtype=np.float64)
    L, M = D.shape
    W = M + 2
    P = np.zeros((L, W))
    P[:, 1:-1] = D
    R = np.zeros((L, W))
    for m in range(1, W):
        R[0, m] = P[0, m] + R[0, m - 1]
    for l in range(1, L):
        R[l, 1] = P[l, 1] + soft_min((R[l - 1, 0], R[l - 1, 1], R[l, 0]), gamma)
        for m in range(2, W - 1):
            R[l, m] = P[l, m] + soft_min((R[l - 1, m - 1], R[l, m - 1]), gamma)
        R[l, W - 1] = P[l, W - 1] + soft_min((R[l - 1, W - 2], R[l - 1, W - 1], R[l, W - 2]), gamma)
    return float(R[-1, -1])


# ----------------------------------------------------------------------------------------------------------------
# batched torch, the original's own form
# ----------------------------------------------------------------------------------------------------------------
def zero_side_columns(d: torch.Tensor) -> torch.Tensor:
    """[..., L, M] -> [..., L, M + 2]: the OTAM grid, a zero column on each side (the original's
    ``F.pad(d, (1, 1), "constant", 0)``)."""
    return F.pad(d, (1, 1), "constant", 0)


def _lse_min(values: list[torch.Tensor], lbda: float) -> torch.Tensor:
    # the original's soft-min: stack the negated, scaled predecessors on a new last dim, then logsumexp
    return -lbda * torch.logsumexp(torch.cat([(-v / lbda).unsqueeze(-1) for v in values], dim=-1), dim=-1)


def original_dtw(d: torch.Tensor, lbda: float = 0.1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The original soft-DTW of training (``DTW_cum_dist``): d [..., L, M] -> R[..., L-1, M-1] [...], the soft-min
    recurrence of :func:`dtw_cells` over the whole batch at once, one torch operation per cell.

    Reproduced on purpose: R is one tensor written in place cell by cell, so autograd saves and its backward copies
    R once per cell (quadratic in the cells: what the benchmarks time), and R is allocated as the original did
    with ``torch.zeros(shape)``, i.e. float32 whatever d's dtype (``dtype``; pass torch.float64 for a tight oracle
    on float64 costs).  The values themselves are correct."""
    cum = torch.zeros(d.shape, dtype=dtype, device=d.device)
    cum[..., 0, 0] = d[..., 0, 0]
    for m in range(1, d.shape[-1]):
        cum[..., 0, m] = d[..., 0, m] + cum[..., 0, m - 1]
    for l in range(1, d.shape[-2]):
        cum[..., l, 0] = d[..., l, 0] + cum[..., l - 1, 0]
    for l in range(1, d.shape[-2]):
        for m in range(1, d.shape[-1]):
            preds = [cum[..., l - 1, m - 1], cum[..., l, m - 1], cum[..., l - 1, m]]
            cum[..., l, m] = d[..., l, m] + _lse_min(preds, lbda)
    return cum[..., -1, -1]


def original_otam(d: torch.Tensor, lbda: float = 0.1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The original one-way soft-OTAM of training (``OTAM_cum_dist``): d [..., L, M] -> [...], the soft-min
    recurrence of :func:`otam_cells` on the grid with zero side columns [..., L, M + 2], over the whole batch at
    once.  Training sums both directions: ``original_otam(d) + original_otam(d.transpose(-1, -2))``.  Reproduced
    on purpose, as in :func:`original_dtw`: R written in place (quadratic backward) and allocated float32 unless
    ``dtype`` says otherwise.  The values are correct."""
    d = zero_side_columns(d)
    cum = torch.zeros(d.shape, dtype=dtype, device=d.device)
    for m in range(1, d.shape[-1]):
        cum[..., 0, m] = d[..., 0, m] + cum[..., 0, m - 1]
    for l in range(1, d.shape[-2]):
        cum[..., l, 1] = d[..., l, 1] + _lse_min([cum[..., l - 1, 0], cum[..., l - 1, 1], cum[..., l, 0]], lbda)
        for m in range(2, d.shape[-1] - 1):
            cum[..., l, m] = d[..., l, m] + _lse_min([cum[..., l - 1, m - 1], cum[..., l, m - 1]], lbda)
        last = [cum[..., l - 1, -2], cum[..., l - 1, -1], cum[..., l, -2]]
        cum[..., l, -1] = d[..., l, -1] + _lse_min(last, lbda)
    return cum[..., -1, -1]


def original_dtw_eval(d: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The original hard DTW of evaluation (``DTW_eval_cum_dist``): d [..., L, M] (usually padded by
    :func:`original_pad`, +inf padding allowed) -> the whole cumulative-cost tensor R [..., L, M], min instead of
    soft-min, one torch operation per cell.  R is allocated as the original did, float32 whatever d's dtype
    (``dtype`` to change it): each cell's sum is rounded to float32, as the original's metrics were."""
    cum = torch.zeros(d.shape, dtype=dtype, device=d.device)
    cum[..., 0, 0] = d[..., 0, 0]
    for m in range(1, d.shape[-1]):
        cum[..., 0, m] = d[..., 0, m] + cum[..., 0, m - 1]
    for l in range(1, d.shape[-2]):
        cum[..., l, 0] = d[..., l, 0] + cum[..., l - 1, 0]
    for l in range(1, d.shape[-2]):
        for m in range(1, d.shape[-1]):
            best = torch.minimum(torch.minimum(cum[..., l - 1, m - 1], cum[..., l, m - 1]), cum[..., l - 1, m])
            cum[..., l, m] = d[..., l, m] + best
    return cum


def original_otam_eval(d: torch.Tensor, column_one_sign: int = -1, dtype: torch.dtype = torch.float32
                       ) -> torch.Tensor:
    """The original hard one-way OTAM of evaluation (``OTAM_eval_cum_dist``): d [..., L, W] already carries its
    zero side columns (W = M + 2, as :func:`original_pad` with ``otam=True`` makes it) -> R [..., L, W]; the
    score is ``R[..., -1, -1]``.

    Defect reproduced on purpose: column 1 *subtracts* the minimum of its predecessors,
    ``R[l, 1] = d[l, 1] - min(R[l-1, 0], R[l-1, 1], R[l, 0])`` (``column_one_sign=-1``, the default);
    ``column_one_sign=+1`` gives the fixed recurrence.  Since R[:, 0] = 0 the minimum is <= 0 and the sign only
    shows when costs can be negative (the full-video metrics' 1 - dot product of unnormalised embeddings).  R is
    float32 as in the original, unless ``dtype`` says otherwise."""
    cum = torch.zeros(d.shape, dtype=dtype, device=d.device)
    for m in range(1, d.shape[-1]):
        cum[..., 0, m] = d[..., 0, m] + cum[..., 0, m - 1]
    for l in range(1, d.shape[-2]):
        first = torch.minimum(torch.minimum(cum[..., l - 1, 0], cum[..., l - 1, 1]), cum[..., l, 0])
        cum[..., l, 1] = d[..., l, 1] + column_one_sign * first
        for m in range(2, d.shape[-1] - 1):
            cum[..., l, m] = d[..., l, m] + torch.minimum(cum[..., l - 1, m - 1], cum[..., l, m - 1])
        last = torch.minimum(torch.minimum(cum[..., l - 1, -2], cum[..., l - 1, -1]), cum[..., l, -2])
        cum[..., l, -1] = d[..., l, -1] + last
    return cum


def original_pad(d: torch.Tensor, T0: int, T1: int, otam: bool) -> torch.Tensor:
    """The original ``DTW_pad`` / ``OTAM_pad``: d [..., rows, cols] -> [..., T0, T1] (OTAM: zero side columns
    first, then [..., T0, T1 + 2]), new cells +inf, then a zero "corridor" ``[..., -d0-1:, -d1:] = 0`` (d0 = T0 -
    rows, d1 = T1 - cols) meant to let the path run from the real corner through the padding for free.  Negative
    amounts crop (``F.pad``), as the original's did.

    Defect reproduced on purpose: with d1 == 0 the slice ``-0:`` takes every column, so the last real row, real
    costs included, is zeroed (and with d0 == d1 == 0 the whole last row although nothing was padded)."""
    d0, d1 = T0 - d.shape[-2], T1 - d.shape[-1]
    if otam:
        d = zero_side_columns(d)
    d = F.pad(d, (0, d1, 0, d0), "constant", float("inf"))
    d[..., -d0 - 1:, -d1:] = 0
    return d


# ----------------------------------------------------------------------------------------------------------------
# the full-video retrieval metrics (YouCook2), the original's structure
# ----------------------------------------------------------------------------------------------------------------
def original_recall(S: np.ndarray) -> list[float]:
    """R@1, R@5, R@10 of a similarity matrix S [queries, candidates] whose true candidate of query i is i, as the
    original computed them: ``np.argsort`` of each row, and query i counts at k when i is among the last k.  Defect
    kept: a tie is broken by position (argsort's order), where the corrected metric counts it against the query."""
    order = np.argsort(S, 1)
    truth = np.arange(len(S))
    return [float(np.mean(order[:, -1] == truth))] + [
        float(np.mean([t in row for t, row in zip(truth, order[:, -k:])])) for k in (5, 10)]


def original_metrics(caption_average: np.ndarray, dtw: np.ndarray, otam: np.ndarray) -> dict:
    """The nine numbers the original full-video metric reports (R@1/5/10 of the caption average, of DTW and of
    OTAM), keyed as the metric's ``metric_names``."""
    values = original_recall(caption_average) + original_recall(dtw) + original_recall(otam)
    return dict(zip(METRIC_NAMES, values))


def _members(position_ids: list, videos: list) -> list[list[int]]:
    # the original's membership test is a substring test: video "v1" also owns the positions of "v10"
    return [[i for i, x in enumerate(position_ids) if video in x] for video in videos]


def original_loop_clip(outputs: np.ndarray, video_ids: list) -> tuple[dict, dict]:
    """The original clip-level full-video metric.  outputs [n_clips, n_clips] (caption i against clip j), video_ids
    [n_clips] (the video of each clip).  Returns (metrics, similarities): ``original_metrics`` of the three
    similarity matrices [n_videos, n_videos] ``caption_average`` (per caption the max over each video's clips,
    averaged over the video's captions), ``dtw`` and ``otam`` (minus the costs, float32).

    Structure and defects kept: videos in order of first appearance (the original took ``set`` order, which
    changes from run to run); a video's clips are those whose id *contains* its id (substring test), taken as
    the contiguous slice from the first to the last of them; D = 1 - outputs, and each pair's block is scaled by
    T^2 / (its cells) *in place*, so overlapping blocks are scaled again and again; every block is padded to
    T x T (T: the most clips of a video) with :func:`original_pad` and its corridor defect; one Python iteration
    per pair builds the grids, which are stacked and run through the cell-by-cell torch loops of
    :func:`original_dtw_eval` and :func:`original_otam_eval` (the column-1 sign defect) with float32 R; OTAM is
    both directions, the transposed block padded the same way."""
    videos = list(dict.fromkeys(video_ids))
    members = _members(video_ids, videos)
    best = np.stack([np.max(outputs[:, v], axis=1) for v in members], 1)
    caption_average = np.stack([np.mean(best[v, :], axis=0) for v in members], 0)
    T = max(len(v) for v in members)
    sims = {"caption_average": caption_average}
    for otam in (False, True):
        distances = torch.tensor(1 - outputs)  # fresh for each of DTW and OTAM, as the original
        rows, rows_t = [], []
        for vi in members:
            grids, grids_t = [], []
            for vj in members:
                grid = distances[vi[0]: vi[-1] + 1, vj[0]: vj[-1] + 1].view(1, 1, len(vi), len(vj)).detach()
                grid *= (T * T) / (len(vi) * len(vj))  # in place on `distances`
                grids.append(original_pad(grid, T, T, otam))
                if otam:
                    grids_t.append(original_pad(torch.transpose(grid, -2, -1), T, T, otam))
            rows.append(torch.cat(grids, dim=1))
            if otam:
                rows_t.append(torch.cat(grids_t, dim=1))
        sims["otam" if otam else "dtw"] = -_grid_costs(rows, rows_t, otam).numpy()
    return original_metrics(**sims), sims


def _grid_costs(rows: list, rows_t: list, otam: bool) -> torch.Tensor:
    """The original's cost of each padded grid, [n_rows, n_cols]: ``R[-1, -1]`` of DTW_eval, or of OTAM_eval of
    the grids plus of their transposes (``rows_t``)."""
    if otam:
        return (original_otam_eval(torch.cat(rows, dim=0))[..., -1, -1]
                + original_otam_eval(torch.cat(rows_t, dim=0))[..., -1, -1])
    return original_dtw_eval(torch.cat(rows, dim=0))[..., -1, -1]


def original_loop_bg(outputs: np.ndarray, video_ids: list, text_lengths: list, video_lengths: list
                     ) -> tuple[dict, dict]:
    """The original full-video metric with background kept.  outputs [n_captions, n_windows]; video_ids
    [n_videos]; text_lengths / video_lengths [n_videos]: each video's captions and windows, in that order along
    outputs' rows and columns.  Returns (metrics, similarities) as :func:`original_loop_clip`.

    Structure and defects kept: videos sorted; substring membership and contiguous slices as in the clip-level
    loop; per pair, the min(1.3 x captions) windows nearest to any caption (``torch.argsort`` of the column minima
    of D = 1 - outputs, its order among ties kept), in temporal order; the block scaled by T0 T1 / (its cells) and
    padded to (T0, T1) (the most captions, the most windows of a video) with :func:`original_pad`; the transposed
    block for OTAM's second direction is padded to the same untransposed (T0, T1), so a block with more kept
    windows than T0 is cropped; float32 R and the column-1 sign defect as in the clip-level loop."""
    caption_ids = [vid for vid, n in zip(video_ids, text_lengths) for _ in range(n)]
    window_ids = [vid for vid, n in zip(video_ids, video_lengths) for _ in range(n)]
    videos = sorted(set(video_ids))
    texts, windows = _members(caption_ids, videos), _members(window_ids, videos)
    best = np.stack([np.max(outputs[:, v], axis=1) for v in windows], 1)
    caption_average = np.stack([np.mean(best[v, :], axis=0) for v in texts], 0)
    T0, T1 = max(len(v) for v in texts), max(len(v) for v in windows)
    distances = torch.tensor(1 - outputs)
    sims = {"caption_average": caption_average}
    for otam in (False, True):
        rows, rows_t = [], []
        for ti in texts:
            grids, grids_t = [], []
            for wj in windows:
                grid = distances[ti[0]: ti[-1] + 1, wj[0]: wj[-1] + 1].view(1, 1, len(ti), len(wj)).detach()
                nearest, _ = torch.min(grid.view(len(ti), len(wj)), dim=0)
                keep = torch.unique(torch.sort(torch.argsort(nearest)[: int(1.3 * grid.shape[-2])])[0])
                grid = torch.index_select(grid, dim=-1, index=keep)
                grid *= (T0 * T1) / (grid.shape[-2] * grid.shape[-1])
                grids.append(original_pad(grid, T0, T1, otam))
                if otam:
                    grids_t.append(original_pad(torch.transpose(grid, -2, -1), T0, T1, otam))
            rows.append(torch.cat(grids, dim=1))
            if otam:
                rows_t.append(torch.cat(grids_t, dim=1))
        sims["otam" if otam else "dtw"] = -_grid_costs(rows, rows_t, otam).numpy()
    return original_metrics(**sims), sims


# ----------------------------------------------------------------------------------------------------------------
# MSR-VTT retrieval and multiple-choice QA, as MMPT's RetrievalMetric / QAPredictor + QAMetric computed them
# ----------------------------------------------------------------------------------------------------------------
def original_retrieval_metrics(x: np.ndarray) -> dict:
    """MMPT ``RetrievalMetric.compute_metrics`` (the HowTo100M formula): sort every row of ``-x``, subtract the
    true score, and take every position where the difference is exactly 0 as a rank entry.  Defect reproduced: a
    query tied with ``t`` other candidates gives ``t + 1`` entries (and a NaN or infinite true score none).  Raises
    ZeroDivisionError when no entry is left, as the original did."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    ind = np.where(sx - d == 0)[1]
    return {"R1": float(np.sum(ind == 0)) / len(ind), "R5": float(np.sum(ind < 5)) / len(ind),
            "R10": float(np.sum(ind < 10)) / len(ind), "MR": np.median(ind) + 1}


def original_qa_accuracy(video: torch.Tensor, text: torch.Tensor, answers: np.ndarray) -> float:
    """MMPT ``QAPredictor`` + ``QAMetric``: ``scores = bmm(video [N, 5, H], textᵀ [N, H, 5])`` (the video
    repeated 5 times), ``argmax(-1)[:, 0]`` the chosen candidate, accuracy against ``answers [N]`` (sklearn's
    ``accuracy_score``, here its arithmetic: the mean of exact matches).  Defect reproduced: ``argmax`` takes the
    first of equal scores, so a question whose answer text also sits at an earlier position counts as wrong."""
    scores = torch.bmm(video, text.transpose(2, 1)).argmax(-1)
    chosen = scores[:, 0].numpy()
    hits = 0
    for predicted, answer in zip(chosen.tolist(), np.asarray(answers).tolist()):
        hits += int(predicted == answer)
    return hits / len(chosen)


# COIN action segmentation (MMPT COINPredictor / COINZSPredictor / COINActionSegmentationMetric)
# ----------------------------------------------------------------------------------------------------------------
def original_coin_merge_windows(batch_logits: torch.Tensor, video_len: int, sliding_window: int,
                                sliding_window_size: int) -> torch.Tensor:
    """The windowed logits of one video ``[Σlen, C]`` (padding rows already removed) averaged per second ``[T, C]``:
    the original's loop over the aligner's windows, a sum and a count per second, then one division."""
    logits = torch.zeros((video_len, batch_logits.size(1)))
    logits_counts = torch.zeros((video_len, 1), dtype=torch.long)
    batch_logit_idx = 0
    for window_start in range(0, video_len, sliding_window):
        video_end = min(video_len - window_start, sliding_window_size)
        logits[window_start: window_start + video_end] += batch_logits[batch_logit_idx: batch_logit_idx + video_end]
        batch_logit_idx += video_end
        logits_counts[window_start: window_start + video_end] += torch.ones((video_end, 1), dtype=torch.long)
        if (video_len - window_start) <= sliding_window_size:
            break
    logits /= logits_counts
    return logits


def original_coin_zs_labels(logits: torch.Tensor, lbd: torch.Tensor) -> torch.Tensor:
    """Zero-shot labels of ``logits [T, K]`` (seconds against step names): ``argmax + 1`` where the maximum exceeds
    ``lbd``, else 0 (background)."""
    logits_argmax = logits.argmax(dim=1) + 1
    logits_max = logits.max(dim=1)[0]
    pred = torch.zeros_like(logits_argmax)
    label_select = logits_max > lbd
    pred[label_select] = logits_argmax[label_select]
    return pred


def original_coin_frame_acc(outputs: np.ndarray, targets: np.ndarray) -> float:
    """The original frame accuracy: ``1 - errors / frames`` with the errors counted by Python's ``sum``."""
    n_errors = sum(outputs != targets)
    n_frames = len(targets)
    return 1.0 - float(n_errors) / n_frames


# ----------------------------------------------------------------------------------------------------------------
# DiDeMo moment localisation (MMPT DiDeMoPredictor / DiDeMoMetric)
# ----------------------------------------------------------------------------------------------------------------
DIDEMO_SEGMENTS = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)] + [
    (a, b) for a in range(6) for b in range(a + 1, 6)]


def original_didemo_rankings(hidden_video: torch.Tensor, vmasks: torch.Tensor,
                             pooled_text: torch.Tensor) -> list[list[tuple[int, int]]]:
    """The original predictor's ``__call__`` on one batch: ``hidden_video [B, Lv + 2, H]`` (with ``[CLS]`` and
    ``[SEP]``), ``vmasks [B, Lv]``, ``pooled_text [B, H]`` -> per description its moments best first.  Defects kept:
    each moment is the plain mean of its positions, padding included; moments without a valid position are left
    out of the ranking.  The sort is a stable descending one (the original's ``argsort`` left ties unordered)."""
    hidden_video = hidden_video[:, 1:-1, :]
    pooled_video = []
    for s, e in DIDEMO_SEGMENTS:
        pooled_video.append(torch.mean(hidden_video[:, int(s * 5):int((e + 1) * 5), :], dim=1, keepdim=True))
    pooled_video = torch.cat(pooled_video, dim=1)
    scores = torch.bmm(pooled_video, pooled_text.unsqueeze(-1)).squeeze(-1).cpu()
    ranks = scores.argsort(dim=-1, descending=True, stable=True)
    full_scores = []
    for batch_idx, rank in enumerate(ranks):
        rank_of_moment = []
        for moment in rank:
            s, e = DIDEMO_SEGMENTS[moment.item()]
            if torch.any(vmasks[batch_idx, int(s * 5):int((e + 1) * 5)]):
                rank_of_moment.append((s, e))
        full_scores.append(rank_of_moment)
    return full_scores


def _didemo_iou(pred, gt) -> float:
    intersection = max(0, min(pred[1], gt[1]) + 1 - max(pred[0], gt[0]))
    union = max(pred[1], gt[1]) + 1 - min(pred[0], gt[0])
    return float(intersection) / union


def original_didemo_eval(segments: list, data: list) -> tuple[float, float, float]:
    """The original metric: per description the mean of the 3 best ranks of its annotated moments found in the
    ranking (``list.index``), the mean of the 3 best IoUs of the first moment; Rank@1, Rank@5, mean IoU.  Defect
    kept: annotated moments missing from the ranking are skipped, and a description with none of them gets the
    mean of nothing (NaN, with numpy's warning), which counts as a miss."""
    average_ranks = []
    average_iou = []
    for s, d in zip(segments, data):
        pred = s[0]
        ious = [_didemo_iou(pred, t) for t in d["times"]]
        average_iou.append(np.mean(np.sort(ious)[-3:]))
        ranks = [s.index(tuple(t)) + 1 for t in d["times"] if tuple(t) in s]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            average_ranks.append(np.mean(np.sort(ranks)[:3]))
    rank1 = np.sum(np.array(average_ranks) <= 1) / float(len(average_ranks))
    rank5 = np.sum(np.array(average_ranks) <= 5) / float(len(average_ranks))
    miou = np.mean(average_iou)
    return float(rank1), float(rank5), float(miou)
