"""GPU backend: Triton kernels for the alignment recursion of ``grid.py``.

One program per problem sweeps the anti-diagonals ``k = i + j`` of its grid (cells on one diagonal do not depend on
each other; rows of a long diagonal are processed BLOCK at a time), with a barrier between diagonals.  The
cumulative costs ``R [B, Lg+1, Wg+1]`` (bordered: row/column 0 are +inf, ``R[0, 0] = 0``) stay in global memory
for the backward.

Backward: the soft-min weights of every cell over its three predecessors depend only on ``R``, so they are
computed for the whole grid at once with torch (``_softmin_weights``); the Triton kernel then sweeps the
diagonals in reverse and pulls ``E[i, j] = sum_succ E[succ] * w(succ <- (i, j))`` (the expected alignment, times
the incoming gradient), writing ``E`` of cost cells into ``dD``.  Cells outside an item's lengths are never
computed or read, so their gradient is exactly 0.

``triton`` is imported when this module is imported; ``functions.py`` imports it only when the backend is used.
With ``TRITON_INTERPRET=1`` set before the import, the same kernels run on CPU tensors (used by the tests).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .grid import AlignPass

__all__ = ["triton_scores", "triton_scores_alignment", "triton_matrix"]


@triton.jit
def _forward_kernel(
    D, stride_b, stride_i, stride_j, rows_ptr, cols_ptr, R, out, gamma_ptr, Lg, Wg,
    OTAM: tl.constexpr, OFFSET: tl.constexpr, HARD: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    r = tl.load(rows_ptr + b)
    c = tl.load(cols_ptr + b)
    gamma = tl.load(gamma_ptr)
    last = c + 2 * OFFSET - 1
    Rb = R + b * (Lg + 1) * (Wg + 1)
    Db = D + b * stride_b
    row_len = Wg + 1
    for k in range(0, r + last):
        for i0 in range(0, r, BLOCK):
            i = i0 + tl.arange(0, BLOCK)
            j = k - i
            valid = (i < r) & (j >= 0) & (j <= last)
            jd = j - OFFSET
            has_cost = valid & (jd >= 0) & (jd < c)
            if OTAM:
                has_cost = has_cost & (j > 0)
            x = tl.load(Db + i * stride_i + jd * stride_j, mask=has_cost, other=0.0)
            d = tl.load(Rb + i * row_len + j, mask=valid, other=0.0)  # (0: masked lanes stay NaN-free)
            h = tl.load(Rb + (i + 1) * row_len + j, mask=valid, other=float("inf"))
            v = tl.load(Rb + i * row_len + j + 1, mask=valid, other=float("inf"))
            if OTAM:
                v = tl.where((j <= 1) | (j == last), v, float("inf"))
            m = tl.minimum(tl.minimum(d, h), v)
            if HARD:
                smin = m
            else:
                total = tl.exp((m - d) / gamma) + tl.exp((m - h) / gamma) + tl.exp((m - v) / gamma)
                smin = tl.where(m == float("inf"), m, m - gamma * tl.log(total))
            tl.store(Rb + (i + 1) * row_len + j + 1, x + smin, mask=valid)
        tl.debug_barrier()
    tl.store(out + b, tl.load(Rb + r * row_len + last + 1))


@triton.jit
def _backward_kernel(
    WD, WH, WV, dD, stride_b, stride_i, stride_j, rows_ptr, cols_ptr, grad, E, Lg, Wg,
    OTAM: tl.constexpr, OFFSET: tl.constexpr, BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    r = tl.load(rows_ptr + b)
    c = tl.load(cols_ptr + b)
    last = c + 2 * OFFSET - 1
    g = tl.load(grad + b)
    base = b * Lg * Wg  # WD/WH/WV/E: [B, Lg, Wg]
    dDb = dD + b * stride_b
    for kk in range(0, r + last):
        k = r + last - 1 - kk
        for i0 in range(0, r, BLOCK):
            i = i0 + tl.arange(0, BLOCK)
            j = k - i
            valid = (i < r) & (j >= 0) & (j <= last)
            diag_ok = valid & (i + 1 < r) & (j + 1 <= last)
            right_ok = valid & (j + 1 <= last)
            down_ok = valid & (i + 1 < r)
            at_diag = base + (i + 1) * Wg + j + 1
            at_right = base + i * Wg + j + 1
            at_down = base + (i + 1) * Wg + j
            e = tl.load(E + at_diag, mask=diag_ok, other=0.0) * tl.load(WD + at_diag, mask=diag_ok, other=0.0)
            e += tl.load(E + at_right, mask=right_ok, other=0.0) * tl.load(WH + at_right, mask=right_ok, other=0.0)
            e += tl.load(E + at_down, mask=down_ok, other=0.0) * tl.load(WV + at_down, mask=down_ok, other=0.0)
            e += tl.where((i == r - 1) & (j == last), g, 0.0)
            tl.store(E + base + i * Wg + j, e, mask=valid)
            jd = j - OFFSET
            has_cost = valid & (jd >= 0) & (jd < c)
            if OTAM:
                has_cost = has_cost & (j > 0)
            at_dD = dDb + i * stride_i + jd * stride_j
            prev = tl.load(at_dD, mask=has_cost, other=0.0)
            tl.store(at_dD, prev + e.to(prev.dtype), mask=has_cost)
        tl.debug_barrier()


def _block(rows: int) -> int:
    return max(16, min(512, triton.next_power_of_2(rows)))


def _strides(D: torch.Tensor, align_pass: AlignPass) -> tuple[int, int, int]:
    sb, si, sj = D.stride()
    return (sb, sj, si) if align_pass.transpose else (sb, si, sj)


def _grid_lengths(
    lengths: Optional[torch.Tensor], B: int, L: int, M: int, align_pass: AlignPass, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous int64 (rows, cols) [B] of each item's cost part in grid orientation."""
    if lengths is None:
        lengths = torch.tensor([L, M], dtype=torch.int64, device=device).expand(B, 2)
    rows, cols = align_pass.grid_lengths(lengths)
    return rows.contiguous(), cols.contiguous()


