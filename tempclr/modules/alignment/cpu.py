"""CPU backend: numba kernels for the alignment recursion of ``grid.py``: scores, and scores with the expected
alignment (the analytic gradient).

Two schedules, chosen per call by shape (``use_wavefront``):

* lanes, for many grids (B >= 64, or grids under 16 cells on a side): described below;
* wavefront, for a few large grids: one problem at a time, its grid stored anti-diagonal by anti-diagonal so
  that the cells of one diagonal (independent of each other) form one SIMD loop; problems are spread over the
  threads when the call is large enough.  See the section "Wavefront schedule" below.

Memory per problem (beyond D and its gradient A, float32 = 4 bytes per value): lanes, for each of the up to 64
problems of the chunk a thread runs (a partial last chunk has only its real problems): R (L+1)(W+1), the costs
L W and E L W values, i.e. about 3 grids; wavefront, per thread whatever B: R and C, (L+1)(W+1) values each, about
2 grids (8 MiB for one 1024 x 1024 float32 grid), plus O(L + W).  W is the grid width: M for DTW, M + 2 for OTAM.

Layout.  Problems are processed in chunks of 64 lanes with the lane (problem) index innermost:
``R[chunk, i, j, lane]``.  The cell recursion is sequential inside one problem, but the lanes are independent, so
the innermost loop runs over problems and LLVM turns it into SIMD (AVX-512/AVX2) code; ``prange`` spreads the
chunks over cores when the work is large enough.  This is fast both for thousands of 5x5 problems and for a few
dozen 256x256 ones.  ``exp`` and ``log`` from libm would stop that vectorisation, so the file carries its own
branch-free ``exp`` (for arguments <= 0) and ``log`` (for arguments in [1, 3], all the soft-min needs), accurate to
the working precision (float32 or float64).  They live here, not in a helper module, because numba's on-disk
cache (``cache=True``) is invalidated only by edits to the file that holds the cached function.

Gradient.  When D needs a gradient, each chunk runs the forward sweep and right after it (R still in cache) the
backward sweep: ``E[i, j] = dScore / dR[i, j]`` (Cuturi & Blondel's expected alignment) is pushed from each cell to
its allowed predecessors in reverse order, with the soft-min weights ``softmax(-R[pred] / gamma)`` recomputed
from R.  The weights are normalised per cell, so ``E`` stays in ``[0, 1]`` for any gamma and distance scale (no
``exp((R[s] - D[s] - R[p]) / gamma)`` that overflows when R is large and gamma small).  The expected alignment
``A = dScore/dD`` is the cost-cell part of E; the autograd backward is ``grad * A``.  Cells outside an item's
lengths never receive anything, so their gradient is exactly 0.  R is kept only per chunk.

Fewer predecessors, less work.  Row 0 (only the cell on the left) and column 0 (only the cell above) need no
soft-min at all; in OTAM's middle columns, where no lane allows the vertical move, the soft-min runs over two
predecessors (one exp forward, one backward: the smaller predecessor's weight is 1).  Each of these is a branch
per column outside the lane loop: LLVM's vectoriser gave up on the sweeps when the same work was written as
separate loops after the column loop (BENCHMARKS.md lists what was tried).
"""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .grid import AlignPass

__all__ = ["cpu_scores", "cpu_scores_alignment", "cpu_matrix"]

# No "nnan"/"ninf": the grid borders are +inf and the kernels rely on IEEE inf arithmetic.  error_model="numpy"
# drops the ZeroDivisionError check on "/", whose branch would stop the vectoriser.
_FASTMATH = {"contract", "arcp", "nsz", "afn"}
_JIT = dict(fastmath=_FASTMATH, error_model="numpy")


# ----------------------------------------------------------------------------------------------------------------
# Vectorisable elementary functions.  Anything called from an inner loop must be inlined for LLVM to vectorise:
# the overloads below are small enough for LLVM to inline; _softmin3 is inlined at the numba IR level.
# ----------------------------------------------------------------------------------------------------------------
@intrinsic
def _f32_from_bits(typingctx, bits):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _f64_from_bits(typingctx, bits):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


def exp_nonpos(x):
    """``exp(x)`` for ``x <= 0`` (-inf and NaN give 0), vectorisable; the numba versions are the overloads."""
    return float(np.exp(x)) if x == x and x > -700.0 else 0.0


def log_one_plus(t):
    """``log(1 + t)`` for ``0 <= t <= 2``, vectorisable; the numba versions are the overloads."""
    return float(np.log1p(t))


def _exp32(x):
    # exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2; Taylor to r^7 (rel. error < 3e-7).
    xc = max(x, np.float32(-87.0))
    n = np.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5))
    r = xc - n * np.float32(0.693145751953125) - n * np.float32(1.428606765330187e-06)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    scale = _f32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    return p * scale if x >= np.float32(-87.0) else np.float32(0.0)


def _exp64(x):
    # Same scheme, Cody-Waite split of ln2, Taylor to r^13 (rel. error ~2e-16).
    xc = max(x, -708.0)
    n = np.floor(xc * 1.4426950408889634 + 0.5)
    r = xc - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _f64_from_bits((np.int64(n) + np.int64(1023)) << np.int64(52))
    return p * scale if x >= -708.0 else 0.0


