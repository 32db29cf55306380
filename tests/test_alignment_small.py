"""Many tiny grids (the 1x512x5x5 case of the benchmarks) through the CPU kernels: values and gradients against
the cell-loop reference, with and without lengths, for every mode and input dtype, so the host-side shortcuts
(no zero-filled score accumulator, no-op dtype/device conversions skipped, backward's dtype cast) stay exact."""
from __future__ import annotations

import pytest
import torch

from tempclr.modules.alignment import soft_dtw, soft_otam

MODES = ["dtw", "otam", "otam_both"]


def _score(D: torch.Tensor, mode: str, lengths, backend: str) -> torch.Tensor:
    if mode == "dtw":
        return soft_dtw(D, 0.1, lengths, backend=backend)
    return soft_otam(D, 0.1, lengths, bidirectional=(mode == "otam_both"), backend=backend)


def _value_and_grad(D: torch.Tensor, mode: str, lengths, backend: str, weights: torch.Tensor):
    leaf = D.detach().clone().requires_grad_(True)
    out = _score(leaf, mode, lengths, backend)
    (out * weights.to(out.dtype)).sum().backward()
    return out.detach(), leaf.grad


def _random_lengths(gen: torch.Generator, lead: tuple[int, ...], L: int, M: int) -> torch.Tensor:
    rows = torch.randint(1, L + 1, lead, generator=gen)
    cols = torch.randint(1, M + 1, lead, generator=gen)
    return torch.stack([rows, cols], dim=-1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("side", [5, 8, 16])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_small_grids_match_reference(mode: str, side: int, with_lengths: bool):
    gen = torch.Generator().manual_seed(side)
    lead = (2, 35)  # 70 problems: two chunks of 64 lanes, the second one partly filled
    D = torch.rand((*lead, side, side - 1), generator=gen, dtype=torch.float64)
    lengths = _random_lengths(gen, lead, side, side - 1) if with_lengths else None
    weights = torch.rand(lead, generator=gen, dtype=torch.float64)
    ref_value, ref_grad = _value_and_grad(D, mode, lengths, "ref", weights)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        value, grad = _value_and_grad(D.to(dtype), mode, lengths, "cpu", weights)
        assert value.dtype == dtype and grad.dtype == dtype
        assert torch.allclose(value.double(), ref_value, rtol=tol, atol=tol), (value.double() - ref_value).abs().max()
        assert torch.allclose(grad.double(), ref_grad, rtol=tol, atol=tol), (grad.double() - ref_grad).abs().max()
    if with_lengths:
        rows = torch.arange(side).view(1, 1, -1, 1)
        cols = torch.arange(side - 1).view(1, 1, 1, -1)
        outside = (rows >= lengths[..., 0, None, None]) | (cols >= lengths[..., 1, None, None])
        assert (grad[outside] == 0).all(), "padding cells must get exactly zero gradient"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    D = torch.rand((64, 5, 5), generator=gen)
    weights = torch.rand(64, generator=gen)
    for mode in MODES:
        value, grad = _value_and_grad(D.to(dtype), mode, None, "cpu", weights)
        ref_value, ref_grad = _value_and_grad(D.to(dtype).float(), mode, None, "cpu", weights)
        assert value.dtype == dtype and grad.dtype == dtype
        # the value is rounded once from the float32 result; the gradient sees the weights rounded to dtype
        assert torch.equal(value, ref_value.to(dtype)), mode
        assert torch.allclose(grad.float(), ref_grad, rtol=1e-2, atol=1e-3), mode
