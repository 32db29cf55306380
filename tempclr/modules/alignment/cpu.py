"""CPU backend: numba kernels for the alignment recursion of ``grid.py``: scores, and scores with the expected
alignment (the analytic gradient).

Map of the schedules (``choose_schedule`` is the one place that picks one; ``cpu_scores_alignment(...,
schedule=...)`` forces one, for tests and benchmarks):

=============  ==================================================  =====================================================
schedule       what runs in one SIMD loop                          where in this file (section; kernels by thread mode)
=============  ==================================================  =====================================================
``lanes``      one cell of up to 64 problems (lane = problem)      "Kernels": serial ``_score_alignment_chunks``; chunks
                                                                   over threads ``_score_alignment_kernel``
``wavefront``  one anti-diagonal of a stripe of up to 64 rows of   "Wavefront schedule": serial ``_wave_problems``;
               one problem                                         problems over threads ``_wave_kernel``; one
                                                                   problem's blocks over threads ``_wave_tiles_kernel``
``columns``    one grid column of one problem (OTAM only)          "Column schedule": serial ``_col_problems``; problems
                                                                   over threads ``_col_kernel``
=============  ==================================================  =====================================================

Thread modes: a call of fewer than ``PARALLEL_MIN_CELLS`` cells runs serially (no thread launch); a larger one
spreads the lanes' chunks, or whole problems (wavefront, columns), over numba's threads, and a wavefront call with
fewer problems than threads spreads the blocks of one problem's waves over them instead.  Scores without a
gradient (``cpu_scores``) always run the lanes (``_score_chunks`` / ``_score_kernel``).  The host wrappers and
``choose_schedule`` are the last section, "Host wrappers".

How ``choose_schedule`` decides (thresholds measured, see BENCHMARKS.md):

* lanes, for many small grids (B >= 8 and grids under 65,536 cells, or any grid under 16 cells on a side):
  SIMD across up to 64 problems, described below;
* wavefront, for a few grids (B < 8) or large ones (>= 65,536 cells): one problem at a time, its grid cut into
  stripes of up to 64 rows; the cells of one anti-diagonal of a stripe (independent of each other) form one SIMD
  loop.  Problems are spread over the threads when the call is large enough; fewer problems than threads (one
  large grid) share the threads block by block.  See the section "Wavefront schedule" below;
* columns, for OTAM calls that would run the wavefront, unless one problem's waves would share the threads (fewer
  problems than threads): outside columns 0, 1 and the last one OTAM has no vertical move, so a whole column is
  one SIMD loop over the rows (section "Column schedule").

Memory (beyond D and its gradient A, float32 = 4 bytes per value): lanes, for each of the up to 64 problems of
the chunk a thread runs (a partial last chunk has only its real problems): R (L+1)(W+1), the costs L W and E L W
values, i.e. about 3 grids; wavefront, per thread whatever B: the stripes' R, about (1 + 64/W)(1 + 1/64) grids,
plus O(L + W) and a 32 KiB cost block (4.5 MiB for one 1024 x 1024 float32 grid).  W is the grid width: M for DTW,
M + 2 for OTAM.

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

__all__ = ["cpu_scores", "cpu_scores_alignment", "cpu_matrix", "choose_schedule", "SCHEDULES"]

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
# Wavefront schedule: one problem at a time, its grid cut into stripes of up to _STRIPE rows; inside a stripe the
# cells of one anti-diagonal (independent of each other) form one SIMD loop.  Used for a few grids, or large ones,
# of at least 16 cells a side (see choose_schedule).
#
# Skewed stripe layout.  Stripe s holds grid rows i0 = s H .. i0 + H - 1 (H = _stripe_height(Lr): up to 64, a
# multiple of 8); at step t its lane k is cell (i0 + k, t - k), so one step is one anti-diagonal of the stripe,
# T = Wr + H - 1 steps in all (lanes before their first or after their last column compute throw-away values
# that no real cell reads).  Step t of stripe s is row t + 2 of its block Rs[s] of (T + 2) x (H + 1) values:
# entry 0 of the row is the boundary (row i0 - 1 of the grid, read by lane 0), entries 1..H the lanes.  The three
# predecessors of lane k at step t are then contiguous runs: horizontal (same lane, step t - 1) at row t + 1,
# entry k + 1; vertical (lane k - 1, step t - 1) at row t + 1, entry k; diagonal (lane k - 1, step t - 2) at row
# t, entry k.  So each step is a plain vector loop over k, with no layout copy of the whole grid: only the costs
# of _BLOCK steps at a time are skewed into a small buffer (Cs, in L1/L2), straight from D.
#
# Backward: E overwrites R from the last step of the last stripe back; each cell pushes E times its normalised
# soft-min weights to its three predecessors through nine rotating vectors per stripe (push direction x the three
# last steps), and lane 0's pushes into the row above are kept in a per-stripe vector that the stripe above reads.
# E of the cost cells is added into the gradient block by block (one skewed read per cell, the block in cache).
#
# Blocks and threads.  Each stripe's steps run in blocks of _BLOCK.  Forward block q of stripe s needs block q - 1
# of its stripe and block q + 1 of the stripe above (lane 0 reads the row above up to H <= _BLOCK steps ahead);
# backward block q needs block q + 1 of its stripe and block q - 1 of the stripe below.  One thread runs the
# blocks stripe by stripe; for fewer problems than threads, the blocks of one "wave" (q + 2 s constant) run on
# the threads at once, one parallel region per wave.  Both orders compute every block from the same inputs, so
# their results are equal to the bit.
#
# Memory (beyond D and its gradient, per thread that runs whole problems, reused across them; once for a
# problem whose blocks the threads share): the stripes' R, ceil(Lr/H) (T + 2)(H + 1) values (about (1 + H/Wr)
# (1 + 1/H) grids); per stripe 9 (H + 1) push values and T + H + 2 boundary values; a cost block of _BLOCK x H
# values per thread.  For one 1024 x 1024 float32 grid: 4.5 MiB (DTW; two-way OTAM: the larger of its two
# passes, also 4.5 MiB); wave_workspace_values() gives the exact count.
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


_STRIPE = 64  # rows per stripe (8 AVX2 float32 vectors per step)
_BLOCK = 128  # steps whose costs are skewed at a time


@njit(inline="always", **_JIT)
def _stripe_height(Lr):
    """Rows per stripe for a grid of Lr rows: all of them, rounded up to a vector of 8, up to _STRIPE."""
    return min(_STRIPE, (Lr + 7) // 8 * 8)


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
def _wave_geometry(D, lengths, b, offset, transpose):
    """(Lr, ncols, Wr) of problem b's grid: rows, cost columns (D's columns, or its rows when transpose) and grid
    columns."""
    if lengths.shape[0] > 0:
        rows = lengths[b, 0]
        cols = lengths[b, 1]
    else:
        rows = D.shape[1]
        cols = D.shape[2]
    Lr = cols if transpose else rows
    ncols = rows if transpose else cols
    return Lr, ncols, ncols + 2 * offset


@njit(inline="always", **_JIT)
def _wave_forward_block(D, b, Rs, Cs, s, t_lo, t_hi, H, Lr, Wr, T, ncols, otam, offset, transpose, gamma,
                        inv_gamma):
    """Steps t_lo .. t_hi - 1 of stripe s (R of the stripe above complete): its boundary entries, the block's
    skewed costs, then the sweep."""
    inf = Rs.dtype.type(np.inf)
    zero = Rs.dtype.type(0.0)
    S = H + 1
    SZ = (T + 2) * S
    i0 = s * H
    h = min(H, Lr - i0)
    Rst = Rs[s * SZ:(s + 1) * SZ]
    if t_lo == 0:
        for k in range(1, H + 1):  # steps -2 and -1: before every lane's first column
            Rst[k] = inf
            Rst[S + k] = inf
    # entry 0 of row u: bordered R of grid row i0 - 1, column u (the virtual start 0 above stripe 0's (0, 0))
    if s == 0:
        for u in range(t_lo, t_hi + 1):
            Rst[u * S] = zero if u == 0 else inf
    else:
        above = Rs[(s - 1) * SZ:s * SZ]
        for u in range(t_lo, min(t_hi, Wr) + 1):
            Rst[u * S] = above[(u + H) * S + H]  # lane H - 1 of the stripe above at step u + H - 2
        for u in range(max(t_lo, Wr + 1), t_hi + 1):
            Rst[u * S] = inf
    # Cs[(t - t_lo) H + k] = cost of cell (i0 + k, t - k): D inside the real part, 0 on OTAM's side columns and
    # for throw-away lanes
    for x in range((t_hi - t_lo) * H):
        Cs[x] = zero
    j_first = 1 if (otam and offset == 0) else 0
    Db = D[b]
    if transpose:  # the grid's row i0 + k is D's column: read D's rows along the lanes
        for jd in range(max(j_first, t_lo - offset - h + 1), min(ncols, t_hi - offset)):
            row = Db[jd]
            for k in range(max(0, t_lo - jd - offset), min(h, t_hi - jd - offset)):
                Cs[(jd + offset + k - t_lo) * H + k] = row[i0 + k]
    else:
        for k in range(h):
            row = Db[i0 + k]
            for t in range(max(t_lo, k + offset + j_first), min(t_hi, k + offset + ncols)):
                Cs[(t - t_lo) * H + k] = row[t - k - offset]
    for t in range(t_lo, t_hi):
        # views starting at the run's first cell: indices from 0 are provably non-negative, so numba emits no
        # wrap-around select and the loads stay affine (vectorised)
        out = Rst[(t + 2) * S + 1:(t + 2) * S + 1 + H]
        hz = Rst[(t + 1) * S + 1:(t + 1) * S + 1 + H]
        vt = Rst[(t + 1) * S:(t + 1) * S + H]
        dg = Rst[t * S:t * S + H]
        cost = Cs[(t - t_lo) * H:(t - t_lo) * H + H]
        if otam and t >= H + 1 and t <= Wr - 2:
            # every lane's column t - k lies in 2 .. Wr - 2, where OTAM forbids the vertical move
            for k in range(H):
                out[k] = cost[k] + _wsoftmin2(dg[k], hz[k], gamma, inv_gamma, False)
        elif otam:
            for k in range(H):
                j = t - k
                v = vt[k] if (j <= 1 or j == Wr - 1) else inf
                out[k] = cost[k] + _wsoftmin3(dg[k], hz[k], v, gamma, inv_gamma, False)
        else:
            for k in range(H):
                out[k] = cost[k] + _wsoftmin3(dg[k], hz[k], vt[k], gamma, inv_gamma, False)


@njit(inline="always", **_JIT)
def _wave_backward_block(Rs, A, b, P, bots, s, t_lo, t_hi, H, Lr, Wr, T, ncols, otam, offset, transpose,
                         inv_gamma, seed_t, seed_k):
    """Backward steps t_hi - 1 .. t_lo of stripe s (steps >= t_hi of this stripe and the stripe below down to step
    t_lo - H + 1 done): E = dScore / dR over the steps, written over their R lanes, then added into A[b] for the
    cost cells.

    P: the stripes' push vectors, 9 (H + 1) values per stripe: the pushes of step t to the horizontal, vertical
    and diagonal predecessors in rows t % 3, 3 + t % 3 and 6 + t % 3, indexed by the pushing lane; lane k at step
    t reads its E as H(t+1)[k] + V(t+1)[k + 1] + G(t+2)[k + 1], entry H standing for the stripe below (G's entry
    H stays 0).  bots: per stripe (and one all-zero one below the last), T + H + 2 values: entry H + j is what
    stripe s's lane 0 pushed into cell (i0 - 1, j) of the row above.  seed_t, seed_k: step and lane of the end
    cell (seed 1), or -1."""
    zero = Rs.dtype.type(0.0)
    one = Rs.dtype.type(1.0)
    inf = Rs.dtype.type(np.inf)
    S = H + 1
    SZ = (T + 2) * S
    NB = T + H + 2
    Rst = Rs[s * SZ:(s + 1) * SZ]
    Ps = P[s * 9 * S:(s + 1) * 9 * S]
    bot_out = bots[s * NB:(s + 1) * NB]
    bot_in = bots[(s + 1) * NB:(s + 2) * NB]
    if t_hi == T:
        for x in range(9 * S):
            Ps[x] = zero
        for x in range(NB):
            bot_out[x] = zero
    # the rows of steps t, t + 1 and t + 2 for the first step of the block; rotated by reassignment below
    r0 = (t_hi - 1) % 3
    r1 = t_hi % 3
    r2 = (t_hi + 1) % 3
    H0 = Ps[r0 * S:r0 * S + S]
    V0 = Ps[(3 + r0) * S:(3 + r0) * S + S]
    G0 = Ps[(6 + r0) * S:(6 + r0) * S + S]
    H1 = Ps[r1 * S:r1 * S + S]
    V1 = Ps[(3 + r1) * S:(3 + r1) * S + S]
    G1 = Ps[(6 + r1) * S:(6 + r1) * S + S]
    H2 = Ps[r2 * S:r2 * S + S]
    V2 = Ps[(3 + r2) * S:(3 + r2) * S + S]
    G2 = Ps[(6 + r2) * S:(6 + r2) * S + S]
    for t in range(t_hi - 1, t_lo - 1, -1):
        V1[H] = bot_in[t + 1]  # lane H - 1 at step t is column t - H + 1
        if t == seed_t:
            H1[seed_k] += one  # the end cell's horizontal successor is outside the grid: its push slot is free
        e_o = Rst[(t + 2) * S + 1:(t + 2) * S + 1 + H]
        eh = H1[0:H]
        ev = V1[1:H + 1]
        eg = G2[1:H + 1]
        for k in range(H):
            e_o[k] = eh[k] + ev[k] + eg[k]
        hz = Rst[(t + 1) * S + 1:(t + 1) * S + 1 + H]
        vt = Rst[(t + 1) * S:(t + 1) * S + H]
        dg = Rst[t * S:t * S + H]
        ph = H0[0:H]
        pv = V0[0:H]
        pd = G0[0:H]
        if otam and t >= H + 1 and t <= Wr - 2:
            for k in range(H):
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
        elif otam:
            for k in range(H):
                j = t - k
                v = vt[k] if (j <= 1 or j == Wr - 1) else inf
                ph[k], pv[k], pd[k] = _wave_weights3(e_o[k], dg[k], hz[k], v, inv_gamma, one)
        else:
            for k in range(H):
                ph[k], pv[k], pd[k] = _wave_weights3(e_o[k], dg[k], hz[k], vt[k], inv_gamma, one)
        bot_out[H + t] += V0[0]  # lane 0 (column t) pushes up to column t and diagonally to column t - 1
        bot_out[H + t - 1] += G0[0]
        H2, V2, G2, H1, V1, G1, H0, V0, G0 = H1, V1, G1, H0, V0, G0, H2, V2, G2
    # E of the block's cost cells into A[b] (skewed reads of steps still in cache)
    i0 = s * H
    h = min(H, Lr - i0)
    j_first = 1 if (otam and offset == 0) else 0
    Ab = A[b]
    if transpose:
        for jd in range(max(j_first, t_lo - offset - h + 1), min(ncols, t_hi - offset)):
            row = Ab[jd]
            for k in range(max(0, t_lo - jd - offset), min(h, t_hi - jd - offset)):
                row[i0 + k] += Rst[(jd + offset + k + 2) * S + k + 1]
    else:
        for k in range(h):
            row = Ab[i0 + k]
            for t in range(max(t_lo, k + offset + j_first), min(t_hi, k + offset + ncols)):
                row[t - k - offset] += Rst[(t + 2) * S + k + 1]


@njit(inline="always", **_JIT)
def _wave_shape(D, lengths, b, offset, transpose):
    """(Lr, ncols, Wr, H, T, NS, n_blocks) of problem b's pass: grid rows, cost columns, grid columns, rows per
    stripe, steps per stripe, stripes, step blocks per stripe."""
    Lr, ncols, Wr = _wave_geometry(D, lengths, b, offset, transpose)
    H = _stripe_height(Lr)
    T = Wr + H - 1
    return Lr, ncols, Wr, H, T, (Lr + H - 1) // H, (T + _BLOCK - 1) // _BLOCK


@njit(inline="always", **_JIT)
def _wave_score(Rs, Lr, Wr, H, T, NS, out, b, first):
    """out[b] (= if first, else +=) the score, R of the end cell (stripe NS - 1); returns its (step, lane)."""
    S = H + 1
    k_end = Lr - 1 - (NS - 1) * H
    t_end = Wr - 1 + k_end
    score = Rs[(NS - 1) * (T + 2) * S + (t_end + 2) * S + k_end + 1]
    if first:
        out[b] = score
    else:
        out[b] += score
    return t_end, k_end


@njit(inline="always", **_JIT)
def _wave_pass(D, lengths, b, gamma, inv_gamma, otam, offset, transpose, out, A, first, Rs, Cs, P, bots):
    """One pass of problem b on this thread: out[b] (= if first, else +=) its soft score, A[b] += its expected
    alignment.  Stripe by stripe, block by block (the same blocks _wave_pass_tiles spreads over threads)."""
    Lr, ncols, Wr, H, T, NS, NQ = _wave_shape(D, lengths, b, offset, transpose)
    for s in range(NS):
        for q in range(NQ):
            _wave_forward_block(D, b, Rs, Cs, s, q * _BLOCK, min(T, (q + 1) * _BLOCK), H, Lr, Wr, T, ncols, otam,
                                offset, transpose, gamma, inv_gamma)
    t_end, k_end = _wave_score(Rs, Lr, Wr, H, T, NS, out, b, first)
    NB = T + H + 2
    for x in range(NS * NB, (NS + 1) * NB):
        bots[x] = Rs.dtype.type(0.0)  # nothing below the last stripe
    for s in range(NS - 1, -1, -1):
        for q in range(NQ - 1, -1, -1):
            _wave_backward_block(Rs, A, b, P, bots, s, q * _BLOCK, min(T, (q + 1) * _BLOCK), H, Lr, Wr, T, ncols,
                                 otam, offset, transpose, inv_gamma, t_end if s == NS - 1 else -1, k_end)


@njit(inline="always", **_JIT)
def _wave_workspace(L0, M0, offset, two_way):
    """(values of the stripes' R, of their push vectors, of their boundary vectors) for the larger pass on a D
    of L0 x M0 (items with lengths have smaller grids, which need no more)."""
    n_r = 0
    n_p = 0
    n_b = 0
    for transpose in range(2 if two_way else 1):
        Lr = M0 if transpose else L0
        Wr = (L0 if transpose else M0) + 2 * offset
        H = _stripe_height(Lr)
        T = Wr + H - 1
        NS = (Lr + H - 1) // H
        n_r = max(n_r, NS * (T + 2) * (H + 1))
        n_p = max(n_p, NS * 9 * (H + 1))
        n_b = max(n_b, (NS + 1) * (T + H + 2))
    return n_r, n_p, n_b


@njit(cache=True, **_JIT)
def wave_workspace_values(L0, M0, offset, two_way, n_threads):
    """Values (of D's dtype) the wavefront schedule allocates for a D of L0 x M0: per thread that runs whole
    problems, or once for a problem whose blocks n_threads threads share (plus one cost block per thread)."""
    n_r, n_p, n_b = _wave_workspace(L0, M0, offset, two_way)
    return n_r + n_p + n_b + n_threads * _BLOCK * _STRIPE


@njit(cache=True, **_JIT)
def _wave_problems(D, lengths, gamma, otam, offset, two_way, out, A, b_lo, b_hi):
    """Problems b_lo .. b_hi - 1 one after the other with the wavefront schedule: out[b] = the soft score and
    A[b] += the expected alignment of the pass (otam, offset) and, with two_way, of the same pass on D^T."""
    n_r, n_p, n_b = _wave_workspace(D.shape[1], D.shape[2], offset, two_way)
    Rs = np.empty(n_r, A.dtype)
    P = np.empty(n_p, A.dtype)
    bots = np.empty(n_b, A.dtype)
    Cs = np.empty(_BLOCK * _STRIPE, A.dtype)
    inv_gamma = A.dtype.type(1.0) / gamma
    for b in range(b_lo, b_hi):
        _wave_pass(D, lengths, b, gamma, inv_gamma, otam, offset, False, out, A, True, Rs, Cs, P, bots)
        if two_way:
            _wave_pass(D, lengths, b, gamma, inv_gamma, otam, offset, True, out, A, False, Rs, Cs, P, bots)


@njit(parallel=True, cache=True, **_JIT)
def _wave_kernel(D, lengths, gamma, otam, offset, two_way, out, A, n_parts):
    """_wave_problems over all problems, split into n_parts contiguous ranges (one per thread)."""
    B = D.shape[0]
    for p in prange(n_parts):
        _wave_problems(D, lengths, gamma, otam, offset, two_way, out, A, p * B // n_parts, (p + 1) * B // n_parts)


@njit(inline="always", **_JIT)
def _wave_pass_tiles(D, lengths, b, gamma, inv_gamma, otam, offset, transpose, out, A, first, Rs, P, bots):
    """_wave_pass with the blocks of one problem spread over the threads.  In the forward, block q of stripe s
    needs block q - 1 of its stripe and block q + 1 of the stripe above (its lane 0 reads the row above up to H
    steps ahead; H <= _BLOCK), so the blocks of wave d = q + 2 s run at the same time; the backward runs the
    mirrored waves.  Each block computes exactly what it computes in _wave_pass (same values to the bit)."""
    Lr, ncols, Wr, H, T, NS, NQ = _wave_shape(D, lengths, b, offset, transpose)
    for d in range(NQ + 2 * (NS - 1)):
        s_lo = max(0, (d - NQ + 2) // 2)
        for x in prange(min(NS - 1, d // 2) - s_lo + 1):
            s = s_lo + x
            q = d - 2 * s
            Cs = np.empty(_BLOCK * H, A.dtype)
            _wave_forward_block(D, b, Rs, Cs, s, q * _BLOCK, min(T, (q + 1) * _BLOCK), H, Lr, Wr, T, ncols, otam,
                                offset, transpose, gamma, inv_gamma)
    t_end, k_end = _wave_score(Rs, Lr, Wr, H, T, NS, out, b, first)
    NB = T + H + 2
    for x in range(NS * NB, (NS + 1) * NB):
        bots[x] = Rs.dtype.type(0.0)
    # backward: block q of stripe s needs block q + 1 of its stripe and block q - 1 of the stripe below
    for d in range(NQ + 2 * (NS - 1)):
        s_lo = max(0, (d - NQ + 2) // 2)
        for x in prange(min(NS - 1, d // 2) - s_lo + 1):
            s = NS - 1 - (s_lo + x)
            q = NQ - 1 - (d - 2 * (s_lo + x))
            _wave_backward_block(Rs, A, b, P, bots, s, q * _BLOCK, min(T, (q + 1) * _BLOCK), H, Lr, Wr, T, ncols,
                                 otam, offset, transpose, inv_gamma, t_end if s == NS - 1 else -1, k_end)


@njit(parallel=True, cache=True, **_JIT)
def _wave_tiles_kernel(D, lengths, gamma, otam, offset, two_way, out, A):
    """All problems one after the other, each with its blocks spread over the threads (for B below the thread
    count: a single large grid)."""
    n_r, n_p, n_b = _wave_workspace(D.shape[1], D.shape[2], offset, two_way)
    Rs = np.empty(n_r, A.dtype)
    P = np.empty(n_p, A.dtype)
    bots = np.empty(n_b, A.dtype)
    inv_gamma = A.dtype.type(1.0) / gamma
    for b in range(D.shape[0]):
        _wave_pass_tiles(D, lengths, b, gamma, inv_gamma, otam, offset, False, out, A, True, Rs, P, bots)
        if two_way:
            _wave_pass_tiles(D, lengths, b, gamma, inv_gamma, otam, offset, True, out, A, False, Rs, P, bots)


# ----------------------------------------------------------------------------------------------------------------
# Column schedule for OTAM on a few or large grids.  Outside columns 0, 1 and the last one OTAM has no vertical
# move, so cell (i, j) needs only (i - 1, j - 1) and (i, j - 1): a whole column follows from the column before it
# in one SIMD loop over the rows, with no anti-diagonal skew and no throw-away lanes.  Columns 1 and the last one
# (vertical moves allowed) are a scalar scan down the rows; column 0 costs 0 and is all zeros.  R is stored
# column by column (one grid, Lr Wr values); the backward keeps E of two columns.  For the transposed pass a grid
# column is a row of D (contiguous); for the other pass it is a column of D (strided reads and gradient adds).
#
# Memory (beyond D and its gradient, per thread that runs whole problems): R, Lr Wr values, plus 5 vectors of
# max(L, M) + 1: 4.0 MiB for one 1024 x 1024 float32 grid (either OTAM direction).
# ----------------------------------------------------------------------------------------------------------------
@njit(inline="always", **_JIT)
def _col_cost(D, b, c, jd, Lr):
    """c[0:Lr] = D[b, 0:Lr, jd]: a grid column of the untransposed pass (a strided read of D)."""
    Db = D[b]
    for i in range(Lr):
        c[i] = Db[i, jd]


@njit(inline="always", **_JIT)
def _col_is_cost(j, Wr, offset):
    """Whether grid column j reads D (column 0 always costs 0; with offset 1 the last column too)."""
    return j >= 1 and (offset == 0 or j <= Wr - 2)


@njit(inline="always", **_JIT)
def _col_pass(D, lengths, b, gamma, inv_gamma, offset, transpose, out, A, first, R, ct, ea, eb, ph, pd):
    """One OTAM pass of problem b with the column schedule: out[b] (= if first, else +=) its soft score and
    A[b] += its expected alignment."""
    zero = R.dtype.type(0.0)
    one = R.dtype.type(1.0)
    Lr, ncols, Wr = _wave_geometry(D, lengths, b, offset, transpose)
    col0 = R[0:Lr]
    for i in range(Lr):
        col0[i] = zero
    Db = D[b]
    for j in range(1, Wr):
        jd = j - offset
        if not _col_is_cost(j, Wr, offset):  # the last column with offset 1: at most once per pass
            for i in range(Lr):
                ct[i] = zero
            c = ct
        elif transpose:
            c = Db[jd]  # the grid column is a row of D
        else:
            _col_cost(D, b, ct, jd, Lr)
            c = ct
        prev = R[(j - 1) * Lr:j * Lr]
        cur = R[j * Lr:(j + 1) * Lr]
        cur[0] = c[0] + prev[0]  # row 0: the cell on the left only
        if j == 1 or j == Wr - 1:
            for i in range(1, Lr):
                cur[i] = c[i] + _wsoftmin3(prev[i - 1], prev[i], cur[i - 1], gamma, inv_gamma, False)
        else:
            dg = prev[0:Lr - 1]
            hz = prev[1:Lr]
            co = cur[1:Lr]
            cc = c[1:Lr]
            for k in range(Lr - 1):
                co[k] = cc[k] + _wsoftmin2(dg[k], hz[k], gamma, inv_gamma, False)
    score = R[(Wr - 1) * Lr + Lr - 1]
    if first:
        out[b] = score
    else:
        out[b] += score
    # backward: ea = what column j received from column j + 1 (its horizontal and diagonal pushes)
    for i in range(Lr):
        ea[i] = zero
    ea[Lr - 1] = one  # the end cell
    Ab = A[b]
    for j in range(Wr - 1, 0, -1):
        prev = R[(j - 1) * Lr:j * Lr]
        cur = R[j * Lr:(j + 1) * Lr]
        if j == 1 or j == Wr - 1:
            # E up the column from the bottom (vertical pushes inside it); pushes into column j - 1 in eb
            for i in range(Lr):
                eb[i] = zero
            vin = zero
            for i in range(Lr - 1, 0, -1):
                e = ea[i] + vin
                ea[i] = e
                wh, wv, wd = _wave_weights3(e, prev[i - 1], prev[i], cur[i - 1], inv_gamma, one)
                eb[i] += wh
                eb[i - 1] += wd
                vin = wv
            e0 = ea[0] + vin
            ea[0] = e0
            eb[0] += e0
        else:
            ph[0] = ea[0]  # row 0 pushes everything to its left
            pd[Lr - 1] = zero
            eo = ea[1:Lr]
            dg = prev[0:Lr - 1]
            hz = prev[1:Lr]
            qh = ph[1:Lr]
            qd = pd[0:Lr - 1]
            for k in range(Lr - 1):
                d = dg[k]
                h = hz[k]
                w = _wexp(-abs(d - h) * inv_gamma)
                scale = eo[k] / (one + w)
                qh[k] = (w if d <= h else one) * scale
                qd[k] = (one if d <= h else w) * scale  # pushed to row k of column j - 1
            for i in range(Lr):
                eb[i] = ph[i] + pd[i]
        if _col_is_cost(j, Wr, offset):
            jd = j - offset
            if transpose:
                row = Ab[jd]
                for i in range(Lr):
                    row[i] += ea[i]
            else:
                for i in range(Lr):
                    Ab[i, jd] += ea[i]
        ea, eb = eb, ea


@njit(inline="always", **_JIT)
def _col_workspace(L0, M0, offset):
    """(values of R, of each of the 5 vectors) for either OTAM pass on a D of L0 x M0."""
    return max(L0 * (M0 + 2 * offset), M0 * (L0 + 2 * offset)), max(L0, M0) + 1


@njit(cache=True, **_JIT)
def col_workspace_values(L0, M0, offset):
    """Values (of D's dtype) the column schedule allocates per thread for a D of L0 x M0."""
    n_r, n_v = _col_workspace(L0, M0, offset)
    return n_r + 5 * n_v


@njit(cache=True, **_JIT)
def _col_problems(D, lengths, gamma, offset, two_way, out, A, b_lo, b_hi):
    """Problems b_lo .. b_hi - 1 one after the other with the column schedule (OTAM only): out[b] = the soft
    score and A[b] += the expected alignment of the OTAM pass and, with two_way, of the same pass on D^T."""
    n_r, n_v = _col_workspace(D.shape[1], D.shape[2], offset)
    R = np.empty(n_r, A.dtype)
    ct = np.empty(n_v, A.dtype)
    ea = np.empty(n_v, A.dtype)
    eb = np.empty(n_v, A.dtype)
    ph = np.empty(n_v, A.dtype)
    pd = np.empty(n_v, A.dtype)
    inv_gamma = A.dtype.type(1.0) / gamma
    for b in range(b_lo, b_hi):
        _col_pass(D, lengths, b, gamma, inv_gamma, offset, False, out, A, True, R, ct, ea, eb, ph, pd)
        if two_way:
            _col_pass(D, lengths, b, gamma, inv_gamma, offset, True, out, A, False, R, ct, ea, eb, ph, pd)


@njit(parallel=True, cache=True, **_JIT)
def _col_kernel(D, lengths, gamma, offset, two_way, out, A, n_parts):
    """_col_problems over all problems, split into n_parts contiguous ranges (one per thread)."""
    B = D.shape[0]
    for p in prange(n_parts):
        _col_problems(D, lengths, gamma, offset, two_way, out, A, p * B // n_parts, (p + 1) * B // n_parts)


# ----------------------------------------------------------------------------------------------------------------
# Host wrappers
# ----------------------------------------------------------------------------------------------------------------
# Below this many grid cells per call the kernels run serially: a thread launch costs more than it saves, and on a
# busy machine a parallel region waits for its slowest thread.
PARALLEL_MIN_CELLS = 65536
_LANES = 64  # lanes per chunk (4 AVX-512 float32 vectors; LLVM unrolls the lane loop by 4)
_FULL = np.zeros((0, 2), np.int64)  # "no lengths": every item uses the whole of D


# Schedule thresholds (measured, BENCHMARKS.md; constants, never changed at run time).  Grids of
# WAVEFRONT_MIN_CELLS cells or more leave the lanes whatever the batch; so do calls of fewer than
# LANES_MIN_PROBLEMS problems; grids under WAVEFRONT_MIN_SIDE cells on a side always keep the lanes.
WAVEFRONT_MIN_CELLS = 65536
LANES_MIN_PROBLEMS = 8
WAVEFRONT_MIN_SIDE = 16
SCHEDULES = ("lanes", "wavefront", "columns")


def choose_schedule(otam: bool, B: int, L: int, W: int, threads: int) -> str:
    """The schedule ``cpu_scores_alignment`` runs, by default, for B grids of L x W cells (W: the grid's width, M
    for DTW, M + 2 for OTAM with its side columns) on ``threads`` threads (1 for a serial call): "lanes" (SIMD
    across problems, 64 at a time), "wavefront" (one problem at a time, SIMD along anti-diagonals of stripes) or,
    OTAM only, "columns" (one problem at a time, SIMD down a grid column).

    Measured (BENCHMARKS.md): the lanes win from one full AVX2 vector of problems (8) up to grids of about
    128 x 128, the wavefront below 8 problems and from 256 x 256 on (the lanes' 3 grids per problem then overflow
    the caches); in between they are within ~30% of each other.  Grids under 16 cells a side keep the lanes: the
    stripes' throw-away steps would outweigh their cells.  OTAM takes the columns wherever the wavefront would
    run, except when one problem's waves would share the threads (fewer problems than threads), where the
    wavefront uses them all."""
    if min(L, W) < WAVEFRONT_MIN_SIDE or (B >= LANES_MIN_PROBLEMS and L * W < WAVEFRONT_MIN_CELLS):
        return "lanes"
    if otam and (threads == 1 or B >= threads):
        return "columns"
    return "wavefront"


def check_schedule(schedule: str, otam: bool) -> str:
    """``schedule`` if the kernels can run it for a DTW (``otam=False``) or OTAM call, else a ValueError that names
    the allowed values (the column schedule exists for OTAM only)."""
    allowed = SCHEDULES if otam else tuple(s for s in SCHEDULES if s != "columns")
    if schedule not in allowed:
        kind = "OTAM" if otam else "DTW"
        raise ValueError(f"cpu kernels: schedule for {kind} must be one of {allowed} or None (by shape); "
                         f"got {schedule!r}")
    return schedule


def call_threads(cells: int) -> int:
    """Threads a call of ``cells`` grid cells (all problems and passes) runs on: 1 below PARALLEL_MIN_CELLS (no
    thread launch), else numba's thread count."""
    return 1 if cells < PARALLEL_MIN_CELLS else numba.get_num_threads()


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
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, passes: tuple[AlignPass, ...],
    schedule: Optional[str] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over ``passes`` of the soft scores and of the expected alignments dScore/dD, in one kernel call.

    D [..., L, M] float32/float64 contiguous CPU; lengths [B, 2] int64 (B = prod(...)) or None.  Returns
    (scores [...], alignment [..., L, M]); the backward is then ``grad[..., None, None] * alignment``.  schedule:
    None (``choose_schedule`` picks by shape) or one of ``SCHEDULES`` ("columns" for OTAM only) to force it; the
    schedules agree to rounding.  The leading dims are handled with numpy views: on thousands of 5x5 grids every
    torch call on the host shows."""
    otam, offset, two_way = _call_passes(passes)
    D_np = D.detach().numpy()
    shape = D_np.shape
    L, M = shape[-2], shape[-1]
    B = D_np.size // (L * M)
    A = np.zeros(shape, D_np.dtype)
    out = np.empty(shape[:-2], D_np.dtype)
    NC = -(-B // _LANES)
    cells = B * L * (M + 2 * offset) * len(passes)
    threads = call_threads(cells)
    if schedule is None:
        schedule = choose_schedule(otam, B, L, M + 2 * offset, threads)
    else:
        check_schedule(schedule, otam)
    args = (D_np.reshape(B, L, M), _lengths_np(lengths), D_np.dtype.type(gamma), otam, offset, two_way,
            out.reshape(B), A.reshape(B, L, M))
    if schedule == "columns":
        col_args = args[:3] + args[4:]  # no otam flag: OTAM only
        if threads == 1:
            _col_problems(*col_args, 0, B)
        else:
            _col_kernel(*col_args, min(threads, B))
    elif schedule == "wavefront":
        if threads == 1:
            _wave_problems(*args, 0, B)
        elif B >= threads:  # whole problems per thread
            _wave_kernel(*args, threads)
        else:  # fewer problems than threads: each problem's blocks are spread over the threads
            _wave_tiles_kernel(*args)
    else:
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