def _log1p32(t):
    # s = 1 + t in [1, 3]; log s = log(sqrt 3) + 2 atanh(z), z = (s - sqrt 3) / (s + sqrt 3), |z| <= 0.268.
    s = np.float32(1.0) + t
    z = (s - np.float32(1.7320508075688772)) / (s + np.float32(1.7320508075688772))
    z2 = z * z
    p = np.float32(1.0 / 13.0)
    p = p * z2 + np.float32(1.0 / 11.0)
    p = p * z2 + np.float32(1.0 / 9.0)
    p = p * z2 + np.float32(1.0 / 7.0)
    p = p * z2 + np.float32(1.0 / 5.0)
    p = p * z2 + np.float32(1.0 / 3.0)
    p = p * z2 + np.float32(1.0)
    return np.float32(2.0) * z * p + np.float32(0.5493061443340549)


def _log1p64(t):
    s = 1.0 + t
    z = (s - 1.7320508075688772) / (s + 1.7320508075688772)
    z2 = z * z
    p = 1.0 / 31.0
    p = p * z2 + 1.0 / 29.0
    p = p * z2 + 1.0 / 27.0
    p = p * z2 + 1.0 / 25.0
    p = p * z2 + 1.0 / 23.0
    p = p * z2 + 1.0 / 21.0
    p = p * z2 + 1.0 / 19.0
    p = p * z2 + 1.0 / 17.0
    p = p * z2 + 1.0 / 15.0
    p = p * z2 + 1.0 / 13.0
    p = p * z2 + 1.0 / 11.0
    p = p * z2 + 1.0 / 9.0
    p = p * z2 + 1.0 / 7.0
    p = p * z2 + 1.0 / 5.0
    p = p * z2 + 1.0 / 3.0
    p = p * z2 + 1.0
    return 2.0 * z * p + 0.5493061443340549


@overload(exp_nonpos, jit_options=_JIT)
def _exp_nonpos_overload(x):
    if x == types.float32:
        return _exp32
    if x == types.float64:
        return _exp64
    return None


@overload(log_one_plus, jit_options=_JIT)
def _log_one_plus_overload(t):
    if t == types.float32:
        return _log1p32
    if t == types.float64:
        return _log1p64
    return None


@njit(inline="always", **_JIT)
def _softmin3(d, h, v, gamma, inv_gamma, hard):
    """smin_gamma(d, h, v) with +inf meaning "no such predecessor"; hard=True gives min.  Sorting the three
    values first saves one exp: the smallest one contributes exp(0) = 1."""
    lo = min(d, h)
    hi = max(d, h)
    m = min(lo, v)
    if hard:
        return m
    mid = min(hi, max(lo, v))
    top = max(hi, v)
    # m = +inf (no finite predecessor): both exps are exp(nan) = 0, log(1) = 0, result +inf.
    return m - gamma * log_one_plus(exp_nonpos((m - mid) * inv_gamma) + exp_nonpos((m - top) * inv_gamma))


# ----------------------------------------------------------------------------------------------------------------
# Kernels.  One chunk of CB lanes at a time; ``_*_chunks`` run a range of chunks serially and the ``_*_kernel``
# entry points only spread the chunks over threads with prange (code written inside a prange body is not
# vectorised as well).  Inner loops run over lanes b and carry same-row values in lane buffers (h_lane, e_left,
# e_diag), not through R[i, j - 1]: a store that feeds a load of the next iteration through memory stops LLVM's
# vectoriser.  Scratch arrays are allocated inside the chunk loop for the same reason (hoisting them out made
# the backward 5x slower).
# ----------------------------------------------------------------------------------------------------------------
@njit(inline="always", **_JIT)
def _load_chunk(D, lengths, b0, L, W, CB, otam, offset, transpose, dtype):
    """Lane metadata and costs of the chunk starting at item b0.

    Returns (nb real lanes, lane_rows, lane_cols, lane_last [CB] in grid orientation, vpen [W, CB] = 0 where the
    vertical move is allowed and +inf where OTAM forbids it, no_vert [W] = True where every lane forbids it (the
    sweeps then use the two-predecessor soft-min there), cost [L, W, CB] in grid coordinates: D inside each
    lane's lengths, 0 on OTAM's side columns and outside the lengths).  Items without lengths (lengths is empty)
    and dummy lanes past the batch use the whole grid."""
    B = D.shape[0]
    M = W - 2 * offset
    nb = min(CB, B - b0)
    has_lengths = lengths.shape[0] > 0
    lane_rows = np.empty(CB, np.int64)
    lane_cols = np.empty(CB, np.int64)
    lane_last = np.empty(CB, np.int64)
    for b in range(CB):
        if has_lengths and b < nb:
            lane_rows[b] = lengths[b0 + b, 1] if transpose else lengths[b0 + b, 0]
            lane_cols[b] = lengths[b0 + b, 0] if transpose else lengths[b0 + b, 1]
        else:
            lane_rows[b] = L
            lane_cols[b] = M
        lane_last[b] = lane_cols[b] + 2 * offset - 1
    vpen = np.zeros((W, CB), dtype)
    no_vert = np.zeros(W, np.bool_)
    if otam:
        for j in range(2, W):
            n_blocked = 0
            for b in range(CB):
                if j != lane_last[b]:
                    vpen[j, b] = np.inf
                    n_blocked += 1
            no_vert[j] = n_blocked == CB
    cost = np.zeros((L, W, CB), dtype)
    j_first = 1 if (otam and offset == 0) else 0  # a prepadded OTAM grid ignores column 0 of D
    for b in range(nb):
        Db = D[b0 + b]
        for i in range(lane_rows[b]):
            for jd in range(j_first, lane_cols[b]):
                cost[i, jd + offset, b] = Db[jd, i] if transpose else Db[i, jd]
    return nb, lane_rows, lane_cols, lane_last, vpen, no_vert, cost


