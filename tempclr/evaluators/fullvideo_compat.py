"""The original TempCLR full-video retrieval arithmetic, reproduced exactly (``eval.metric_compat: original``).

Published YouCook2 full-video numbers were computed with this arithmetic, defects included; it is kept so that
results can be compared with those tables.  What the original did, and this module repeats:

* **Grouping.**  A video owns every position whose id *contains* the video's id as a substring (``"ab"`` also
  owns the clips of ``"abc"``), and its block is sliced ``[first : last + 1]``, so a video whose positions are not
  contiguous cannot be scored (the original failed there; here a ``ValueError`` says so).  Video order: the
  original took ``set`` order, which changes from run to run with string hashing; here the clip-level metric
  uses the order of first appearance and the background variant sorts the ids (as the original did there).
* **Distances and scaling.**  ``D = 1 - scores`` in the scores' dtype (dot products, so "distances" can be
  negative), multiplied by ``Lmax^2 / (|i| |j|)`` (background: ``Lmax_text * Wmax / (L_i * K_ij)``) in that dtype.
  In the clip-level metric that multiplication was done in place on the shared distance matrix, so where two
  videos' blocks overlap (substring ids) an entry is scaled once per pair that reads it, pair by pair in order.
* **Padding** every grid to one size: ``+inf`` outside the real block, then zeros on
  ``[-d0 - 1 :, -d1 :]`` (``d0`` / ``d1`` the row / column padding).  With ``d1 == 0`` (a pair with the longest
  candidate) that slice covers every column, so the last real row is zeroed.  OTAM grids first get a zero column
  on each side.  The background variant pads the transposed OTAM grid (windows x captions) to the same
  ``(Lmax_text, Wmax)`` targets as the untransposed one: rows past ``Lmax_text`` are cropped, and negative
  padding amounts turn the zero slice into an offset from the start.
* **Recursions** in float32 accumulators (float64 costs are added in float64 and rounded to float32 per cell):
  hard DTW, and hard OTAM whose column 1 *subtracts* the minimum of its predecessors.
* **Background filtering**: per window the smallest distance to any of the query's captions, the first
  ``int(1.3 * L_i)`` windows of ``torch.argsort`` of those (torch's CPU order on exact ties), back in temporal order.
* **Recall** from ``np.argsort`` of each score row: a query counts at ``k`` when its video is among the last ``k``
  columns of the argsort, so ties are broken by position.

The per-pair work runs in numba kernels (parallel over query videos where pairs are independent); the results
equal the original's float32 arithmetic bit for bit.
"""
from __future__ import annotations

from typing import Any, Sequence

import numba
import numpy as np
import torch
from numba import njit, prange

__all__ = [
    "substring_blocks",
    "caption_average_scores",
    "argsort_recall",
    "fullvideo_alignment_scores",
    "background_alignment_scores",
]


# ----------------------------------------------------------------------------------------------------------------
# grouping and the cheap parts (numpy, same calls as the original)
# ----------------------------------------------------------------------------------------------------------------
def substring_blocks(position_ids: Sequence[str], videos: Sequence[str], what: str, name: str) -> list[np.ndarray]:
    """Per video, the positions whose id contains the video's id, ascending; each must be a contiguous range.

    position_ids [n_positions] str (one per clip, caption or window); videos [n_videos] str.  ``what`` names the
    positions and ``name`` the metric in the error raised for a non-contiguous block."""
    first_seen: dict[str, list[int]] = {}
    for position, pid in enumerate(position_ids):
        if not isinstance(pid, str):
            raise ValueError(f"{name} (eval.metric_compat: original): video ids must be strings for the original's "
                             f"substring matching; got {pid!r} ({type(pid).__name__})")
        first_seen.setdefault(pid, []).append(position)
    blocks = []
    for video in videos:
        owned = [p for pid, positions in first_seen.items() if video in pid for p in positions]
        block = np.array(sorted(owned), dtype=np.int64)
        if block[-1] - block[0] + 1 != len(block):
            raise ValueError(
                f"{name} (eval.metric_compat: original): the {what} of video {video!r} (ids containing it) are "
                f"not contiguous (positions {block.tolist()}); the original arithmetic slices each video's block "
                f"[first:last+1] and cannot score them. Remove eval.metric_compat to use the corrected metric, "
                f"which groups by exact id"
            )
        blocks.append(block)
    return blocks


