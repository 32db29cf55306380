"""GPU backend: Triton kernels for the alignment recursion of ``grid.py``.

Two schedules (``choose_schedule`` picks one by shape; ``schedule=`` of the entry points forces one, for tests
and benchmarks), both sweeping anti-diagonals (cells on one diagonal do not depend on each other;
rows of a long diagonal are processed BLOCK at a time, with a barrier between diagonals):

* ``"problems"``: one program per problem, over its whole grid: for many grids (each problem keeps one SM busy);
* ``"waves"``: waves of tiles, for a few large grids: the grid is cut into TILE x TILE tiles; tile (s, c) needs the
  tiles above, to the left and above-left, so the tiles of one anti-diagonal of tiles (a wave, s + c constant) run
  as one launch, one program per problem and tile, and the waves run one after the other (the backward in reverse).
  One 1024 x 1024 grid then keeps up to 16 programs busy instead of one.

The cumulative costs ``R [B, Lg+1, Wg+1]`` (bordered: row/column 0 are +inf, ``R[0, 0] = 0``) stay in global
memory for the backward.

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

__all__ = ["triton_scores", "triton_scores_alignment", "triton_matrix", "choose_schedule", "SCHEDULES"]

TILE = 64  # rows and columns of a tile in the wave schedule
SCHEDULES = ("problems", "waves")


@triton.jit
def _cell_range(r, last, wave, s_lo, TILED: tl.constexpr, TILE_SIZE: tl.constexpr):
    """(row_lo, row_hi, col_lo, col_hi) of the cells this program computes: the problem's whole grid (r rows,
    columns 0 .. last), or tile (s_lo + program_id(1), wave - s) of it, clipped to the grid."""
    if TILED:
        s = s_lo + tl.program_id(1)
        row_lo = s * TILE_SIZE
        col_lo = (wave - s) * TILE_SIZE
        row_hi = tl.minimum(r, row_lo + TILE_SIZE)
        col_hi = tl.minimum(last + 1, col_lo + TILE_SIZE)
    else:
        row_lo = 0
        col_lo = 0
        row_hi = r
        col_hi = last + 1
    return row_lo, row_hi, col_lo, col_hi


@triton.jit
def _forward_kernel(
    D, stride_b, stride_i, stride_j, rows_ptr, cols_ptr, R, out, gamma_ptr, Lg, Wg, wave, s_lo,
    OTAM: tl.constexpr, OFFSET: tl.constexpr, HARD: tl.constexpr, BLOCK: tl.constexpr, TILED: tl.constexpr,
    TILE_SIZE: tl.constexpr,
):
    b = tl.program_id(0)
    r = tl.load(rows_ptr + b)
    c = tl.load(cols_ptr + b)
    gamma = tl.load(gamma_ptr)
    last = c + 2 * OFFSET - 1
    Rb = R + b * (Lg + 1) * (Wg + 1)
    Db = D + b * stride_b
    row_len = Wg + 1
    row_lo, row_hi, col_lo, col_hi = _cell_range(r, last, wave, s_lo, TILED, TILE_SIZE)
    # local diagonal k holds the cells (i, col_lo + k - (i - row_lo)) of the range
    for k in range(0, (row_hi - row_lo) + (col_hi - col_lo) - 1):
        for i0 in range(row_lo, row_hi, BLOCK):
            i = i0 + tl.arange(0, BLOCK)
            j = col_lo + k - (i - row_lo)
            valid = (i < row_hi) & (j >= col_lo) & (j < col_hi)
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
    if not TILED:
        tl.store(out + b, tl.load(Rb + r * row_len + last + 1))


@triton.jit
def _backward_kernel(
    WD, WH, WV, dD, stride_b, stride_i, stride_j, rows_ptr, cols_ptr, grad, E, Lg, Wg, wave, s_lo,
    OTAM: tl.constexpr, OFFSET: tl.constexpr, BLOCK: tl.constexpr, TILED: tl.constexpr, TILE_SIZE: tl.constexpr,
):
    b = tl.program_id(0)
    r = tl.load(rows_ptr + b)
    c = tl.load(cols_ptr + b)
    last = c + 2 * OFFSET - 1
    g = tl.load(grad + b)
    base = b * Lg * Wg  # WD/WH/WV/E: [B, Lg, Wg]
    dDb = dD + b * stride_b
    row_lo, row_hi, col_lo, col_hi = _cell_range(r, last, wave, s_lo, TILED, TILE_SIZE)
    n_diag = (row_hi - row_lo) + (col_hi - col_lo) - 1
    for kk in range(0, n_diag):
        k = n_diag - 1 - kk
        for i0 in range(row_lo, row_hi, BLOCK):
            i = i0 + tl.arange(0, BLOCK)
            j = col_lo + k - (i - row_lo)
            valid = (i < row_hi) & (j >= col_lo) & (j < col_hi)
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


def _n_sm(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def choose_schedule(B: int, Lg: int, Wg: int, device: torch.device) -> str:
    """The schedule of a call on B grids of Lg x Wg cells: "waves" (waves of tiles, several programs per grid)
    when the problems alone would leave most SMs idle and each grid has at least two tiles a side, else
    "problems" (one program per problem).  Not yet tuned on a GPU (none was lent while it was written):
    benchmarks/gpu_checks.sh times both on the issue's shapes."""
    return "waves" if 2 * B <= _n_sm(device) and Lg >= 2 * TILE and Wg >= 2 * TILE else "problems"