@njit(inline="always", **_JIT)
def _softmin2(d, h, gamma, inv_gamma, hard):
    """smin_gamma(d, h): the soft-min where the vertical move is forbidden for every lane (one exp, not two)."""
    m = min(d, h)
    if hard:
        return m
    return m - gamma * log_one_plus(exp_nonpos((m - max(d, h)) * inv_gamma))


@njit(inline="always", **_JIT)
def _sweep_forward(Rc, cost, vpen, no_vert, gamma, inv_gamma, hard):
    """Fill the bordered cumulative costs Rc [L+1, W+1, CB] (row/column 0: +inf, Rc[0, 0] = 0)."""
    Lb, Wb, CB = Rc.shape
    zero = Rc.dtype.type(0.0)
    inf = Rc.dtype.type(np.inf)
    h_lane = np.empty(CB, Rc.dtype)
    for j in range(Wb):
        for b in range(CB):
            Rc[0, j, b] = inf
    for b in range(CB):
        Rc[0, 0, b] = zero
    # row 0: one predecessor, the cell on the left (the virtual start R[-1, -1] = 0 for cell (0, 0)), so a plain
    # cumulative sum: no exp, and exactly the hard boundary of the recursion
    for b in range(CB):
        Rc[1, 0, b] = inf
        h_lane[b] = zero
    for j in range(Wb - 1):
        for b in range(CB):
            r = cost[0, j, b] + h_lane[b]
            h_lane[b] = r
            Rc[1, j + 1, b] = r
    for i in range(1, Lb - 1):
        for b in range(CB):
            Rc[i + 1, 0, b] = inf
        # column 0: one predecessor, the cell above (both modes allow the vertical move there)
        for b in range(CB):
            r = cost[i, 0, b] + Rc[i, 1, b]
            h_lane[b] = r
            Rc[i + 1, 1, b] = r
        for j in range(1, Wb - 1):
            if no_vert[j]:
                for b in range(CB):
                    r = cost[i, j, b] + _softmin2(Rc[i, j, b], h_lane[b], gamma, inv_gamma, hard)
                    h_lane[b] = r
                    Rc[i + 1, j + 1, b] = r
            else:
                for b in range(CB):
                    v = Rc[i, j + 1, b] + vpen[j, b]
                    r = cost[i, j, b] + _softmin3(Rc[i, j, b], h_lane[b], v, gamma, inv_gamma, hard)
                    h_lane[b] = r
                    Rc[i + 1, j + 1, b] = r


@njit(inline="always", **_JIT)
def _seed_end_cells(e_below, i, seed, nb, lane_rows, lane_last):
    """Start the backward of row i: each lane whose end cell is in row i gets seed[b] there."""
    for b in range(nb):
        if i == lane_rows[b] - 1:
            e_below[lane_last[b] + 1, b] += seed[b]


@njit(inline="always", **_JIT)
def _sweep_backward(Rc, vpen, no_vert, seed, nb, lane_rows, lane_last, inv_gamma):
    """E [L, W, CB] = dScore / dR (times seed[b]) for every cell: the expected alignment.

    E is pushed from each cell to its allowed predecessors with the soft-min weights recomputed from Rc, row by
    row from the end: e_below[j + 1] holds what row i received from row i + 1 (plus the seed at the lane's end
    cell), e_up[j + 1] collects what row i sends to row i - 1, e_left / e_diag carry the horizontal and the
    diagonal push to the next cell of the sweep.  Cells outside a lane's lengths receive nothing (E = 0)."""
    Lb, Wb, CB = Rc.shape
    L = Lb - 1
    W = Wb - 1
    zero = Rc.dtype.type(0.0)
    one = Rc.dtype.type(1.0)
    e_grid = np.empty((L, W, CB), Rc.dtype)
    e_rows = np.zeros((2, Wb, CB), Rc.dtype)
    e_left = np.empty(CB, Rc.dtype)
    e_diag = np.empty(CB, Rc.dtype)
    for i in range(L - 1, 0, -1):
        e_below = e_rows[i % 2]
        e_up = e_rows[(i + 1) % 2]
        _seed_end_cells(e_below, i, seed, nb, lane_rows, lane_last)
        for b in range(CB):
            e_left[b] = zero
            e_diag[b] = zero
        for j in range(W - 1, -1, -1):
            if j == 0:
                # column 0: the only predecessor is the cell above; it also gets the diagonal push of column 1
                for b in range(CB):
                    e = e_below[1, b] + e_left[b]
                    e_grid[i, 0, b] = e
                    e_up[1, b] = e + e_diag[b]
                continue
            if no_vert[j]:
                for b in range(CB):
                    e = e_below[j + 1, b] + e_left[b]
                    e_grid[i, j, b] = e
                    d = Rc[i, j, b]
                    h = Rc[i + 1, j, b]
                    # the smaller predecessor has weight 1 before normalising, the other exp(-|d - h| / gamma)
                    w = exp_nonpos(-abs(d - h) * inv_gamma)
                    wd = one if d <= h else w
                    wh = w if d <= h else one
                    scale = e / (one + w)
                    e_up[j + 1, b] = e_diag[b]
                    e_diag[b] = wd * scale
                    e_left[b] = wh * scale
                continue
            for b in range(CB):
                e = e_below[j + 1, b] + e_left[b]
                e_grid[i, j, b] = e
                d = Rc[i, j, b]
                h = Rc[i + 1, j, b]
                v = Rc[i, j + 1, b] + vpen[j, b]
                m = min(min(d, h), v)
                wd = exp_nonpos((m - d) * inv_gamma)
                wh = exp_nonpos((m - h) * inv_gamma)
                wv = exp_nonpos((m - v) * inv_gamma)
                scale = e / max(wd + wh + wv, one)
                e_up[j + 1, b] = wv * scale + e_diag[b]
                e_diag[b] = wd * scale
                e_left[b] = wh * scale
    # row 0: each cell's only predecessor is the one on its left (see _sweep_forward)
    e_below = e_rows[0]
    _seed_end_cells(e_below, 0, seed, nb, lane_rows, lane_last)
    for b in range(CB):
        e_left[b] = zero
    for j in range(W - 1, -1, -1):
        for b in range(CB):
            e = e_below[j + 1, b] + e_left[b]
            e_grid[0, j, b] = e
            e_left[b] = e
    return e_grid