def caption_average_scores(scores: np.ndarray, col_blocks: list[np.ndarray], row_blocks: list[np.ndarray]):
    """The original caption average: per caption the max over each video's columns, then per video the mean over
    its caption rows (numpy, in the scores' dtype).  Returns [n_videos, n_videos]."""
    best = np.stack([np.max(scores[:, block], axis=1) for block in col_blocks], 1)
    return np.stack([np.mean(best[block, :], axis=0) for block in row_blocks], 0)


def argsort_recall(scores: np.ndarray) -> tuple[float, float, float]:
    """R@1, R@5, R@10 as the original computed them: query ``i`` (true candidate ``i``) counts at ``k`` when ``i``
    is among the last ``k`` entries of ``np.argsort(scores[i])``.  scores [n, n], higher = better."""
    predictions = np.argsort(scores, 1)
    truth = np.arange(scores.shape[0])[:, None]
    return tuple(float(np.mean((predictions[:, -k:] == truth).any(axis=1))) for k in (1, 5, 10))


# ----------------------------------------------------------------------------------------------------------------
# numba: one padded grid
# ----------------------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _slice_start(start, n):
    """Where ``x[start:]`` begins in a length-n axis (Python slice rules; ``start = -0`` is 0)."""
    if start < 0:
        start += n
        return 0 if start < 0 else start
    return n if start > n else start


@njit(cache=True, inline="always")
def _dtw_cost_at(B, r, c, l, m, zr, zc):
    if l >= zr and m >= zc:
        return 0.0
    if l < r and m < c:
        return np.float64(B[l, m])
    return np.inf


@njit(cache=True)
def _padded_dtw(B, r, c, T0, T1, prev, cur):
    """Hard DTW corner of the real block B[:r, :c] padded to (T0, T1) the original's way; float32 accumulators."""
    zr = _slice_start(-(T0 - r) - 1, T0)
    zc = _slice_start(-(T1 - c), T1)
    prev[0] = _dtw_cost_at(B, r, c, 0, 0, zr, zc)
    for m in range(1, T1):
        prev[m] = _dtw_cost_at(B, r, c, 0, m, zr, zc) + np.float64(prev[m - 1])
    for l in range(1, T0):
        cur[0] = _dtw_cost_at(B, r, c, l, 0, zr, zc) + np.float64(prev[0])
        for m in range(1, T1):
            best = min(min(prev[m - 1], cur[m - 1]), prev[m])
            cur[m] = _dtw_cost_at(B, r, c, l, m, zr, zc) + np.float64(best)
        prev, cur = cur, prev
    return prev[T1 - 1]


@njit(cache=True, inline="always")
def _otam_cost_at(B, r, c, l, m, zr, zc):
    if l >= zr and m >= zc:
        return 0.0
    if l < r and m < c + 2:
        if m == 0 or m == c + 1:
            return 0.0
        return np.float64(B[l, m - 1])
    return np.inf


@njit(cache=True)
def _padded_otam(B, r, c, T0, T1, prev, cur):
    """Hard one-way OTAM corner of B[:r, :c] with zero side columns, padded to (T0, T1 + 2) the original's way;
    column 1 subtracts its minimum, as the original did; float32 accumulators."""
    width = T1 + 2
    zr = _slice_start(-(T0 - r) - 1, T0)
    zc = _slice_start(-(T1 - c), width)
    prev[0] = 0.0
    for m in range(1, width):
        prev[m] = _otam_cost_at(B, r, c, 0, m, zr, zc) + np.float64(prev[m - 1])
    for l in range(1, T0):
        cur[0] = 0.0
        cur[1] = _otam_cost_at(B, r, c, l, 1, zr, zc) - np.float64(min(min(prev[0], prev[1]), cur[0]))
        for m in range(2, width - 1):
            cur[m] = _otam_cost_at(B, r, c, l, m, zr, zc) + np.float64(min(prev[m - 1], cur[m - 1]))
        last = width - 1
        best = min(min(prev[last - 1], prev[last]), cur[last - 1])
        cur[last] = _otam_cost_at(B, r, c, l, last, zr, zc) + np.float64(best)
        prev, cur = cur, prev
    return prev[width - 1]


