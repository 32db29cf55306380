"""The CPU kernels' two schedules: lanes (SIMD across up to 64 problems, for many grids) and the anti-diagonal
wavefront (one problem at a time, SIMD along each diagonal, for a few large grids).  Values and gradients of
both against the cell-loop reference on the shapes that select each schedule (one large grid, a few, many;
square and very non-square; with lengths), the schedule choice itself, the parallel wavefront against the serial
one, and NaN propagation through the wavefront."""
from __future__ import annotations

import pytest
import torch

from tempclr.modules.alignment import cpu as cpu_backend
from tempclr.modules.alignment import soft_dtw, soft_otam

MODES = ["dtw", "otam", "otam_both"]


def score(D, mode, lengths=None, backend=None, gamma=0.1):
    if mode == "dtw":
        return soft_dtw(D, gamma, lengths, backend=backend)
    return soft_otam(D, gamma, lengths, bidirectional=(mode == "otam_both"), backend=backend)


def value_and_grad(D, mode, lengths, backend, weights, gamma=0.1):
    leaf = D.detach().clone().requires_grad_(True)
    out = score(leaf, mode, lengths, backend, gamma)
    (out * weights).sum().backward()
    return out.detach(), leaf.grad


def random_lengths(gen, B, L, M):
    return torch.stack([torch.randint(1, L + 1, (B,), generator=gen), torch.randint(1, M + 1, (B,), generator=gen)], 1)


@pytest.mark.parametrize(
    "shape, wavefront",
    [
        ((1, 1024, 1024), True), ((1, 4096, 512), True), ((3, 700, 300), True), ((8, 256, 256), True),
        ((512, 5, 5), False), ((32, 8, 80), False), ((512, 32, 32), False), ((64, 64, 64), False),
    ],
)
def test_schedule_follows_the_shape(shape, wavefront):
    B, L, M = shape
    assert cpu_backend.use_wavefront(B, L, M) is wavefront


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("shape", [(1, 40, 40), (3, 70, 30), (1, 200, 24), (2, 20, 90)])
def test_wavefront_shapes_match_reference(mode, shape, with_lengths):
    B, L, M = shape
    assert cpu_backend.use_wavefront(B, L, M + (2 if mode != "dtw" else 0)), "shape must select the wavefront"
    gen = torch.Generator().manual_seed(B * 1000 + L + M)
    D = torch.rand(shape, generator=gen, dtype=torch.float64) * 2.0 - 0.5
    lengths = random_lengths(gen, B, L, M) if with_lengths else None
    if with_lengths:
        lengths[0] = torch.tensor([L, M])  # one item uses the whole grid
    weights = torch.rand(B, generator=gen, dtype=torch.float64)
    ref_value, ref_grad = value_and_grad(D, mode, lengths, "ref", weights)
    value, grad = value_and_grad(D, mode, lengths, "cpu", weights)
    assert torch.allclose(value, ref_value, rtol=1e-10, atol=1e-10), (value - ref_value).abs().max()
    assert torch.allclose(grad, ref_grad, rtol=1e-9, atol=1e-10), (grad - ref_grad).abs().max()
    value32, grad32 = value_and_grad(D.float(), mode, lengths, "cpu", weights.float())
    assert torch.allclose(value32.double(), ref_value, rtol=1e-4, atol=1e-4)
    assert torch.allclose(grad32.double(), ref_grad, rtol=1e-4, atol=1e-4)
    if with_lengths:
        rows = torch.arange(L).view(1, -1, 1)
        cols = torch.arange(M).view(1, 1, -1)
        outside = (rows >= lengths[:, 0, None, None]) | (cols >= lengths[:, 1, None, None])
        assert (grad[outside] == 0).all(), "padding cells must get exactly zero gradient"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gamma", [1e-3, 1.0, 10.0])
