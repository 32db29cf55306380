"""The one alignment grid that soft-DTW and soft-OTAM share, and how each backend reads it.

Both scores are the same soft-min recursion over a grid of cells ``(i, j)``::

    R[i, j] = cost(i, j) + smin_gamma(R[i-1, j-1], R[i, j-1], R[i-1, j])      # diagonal, horizontal, vertical
    smin_gamma(a_1..a_k) = -gamma * log(sum_k exp(-a_k / gamma))              (gamma -> 0: plain min)

with the virtual cell ``R[-1, -1] = 0`` and every other cell outside the grid at ``+inf`` (so the first row and
column are hard cumulative sums: a single predecessor).  The two modes differ only in three places, all held by
:class:`AlignPass`:

* **columns** -- DTW's grid is ``D`` itself (``L x M``).  OTAM's grid is ``D`` with one free zero column on each
  side (``L x (M + 2)``; ``offset = 1``); an input that is already padded (``offset = 0``) uses its own side columns,
  except that column 0 always costs 0 (the original never reads ``D[..., 0]``);
* **moves** -- OTAM forbids the vertical move except in the first two columns and the last one (the zero columns
  let an alignment start late and end early; column 1 keeps the original's vertical move);
* **end cell** -- the score is ``R[rows - 1, last]`` with ``last = cols - 1`` (DTW) or ``cols + 1`` (OTAM on the
  implicitly padded grid), per item, so a padded batch needs no ``inf`` padding.

``transpose`` runs the recursion on ``D^T`` (the second direction of two-way OTAM) without copying ``D``.
Every backend (reference cell loop, numba, Triton) takes these fields; none re-derives them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AlignPass", "DTW", "OTAM", "OTAM_T", "OTAM_PREPADDED", "MODES", "passes_for"]


@dataclass(frozen=True)
class AlignPass:
    """One run of the recursion.

    otam: OTAM moves (no vertical move outside columns 0, 1 and the last one) and a zero-cost column 0.
    offset: 1 = the grid has implicit zero columns on both sides of ``D`` (width ``M + 2``); 0 = grid is ``D``.
    transpose: the grid is ``D^T`` (rows index ``D``'s last dim); lengths are swapped accordingly.
    """

    otam: bool
    offset: int
    transpose: bool = False

    def grid_shape(self, L: int, M: int) -> tuple[int, int]:
        """Grid ``(rows, cols)`` for a ``D`` of shape ``[L, M]``."""
        rows, cols = (M, L) if self.transpose else (L, M)
        return rows, cols + 2 * self.offset

    def grid_lengths(self, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-item ``(rows, cols)`` of the cost part of the grid, from ``lengths [B, 2]`` given for ``D``."""
        rows, cols = lengths[:, 0], lengths[:, 1]
        return (cols, rows) if self.transpose else (rows, cols)

    def last_col(self, cols: torch.Tensor) -> torch.Tensor:
        """Grid column of each item's end cell, from its cost columns ``cols``."""
        return cols + 2 * self.offset - 1


DTW = AlignPass(otam=False, offset=0)
OTAM = AlignPass(otam=True, offset=1)
OTAM_T = AlignPass(otam=True, offset=1, transpose=True)
OTAM_PREPADDED = AlignPass(otam=True, offset=0)

MODES: dict[str, tuple[AlignPass, ...]] = {
    "dtw": (DTW,),
    "otam": (OTAM,),
    "otam_both": (OTAM, OTAM_T),
}


def passes_for(mode: str) -> tuple[AlignPass, ...]:
    """The passes whose scores are summed for ``mode``: "dtw", "otam" (one direction) or "otam_both"
    (OTAM(D) + OTAM(D^T))."""
    if mode not in MODES:
        raise ValueError(f"unknown alignment mode {mode!r}; choose one of {sorted(MODES)}")
    return MODES[mode]