@njit(cache=True, inline="always")
def _score_block(B, Bt, r, c, T0, T1, otam, prev, cur):
    """The original's score (minus the cost) of one scaled block: DTW, or OTAM(B) + OTAM(B^T), both directions
    padded to the same (T0, T1) targets."""
    if not otam:
        return -_padded_dtw(B, r, c, T0, T1, prev, cur)
    for a in range(r):
        for b in range(c):
            Bt[b, a] = B[a, b]
    forward = _padded_otam(B, r, c, T0, T1, prev, cur)
    backward = _padded_otam(Bt, c, r, T0, T1, prev, cur)
    return -(forward + backward)


# ----------------------------------------------------------------------------------------------------------------
# numba: all pairs
# ----------------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _full_rows(work, starts, lens, factors, T, otam, inplace, out, i_lo, i_hi):
    n = starts.shape[0]
    size = max(T, lens.max())
    B = np.empty((size, size), work.dtype)
    Bt = np.empty((size, size), work.dtype)
    prev = np.empty(T + 2, np.float32)
    cur = np.empty(T + 2, np.float32)
    for i in range(i_lo, i_hi):
        for j in range(n):
            r = lens[i]
            c = lens[j]
            f = factors[i, j]
            for a in range(r):
                for b in range(c):
                    scaled = work[starts[i] + a, starts[j] + b] * f
                    B[a, b] = scaled
                    if inplace:
                        work[starts[i] + a, starts[j] + b] = scaled
            out[i, j] = _score_block(B, Bt, r, c, T, T, otam, prev, cur)


