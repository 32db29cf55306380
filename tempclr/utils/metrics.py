"""The original TempCLR alignment helpers (``utils/metrics.py``), same names, arguments and output shapes, computed
by the kernels of :mod:`tempclr.modules.alignment` instead of Python cell loops.

Values equal the original recurrences (soft-min in log-sum-exp form, gamma = ``lbda``), with two
documented fixes: ``OTAM_eval_cum_dist`` adds the column-1 minimum (the original
subtracted it) and the pads no longer zero real cells when a padding amount is 0.  The recurrences accept any
leading dims (the originals needed exactly ``[b, n, L, M]``) and return the input's dtype (the originals always
allocated float32).  New code should call :func:`~tempclr.modules.alignment.soft_dtw` /
:func:`~tempclr.modules.alignment.soft_otam` with ``lengths`` instead of padding with ``inf``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tempclr.modules.alignment import cumulative_cost, soft_dtw, soft_otam
from tempclr.modules.similarity import cos_sim

__all__ = [
    "cos_sim",
    "DTW_cum_dist",
    "OTAM_cum_dist",
    "DTW_eval_cum_dist",
    "OTAM_eval_cum_dist",
    "DTW_pad",
    "OTAM_pad",
]


def DTW_cum_dist(dists: torch.Tensor, lbda: float = 0.1) -> torch.Tensor:
    """Soft-DTW cost of each ``[L, M]`` matrix of ``dists [b, n, L, M]`` -> ``[b, n]`` (R[L-1, M-1]; first row and
    column are hard cumulative sums).  Differentiable; gamma = lbda."""
    return soft_dtw(dists, gamma=lbda)


def OTAM_cum_dist(dists: torch.Tensor, lbda: float = 0.1) -> torch.Tensor:
    """Soft-OTAM cost in ONE direction (query rows to support columns) of ``dists [b, n, L, M]`` -> ``[b, n]``:
    R[L-1, M+1] of the grid padded with a zero column on each side.  Training uses
    ``OTAM_cum_dist(D) + OTAM_cum_dist(D.transpose(-1, -2))``.  Differentiable; gamma = lbda."""
    return soft_otam(dists, gamma=lbda)


def DTW_eval_cum_dist(dists: torch.Tensor) -> torch.Tensor:
    """Hard DTW: the full cumulative-cost matrix ``[b, n, L, M]`` (min instead of soft-min); the cost of the
    whole alignment is ``[..., -1, -1]``.  ``dists`` may hold +inf (``DTW_pad``)."""
    return cumulative_cost(dists, "dtw", gamma=0.0)


def OTAM_eval_cum_dist(dists: torch.Tensor) -> torch.Tensor:
    """Hard OTAM on an already padded input (``OTAM_pad``: zero side columns): the full cumulative-cost matrix
    ``[b, n, L, W]``; the cost is ``[..., -1, -1]``.  Column 0 is free (R[:, 0] = 0), row 0 is a cumulative sum,
    column 1 and the last column take the min over diagonal, vertical and horizontal predecessors, the middle
    columns over diagonal and horizontal.  Fixed: column 1 adds its minimum (the original subtracted it)."""
    return cumulative_cost(dists, "otam", gamma=0.0, prepadded=True)


def _pad_amounts(dists: torch.Tensor, target_length0: int, target_length1: int, fn: str) -> tuple[int, int]:
    rows, cols = dists.shape[-2:]
    d0, d1 = int(target_length0) - rows, int(target_length1) - cols
    if d0 < 0 or d1 < 0:
        raise ValueError(
            f"{fn}: target lengths ({target_length0}, {target_length1}) are smaller than the input's last two dims "
            f"({rows}, {cols}); pass targets >= the sizes (the original would silently crop)"
        )
    return d0, d1


def _zero_corridor(padded: torch.Tensor, rows: int, first_pad_col: int) -> torch.Tensor:
    """Zero the padding cells that lead from the last real row to the bottom-right corner: the last real row and
    every padding row from ``first_pad_col`` on, and the padding rows of the last column (which keeps the corner
    reachable when no column was padded).  Real cells are never touched."""
    padded[..., rows - 1 :, first_pad_col:] = 0
    padded[..., rows:, -1] = 0
    return padded


def DTW_pad(dists: torch.Tensor, target_length0: int, target_length1: int) -> torch.Tensor:
    """Pad ``[..., rows, cols]`` to ``[..., T0, T1]`` with +inf plus a zero corridor, so that a batch of unequal
    matrices can go through :func:`DTW_eval_cum_dist` and be read at ``[..., -1, -1]``.

    Fixed slicing: the original zeroed ``[-d0-1:, -d1:]``, which for ``d1 == 0`` selects every column and so
    zeroed the whole last real row.  Here the corridor covers only padding cells: columns ``cols ..`` of the rows
    from the last real one down, and, when ``d1 == 0``, the last column below the real rows.  As in the original,
    the corridor lets the alignment leave the real block one step early (diagonally)."""
    d0, d1 = _pad_amounts(dists, target_length0, target_length1, "DTW_pad")
    rows, cols = dists.shape[-2:]
    padded = F.pad(dists, (0, d1, 0, d0), "constant", float("inf"))
    return _zero_corridor(padded, rows, cols)


def OTAM_pad(dists: torch.Tensor, target_length0: int, target_length1: int) -> torch.Tensor:
    """Add OTAM's zero side columns, then pad to ``[..., T0, T1 + 2]`` with +inf plus the zero corridor of
    :func:`DTW_pad` (real width ``cols + 2``).  For :func:`OTAM_eval_cum_dist`; the corner value then equals the
    unpadded OTAM cost.  Fixed slicing as in :func:`DTW_pad` (the original zeroed the last real row when
    ``cols == T1``)."""
    d0, d1 = _pad_amounts(dists, target_length0, target_length1, "OTAM_pad")
    rows, cols = dists.shape[-2:]
    padded = F.pad(F.pad(dists, (1, 1), "constant", 0.0), (0, d1, 0, d0), "constant", float("inf"))
    return _zero_corridor(padded, rows, cols + 2)