@njit(inline="always", **_JIT)
def _add_alignment(e_grid, A, b0, nb, lane_rows, lane_cols, otam, offset, transpose):
    """A[b0 + b] += the cost-cell part of e_grid inside each lane's lengths (transposed back for D^T)."""
    j_first = 1 if (otam and offset == 0) else 0
    for b in range(nb):
        Ab = A[b0 + b]
        for i in range(lane_rows[b]):
            for jd in range(j_first, lane_cols[b]):
                if transpose:
                    Ab[jd, i] += e_grid[i, jd + offset, b]
                else:
                    Ab[i, jd] += e_grid[i, jd + offset, b]


@njit(cache=True, **_JIT)
def _score_chunks(D, lengths, gamma, hard, otam, offset, transpose, R, out, c_lo, c_hi):
    """Chunks c_lo .. c_hi - 1: fill R [NC, L+1, W+1, CB] (bordered, lanes innermost) and out[b] = each item's
    score.  gamma: a scalar of R's dtype (ignored when hard)."""
    NC, Lb, Wb, CB = R.shape
    inv_gamma = R.dtype.type(1.0) / gamma
    for c in range(c_lo, c_hi):  # (a loop around the sweeps also helps LLVM vectorise the lane loops)
        b0 = c * CB
        nb, lane_rows, lane_cols, lane_last, vpen, no_vert, cost = _load_chunk(
            D, lengths, b0, Lb - 1, Wb - 1, CB, otam, offset, transpose, R.dtype
        )
        _sweep_forward(R[c], cost, vpen, no_vert, gamma, inv_gamma, hard)
        for b in range(nb):
            out[b0 + b] = R[c, lane_rows[b], lane_last[b] + 1, b]


@njit(inline="always", **_JIT)
def _chunk_pass(D, lengths, gamma, inv_gamma, otam, offset, transpose, out, A, b0, first, CB):
    """One pass over the CB-lane chunk starting at item b0: out[b0 + b] (= if first, else +=) each item's soft
    score and A[b0 + b] += its expected alignment dScore_b / dD[b].  R lives only here, while it is hot in cache.
    CB is the constant _LANES for full chunks (the lane loops then compile to fixed-width SIMD) and the number of
    real items for a partial last chunk (no phantom lanes)."""
    L0, M0 = D.shape[1], D.shape[2]
    Lg = M0 if transpose else L0
    Wg = (L0 if transpose else M0) + 2 * offset
    nb, lane_rows, lane_cols, lane_last, vpen, no_vert, cost = _load_chunk(
        D, lengths, b0, Lg, Wg, CB, otam, offset, transpose, A.dtype
    )
    Rc = np.empty((Lg + 1, Wg + 1, CB), A.dtype)
    _sweep_forward(Rc, cost, vpen, no_vert, gamma, inv_gamma, False)
    seed = np.ones(CB, A.dtype)
    for b in range(nb):
        if first:
            out[b0 + b] = Rc[lane_rows[b], lane_last[b] + 1, b]
        else:
            out[b0 + b] += Rc[lane_rows[b], lane_last[b] + 1, b]
    e_grid = _sweep_backward(Rc, vpen, no_vert, seed, nb, lane_rows, lane_last, inv_gamma)
    _add_alignment(e_grid, A, b0, nb, lane_rows, lane_cols, otam, offset, transpose)


@njit(cache=True, **_JIT)
def _score_alignment_chunks(D, lengths, gamma, otam, offset, two_way, out, A, c_lo, c_hi):
    """Chunks c_lo .. c_hi - 1 (of CB = 64 lanes): out[b] = each item's soft score and A[b] += its expected
    alignment ([B, L0, M0]), of the pass (otam, offset) and, with two_way, plus the same pass on D^T (two-way
    OTAM: both passes in one call, one chunk after the other)."""
    CB = _LANES
    B = D.shape[0]
    inv_gamma = A.dtype.type(1.0) / gamma
    for c in range(c_lo, c_hi):
        b0 = c * CB
        if b0 + CB <= B:
            _chunk_pass(D, lengths, gamma, inv_gamma, otam, offset, False, out, A, b0, True, CB)
            if two_way:
                _chunk_pass(D, lengths, gamma, inv_gamma, otam, offset, True, out, A, b0, False, CB)
        else:
            nb = B - b0
            _chunk_pass(D, lengths, gamma, inv_gamma, otam, offset, False, out, A, b0, True, nb)
            if two_way:
                _chunk_pass(D, lengths, gamma, inv_gamma, otam, offset, True, out, A, b0, False, nb)