def triton_scores(
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, align_pass: AlignPass, hard: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass.  D [B, L, M] float32/float64 contiguous on the kernels' device; lengths [B, 2] int64 (rows, cols)
    of D or None (full).  Returns (scores [B], R [B, Lg+1, Wg+1]: the bordered cumulative costs; cells outside
    each item's lengths stay +inf)."""
    B, L, M = D.shape
    Lg, Wg = align_pass.grid_shape(L, M)
    rows, cols = _grid_lengths(lengths, B, L, M, align_pass, D.device)
    R = torch.full((B, Lg + 1, Wg + 1), float("inf"), dtype=D.dtype, device=D.device)
    R[:, 0, 0] = 0.0
    out = torch.empty(B, dtype=D.dtype, device=D.device)
    gamma_t = torch.full((1,), float(gamma), dtype=D.dtype, device=D.device)
    _forward_kernel[(B,)](
        D, *_strides(D, align_pass), rows, cols, R, out, gamma_t, Lg, Wg,
        OTAM=align_pass.otam, OFFSET=align_pass.offset, HARD=hard, BLOCK=_block(Lg),
    )
    return out, R


def _softmin_weights(R: torch.Tensor, gamma: float, align_pass: AlignPass, cols: torch.Tensor):
    """For every cell, the soft-min weights of its (diagonal, horizontal, vertical) predecessor: [B, Lg, Wg] each.

    R: [B, Lg+1, Wg+1] bordered.  Cells whose R is +inf (outside an item's lengths) get NaN weights; the
    backward kernel never reads them."""
    d = R[:, :-1, :-1]
    h = R[:, 1:, :-1]
    v = R[:, :-1, 1:]
    if align_pass.otam:
        j = torch.arange(v.shape[-1], device=R.device)
        last = align_pass.last_col(cols).to(R.device)[:, None]
        allowed = (j[None, :] <= 1) | (j[None, :] == last)
        v = torch.where(allowed[:, None, :], v, torch.full_like(v, float("inf")))
    m = torch.minimum(torch.minimum(d, h), v)
    wd = torch.exp((m - d) / gamma)
    wh = torch.exp((m - h) / gamma)
    wv = torch.exp((m - v) / gamma)
    total = wd + wh + wv
    return wd / total, wh / total, wv / total


def triton_scores_alignment(
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, passes: tuple[AlignPass, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over ``passes`` of the soft scores [...] and of the expected alignments dScore/dD [..., L, M] of
    D [..., L, M] (lengths [B, 2] for the flattened leading dims, or None)."""
    shape = D.shape
    D = D.reshape(-1, shape[-2], shape[-1])
    B, L, M = D.shape
    A = torch.zeros_like(D)
    seed = torch.ones(B, dtype=D.dtype, device=D.device)
    total = None
    for align_pass in passes:
        values, R = triton_scores(D, lengths, gamma, align_pass)
        total = values if total is None else total + values
        Lg, Wg = R.shape[1] - 1, R.shape[2] - 1
        rows, cols = _grid_lengths(lengths, B, L, M, align_pass, D.device)
        wd, wh, wv = (w.contiguous() for w in _softmin_weights(R, gamma, align_pass, cols))
        E = torch.empty((B, Lg, Wg), dtype=D.dtype, device=D.device)
        _backward_kernel[(B,)](
            wd, wh, wv, A, *_strides(A, align_pass), rows, cols, seed, E, Lg, Wg,
            OTAM=align_pass.otam, OFFSET=align_pass.offset, BLOCK=_block(Lg),
        )
    return total.reshape(shape[:-2]), A.reshape(shape)


def triton_matrix(R: torch.Tensor, batch: int) -> torch.Tensor:
    """The cumulative-cost matrices ``[B, Lg, Wg]`` out of a bordered ``R``."""
    return R[:batch, 1:, 1:].contiguous()