def _use_waves(schedule: Optional[str], B: int, Lg: int, Wg: int, device: torch.device) -> bool:
    """Whether the call runs the waves of tiles: ``schedule`` (checked) if given, else ``choose_schedule``."""
    if schedule is None:
        schedule = choose_schedule(B, Lg, Wg, device)
    elif schedule not in SCHEDULES:
        raise ValueError(f"triton kernels: schedule must be one of {SCHEDULES} or None (by shape); got {schedule!r}")
    return schedule == "waves"


def _waves(Lg: int, Wg: int):
    """(wave, first tile row, tiles on the wave) of the tiles of an Lg x Wg grid, wave by wave."""
    n_rows = triton.cdiv(Lg, TILE)
    n_cols = triton.cdiv(Wg, TILE)
    for wave in range(n_rows + n_cols - 1):
        s_lo = max(0, wave - n_cols + 1)
        yield wave, s_lo, min(n_rows - 1, wave) - s_lo + 1


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
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, align_pass: AlignPass, hard: bool = False,
    schedule: Optional[str] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass.  D [B, L, M] float32/float64 contiguous on the kernels' device; lengths [B, 2] int64 (rows, cols)
    of D or None (full).  Returns (scores [B], R [B, Lg+1, Wg+1]: the bordered cumulative costs; cells outside
    each item's lengths stay +inf).  schedule: None (by shape) or one of ``SCHEDULES`` to force it."""
    B, L, M = D.shape
    Lg, Wg = align_pass.grid_shape(L, M)
    rows, cols = _grid_lengths(lengths, B, L, M, align_pass, D.device)
    R = torch.full((B, Lg + 1, Wg + 1), float("inf"), dtype=D.dtype, device=D.device)
    R[:, 0, 0] = 0.0
    out = torch.empty(B, dtype=D.dtype, device=D.device)
    gamma_t = torch.full((1,), float(gamma), dtype=D.dtype, device=D.device)
    args = (D, *_strides(D, align_pass), rows, cols, R, out, gamma_t, Lg, Wg)
    flags = dict(OTAM=align_pass.otam, OFFSET=align_pass.offset, HARD=hard, TILE_SIZE=TILE)
    if _use_waves(schedule, B, Lg, Wg, D.device):
        for wave, s_lo, n_tiles in _waves(Lg, Wg):
            _forward_kernel[(B, n_tiles)](*args, wave, s_lo, BLOCK=_block(TILE), TILED=True, **flags)
        last = align_pass.last_col(cols)
        out = R[torch.arange(B, device=D.device), rows, last + 1]
    else:
        _forward_kernel[(B,)](*args, 0, 0, BLOCK=_block(Lg), TILED=False, **flags)
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
    D: torch.Tensor, lengths: Optional[torch.Tensor], gamma: float, passes: tuple[AlignPass, ...],
    schedule: Optional[str] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over ``passes`` of the soft scores [...] and of the expected alignments dScore/dD [..., L, M] of
    D [..., L, M] (lengths [B, 2] for the flattened leading dims, or None).  schedule: None (by shape) or one of
    ``SCHEDULES`` to force it (forward and backward)."""
    shape = D.shape
    D = D.reshape(-1, shape[-2], shape[-1])
    B, L, M = D.shape
    A = torch.zeros_like(D)
    seed = torch.ones(B, dtype=D.dtype, device=D.device)
    total = None
    for align_pass in passes:
        values, R = triton_scores(D, lengths, gamma, align_pass, schedule=schedule)
        total = values if total is None else total + values
        Lg, Wg = R.shape[1] - 1, R.shape[2] - 1
        rows, cols = _grid_lengths(lengths, B, L, M, align_pass, D.device)
        wd, wh, wv = (w.contiguous() for w in _softmin_weights(R, gamma, align_pass, cols))
        E = torch.empty((B, Lg, Wg), dtype=D.dtype, device=D.device)
        args = (wd, wh, wv, A, *_strides(A, align_pass), rows, cols, seed, E, Lg, Wg)
        flags = dict(OTAM=align_pass.otam, OFFSET=align_pass.offset, TILE_SIZE=TILE)
        if _use_waves(schedule, B, Lg, Wg, D.device):
            for wave, s_lo, n_tiles in reversed(list(_waves(Lg, Wg))):
                _backward_kernel[(B, n_tiles)](*args, wave, s_lo, BLOCK=_block(TILE), TILED=True, **flags)
        else:
            _backward_kernel[(B,)](*args, 0, 0, BLOCK=_block(Lg), TILED=False, **flags)
    return total.reshape(shape[:-2]), A.reshape(shape)


def triton_matrix(R: torch.Tensor, batch: int) -> torch.Tensor:
    """The cumulative-cost matrices ``[B, Lg, Wg]`` out of a bordered ``R``."""
    return R[:batch, 1:, 1:].contiguous()