@njit(parallel=True, cache=True, **_JIT)
def _score_kernel(D, lengths, gamma, hard, otam, offset, transpose, R, out, n_parts):
    """_score_chunks over all chunks, split into n_parts contiguous ranges (one per thread)."""
    NC = R.shape[0]
    for p in prange(n_parts):
        lo = p * NC // n_parts
        hi = (p + 1) * NC // n_parts
        _score_chunks(D, lengths, gamma, hard, otam, offset, transpose, R, out, lo, hi)


@njit(parallel=True, cache=True, **_JIT)
def _score_alignment_kernel(D, lengths, gamma, otam, offset, two_way, out, A, n_chunks, n_parts):
    """_score_alignment_chunks over all chunks, split into n_parts contiguous ranges (one per thread)."""
    for p in prange(n_parts):
        lo = p * n_chunks // n_parts
        hi = (p + 1) * n_chunks // n_parts
        _score_alignment_chunks(D, lengths, gamma, otam, offset, two_way, out, A, lo, hi)


# ----------------------------------------------------------------------------------------------------------------
# Wavefront schedule: one problem at a time, vectorised along the anti-diagonals of its grid.  Used when the batch
# is too small to fill the lanes and the grids are large (see _use_wavefront).
#
# Layout: the bordered grid (rows I = 0..Lr, columns J = 0..Wr; row 0 and column 0 are the +inf border, cell
# (0, 0) the virtual start 0) is stored diagonal by diagonal in one flat array, diagonal s = I + J holding its
# cells I = max(0, s - Wr) .. min(Lr, s) contiguously at base[s] + I.  The three predecessors of (I, J) are then
# contiguous runs of the two previous diagonals: diagonal (I-1, J-1) at base[s-2] + I - 1, horizontal (I, J-1) at
# base[s-1] + I and vertical (I-1, J) at base[s-1] + I - 1, so the cell loop over I is plain SIMD code.  Only the
# item's real part (its lengths) is laid out, so padding costs nothing.
#
# Memory per problem (per thread, reused across the problems it runs): R and C, (Lr+1)(Wr+1) values each (C holds
# the costs in the forward and the expected alignment E in the backward), plus 7 vectors of max(L, M) + 2 values
# and Lr + Wr + 1 int64 diagonal offsets.  For one 1024x1024 float32 grid: 2 x 4.0 MiB (DTW; OTAM: 2 x 4.0 MiB
# for its 1024 x 1026 grid), beyond D and its gradient.
#
# Backward: the pushes of diagonal s to its predecessors go to three vectors indexed by the target's row, h_out
# (target (I, J-1), diagonal s-1), v_out ((I-1, J), diagonal s-1) and d_out ((I-1, J-1), diagonal s-2); a cell of
# diagonal s then reads its E as h_in[I] + v_in[I] + d_in[I] (pushes from diagonals s+1 and s+2).  The vectors
# rotate between diagonals and only the range the next diagonals read is cleared.
# ----------------------------------------------------------------------------------------------------------------
def _wexp(x):
    """exp_nonpos for the wavefront loops, marked always-inline for LLVM: the backward loops hold up to three exps
    each, and left to LLVM's inline cost model some were inlined only after the loop vectoriser had run, so
    those loops stayed scalar (the lane kernels keep the plain overloads)."""
    return exp_nonpos(x)


def _wlog1p(t):
    """log_one_plus, always-inline (see _wexp)."""
    return log_one_plus(t)


_JIT_INLINE = dict(_JIT, forceinline=True)


@overload(_wexp, jit_options=_JIT_INLINE)
def _wexp_overload(x):
    return _exp_nonpos_overload(x)


@overload(_wlog1p, jit_options=_JIT_INLINE)
def _wlog1p_overload(t):
    return _log_one_plus_overload(t)


@njit(inline="always", **_JIT)
def _wsoftmin3(d, h, v, gamma, inv_gamma, hard):
    """_softmin3, exact (plain min) when only one predecessor is finite (first row and column)."""
    lo = min(d, h)
    hi = max(d, h)
    m = min(lo, v)
    if hard:
        return m
    mid = min(hi, max(lo, v))
    top = max(hi, v)
    r = m - gamma * _wlog1p(_wexp((m - mid) * inv_gamma) + _wexp((m - top) * inv_gamma))
    return m if mid == np.inf else r


@njit(inline="always", **_JIT)
def _wsoftmin2(d, h, gamma, inv_gamma, hard):
    """_softmin2, exact when only one of the two is finite."""
    m = min(d, h)
    if hard:
        return m
    top = max(d, h)
    r = m - gamma * _wlog1p(_wexp((m - top) * inv_gamma))
    return m if top == np.inf else r


@njit(inline="always", **_JIT)
def _wave_bases(base, Lr, Wr):
    """base[s] = flat index of cell (0, s) of diagonal s, so that cell (I, s - I) is at base[s] + I."""
    off = 0
    for s in range(Lr + Wr + 1):
        lo = max(0, s - Wr)
        hi = min(Lr, s)
        base[s] = off - lo
        off += hi - lo + 1


@njit(inline="always", **_JIT)
def _wave_mid(s, ia, ib, Wr, otam):
    """The cells [ma, mb] of diagonal s (inner cells [ia, ib]) where OTAM forbids the vertical move (grid columns
    2 .. Wr - 2, bordered J = 3 .. Wr - 1); empty (mb = ma - 1) for DTW."""
    if not otam:
        return ia, ia - 1
    ma = max(ia, s - Wr + 1)
    mb = min(ib, s - 3)
    if mb < ma:
        mb = ma - 1
    return ma, mb


