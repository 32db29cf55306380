"""Full-video retrieval: clips grouped by video, and the alignment cost of every (query video, candidate video) pair.

A full-video query is the sequence of one video's captions; a candidate is the sequence of another video's clips
(or 16-second windows, background kept).  Each pair gets the distance grid ``D = 1 - scores[rows, cols]``
(``rows`` the query's captions, ``cols`` the candidate's clips, both in temporal order) and two costs:

* the hard DTW cost of ``D`` (min over monotone paths from the first to the last cell), and
* the hard two-way OTAM cost ``OTAM(D) + OTAM(D^T)`` (free first and last column on both sides, so an alignment
  may start late and end early; see :func:`tempclr.modules.alignment.hard_otam`),

each divided by the number of cells of ``D`` so that long and short videos compete on an equal footing.

Background kept: with ``keep[q]`` windows per query, a candidate keeps only the ``min(keep[q], n_windows)``
windows whose smallest distance to any of the query's captions is smallest (the earlier window first on an exact
tie), in temporal order, and the grid is built on those.

Every grid is small (a few to a few dozen cells a side) and there are ``n_videos^2`` of them, so the work is the
bookkeeping.  Three engines compute the same numbers (float64, exactly equal):

* ``"kernel"`` (default): one numba kernel loops over the pairs (parallel over queries) and runs both recursions
  on each grid in place, reading the scores through the index lists: nothing is padded or copied;
* ``"buckets"``: pairs grouped by exact grid size, each group gathered into a ``[P, L, K]`` batch and scored by
  :func:`~tempclr.modules.alignment.hard_dtw` / :func:`~tempclr.modules.alignment.hard_otam` (no padding);
* ``"padded"``: the pairs in chunks of one ``[P, Lmax, Kmax]`` batch with per-pair ``lengths``, scored by the same
  two functions.

BENCHMARKS.md ("Full-video retrieval metrics") has the timings that chose the default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numba
import numpy as np
import torch
from numba import njit, prange

from tempclr.modules.alignment import hard_dtw, hard_otam

__all__ = [
    "ENGINES",
    "Segments",
    "segments_by_id",
    "segments_by_counts",
    "kept_windows",
    "pair_costs",
    "mean_max_scores",
]

ENGINES = ("kernel", "buckets", "padded")
_PADDED_CHUNK_CELLS = 1 << 22  # grid cells per padded batch (32 MiB of float64)


@dataclass(frozen=True)
class Segments:
    """Members of each video, in temporal order: video ``v`` owns rows (or columns) ``index[starts[v] :
    starts[v] + lengths[v]]`` of the score matrix.  ``ids`` [n_videos] names the videos; ``index`` [n_members],
    ``starts`` / ``lengths`` [n_videos] int64."""

    ids: list
    index: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def segments_by_id(video_ids: Sequence[Any]) -> Segments:
    """Group positions by exact video id: videos in order of first appearance, each video's positions in their
    order in ``video_ids`` (they need not be contiguous).  ``video_ids`` [n_clips] hashable ids."""
    ids: list = []
    slot: dict = {}
    labels = np.empty(len(video_ids), np.int64)
    for position, vid in enumerate(video_ids):
        label = slot.get(vid)
        if label is None:
            label = slot[vid] = len(ids)
            ids.append(vid)
        labels[position] = label
    index = np.argsort(labels, kind="stable").astype(np.int64)
    lengths = np.bincount(labels, minlength=len(ids)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Segments(ids, index, starts, lengths)


def segments_by_counts(video_ids: Sequence[Any], counts: Sequence[int]) -> Segments:
    """Consecutive blocks: video ``v`` owns the next ``counts[v]`` positions (``counts`` [n_videos] >= 1)."""
    lengths = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Segments(list(video_ids), np.arange(int(lengths.sum()), dtype=np.int64), starts, lengths)


def mean_max_scores(scores: np.ndarray, rows: Segments, cols: Segments) -> np.ndarray:
    """Caption-average similarity ``S [n_query_videos, n_candidate_videos]``: per caption the best score over the
    candidate's clips, averaged over the query video's captions (float64).  ``scores`` [n_rows, n_cols]."""
    scores = np.asarray(scores)
    by_col = scores if _is_identity(cols.index, scores.shape[1]) else scores[:, cols.index]
    # max is exact in any dtype; the mean is taken in float64.  Every segment is non-empty.
    best = np.maximum.reduceat(by_col, cols.starts, axis=1).astype(np.float64)  # [n_rows, n_cand]
    by_row = best if _is_identity(rows.index, best.shape[0]) else best[rows.index]
    summed = np.add.reduceat(by_row, rows.starts, axis=0)
    return summed / rows.lengths[:, None]


def _is_identity(index: np.ndarray, n: int) -> bool:
    return index.shape[0] == n and bool((index == np.arange(n)).all())


# ----------------------------------------------------------------------------------------------------------------
# numba: the recursions on one grid, and the kernels over all pairs
# ----------------------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _dtw_cost(G, L, K, prev, cur):
    """Hard DTW cost of ``G[:L, :K]``: R[0, m] and R[l, 0] cumulative sums, R[l, m] = G[l, m] + min(R[l-1, m-1],
    R[l, m-1], R[l-1, m]); returns R[L-1, K-1].  prev / cur: scratch rows of length >= K."""
    acc = 0.0
    for m in range(K):
        acc = G[0, m] + acc
        prev[m] = acc
    for l in range(1, L):
        cur[0] = G[l, 0] + prev[0]
        for m in range(1, K):
            cur[m] = G[l, m] + min(prev[m - 1], cur[m - 1], prev[m])
        prev, cur = cur, prev
    return prev[K - 1]


@njit(cache=True, inline="always")
def _otam_cost(G, L, K, transpose, prev, cur):
    """Hard one-way OTAM cost of ``G[:L, :K]`` (or of its transpose): the grid has a zero column on each side of
    the cost columns (width cols + 2); row 0 is a cumulative sum; in later rows column 0 stays 0, column 1 and the
    last column take the min over diagonal, left and above, the cost columns between over diagonal and left.
    Returns R[rows-1, cols+1].  prev / cur: scratch rows of length >= cols + 2."""
    rows = K if transpose else L
    cols = L if transpose else K
    last = cols + 1
    acc = 0.0
    prev[0] = 0.0
    for j in range(1, cols + 1):
        acc = (G[j - 1, 0] if transpose else G[0, j - 1]) + acc
        prev[j] = acc
    prev[last] = acc
    for i in range(1, rows):
        cur[0] = 0.0
        first = G[0, i] if transpose else G[i, 0]
        cur[1] = first + min(prev[0], cur[0], prev[1])
        for j in range(2, cols + 1):
            cost = G[j - 1, i] if transpose else G[i, j - 1]
            cur[j] = cost + min(prev[j - 1], cur[j - 1])
        cur[last] = min(prev[last - 1], cur[last - 1], prev[last])
        prev, cur = cur, prev
    return prev[last]


@njit(cache=True, inline="always")
def _query_minima(scores, r_index, r0, L, c_index, minima):
    """minima[k] = the smallest distance 1 - score of column c_index[k] to any of the query's caption rows
    (r_index[r0 .. r0 + L - 1]), for every candidate column at once (row by row: contiguous reads)."""
    for k in range(c_index.shape[0]):
        minima[k] = np.inf
    for l in range(L):
        row = r_index[r0 + l]
        for k in range(c_index.shape[0]):
            minima[k] = min(minima[k], 1.0 - np.float64(scores[row, c_index[k]]))


@njit(cache=True, inline="always")
def _select_windows(minima, c_index, c0, W, k, order, flags, picked):
    """The ``k`` windows of the candidate (positions c0 .. c0 + W - 1 of c_index) with the smallest minima, in
    temporal order, written to picked[:k] as score-matrix columns; on an exact tie the earlier window wins.
    order / flags: scratch of length >= W.  With k >= W every window is kept (no sort)."""
    if k >= W:
        for n in range(W):
            picked[n] = c_index[c0 + n]
        return
    # stable insertion sort of the window numbers by their minima (W is a few dozen at most)
    for w in range(W):
        n = w
        while n > 0 and minima[c0 + order[n - 1]] > minima[c0 + w]:
            order[n] = order[n - 1]
            n -= 1
        order[n] = w
    # the first k of that order, put back in temporal order: mark them, then scan the windows
    for w in range(W):
        flags[w] = False
    for n in range(k):
        flags[order[n]] = True
    n = 0
    for w in range(W):
        if flags[w]:
            picked[n] = c_index[c0 + w]
            n += 1


@njit(cache=True)
def _kept_windows_rows(scores, r_index, r_starts, r_lens, c_index, c_starts, c_lens, keep, kept, counts, q_lo, q_hi):
    Kmax = kept.shape[2]
    Wmax = max(1, c_lens.max())
    minima = np.empty(c_index.shape[0])
    order = np.empty(Wmax, np.int64)
    flags = np.empty(Wmax, np.bool_)
    for q in range(q_lo, q_hi):
        if keep[q] < c_lens.max():
            _query_minima(scores, r_index, r_starts[q], r_lens[q], c_index, minima)
        for c in range(c_starts.shape[0]):
            W = c_lens[c]
            k = min(keep[q], W)
            counts[q, c] = k
            _select_windows(minima, c_index, c_starts[c], W, k, order, flags, kept[q, c])
            for n in range(k, Kmax):
                kept[q, c, n] = -1


@njit(parallel=True, cache=True)
def _kept_windows_kernel(scores, r_index, r_starts, r_lens, c_index, c_starts, c_lens, keep, kept, counts, parts):
    Q = r_starts.shape[0]
    for p in prange(parts):
        _kept_windows_rows(scores, r_index, r_starts, r_lens, c_index, c_starts, c_lens, keep, kept, counts,
                           p * Q // parts, (p + 1) * Q // parts)


@njit(cache=True)
def _pair_costs_rows(scores, r_index, r_starts, r_lens, c_index, c_starts, c_lens, keep, dtw_out, otam_out,
                     q_lo, q_hi):
    Lmax = r_lens.max()
    Wmax = c_lens.max()
    width = max(Lmax, Wmax) + 2
    prev = np.empty(width)
    cur = np.empty(width)
    G = np.empty((Lmax, Wmax))
    minima = np.empty(c_index.shape[0])
    order = np.empty(Wmax, np.int64)
    flags = np.empty(Wmax, np.bool_)
    picked = np.empty(Wmax, np.int64)
    for q in range(q_lo, q_hi):
        r0 = r_starts[q]
        L = r_lens[q]
        if keep[q] < Wmax:
            _query_minima(scores, r_index, r0, L, c_index, minima)
        for c in range(c_starts.shape[0]):
            c0 = c_starts[c]
            W = c_lens[c]
            K = min(keep[q], W)
            _select_windows(minima, c_index, c0, W, K, order, flags, picked)
            for l in range(L):
                row = r_index[r0 + l]
                for n in range(K):
                    G[l, n] = 1.0 - np.float64(scores[row, picked[n]])
            cells = np.float64(L * K)
            dtw_out[q, c] = _dtw_cost(G, L, K, prev, cur) / cells
            otam_out[q, c] = (_otam_cost(G, L, K, False, prev, cur) + _otam_cost(G, L, K, True, prev, cur)) / cells


@njit(parallel=True, cache=True)
def _pair_costs_kernel(scores, r_index, r_starts, r_lens, c_index, c_starts, c_lens, keep, dtw_out, otam_out, parts):
    Q = r_starts.shape[0]
    for p in prange(parts):
        _pair_costs_rows(scores, r_index, r_starts, r_lens, c_index, c_starts, c_lens, keep, dtw_out, otam_out,
                         p * Q // parts, (p + 1) * Q // parts)


# ----------------------------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------------------------
def _scores_array(scores: Any) -> np.ndarray:
    """float32 / float64 scores stay as they are (the kernels convert per cell); anything else goes to float64."""
    array = np.asarray(scores)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    return np.ascontiguousarray(array)


def _keep_array(keep: Optional[Sequence[int]], n_queries: int, cols: Segments) -> np.ndarray:
    if keep is None:
        return np.full(n_queries, max(1, int(cols.lengths.max())), dtype=np.int64)
    keep = np.asarray(keep, dtype=np.int64)
    if keep.shape != (n_queries,) or (keep < 1).any():
        raise ValueError(f"keep must hold one window count >= 1 per query video ({n_queries}); got {keep.tolist()}")
    return keep


def _parts(n_queries: int) -> int:
    return max(1, min(n_queries, numba.get_num_threads()))


def _kernel_args(scores: np.ndarray, rows: Segments, cols: Segments, keep: np.ndarray) -> tuple:
    return (scores, rows.index, rows.starts, rows.lengths, cols.index, cols.starts, cols.lengths, keep)


def kept_windows(
    scores: Any, rows: Segments, cols: Segments, keep: Optional[Sequence[int]] = None
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate columns each pair keeps (see the module docstring), as score-matrix column numbers.

    scores [n_rows, n_cols]; rows / cols: the query and candidate videos; keep [n_query_videos] windows kept per
    query (None: all).  Returns (kept [Q, C, Kmax] int64 in temporal order, padded with -1; counts [Q, C])."""
    scores = _scores_array(scores)
    keep = _keep_array(keep, len(rows), cols)
    Q, C = len(rows), len(cols)
    Kmax = int(min(keep.max(), cols.lengths.max()))
    kept = np.empty((Q, C, Kmax), np.int64)
    counts = np.empty((Q, C), np.int64)
    _kept_windows_kernel(*_kernel_args(scores, rows, cols, keep), kept, counts, _parts(Q))
    return kept, counts


