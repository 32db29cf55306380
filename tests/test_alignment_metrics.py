"""tempclr.utils.metrics keeps the original TempCLR functions: checked against the original recurrences, written out
plainly in tempclr.testing.original as the oracle, with the two fixed bugs of the original shown explicitly."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tempclr.utils.metrics import (
    DTW_cum_dist,
    DTW_eval_cum_dist,
    DTW_pad,
    OTAM_cum_dist,
    OTAM_eval_cum_dist,
    OTAM_pad,
    cos_sim,
)
from tempclr.testing.original import original_dtw, original_dtw_eval, original_otam, original_otam_eval, original_pad

F64 = torch.float64  # the oracles' R in float64 (the original allocated float32), so comparisons are tight


def fixed_pad(d, T0, T1, otam):
    """The corridor on padding cells only: rows >= rows-1 from the first padding column on, plus the padding rows
    of the last column."""
    rows, cols = d.shape[-2:]
    if otam:
        d = F.pad(d, (1, 1), "constant", 0)
    real_width = d.shape[-1]
    out = torch.full((*d.shape[:-2], T0, T1 + (2 if otam else 0)), float("inf"), dtype=d.dtype)
    out[..., :rows, :real_width] = d
    for i in range(rows - 1, T0):
        for j in range(real_width, out.shape[-1]):
            out[..., i, j] = 0
    for i in range(rows, T0):
        out[..., i, -1] = 0
    return out


# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 4, 3, 6), (2, 2, 6, 2)])
@pytest.mark.parametrize("lbda", [0.1, 1.0])
def test_soft_recurrences_equal_the_original(shape, lbda):
    gen = torch.Generator().manual_seed(0)
    d = torch.rand(shape, generator=gen, dtype=torch.float64)
    assert torch.allclose(DTW_cum_dist(d, lbda), original_dtw(d, lbda, F64), rtol=1e-12, atol=1e-12)
    assert torch.allclose(OTAM_cum_dist(d, lbda), original_otam(d, lbda, F64), rtol=1e-12, atol=1e-12)
    assert DTW_cum_dist(d, lbda).shape == shape[:2]


def test_float32_default_lambda_matches_original():
    gen = torch.Generator().manual_seed(1)
    d = 1 - cos_sim(torch.randn(1, 32, 5, 8, generator=gen), torch.randn(1, 32, 5, 8, generator=gen))
    assert d.shape == (1, 32, 5, 5)
    assert torch.allclose(DTW_cum_dist(d), original_dtw(d.double(), 0.1, F64).float(), rtol=1e-5, atol=1e-5)
    two_way = OTAM_cum_dist(d) + OTAM_cum_dist(d.transpose(-1, -2))
    oracle = original_otam(d.double(), 0.1, F64) + original_otam(d.double().transpose(-1, -2), 0.1, F64)
    assert torch.allclose(two_way, oracle.float(), rtol=1e-5, atol=1e-5)


def test_dtw_eval_equals_original():
    gen = torch.Generator().manual_seed(2)
    d = torch.rand(2, 3, 4, 6, generator=gen, dtype=torch.float64)
    assert torch.equal(DTW_eval_cum_dist(d), original_dtw_eval(d, F64))


def test_otam_eval_has_the_fixed_sign():
    # Column 1's minimum includes the free column 0 (R = 0), so the sign only shows when costs can be negative,
    # as with the full-video metrics' "1 - dot product" of unnormalised embeddings.
    gen = torch.Generator().manual_seed(3)
    d = OTAM_pad(torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64) * 2 - 1, 4, 5)
    ours = OTAM_eval_cum_dist(d)
    assert torch.equal(ours, original_otam_eval(d, column_one_sign=+1, dtype=F64))
    buggy = original_otam_eval(d, column_one_sign=-1, dtype=F64)
    assert not torch.allclose(ours[..., 1:, 1], buggy[..., 1:, 1]), "the original subtracted the column-1 minimum"


def test_cos_sim_keeps_epsilon_in_the_denominator():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    expected = torch.tensor([[25.0 / 25.01, 3.0 / 5.01], [0.0, 0.0]])
    assert torch.allclose(cos_sim(x, y), expected)
    batched = cos_sim(torch.randn(2, 5, 7), torch.randn(2, 4, 7))
    assert batched.shape == (2, 5, 4)


# ------------------------------------------------------------------------------------------------------------------
# Pads: fixed slices
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("targets", [(6, 7), (6, 4), (3, 7), (3, 4)])
def test_pads_use_the_fixed_slices(targets):
    gen = torch.Generator().manual_seed(4)
    d = torch.rand(1, 2, 3, 4, generator=gen, dtype=torch.float64)
    T0, T1 = targets
    assert torch.equal(DTW_pad(d, T0, T1), fixed_pad(d, T0, T1, otam=False))
    assert torch.equal(OTAM_pad(d, T0, T1), fixed_pad(d, T0, T1, otam=True))


def test_pad_without_column_padding_keeps_the_last_real_row():
    # cols == T1 (d1 == 0): the original's "-0:" slice zeroed every column of the last real row.
    gen = torch.Generator().manual_seed(5)
    d = torch.rand(1, 1, 3, 4, generator=gen, dtype=torch.float64) + 1.0
    buggy = original_pad(d, 5, 4, otam=False)
    assert torch.equal(buggy[0, 0, 2], torch.zeros(4, dtype=d.dtype)), "the original bug, shown"
    padded = DTW_pad(d, 5, 4)
    assert torch.equal(padded[..., :3, :], d), "real cells must be untouched"
    assert torch.equal(padded[0, 0, 3:, -1], torch.zeros(2, dtype=d.dtype)), "corridor down the last column"
    assert torch.isinf(padded[0, 0, 3:, :-1]).all()
    otam_padded = OTAM_pad(d, 5, 4)
    assert torch.equal(otam_padded[..., :3, 1:-1], d)
    assert torch.equal(original_pad(d, 5, 4, otam=True)[0, 0, 2], torch.zeros(6, dtype=d.dtype))
    # nothing is padded at all (d0 == d1 == 0): the original zeroed the whole last row, now D is returned as is
    assert torch.equal(DTW_pad(d, 3, 4), d)
    assert torch.equal(OTAM_pad(d, 3, 4), F.pad(d, (1, 1)))


@pytest.mark.parametrize("targets", [(6, 7), (6, 4), (3, 7), (3, 4)])
def test_padded_otam_eval_equals_unpadded(targets):
    gen = torch.Generator().manual_seed(6)
    d = torch.rand(2, 2, 3, 4, generator=gen, dtype=torch.float64)
    unpadded = OTAM_eval_cum_dist(OTAM_pad(d, 3, 4))[..., -1, -1]
    padded = OTAM_eval_cum_dist(OTAM_pad(d, *targets))[..., -1, -1]
    assert torch.allclose(padded, unpadded, rtol=0, atol=1e-12)
    dtw_padded = DTW_eval_cum_dist(DTW_pad(d, *targets))
    assert torch.equal(dtw_padded, original_dtw_eval(DTW_pad(d, *targets), F64))
    assert torch.isfinite(dtw_padded[..., -1, -1]).all()


def test_pad_rejects_smaller_targets():
    with pytest.raises(ValueError, match="smaller than the input"):
        DTW_pad(torch.rand(1, 1, 4, 5), 3, 5)