@njit(inline="always", **_JIT)
def _wave_load(D, b, C, base, Lr, Wr, ncols, otam, offset, transpose):
    """C (diagonal layout) = the grid's costs: D[b] inside the item's (Lr x ncols) real part, 0 on OTAM's side
    columns; copied in 32 x 32 tiles so that the scattered side of the copy stays in cache."""
    zero = C.dtype.type(0.0)
    for t in range((Lr + 1) * (Wr + 1)):
        C[t] = zero
    j_first = 1 if (otam and offset == 0) else 0
    Db = D[b]
    for i0 in range(0, Lr, 32):
        i1 = min(Lr, i0 + 32)
        for j0 in range(j_first, ncols, 32):
            j1 = min(ncols, j0 + 32)
            if transpose:
                for jd in range(j0, j1):
                    for i in range(i0, i1):
                        C[base[i + jd + offset + 2] + i + 1] = Db[jd, i]
            else:
                for i in range(i0, i1):
                    for jd in range(j0, j1):
                        C[base[i + jd + offset + 2] + i + 1] = Db[i, jd]


@njit(inline="always", **_JIT)
def _wave_store(C, base, A, b, Lr, ncols, otam, offset, transpose):
    """A[b] += the expected alignment held in C (diagonal layout), cost cells of the real part only."""
    j_first = 1 if (otam and offset == 0) else 0
    Ab = A[b]
    for i0 in range(0, Lr, 32):
        i1 = min(Lr, i0 + 32)
        for j0 in range(j_first, ncols, 32):
            j1 = min(ncols, j0 + 32)
            if transpose:
                for jd in range(j0, j1):
                    for i in range(i0, i1):
                        Ab[jd, i] += C[base[i + jd + offset + 2] + i + 1]
            else:
                for i in range(i0, i1):
                    for jd in range(j0, j1):
                        Ab[i, jd] += C[base[i + jd + offset + 2] + i + 1]


@njit(inline="always", **_JIT)
def _wave_forward(R, C, base, Lr, Wr, otam, gamma, inv_gamma, hard):
    """R (diagonal layout, bordered) = the cumulative costs of the grid whose costs C holds."""
    inf = R.dtype.type(np.inf)
    for J in range(Wr + 1):
        R[base[J]] = inf  # row 0
    for I in range(1, Lr + 1):
        R[base[I] + I] = inf  # column 0
    R[base[0]] = R.dtype.type(0.0)
    for s in range(2, Lr + Wr + 1):
        b0 = base[s]
        b1 = base[s - 1]
        b2 = base[s - 2]
        ia = max(1, s - Wr)
        ib = min(Lr, s - 1)
        ma, mb = _wave_mid(s, ia, ib, Wr, otam)
        # views starting at the diagonal's first inner cell: indices from 0 are provably non-negative, so numba
        # emits no wrap-around select and the addresses stay affine (R[b0 + I] with a loaded b0 is not vectorised)
        out = R[b0 + ia:b0 + ib + 1]
        cost = C[b0 + ia:b0 + ib + 1]
        dg = R[b2 + ia - 1:b2 + ib]
        hz = R[b1 + ia:b1 + ib + 1]
        vt = R[b1 + ia - 1:b1 + ib]
        for k in range(ma - ia):
            out[k] = cost[k] + _wsoftmin3(dg[k], hz[k], vt[k], gamma, inv_gamma, hard)
        for k in range(ma - ia, mb + 1 - ia):
            out[k] = cost[k] + _wsoftmin2(dg[k], hz[k], gamma, inv_gamma, hard)
        for k in range(mb + 1 - ia, ib + 1 - ia):
            out[k] = cost[k] + _wsoftmin3(dg[k], hz[k], vt[k], gamma, inv_gamma, hard)


@njit(inline="always", **_JIT)
def _wave_weights3(e, d, h, v, inv_gamma, one):
    """What a cell with E = e pushes to its horizontal, vertical and diagonal predecessors (R values h, v, d): e
    times the normalised soft-min weights.  Scalars only: an inlined helper taking arrays brings numba's
    reference-count calls into the loop, which then is not vectorised."""
    m = min(min(d, h), v)
    wd = _wexp((m - d) * inv_gamma)
    wh = _wexp((m - h) * inv_gamma)
    wv = _wexp((m - v) * inv_gamma)
    scale = e / max(wd + wh + wv, one)
    return wh * scale, wv * scale, wd * scale