def pair_costs(
    scores: Any,
    rows: Segments,
    cols: Segments,
    keep: Optional[Sequence[int]] = None,
    engine: str = "kernel",
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised hard DTW and two-way OTAM costs of every (query, candidate) pair on ``D = 1 - scores``.

    scores: [n_rows, n_cols] (captions x clips or windows; float32 / float64, anything else is read as float64);
    rows: the query videos (caption rows of each); cols: the candidate videos (their columns); keep: [Q] windows
    kept per query (background filtering, see the module docstring) or None for every column.
    Returns (dtw [Q, C], otam [Q, C]) float64: each cost divided by the number of cells of its grid."""
    if engine not in ENGINES:
        raise ValueError(f"pair_costs: engine must be one of {ENGINES}; got {engine!r}")
    scores = _scores_array(scores)
    keep_arr = _keep_array(keep, len(rows), cols)
    Q, C = len(rows), len(cols)
    if engine == "kernel":
        dtw = np.empty((Q, C))
        otam = np.empty((Q, C))
        _pair_costs_kernel(*_kernel_args(scores, rows, cols, keep_arr), dtw, otam, _parts(Q))
        return dtw, otam
    kept, counts = kept_windows(scores, rows, cols, keep_arr)
    if engine == "buckets":
        return _costs_by_bucket(scores, rows, kept, counts)
    return _costs_padded(scores, rows, kept, counts)


def _pair_rows(rows: Segments, queries: np.ndarray, L: int) -> np.ndarray:
    """[P, L] score-matrix rows of each pair's query: its captions, the last one repeated past its length."""
    offsets = np.minimum(np.arange(L)[None, :], rows.lengths[queries][:, None] - 1)
    return rows.index[rows.starts[queries][:, None] + offsets]


def _costs_by_bucket(scores: np.ndarray, rows: Segments, kept: np.ndarray, counts: np.ndarray):
    Q, C = counts.shape
    dtw = np.empty((Q, C))
    otam = np.empty((Q, C))
    q_len = np.broadcast_to(rows.lengths[:, None], (Q, C)).ravel()
    k_len = counts.ravel()
    pair_q = np.repeat(np.arange(Q), C)
    pair_c = np.tile(np.arange(C), Q)
    order = np.lexsort((k_len, q_len))
    key = q_len[order] * (kept.shape[2] + 1) + k_len[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    for group in np.split(order, bounds):
        L, K = int(q_len[group[0]]), int(k_len[group[0]])
        qs, cs = pair_q[group], pair_c[group]
        row_ids = _pair_rows(rows, qs, L)
        col_ids = kept[qs, cs, :K]
        grids = torch.from_numpy(1.0 - scores[row_ids[:, :, None], col_ids[:, None, :]].astype(np.float64))
        cells = float(L * K)
        dtw[qs, cs] = hard_dtw(grids).numpy() / cells
        otam[qs, cs] = hard_otam(grids, bidirectional=True).numpy() / cells
    return dtw, otam


def _costs_padded(scores: np.ndarray, rows: Segments, kept: np.ndarray, counts: np.ndarray):
    Q, C = counts.shape
    Lmax = int(rows.lengths.max())
    Kmax = kept.shape[2]
    dtw = np.empty(Q * C)
    otam = np.empty(Q * C)
    pair_q = np.repeat(np.arange(Q), C)
    pair_c = np.tile(np.arange(C), Q)
    q_len = rows.lengths[pair_q]
    k_len = counts.ravel()
    step = max(1, _PADDED_CHUNK_CELLS // (Lmax * Kmax))
    for lo in range(0, Q * C, step):
        sl = slice(lo, min(Q * C, lo + step))
        qs, cs = pair_q[sl], pair_c[sl]
        row_ids = _pair_rows(rows, qs, Lmax)  # rows past a query's length are outside its lengths: not scored
        col_ids = np.where(kept[qs, cs] < 0, 0, kept[qs, cs])
        grids = torch.from_numpy(1.0 - scores[row_ids[:, :, None], col_ids[:, None, :]].astype(np.float64))
        lengths = torch.from_numpy(np.stack([q_len[sl], k_len[sl]], axis=1))
        cells = (q_len[sl] * k_len[sl]).astype(np.float64)
        dtw[sl] = hard_dtw(grids, lengths).numpy() / cells
        otam[sl] = hard_otam(grids, lengths, bidirectional=True).numpy() / cells
    return dtw.reshape(Q, C), otam.reshape(Q, C)
