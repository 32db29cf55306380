"""The CPU kernels' two schedules: lanes (SIMD across up to 64 problems, for many grids) and the wavefront (one
problem at a time, its grid cut into skewed stripes of up to 64 rows, SIMD along each stripe's anti-diagonals,
run in blocks of steps that threads can share).  Values and gradients of both against the cell-loop reference on
the shapes that select each schedule (one large grid, a few, many; square and very non-square; with lengths),
float64 gradcheck through the wavefront, stripe and block boundaries, the schedule choice itself, the parallel
wavefront (problems over threads, and one problem's blocks over threads) against the serial one, and NaN and
extreme inputs through the wavefront.  OTAM calls that select the wavefront run the column schedule (whole
columns from the column before, where OTAM has no vertical move): the same checks run with it and, forced with
``schedule="wavefront"``, with the OTAM wavefront, and the column kernels are checked against the wavefront's.
A schedule is forced with the ``schedule=`` keyword of the public functions (``cpu_scores_alignment``'s argument),
never by changing module state."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import numba_threads

from tempclr.modules.alignment import cpu as cpu_backend
from tempclr.modules.alignment import soft_dtw, soft_otam
from tempclr.modules.alignment.grid import passes_for

MODES = ["dtw", "otam", "otam_both"]
# every (mode, schedule) of one problem at a time: the wavefront, and the columns (OTAM only).  The lanes, which
# small grids select, go through the same checks in test_alignment.py and test_alignment_nan.py.
ONE_AT_A_TIME = [(mode, schedule) for mode in MODES for schedule in cpu_backend.SCHEDULES
                 if schedule != "lanes" and not (mode == "dtw" and schedule == "columns")]


def score(D, mode, lengths=None, backend=None, gamma=0.1, schedule=None):
    if mode == "dtw":
        return soft_dtw(D, gamma, lengths, backend=backend, schedule=schedule)
    return soft_otam(D, gamma, lengths, bidirectional=(mode == "otam_both"), backend=backend, schedule=schedule)


def value_and_grad(D, mode, lengths, backend, weights, gamma=0.1, schedule=None):
    leaf = D.detach().clone().requires_grad_(True)
    out = score(leaf, mode, lengths, backend, gamma, schedule)
    (out * weights).sum().backward()
    return out.detach(), leaf.grad


def random_lengths(gen, B, L, M):
    return torch.stack([torch.randint(1, L + 1, (B,), generator=gen), torch.randint(1, M + 1, (B,), generator=gen)], 1)


@pytest.mark.parametrize(
    "shape, wavefront",
    [
        ((1, 1024, 1024), True), ((1, 4096, 512), True), ((3, 700, 300), True), ((8, 256, 256), True),
        ((4, 64, 64), True), ((64, 256, 256), True), ((1, 16, 16), True),
        ((512, 5, 5), False), ((32, 8, 80), False), ((512, 32, 32), False), ((64, 64, 64), False),
        ((16, 128, 128), False), ((1, 15, 4096), False), ((8, 64, 64), False),
    ],
)
def test_schedule_follows_the_shape(shape, wavefront):
    """DTW runs the wavefront where the shape selects it, OTAM the column schedule there (serial calls)."""
    B, L, M = shape
    assert cpu_backend.choose_schedule(False, B, L, M, 1) == ("wavefront" if wavefront else "lanes")
    assert cpu_backend.choose_schedule(True, B, L, M, 1) == ("columns" if wavefront else "lanes")


@pytest.mark.parametrize("B, threads, otam_schedule", [(1, 2, "wavefront"), (3, 4, "wavefront"), (2, 2, "columns"),
                                                       (5, 2, "columns"), (1, 1, "columns")])
def test_otam_keeps_the_wavefront_when_its_waves_share_the_threads(B, threads, otam_schedule):
    """Fewer problems than threads: one problem's waves share the threads, so OTAM keeps the wavefront; DTW runs
    the wavefront whatever the thread count, and a shape that selects the lanes keeps them."""
    assert cpu_backend.choose_schedule(True, B, 300, 302, threads) == otam_schedule
    assert cpu_backend.choose_schedule(False, B, 300, 300, threads) == "wavefront"
    assert cpu_backend.choose_schedule(True, B, 10, 12, threads) == "lanes"


def test_schedule_names_are_checked():
    """An unknown schedule, or the column schedule for DTW, is a ValueError naming the allowed values; the
    reference backend has no schedules."""
    D = torch.rand(2, 20, 20, dtype=torch.float64)
    for mode, bad in [("dtw", "columns"), ("dtw", "diagonal"), ("otam", "waves"), ("otam_both", "")]:
        allowed = r"\('lanes', 'wavefront'\)" if mode == "dtw" else r"\('lanes', 'wavefront', 'columns'\)"
        with pytest.raises(ValueError, match=allowed):
            score(D.clone().requires_grad_(True), mode, schedule=bad)
        with pytest.raises(ValueError, match=allowed):
            cpu_backend.cpu_scores_alignment(D, None, 0.1, passes_for(mode), schedule=bad)
    with pytest.raises(ValueError, match="'ref' backend"):
        soft_dtw(D, 0.1, backend="ref", schedule="lanes")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("shape", [
    (1, 40, 40), (3, 70, 30), (2, 20, 90),
    (1, 66, 66),  # the smallest grid of two stripes whose steps cross a block boundary (T = 66 + 64 - 1 > 128)
    # the reference's cell loop takes 2-6 s a case on these (about 30 s in all): slow tier
    pytest.param((1, 200, 24), marks=pytest.mark.slow), pytest.param((1, 130, 70), marks=pytest.mark.slow),
    pytest.param((1, 66, 140), marks=pytest.mark.slow),
])
def test_wavefront_shapes_match_reference(mode, shape, with_lengths):
    B, L, M = shape
    chosen = cpu_backend.choose_schedule(mode != "dtw", B, L, M + (2 if mode != "dtw" else 0), 1)
    assert chosen == ("wavefront" if mode == "dtw" else "columns"), "shape must select the wavefront or columns"
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


@pytest.mark.parametrize("mode, schedule", ONE_AT_A_TIME)
@pytest.mark.parametrize("gamma", [1e-3, 1.0, 10.0])
def test_both_schedules_agree(mode, schedule, gamma):
    """Forcing the lanes or a one-problem-at-a-time schedule (the wavefront; for OTAM also the columns) on the same
    problems gives the same numbers (many, few, tiny and 1-wide grids)."""
    gen = torch.Generator().manual_seed(11)
    # stripes: partial (7 rows: 8 lanes, one throw-away), exactly one (64) and one plus a row (65); blocks of
    # steps: one, several, and a block boundary inside the first stripe's lanes (T = 66 + 63 = 129)
    for shape in [(70, 9, 13), (5, 33, 17), (2, 1, 30), (2, 30, 1), (1, 2, 2), (1, 7, 300), (1, 64, 130),
                  (1, 65, 66), (2, 129, 20)]:
        B, L, M = shape
        D = torch.rand(shape, generator=gen, dtype=torch.float64) * 3.0
        lengths = random_lengths(gen, B, L, M)
        weights = torch.rand(B, generator=gen, dtype=torch.float64)
        results = {}
        for forced in ("lanes", schedule):
            results[forced] = [value_and_grad(D, mode, lens, "cpu", weights, gamma, forced) for lens in (None, lengths)]
        for (v_lane, g_lane), (v_wave, g_wave) in zip(results["lanes"], results[schedule]):
            assert torch.allclose(v_wave, v_lane, rtol=1e-12, atol=1e-12), (shape, (v_wave - v_lane).abs().max())
            assert torch.allclose(g_wave, g_lane, rtol=1e-10, atol=1e-12), (shape, (g_wave - g_lane).abs().max())


@pytest.mark.parametrize("shape", [(5, 120, 110), (1, 220, 300), (1, 300, 220)])
def test_parallel_wavefront_matches_serial(shape):
    """Calls of at least PARALLEL_MIN_CELLS cells on all of numba's threads: problems over threads (B >= threads)
    and one problem's blocks over threads (B below the thread count), and the OTAM columns over threads, equal to
    the bit to the same call on one thread."""
    B, L, M = shape
    assert B * L * M >= cpu_backend.PARALLEL_MIN_CELLS, "the call must be large enough to run in parallel"
    gen = torch.Generator().manual_seed(12)
    D = torch.rand(shape, generator=gen)
    lengths = random_lengths(gen, B, L, M)
    lengths[0] = torch.tensor([L, M])
    weights = torch.rand(B, generator=gen)
    with numba_threads(1):
        serial = [value_and_grad(D, mode, lengths, "cpu", weights, schedule=schedule)
                  for mode, schedule in ONE_AT_A_TIME]
    for (mode, schedule), (value, grad) in zip(ONE_AT_A_TIME, serial):
        v_par, g_par = value_and_grad(D, mode, lengths, "cpu", weights, schedule=schedule)
        assert torch.equal(v_par, value) and torch.equal(g_par, grad), (mode, schedule)


@pytest.mark.parametrize("otam, offset, two_way", [(False, 0, False), (True, 1, False), (True, 1, True), (True, 0, False),
                                                   (True, 0, True)])
def test_block_waves_match_one_thread_order(otam, offset, two_way):
    """The kernel that spreads one problem's blocks over the threads (called directly, so it is checked whatever
    the machine's thread count) against the one-thread kernel: equal to the bit, with and without lengths, on
    grids of several stripes and blocks (and on one stripe of one block)."""
    gen = torch.Generator().manual_seed(15)
    for shape in [(2, 200, 150), (1, 9, 300), (1, 20, 20)]:
        B, L, M = shape
        D = torch.rand(shape, generator=gen, dtype=torch.float64).numpy()
        for lengths in (cpu_backend._FULL, random_lengths(gen, B, L, M).numpy()):
            results = []
            for kernel in ("serial", "waves"):
                out = np.empty(B)
                A = np.zeros(shape)
                if kernel == "serial":
                    cpu_backend._wave_problems(D, lengths, 0.2, otam, offset, two_way, out, A, 0, B)
                else:
                    cpu_backend._wave_tiles_kernel(D, lengths, 0.2, otam, offset, two_way, out, A)
                results.append((out, A))
            (v1, a1), (v2, a2) = results
            assert np.array_equal(v1, v2) and np.array_equal(a1, a2), (shape, lengths.shape)
            assert np.isfinite(v1).all() and (a1 >= 0).all() and a1.max() > 0


@pytest.mark.parametrize("mode, schedule", ONE_AT_A_TIME)
def test_wavefront_gradcheck(mode, schedule):
    """float64 gradcheck of the wavefront's and the columns' analytic backward on small grids (for the wavefront:
    one stripe with throw-away lanes, 9 rows on 16 lanes, D^T's 6 rows on 8); grids of several stripes are checked
    against the reference above."""
    gen = torch.Generator().manual_seed(16)
    D = torch.rand(2, 9, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([[9, 6], [5, 4]])
    for lens in (None, lengths):
        fn = lambda x: score(x, mode, lens, gamma=0.3, schedule=schedule)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (D,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode, schedule", ONE_AT_A_TIME)
def test_wavefront_extreme_inputs_stay_finite(mode, schedule, dtype):
    """Large distances with small and large gamma, mixed scales and ties through the wavefront and the columns:
    finite, the alignment in [0, passes], and the float64 reference's scores."""
    gen = torch.Generator().manual_seed(17)
    shape = (2, 20, 17)
    cases = {
        "distances 1e4, gamma 1e-3": (torch.rand(shape, generator=gen) * 1e4, 1e-3),
        "distances 1e4, gamma 10": (torch.rand(shape, generator=gen) * 1e4, 10.0),
        "mixed scales, gamma 1e-3": (
            torch.rand(shape, generator=gen) * 10.0 ** torch.randint(-6, 5, shape, generator=gen), 1e-3),
        "ties (constant 1e4), gamma 1e-3": (torch.full(shape, 1e4), 1e-3),
    }
    passes = 2 if mode == "otam_both" else 1
    for name, (values, gamma) in cases.items():
        D = values.to(dtype).requires_grad_(True)
        out = score(D, mode, gamma=gamma, schedule=schedule)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(D.grad).all(), f"{mode} {name}"
        assert D.grad.min() >= 0 and D.grad.max() <= passes * (1 + 1e-5), f"{mode} {name}: alignment range"
        reference = score(values.double(), mode, backend="ref", gamma=gamma)
        assert torch.allclose(out.double(), reference, rtol=1e-5, atol=0), f"{mode} {name}: vs reference"


def test_one_large_grid_matches_lane_schedule():
    """One 300 x 200 grid (60,000 cells; the reference would take minutes): the schedule the shape selects (the
    wavefront, or for OTAM the columns) against the lane schedule."""
    gen = torch.Generator().manual_seed(13)
    D = torch.rand(1, 300, 200, generator=gen, dtype=torch.float64)
    weights = torch.ones(1, dtype=torch.float64)
    for mode in MODES:
        v_wave, g_wave = value_and_grad(D, mode, None, "cpu", weights)
        v_lane, g_lane = value_and_grad(D, mode, None, "cpu", weights, schedule="lanes")
        assert torch.allclose(v_wave, v_lane, rtol=1e-12, atol=1e-12), mode
        assert torch.allclose(g_wave, g_lane, rtol=1e-9, atol=1e-12), mode
        total = 2.0 if mode == "otam_both" else 1.0
        assert g_wave.min() >= 0 and g_wave.max() <= total * (1 + 1e-9), mode


@pytest.mark.parametrize("mode, schedule", ONE_AT_A_TIME)
def test_wavefront_propagates_nan(mode, schedule):
    """A NaN in an item's real part makes its score and its real part's gradient NaN, with a forced schedule, with
    or without a gradient; other items and padding are untouched."""
    gen = torch.Generator().manual_seed(14)
    D = torch.rand(3, 20, 24, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([[20, 24], [15, 10], [20, 24]])
    D[0, 7, 9] = float("nan")
    D[1, 18, 20] = float("nan")  # padding only: item 1 stays clean
    leaf = D.clone().requires_grad_(True)
    out = score(leaf, mode, lengths, schedule=schedule)
    out.sum().backward()
    assert torch.isnan(out).tolist() == [True, False, False]
    with torch.no_grad():  # a forced schedule runs its own kernels without a gradient too
        no_grad = score(D, mode, lengths, schedule=schedule)
    assert torch.equal(no_grad[1:], out[1:].detach()) and torch.isnan(no_grad[0])
    ref = score(D, mode, lengths, backend="ref")
    assert torch.allclose(out[1:], ref[1:], rtol=1e-10, atol=1e-10)
    assert torch.isnan(leaf.grad[0]).all() and not torch.isnan(leaf.grad[1:]).any()
    assert (leaf.grad[1, 15:] == 0).all() and (leaf.grad[1, :, 10:] == 0).all()


@pytest.mark.parametrize("offset, two_way", [(1, False), (1, True), (0, False), (0, True)])
def test_otam_columns_match_wavefront(offset, two_way):
    """The OTAM column kernels called directly against the OTAM wavefront (itself checked against the reference
    above): serial and over threads (equal to the bit to serial), with and without lengths, on one row, one or
    two columns, and grids taller and wider than a stripe."""
    gen = torch.Generator().manual_seed(18)
    for shape in [(3, 200, 150), (2, 1, 40), (2, 40, 1), (2, 30, 2), (1, 70, 300)]:
        B, L, M = shape
        D = torch.rand(shape, generator=gen, dtype=torch.float64).numpy() * 2.0
        for lengths in (cpu_backend._FULL, random_lengths(gen, B, L, M).numpy()):
            results = {}
            for kernel in ("wave", "columns", "columns over threads"):
                out = np.empty(B)
                A = np.zeros(shape)
                if kernel == "wave":
                    cpu_backend._wave_problems(D, lengths, 0.2, True, offset, two_way, out, A, 0, B)
                elif kernel == "columns":
                    cpu_backend._col_problems(D, lengths, 0.2, offset, two_way, out, A, 0, B)
                else:
                    cpu_backend._col_kernel(D, lengths, 0.2, offset, two_way, out, A, 2)
                results[kernel] = (out, A)
            (v_w, a_w), (v_c, a_c), (v_t, a_t) = results.values()
            assert np.allclose(v_c, v_w, rtol=1e-12, atol=1e-12), (shape, np.abs(v_c - v_w).max())
            assert np.allclose(a_c, a_w, rtol=1e-10, atol=1e-12), (shape, np.abs(a_c - a_w).max())
            assert np.array_equal(v_t, v_c) and np.array_equal(a_t, a_c), shape


def test_otam_calls_run_the_columns_when_the_wavefront_is_chosen(monkeypatch):
    """Which kernel a call reaches (the kernels are wrapped to record their calls): OTAM on a shape that selects
    the wavefront runs the column kernel (serial here), DTW the wavefront; with schedule="wavefront" OTAM runs the
    wavefront too, and with schedule="lanes" every mode runs the lane kernel."""
    calls = []
    for name in ("_col_problems", "_wave_problems", "_score_alignment_chunks"):
        real = getattr(cpu_backend, name)
        monkeypatch.setattr(cpu_backend, name, lambda *a, _real=real, _name=name: (calls.append(_name), _real(*a))[1])
    D = torch.rand(2, 80, 60, dtype=torch.float64, requires_grad=True)
    for mode, schedule, expected in [("otam_both", None, "_col_problems"), ("otam", None, "_col_problems"),
                                     ("dtw", None, "_wave_problems"), ("otam_both", "wavefront", "_wave_problems"),
                                     ("otam", "columns", "_col_problems"), ("dtw", "wavefront", "_wave_problems"),
                                     ("dtw", "lanes", "_score_alignment_chunks"),
                                     ("otam_both", "lanes", "_score_alignment_chunks")]:
        calls.clear()
        score(D, mode, schedule=schedule).sum().backward()
        assert calls == [expected], (mode, schedule, calls)