@njit(inline="always", **_JIT)
def _wave_backward(R, C, base, Lr, Wr, otam, inv_gamma, H0, V0, G0, H1, V1, G1, H2, V2, G2):
    """C (diagonal layout) = E = dScore / dR for every inner cell: the expected alignment.

    H*, V*, G* [Lr + 2] (separate arrays): three sets (one per diagonal s, s + 1, s + 2, rotating) of three vectors, the pushes of one
    diagonal indexed by the source cell's row I: H[I] to its horizontal predecessor (same I, diagonal s - 1), V[I]
    to the vertical one (I - 1, diagonal s - 1), G[I] to the diagonal one (I - 1, diagonal s - 2).  Cell I of
    diagonal s then reads its E as H(s+1)[I] + V(s+1)[I + 1] + G(s+2)[I + 1]; the entries just outside each
    diagonal's run are kept at 0 (no such source).  (The three directions interleaved in one vector, P[3I + c],
    kept the push loop scalar: LLVM does not vectorise that store group.)"""
    zero = R.dtype.type(0.0)
    one = R.dtype.type(1.0)
    for t in range(Lr + 2):
        H0[t] = zero
        V0[t] = zero
        G0[t] = zero
        H1[t] = zero
        V1[t] = zero
        G1[t] = zero
        H2[t] = zero
        V2[t] = zero
        G2[t] = zero
    H1[Lr] = one  # the seed: dScore / dR[end] = 1, read by the end cell as a horizontal push
    for s in range(Lr + Wr, 1, -1):
        b0 = base[s]
        b1 = base[s - 1]
        b2 = base[s - 2]
        ia = max(1, s - Wr)
        ib = min(Lr, s - 1)
        n = ib + 1 - ia
        e_o = C[b0 + ia:b0 + ia + n]
        eh = H1[ia:ia + n]
        ev = V1[ia + 1:ia + 1 + n]
        eg = G2[ia + 1:ia + 1 + n]
        for k in range(n):
            e_o[k] = eh[k] + ev[k] + eg[k]
        dg = R[b2 + ia - 1:b2 + ia - 1 + n]
        hz = R[b1 + ia:b1 + ia + n]
        vt = R[b1 + ia - 1:b1 + ia - 1 + n]
        ph = H0[ia:ia + n]
        pv = V0[ia:ia + n]
        pd = G0[ia:ia + n]
        ma, mb = _wave_mid(s, ia, ib, Wr, otam)
        for k in range(ma - ia):
            ph[k], pv[k], pd[k] = _wave_weights3(e_o[k], dg[k], hz[k], vt[k], inv_gamma, one)
        for k in range(ma - ia, mb + 1 - ia):
            # no vertical move: the smaller predecessor has weight 1, the other exp(-|d - h| / gamma)
            d = dg[k]
            h = hz[k]
            w = _wexp(-abs(d - h) * inv_gamma)
            wd = one if d <= h else w
            wh = w if d <= h else one
            scale = e_o[k] / (one + w)
            ph[k] = wh * scale
            pv[k] = zero
            pd[k] = wd * scale
        for k in range(mb + 1 - ia, n):
            ph[k], pv[k], pd[k] = _wave_weights3(e_o[k], dg[k], hz[k], vt[k], inv_gamma, one)
        H0[ia - 1] = zero
        V0[ia - 1] = zero
        G0[ia - 1] = zero
        H0[ib + 1] = zero
        V0[ib + 1] = zero
        G0[ib + 1] = zero
        H2, V2, G2, H1, V1, G1, H0, V0, G0 = H1, V1, G1, H0, V0, G0, H2, V2, G2


@njit(inline="always", **_JIT)
def _wave_pass(D, lengths, b, gamma, inv_gamma, otam, offset, transpose, out, A, first, R, C, base, work):
    """One pass of problem b: out[b] (= if first, else +=) its soft score, A[b] += its expected alignment."""
    if lengths.shape[0] > 0:
        rows = lengths[b, 0]
        cols = lengths[b, 1]
    else:
        rows = D.shape[1]
        cols = D.shape[2]
    Lr = cols if transpose else rows
    ncols = rows if transpose else cols
    Wr = ncols + 2 * offset
    _wave_bases(base, Lr, Wr)
    _wave_load(D, b, C, base, Lr, Wr, ncols, otam, offset, transpose)
    _wave_forward(R, C, base, Lr, Wr, otam, gamma, inv_gamma, False)
    score = R[base[Lr + Wr] + Lr]
    if first:
        out[b] = score
    else:
        out[b] += score
    _wave_backward(R, C, base, Lr, Wr, otam, inv_gamma, work[0], work[1], work[2], work[3], work[4], work[5],
                   work[6], work[7], work[8])
    _wave_store(C, base, A, b, Lr, ncols, otam, offset, transpose)


@njit(cache=True, **_JIT)
def _wave_problems(D, lengths, gamma, otam, offset, two_way, out, A, b_lo, b_hi):
    """Problems b_lo .. b_hi - 1 one after the other with the wavefront schedule: out[b] = the soft score and
    A[b] += the expected alignment of the pass (otam, offset) and, with two_way, of the same pass on D^T."""
    L0 = D.shape[1]
    M0 = D.shape[2]
    cells = (L0 + 1) * (M0 + 2 * offset + 1)
    if two_way:
        cells = max(cells, (M0 + 1) * (L0 + 2 * offset + 1))
    R = np.empty(cells, A.dtype)
    C = np.empty(cells, A.dtype)
    base = np.empty(L0 + M0 + 2 * offset + 1, np.int64)
    nw = max(L0, M0) + 2
    work = (np.empty(nw, A.dtype), np.empty(nw, A.dtype), np.empty(nw, A.dtype), np.empty(nw, A.dtype),
            np.empty(nw, A.dtype), np.empty(nw, A.dtype), np.empty(nw, A.dtype), np.empty(nw, A.dtype),
            np.empty(nw, A.dtype))
    inv_gamma = A.dtype.type(1.0) / gamma
    for b in range(b_lo, b_hi):
        _wave_pass(D, lengths, b, gamma, inv_gamma, otam, offset, False, out, A, True, R, C, base, work)
        if two_way:
            _wave_pass(D, lengths, b, gamma, inv_gamma, otam, offset, True, out, A, False, R, C, base, work)


