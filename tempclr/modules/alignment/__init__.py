"""Differentiable sequence alignment for TempCLR: soft-DTW and soft-OTAM with analytic backward kernels.

Layout: ``grid.py`` (the one recursion both modes share), ``reference.py`` (cell-loop torch reference),
``cpu.py`` (numba kernels), ``triton_kernels.py`` (GPU kernels, imported lazily), ``functions.py`` (public API,
autograd.Function, backend choice).

Special values: a NaN anywhere in an item's real part (inside its ``lengths``) makes that item's score NaN and its
gradient NaN over the real part (padding keeps a zero gradient), whatever the backend, so a NaN upstream stops
training instead of disappearing; other items of the batch are unaffected.  fp16/bf16 costs are computed in
float32 and the scores cast back; a score that does not fit the input's dtype raises ``OverflowError`` (never a
silent inf).
"""
from .functions import (
    BACKENDS,
    cumulative_cost,
    expected_alignment,
    hard_dtw,
    hard_otam,
    resolve_backend,
    soft_dtw,
    soft_otam,
)

__all__ = [
    "BACKENDS",
    "cumulative_cost",
    "expected_alignment",
    "hard_dtw",
    "hard_otam",
    "resolve_backend",
    "soft_dtw",
    "soft_otam",
]
