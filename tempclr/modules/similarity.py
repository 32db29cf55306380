"""Similarity of two sets of vectors, as TempCLR's alignment losses compute it (the distance grids they align)."""
from __future__ import annotations

import torch

__all__ = ["cos_sim"]


def cos_sim(x: torch.Tensor, y: torch.Tensor, epsilon: float = 0.01) -> torch.Tensor:
    """Cosine similarity of the last dims: x [..., N, d], y [..., M, d] -> [..., N, M].

    Kept exactly as the original: ``x @ y^T / (|x| |y|^T + epsilon)``.  The epsilon is added to the product of
    the norms (not used as a lower clamp), so every cosine is shrunk slightly towards 0 (by about
    ``epsilon / (|x| |y|)``) and an all-zero row gives 0 instead of NaN."""
    numerator = torch.matmul(x, y.transpose(-1, -2))
    norms = torch.matmul(x.norm(dim=-1).unsqueeze(-1), y.norm(dim=-1).unsqueeze(-1).transpose(-1, -2))
    return numerator / (norms + epsilon)
