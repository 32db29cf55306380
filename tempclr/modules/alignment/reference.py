"""Plain cell-by-cell reference of the alignment recursion (torch; autograd does the backward).

Slow (one Python step per cell, batched over problems only); used by the tests and the benchmark as the one
reference, and selectable as ``backend="ref"``.  It follows ``grid.py`` literally: build the grid (OTAM's zero
side columns, column 0 free), then for every cell take the soft-min over its allowed predecessors.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .grid import AlignPass

__all__ = ["align_ref"]


def _smin(preds: list[torch.Tensor], gamma: float, hard: bool) -> torch.Tensor:
    stacked = torch.stack(preds, dim=-1)
    if hard:
        return stacked.min(dim=-1).values
    return -gamma * torch.logsumexp(-stacked / gamma, dim=-1)


def _grid(D: torch.Tensor, align_pass: AlignPass) -> torch.Tensor:
    X = D.transpose(-1, -2) if align_pass.transpose else D
    if align_pass.offset:
        X = F.pad(X, (align_pass.offset, align_pass.offset), "constant", 0.0)
    if align_pass.otam:
        X = torch.cat([torch.zeros_like(X[..., :1]), X[..., 1:]], dim=-1)
    return X


def _recursion(X: torch.Tensor, gamma: float, otam: bool, hard: bool) -> list[list[torch.Tensor]]:
    """X [B, Lg, Wg] -> R as nested lists of [B] tensors (no in-place writes, so autograd sees every step)."""
    Lg, Wg = X.shape[-2:]
    R: list[list[torch.Tensor]] = [[X[:, 0, 0]] * Wg for _ in range(Lg)]
    for i in range(Lg):
        for j in range(Wg):
            if i == 0 and j == 0:
                continue
            preds = []
            if i > 0 and j > 0:
                preds.append(R[i - 1][j - 1])
            if j > 0:
                preds.append(R[i][j - 1])
            if i > 0 and (not otam or j <= 1 or j == Wg - 1):
                preds.append(R[i - 1][j])
            R[i][j] = X[:, i, j] + _smin(preds, gamma, hard)
    return R


def align_ref(
    D: torch.Tensor,
    gamma: float,
    align_pass: AlignPass,
    lengths: Optional[torch.Tensor] = None,
    hard: bool = False,
    return_matrix: bool = False,
) -> torch.Tensor:
    """Score of one pass for each problem.

    D: [B, L, M].  lengths: [B, 2] int64 (rows, cols) of each item's real part of ``D`` or None (full).
    Returns [B] (the end cell), or with ``return_matrix`` the cumulative cost grid [B, Lg, Wg] (no lengths).
    hard=True uses min instead of the soft-min (gamma is then ignored)."""
    if lengths is not None:
        if return_matrix:
            raise ValueError("align_ref: return_matrix does not take lengths")
        items = [
            align_ref(D[b : b + 1, : int(r), : int(c)], gamma, align_pass, None, hard)
            for b, (r, c) in enumerate(lengths.tolist())
        ]
        return torch.cat(items)
    R = _recursion(_grid(D, align_pass), gamma, align_pass.otam, hard)
    if return_matrix:
        return torch.stack([torch.stack(row, dim=-1) for row in R], dim=-2)
    return R[-1][-1]
