"""Differentiable sequence alignment for TempCLR: soft-DTW and soft-OTAM with analytic backward kernels.

Layout: ``grid.py`` (the one recursion both modes share), ``reference.py`` (cell-loop torch reference),
``cpu.py`` (numba kernels), ``triton_kernels.py`` (GPU kernels, imported lazily), ``functions.py`` (public API,
autograd.Function, backend choice).
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
