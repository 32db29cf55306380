"""NaN stays NaN through the alignment kernels (value and gradient, like the reference recursion), and fp16/bf16
scores that overflow their dtype raise instead of coming back as inf."""
from __future__ import annotations

import pytest
import torch

from tempclr.modules.alignment import cumulative_cost, hard_dtw, hard_otam, soft_dtw, soft_otam
from tempclr.utils.metrics import DTW_cum_dist, OTAM_cum_dist

NAN = float("nan")


def soft(mode, D, lengths=None, backend=None):
    if mode == "dtw":
        return soft_dtw(D, 0.1, lengths, backend=backend)
    return soft_otam(D, 0.1, lengths, bidirectional=mode == "otam_both", backend=backend)


def hard(mode, D, lengths=None, backend=None):
    if mode == "dtw":
        return hard_dtw(D, lengths, backend=backend)
    return hard_otam(D, lengths, bidirectional=mode == "otam_both", backend=backend)


def batch(dtype):
    """Four 4x6 grids with real parts (4, 6), (3, 5), (4, 6), (2, 2): item 0 has a NaN inside, item 1 one in its
    padding only, item 2 none, item 3 a NaN on its last real cell."""
    gen = torch.Generator().manual_seed(0)
    D = torch.rand(4, 4, 6, generator=gen, dtype=torch.float64).to(dtype)
    D[0, 1, 2] = NAN
    D[1, 3, 5] = NAN
    D[3, 1, 1] = NAN
    return D, torch.tensor([[4, 6], [3, 5], [4, 6], [2, 2]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["dtw", "otam", "otam_both"])
def test_soft_scores_and_gradients_propagate_nan(mode, dtype):
    D, lengths = batch(dtype)
    kernel_in = D.clone().requires_grad_(True)
    ref_in = D.clone().requires_grad_(True)
    out = soft(mode, kernel_in, lengths)
    ref = soft(mode, ref_in, lengths, backend="ref")
    out.sum().backward()
    ref.sum().backward()
    assert torch.isnan(out).tolist() == [True, False, False, True] == torch.isnan(ref).tolist()
    torch.testing.assert_close(out[[1, 2]], ref[[1, 2]])
    torch.testing.assert_close(kernel_in.grad[[1, 2]], ref_in.grad[[1, 2]])   # clean items untouched
    assert torch.isnan(kernel_in.grad[0]).all()                                   # the whole real part
    assert torch.isnan(kernel_in.grad[3, :2, :2]).all() and (kernel_in.grad[3, 2:] == 0).all() and \
        (kernel_in.grad[3, :, 2:] == 0).all()                                     # padding keeps zero gradient
    # the reference's autograd gives NaN on all or all but one cell (DTW with the NaN on the last cell: a finite
    # gradient, since dR_end/dD_end = 1 does not read D_end); the kernels make the whole real part NaN
    assert torch.isnan(ref_in.grad[0]).sum() >= ref_in.grad[0].numel() - 1


@pytest.mark.parametrize("mode", ["dtw", "otam", "otam_both"])
def test_hard_scores_propagate_nan(mode):
    D, lengths = batch(torch.float64)
    out = hard(mode, D, lengths)
    ref = hard(mode, D, lengths, backend="ref")
    assert torch.isnan(out).tolist() == [True, False, False, True] == torch.isnan(ref).tolist()
    torch.testing.assert_close(out[[1, 2]], ref[[1, 2]])


def test_one_nan_cell_without_lengths():
    """The cases that came back clean before: one NaN cell in an unpadded grid, also at the first row's end."""
    gen = torch.Generator().manual_seed(1)
    for cell in [(2, 3), (0, 5), (0, 0), (3, 5)]:
        D = torch.rand(1, 4, 6, generator=gen)
        D[(0, *cell)] = NAN
        assert torch.isnan(soft_otam(D)).item() and torch.isnan(soft_dtw(D)).item(), cell
        assert torch.isnan(DTW_cum_dist(D[None])).item() and torch.isnan(OTAM_cum_dist(D[None])).item(), cell


def test_cumulative_cost_propagates_nan_cell_by_cell():
    D = torch.rand(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    D[1, 1] = NAN
    for mode in ("dtw", "otam"):
        R = cumulative_cost(D, mode, gamma=0.1)
        ref = cumulative_cost(D, mode, gamma=0.1, backend="ref")
        assert torch.equal(torch.isnan(R), torch.isnan(ref)) and torch.isnan(R[-1, -1])
        torch.testing.assert_close(R[~torch.isnan(R)], ref[~torch.isnan(ref)])
    R = cumulative_cost(D, "dtw")
    assert not torch.isnan(R[0]).any() and not torch.isnan(R[:, 0]).any() and torch.isnan(R[1:, 1:]).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_overflow_raises(dtype):
    big = torch.full((1, 8, 8), 1e4, dtype=dtype)
    exact = 8 * big[0, 0, 0].item()                                          # the diagonal path
    assert soft_dtw(big.float()).item() == pytest.approx(exact, rel=1e-4)   # fp32: the number
    if dtype == torch.float16:
        with pytest.raises(OverflowError, match=r"^soft_dtw: a score \(80000\) overflows float16 \(max 65504\); "
                                                r"pass float32 costs"):
            soft_dtw(big)
        with pytest.raises(OverflowError, match=r"^hard_otam: a score .* overflows float16"):
            hard_otam(torch.full((1, 8, 8), 1e4, dtype=dtype))
    else:
        # bf16 has float32's range: the score comes back as a number (an overflow of bf16 is one of float32 too)
        assert soft_dtw(big).item() == pytest.approx(exact, rel=1e-2)
    small = torch.full((2, 8, 8), 0.5, dtype=dtype)
    assert soft_dtw(small).dtype == dtype and torch.isfinite(soft_dtw(small)).all()