def test_both_schedules_agree(monkeypatch, mode, gamma):
    """Forcing either schedule on the same problems gives the same numbers (many, few, tiny and 1-wide grids)."""
    gen = torch.Generator().manual_seed(11)
    for shape in [(70, 9, 13), (5, 33, 17), (2, 1, 30), (2, 30, 1), (1, 2, 2)]:
        B, L, M = shape
        D = torch.rand(shape, generator=gen, dtype=torch.float64) * 3.0
        lengths = random_lengths(gen, B, L, M)
        weights = torch.rand(B, generator=gen, dtype=torch.float64)
        results = {}
        for wavefront in (False, True):
            monkeypatch.setattr(cpu_backend, "WAVEFRONT", wavefront)
            results[wavefront] = [value_and_grad(D, mode, lens, "cpu", weights, gamma) for lens in (None, lengths)]
        for (v_lane, g_lane), (v_wave, g_wave) in zip(results[False], results[True]):
            assert torch.allclose(v_wave, v_lane, rtol=1e-12, atol=1e-12), (shape, (v_wave - v_lane).abs().max())
            assert torch.allclose(g_wave, g_lane, rtol=1e-10, atol=1e-12), (shape, (g_wave - g_lane).abs().max())


def test_parallel_wavefront_matches_serial(monkeypatch):
    gen = torch.Generator().manual_seed(12)
    D = torch.rand(5, 60, 45, generator=gen)
    lengths = random_lengths(gen, 5, 60, 45)
    weights = torch.rand(5, generator=gen)
    serial = [value_and_grad(D, mode, lengths, "cpu", weights) for mode in MODES]
    monkeypatch.setattr(cpu_backend, "PARALLEL_MIN_CELLS", 0)
    for mode, (value, grad) in zip(MODES, serial):
        v_par, g_par = value_and_grad(D, mode, lengths, "cpu", weights)
        assert torch.equal(v_par, value) and torch.equal(g_par, grad), mode


def test_one_large_grid_matches_lane_schedule(monkeypatch):
    """One 300 x 200 grid (60,000 cells; the reference would take minutes): wavefront against the lane schedule."""
    gen = torch.Generator().manual_seed(13)
    D = torch.rand(1, 300, 200, generator=gen, dtype=torch.float64)
    weights = torch.ones(1, dtype=torch.float64)
    for mode in MODES:
        monkeypatch.setattr(cpu_backend, "WAVEFRONT", None)
        v_wave, g_wave = value_and_grad(D, mode, None, "cpu", weights)
        monkeypatch.setattr(cpu_backend, "WAVEFRONT", False)
        v_lane, g_lane = value_and_grad(D, mode, None, "cpu", weights)
        assert torch.allclose(v_wave, v_lane, rtol=1e-12, atol=1e-12), mode
        assert torch.allclose(g_wave, g_lane, rtol=1e-9, atol=1e-12), mode
        total = 2.0 if mode == "otam_both" else 1.0
        assert g_wave.min() >= 0 and g_wave.max() <= total * (1 + 1e-9), mode


@pytest.mark.parametrize("mode", MODES)
def test_wavefront_propagates_nan(monkeypatch, mode):
    monkeypatch.setattr(cpu_backend, "WAVEFRONT", True)
    gen = torch.Generator().manual_seed(14)
    D = torch.rand(3, 20, 24, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([[20, 24], [15, 10], [20, 24]])
    D[0, 7, 9] = float("nan")
    D[1, 18, 20] = float("nan")  # padding only: item 1 stays clean
    leaf = D.clone().requires_grad_(True)
    out = score(leaf, mode, lengths)
    out.sum().backward()
    assert torch.isnan(out).tolist() == [True, False, False]
    ref = score(D, mode, lengths, backend="ref")
    assert torch.allclose(out[1:], ref[1:], rtol=1e-10, atol=1e-10)
    assert torch.isnan(leaf.grad[0]).all() and not torch.isnan(leaf.grad[1:]).any()
    assert (leaf.grad[1, 15:] == 0).all() and (leaf.grad[1, :, 10:] == 0).all()