@njit(parallel=True, cache=True)
def _full_parallel(work, starts, lens, factors, T, otam, out, parts):
    n = starts.shape[0]
    for p in prange(parts):
        _full_rows(work, starts, lens, factors, T, otam, False, out, p * n // parts, (p + 1) * n // parts)


@njit(cache=True)
def _window_minima(work, t_starts, t_lens, v_starts, v_lens, mins):
    """mins[j, i, w] = min over the caption rows of video i of work[row, window w of video j] (inf past W_j)."""
    n = t_starts.shape[0]
    for j in range(n):
        for i in range(n):
            for w in range(mins.shape[2]):
                mins[j, i, w] = np.inf
            for a in range(t_lens[i]):
                for w in range(v_lens[j]):
                    value = work[t_starts[i] + a, v_starts[j] + w]
                    if value < mins[j, i, w]:
                        mins[j, i, w] = value


@njit(cache=True)
def _background_rows(work, t_starts, t_lens, v_starts, v_lens, kept, counts, factors, T0, T1, otam, out, i_lo, i_hi):
    n = t_starts.shape[0]
    size = max(max(T0, T1), max(t_lens.max(), v_lens.max()))
    B = np.empty((size, size), work.dtype)
    Bt = np.empty((size, size), work.dtype)
    prev = np.empty(max(T0, T1) + 2, np.float32)
    cur = np.empty(max(T0, T1) + 2, np.float32)
    for i in range(i_lo, i_hi):
        for j in range(n):
            r = t_lens[i]
            c = counts[i, j]
            f = factors[i, j]
            k = 0
            for w in range(v_lens[j]):
                if kept[i, j, w]:
                    for a in range(r):
                        B[a, k] = work[t_starts[i] + a, v_starts[j] + w] * f
                    k += 1
            out[i, j] = _score_block(B, Bt, r, c, T0, T1, otam, prev, cur)


@njit(parallel=True, cache=True)
def _background_parallel(work, t_starts, t_lens, v_starts, v_lens, kept, counts, factors, T0, T1, otam, out, parts):
    n = t_starts.shape[0]
    for p in prange(parts):
        _background_rows(work, t_starts, t_lens, v_starts, v_lens, kept, counts, factors, T0, T1, otam, out,
                         p * n // parts, (p + 1) * n // parts)


# ----------------------------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------------------------
def _parts(n: int) -> int:
    return max(1, min(n, numba.get_num_threads()))


def _block_bounds(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.array([block[0] for block in blocks], dtype=np.int64)
    lens = np.array([len(block) for block in blocks], dtype=np.int64)
    return starts, lens


def _overlapping(starts: np.ndarray, lens: np.ndarray) -> bool:
    order = np.argsort(starts, kind="stable")
    ends = (starts + lens)[order]
    return bool((starts[order][1:] < ends[:-1]).any())


def fullvideo_alignment_scores(scores: np.ndarray, blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The original clip-level full-video DTW and OTAM scores (minus the costs), float32 [n_videos, n_videos].

    scores [n_clips, n_clips] float32 / float64; blocks: each video's contiguous clip positions
    (:func:`substring_blocks`)."""
    starts, lens = _block_bounds(blocks)
    T = int(lens.max())
    n = len(blocks)
    factors = ((T * T) / (lens[:, None] * lens[None, :])).astype(scores.dtype)
    results = []
    for otam in (False, True):
        work = np.ascontiguousarray(1 - scores)  # a fresh distance matrix for each block, as the original
        out = np.empty((n, n), np.float32)
        if _overlapping(starts, lens):  # scaled in place pair after pair: the order matters
            _full_rows(work, starts, lens, factors, T, otam, True, out, 0, n)
        else:
            _full_parallel(work, starts, lens, factors, T, otam, out, _parts(n))
        results.append(out)
    return results[0], results[1]


def _kept_by_argsort(mins: np.ndarray, v_lens: np.ndarray, t_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """kept [n_q, n_c, Wmax] bool: the first int(1.3 L_i) windows of torch.argsort of each pair's minima."""
    n = len(t_lens)
    kept = np.zeros((n, n, mins.shape[2]), np.bool_)
    limit = np.array([int(1.3 * int(L)) for L in t_lens], dtype=np.int64)
    rows = np.arange(n)[:, None]
    for j in range(n):
        W = int(v_lens[j])
        order = torch.argsort(torch.from_numpy(np.ascontiguousarray(mins[j, :, :W])), dim=1).numpy()
        rank = np.empty_like(order)
        rank[rows, order] = np.arange(W)[None, :]
        kept[:, j, :W] = rank < limit[:, None]
    return kept, kept.sum(axis=2).astype(np.int64)


def background_alignment_scores(
    scores: np.ndarray, text_blocks: list[np.ndarray], window_blocks: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The original background-kept DTW and OTAM scores (minus the costs), float32 [n_videos, n_videos].

    scores [n_captions, n_windows] float32 / float64; text_blocks / window_blocks: each video's contiguous caption
    rows and window columns (:func:`substring_blocks`)."""
    t_starts, t_lens = _block_bounds(text_blocks)
    v_starts, v_lens = _block_bounds(window_blocks)
    T0, T1 = int(t_lens.max()), int(v_lens.max())
    n = len(text_blocks)
    work = np.ascontiguousarray(1 - scores)
    mins = np.empty((n, n, T1), work.dtype)
    _window_minima(work, t_starts, t_lens, v_starts, v_lens, mins)
    kept, counts = _kept_by_argsort(mins, v_lens, t_lens)
    factors = ((T0 * T1) / (t_lens[:, None] * counts)).astype(scores.dtype)
    results = []
    for otam in (False, True):
        out = np.empty((n, n), np.float32)
        _background_parallel(work, t_starts, t_lens, v_starts, v_lens, kept, counts, factors, T0, T1, otam, out,
                             _parts(n))
        results.append(out)
    return results[0], results[1]