@njit(parallel=True, cache=True, **_JIT)
def _wave_kernel(D, lengths, gamma, otam, offset, two_way, out, A, n_parts):
    """_wave_problems over all problems, split into n_parts contiguous ranges (one per thread)."""
    B = D.shape[0]
    for p in prange(n_parts):
        _wave_problems(D, lengths, gamma, otam, offset, two_way, out, A, p * B // n_parts, (p + 1) * B // n_parts)


# ----------------------------------------------------------------------------------------------------------------
# Host wrappers
# ----------------------------------------------------------------------------------------------------------------
# Below this many grid cells per call the kernels run serially: a thread launch costs more than it saves, and on a
# busy machine a parallel region waits for its slowest thread.
PARALLEL_MIN_CELLS = 65536
_LANES = 64  # lanes per chunk (4 AVX-512 float32 vectors; LLVM unrolls the lane loop by 4)
_FULL = np.zeros((0, 2), np.int64)  # "no lengths": every item uses the whole of D


WAVEFRONT = None  # None: choose by shape (use_wavefront); True / False: force one schedule (tests, benchmarks)


def use_wavefront(B: int, L: int, W: int) -> bool:
    """Whether a call on B grids of L x W cells runs the wavefront schedule (one problem at a time, SIMD along the
    anti-diagonals) rather than the lane schedule (SIMD across problems, 64 at a time)."""
    if WAVEFRONT is not None:
        return WAVEFRONT
    # below 64 problems the lanes are partly empty; below 16 cells a side the diagonals are too short for SIMD
    return B < _LANES and min(L, W) >= 16


def _parts(n_chunks: int, cells: int) -> int:
    """Threads to use: 1 (serial call, no thread launch) for small work, else up to numba's thread count."""
    if cells < PARALLEL_MIN_CELLS:
        return 1
    return max(1, min(n_chunks, numba.get_num_threads()))


def _lengths_np(lengths: Optional[torch.Tensor]) -> np.ndarray:
    return _FULL if lengths is None else lengths.numpy()


def cpu_scores(
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, align_pass: AlignPass, hard: bool = False
) -> tuple[torch.Tensor, np.ndarray]:
    """One pass, no gradient.  D [B, L, M] float32/float64 contiguous CPU; lengths [B, 2] int64 (rows, cols) of D
    or None (full).  Returns (scores [B], R [NC, Lg+1, Wg+1, CB]: the bordered cumulative costs, lanes
    innermost)."""
    B, L, M = D.shape
    Lg, Wg = align_pass.grid_shape(L, M)
    NC = -(-B // _LANES)
    parts = _parts(NC, B * Lg * Wg)
    R = np.empty((NC, Lg + 1, Wg + 1, min(B, _LANES)), _np_dtype(D))
    out = np.empty(B, R.dtype)
    args = (D.detach().numpy(), _lengths_np(lengths), R.dtype.type(gamma), hard, align_pass.otam,
            align_pass.offset, align_pass.transpose, R, out)
    if parts == 1:
        _score_chunks(*args, 0, NC)
    else:
        _score_kernel(*args, parts)
    return torch.from_numpy(out), R


def _call_passes(passes: tuple[AlignPass, ...]) -> tuple[bool, int, bool]:
    """``passes`` as one kernel call takes them, (otam, offset, two_way): one untransposed pass, or a pass followed
    by the same pass on D^T (two-way OTAM).  Attribute reads only: this runs on every call."""
    first = passes[0]
    two_way = len(passes) == 2
    if (
        first.transpose
        or len(passes) > 2
        or (two_way and not (passes[1].transpose and passes[1].otam == first.otam and passes[1].offset == first.offset))
    ):
        raise ValueError(f"cpu kernels run one pass, or a pass and the same pass on D^T; got {passes}")
    return first.otam, first.offset, two_way


def cpu_scores_alignment(
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, passes: tuple[AlignPass, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over ``passes`` of the soft scores and of the expected alignments dScore/dD, in one kernel call.

    D [..., L, M] float32/float64 contiguous CPU; lengths [B, 2] int64 (B = prod(...)) or None.  Returns
    (scores [...], alignment [..., L, M]); the backward is then ``grad[..., None, None] * alignment``.  The
    leading dims are handled with numpy views: on thousands of 5x5 grids every torch call on the host shows."""
    otam, offset, two_way = _call_passes(passes)
    D_np = D.detach().numpy()
    shape = D_np.shape
    L, M = shape[-2], shape[-1]
    B = D_np.size // (L * M)
    A = np.zeros(shape, D_np.dtype)
    out = np.empty(shape[:-2], D_np.dtype)
    NC = -(-B // _LANES)
    cells = B * L * (M + 2 * offset) * len(passes)
    args = (D_np.reshape(B, L, M), _lengths_np(lengths), D_np.dtype.type(gamma), otam, offset, two_way,
            out.reshape(B), A.reshape(B, L, M))
    if use_wavefront(B, L, M + 2 * offset):
        parts = _parts(B, cells)
        if parts == 1:
            _wave_problems(*args, 0, B)
        else:
            _wave_kernel(*args, parts)
        return torch.from_numpy(out), torch.from_numpy(A)
    parts = _parts(NC, cells)
    if parts == 1:
        _score_alignment_chunks(*args, 0, NC)
    else:
        _score_alignment_kernel(*args, NC, parts)
    return torch.from_numpy(out), torch.from_numpy(A)


def cpu_matrix(R: np.ndarray, batch: int) -> torch.Tensor:
    """The cumulative-cost matrices ``[B, Lg, Wg]`` out of a bordered lane-innermost ``R``."""
    NC, Lb, Wb, CB = R.shape
    grid = R[:, 1:, 1:, :].transpose(0, 3, 1, 2).reshape(NC * CB, Lb - 1, Wb - 1)[:batch]
    return torch.from_numpy(np.ascontiguousarray(grid))


def _np_dtype(D: torch.Tensor) -> type:
    if D.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"cpu kernels take float32 or float64 D; got {D.dtype}")
    return np.float64 if D.dtype == torch.float64 else np.float32
