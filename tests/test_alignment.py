"""Soft-DTW / soft-OTAM kernels (tempclr.modules.alignment): the cell-loop reference against brute-force path
enumeration, the numba kernels against the reference (values, gradients, gradcheck), lengths and padding, extreme
inputs, dtypes, hard versions and the backend choice.  The Triton kernels are checked in test_alignment_triton.py,
the original metrics.py functions in test_alignment_metrics.py."""
from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
from conftest import numba_threads

from tempclr.modules.alignment import (
    cumulative_cost,
    expected_alignment,
    hard_dtw,
    hard_otam,
    resolve_backend,
    soft_dtw,
    soft_otam,
)
from tempclr.modules.alignment import cpu as cpu_backend
from tempclr.modules.alignment import functions as alignment_functions
from tempclr.modules.alignment.grid import DTW, OTAM, OTAM_T
from tempclr.modules.alignment.reference import align_ref
from tempclr.testing.original import zero_side_columns

GAMMAS = [1e-3, 0.1, 1.0, 10.0]
MODES = ["dtw", "otam", "otam_both"]


def score(D, gamma, mode, lengths=None, backend=None):
    if mode == "dtw":
        return soft_dtw(D, gamma, lengths, backend=backend)
    return soft_otam(D, gamma, lengths, bidirectional=(mode == "otam_both"), backend=backend)


def random_lengths(gen, lead, L, M):
    rows = torch.randint(1, L + 1, lead, generator=gen)
    cols = torch.randint(1, M + 1, lead, generator=gen)
    return torch.stack([rows, cols], dim=-1)


def assert_close(actual, expected, rtol, atol, what):
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (
        f"{what}: max |diff| = {(actual - expected).abs().max().item():.3e}\nactual:\n{actual}\nexpected:\n{expected}"
    )


# ------------------------------------------------------------------------------------------------------------------
# Brute force: every monotone path, written from the move rules of DTW and OTAM, validates the reference itself
# ------------------------------------------------------------------------------------------------------------------
def all_paths(L, W, otam):
    """Every path from (0, 0) to (L-1, W-1) with steps right, down-right and down; OTAM allows "down" only into
    columns 0, 1 and W-1."""
    paths = []

    def extend(path):
        i, j = path[-1]
        if (i, j) == (L - 1, W - 1):
            paths.append(list(path))
            return
        steps = [(i + 1, j + 1), (i, j + 1)]
        if not otam or j <= 1 or j == W - 1:
            steps.append((i + 1, j))
        for ni, nj in steps:
            if ni < L and nj < W:
                path.append((ni, nj))
                extend(path)
                path.pop()

    extend([(0, 0)])
    return paths


def brute_force(grid, gamma, otam, hard=False):
    L, W = grid.shape
    costs = torch.stack([sum(grid[i, j] for i, j in p) for p in all_paths(L, W, otam)])
    if hard:
        return costs.min()
    return -gamma * torch.logsumexp(-costs / gamma, dim=0)


def test_path_enumeration_counts():
    # Delannoy number D(2, 3) = 25 monotone paths on a 3x4 grid.
    assert len(all_paths(3, 4, otam=False)) == 25
    # A 1 x W grid has a single path.
    assert len(all_paths(1, 6, otam=True)) == 1


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (2, 2), (1, 3)])
def test_reference_matches_brute_force(shape, gamma):
    gen = torch.Generator().manual_seed(1)
    D = torch.rand(shape, generator=gen, dtype=torch.float64)
    dtw_ref = align_ref(D[None], gamma, DTW)[0]
    dtw_bf = brute_force(D, gamma, otam=False)
    assert_close(dtw_ref, dtw_bf, 1e-12, 1e-12, f"soft-DTW reference vs brute force {shape} gamma={gamma}")
    otam_ref = align_ref(D[None], gamma, OTAM)[0]
    otam_bf = brute_force(zero_side_columns(D), gamma, otam=True)
    assert_close(otam_ref, otam_bf, 1e-12, 1e-12, f"soft-OTAM reference vs brute force {shape} gamma={gamma}")
    otam_t_ref = align_ref(D[None], gamma, OTAM_T)[0]
    otam_t_bf = brute_force(zero_side_columns(D.T), gamma, otam=True)
    assert_close(otam_t_ref, otam_t_bf, 1e-12, 1e-12, f"soft-OTAM(D^T) reference vs brute force {shape}")


@pytest.mark.parametrize("shape", [(3, 4), (4, 2)])
def test_hard_scores_match_brute_force_min(shape):
    gen = torch.Generator().manual_seed(2)
    D = torch.rand(shape, generator=gen, dtype=torch.float64)
    assert_close(hard_dtw(D), brute_force(D, 1.0, otam=False, hard=True), 0, 1e-12, "hard DTW vs min over paths")
    hard_otam_bf = brute_force(zero_side_columns(D), 1.0, otam=True, hard=True)
    assert_close(hard_otam(D), hard_otam_bf, 0, 1e-12, "hard OTAM vs min")
    assert_close(hard_dtw(D, backend="ref"), hard_dtw(D), 0, 1e-12, "hard DTW ref vs cpu")


# ------------------------------------------------------------------------------------------------------------------
# Kernels against the reference
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (6, 2)])
@pytest.mark.parametrize("mode", MODES)
def test_kernel_matches_reference_values_and_gradients(mode, shape, with_lengths, gamma):
    gen = torch.Generator().manual_seed(hash((mode, shape, with_lengths, gamma)) % 2**31)
    L, M = shape
    D = torch.rand(2, 3, L, M, generator=gen, dtype=torch.float64) * 2.0 - 0.5  # negative costs too
    lengths = random_lengths(gen, (2, 3), L, M) if with_lengths else None
    weights = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    D_cpu = D.clone().requires_grad_(True)
    D_ref = D.clone().requires_grad_(True)
    out_cpu = score(D_cpu, gamma, mode, lengths, backend="cpu")
    out_ref = score(D_ref, gamma, mode, lengths, backend="ref")
    assert out_cpu.shape == (2, 3) and out_cpu.dtype == torch.float64
    assert_close(out_cpu, out_ref, 1e-10, 1e-10, f"{mode} values")
    (out_cpu * weights).sum().backward()
    (out_ref * weights).sum().backward()
    assert_close(D_cpu.grad, D_ref.grad, 1e-9, 1e-10, f"{mode} gradients")


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(mode, gamma):
    gen = torch.Generator().manual_seed(3)
    D = torch.rand(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([[3, 4], [2, 2]])
    for lens in (None, lengths):
        assert torch.autograd.gradcheck(lambda x: score(x, gamma, mode, lens), (D,), eps=1e-6, atol=1e-6)


def test_float32_kernel_matches_float64_reference():
    gen = torch.Generator().manual_seed(4)
    D = torch.rand(4, 6, 9, generator=gen, dtype=torch.float64)
    for mode in MODES:
        out32 = score(D.float(), 0.1, mode)
        out64 = score(D, 0.1, mode, backend="ref")
        assert out32.dtype == torch.float32
        assert_close(out32.double(), out64, 1e-5, 1e-5, f"{mode} float32 kernel vs float64 reference")


def test_parallel_kernels_match_serial():
    """The lane kernels on all of numba's threads (a call of at least PARALLEL_MIN_CELLS cells) equal to the bit
    to the same calls on one thread: scores, gradients and hard scores."""
    gen = torch.Generator().manual_seed(5)
    D = torch.rand(1600, 6, 7, generator=gen)
    assert D.numel() >= cpu_backend.PARALLEL_MIN_CELLS, "the calls must be large enough to run in parallel"
    lengths = random_lengths(gen, (1600,), 6, 7)
    with numba_threads(1):
        serial = [score(D, 0.3, mode, lengths) for mode in MODES]
        serial_grad = [expected_alignment(D, 0.3, mode, lengths) for mode in MODES]
        serial_hard = hard_otam(D, lengths)
    for mode, value, grad in zip(MODES, serial, serial_grad):
        assert torch.equal(score(D, 0.3, mode, lengths), value), f"{mode}: parallel values differ from serial"
        assert torch.equal(expected_alignment(D, 0.3, mode, lengths), grad), f"{mode}: parallel gradients differ"
    assert torch.equal(hard_otam(D, lengths), serial_hard)


def test_cpu_kernel_call_takes_one_pass_or_a_pass_and_its_transpose():
    D = torch.rand(3, 4, 5)
    both, _ = cpu_backend.cpu_scores_alignment(D, None, 0.2, (OTAM, OTAM_T))
    one, _ = cpu_backend.cpu_scores_alignment(D, None, 0.2, (OTAM,))
    other, _ = cpu_backend.cpu_scores_alignment(D.transpose(1, 2).contiguous(), None, 0.2, (OTAM,))
    assert_close(both, one + other, 1e-6, 1e-6, "two-way call vs two one-way calls")
    for passes in [(OTAM_T,), (DTW, OTAM_T), (OTAM, OTAM_T, OTAM_T)]:
        with pytest.raises(ValueError, match="one pass, or a pass and the same pass on D\\^T"):
            cpu_backend.cpu_scores_alignment(D, None, 0.2, passes)


def test_any_leading_dims():
    gen = torch.Generator().manual_seed(6)
    D = torch.rand(2, 3, 4, 5, 6, generator=gen)
    out = soft_dtw(D)
    assert out.shape == (2, 3, 4)
    assert_close(out[1, 2, 3], soft_dtw(D[1, 2, 3]), 0, 0, "one item vs the batch")
    assert soft_otam(D[0, 0, 0]).shape == ()
    assert cumulative_cost(D, "otam").shape == (2, 3, 4, 5, 8)


# ------------------------------------------------------------------------------------------------------------------
# Lengths and padding
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_padding_gets_exactly_zero_gradient_and_batch_equals_per_item(mode):
    gen = torch.Generator().manual_seed(7)
    B, L, M = 6, 5, 7
    lengths = torch.tensor([[5, 7], [1, 1], [3, 7], [5, 2], [2, 4], [4, 6]])
    D = torch.rand(B, L, M, generator=gen, dtype=torch.float64)
    pad_mask = torch.ones(B, L, M, dtype=torch.bool)
    for b, (r, c) in enumerate(lengths.tolist()):
        pad_mask[b, :r, :c] = False
    D[pad_mask & (torch.rand(B, L, M, generator=gen) < 0.5)] = float("inf")  # garbage the kernel must not read
    D[pad_mask & (torch.rand(B, L, M, generator=gen) < 0.3)] = float("nan")
    D.requires_grad_(True)
    out = score(D, 0.2, mode, lengths)
    out.sum().backward()
    assert torch.isfinite(out).all(), f"{mode}: non-finite scores {out}"
    assert torch.equal(D.grad[pad_mask], torch.zeros_like(D.grad[pad_mask])), f"{mode}: gradient leaks into padding"
    for b, (r, c) in enumerate(lengths.tolist()):
        item = D.detach()[b, :r, :c].clone().requires_grad_(True)
        alone = score(item, 0.2, mode)
        alone.backward()
        assert_close(out[b], alone, 1e-12, 1e-12, f"{mode}: item {b} value, batch vs alone")
        assert_close(D.grad[b, :r, :c], item.grad, 1e-12, 1e-12, f"{mode}: item {b} gradient, batch vs alone")


def test_lengths_are_validated():
    D = torch.rand(2, 4, 5)
    with pytest.raises(ValueError, match=r"lengths must be a tensor of shape \[\.\.\., 2\]"):
        soft_dtw(D, 0.1, torch.tensor([4, 5]))
    with pytest.raises(ValueError, match=r"must lie in \[1, 4\] x \[1, 5\]"):
        soft_dtw(D, 0.1, torch.tensor([[4, 5], [0, 3]]))
    with pytest.raises(ValueError, match=r"must lie in \[1, 4\] x \[1, 5\]"):
        soft_otam(D, 0.1, torch.tensor([[4, 6], [1, 3]]))
    with pytest.raises(TypeError, match="integer tensor"):
        soft_dtw(D, 0.1, torch.tensor([[4.0, 5.0], [1.0, 3.0]]))


def test_bad_arguments_raise_clear_errors():
    D = torch.rand(3, 4)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        soft_dtw(D, 0.0)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        soft_otam(D, float("nan"))
    with pytest.raises(TypeError, match="floating-point"):
        soft_dtw(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[\.\.\., L, M\]"):
        soft_dtw(torch.rand(5))
    with pytest.raises(ValueError, match="unknown alignment mode"):
        expected_alignment(D, 0.1, "otam2")
    with pytest.raises(ValueError, match="mode must be 'dtw' or 'otam'"):
        cumulative_cost(D, "otam_both")


# ------------------------------------------------------------------------------------------------------------------
# Numerical range and dtypes
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES)
def test_extreme_inputs_stay_finite(mode, dtype):
    gen = torch.Generator().manual_seed(8)
    cases = {
        "distances 1e4, gamma 1e-3": (torch.rand(8, 9, 7, generator=gen) * 1e4, 1e-3),
        "distances 1e4, gamma 10": (torch.rand(8, 9, 7, generator=gen) * 1e4, 10.0),
        "mixed scales, gamma 1e-3": (
            torch.rand(8, 9, 7, generator=gen) * 10.0 ** torch.randint(-6, 5, (8, 9, 7), generator=gen),
            1e-3,
        ),
        "ties (constant 1e4), gamma 1e-3": (torch.full((8, 9, 7), 1e4), 1e-3),
    }
    for name, (values, gamma) in cases.items():
        D = values.to(dtype).requires_grad_(True)
        out = score(D, gamma, mode)
        out.sum().backward()
        assert torch.isfinite(out).all(), f"{mode} {name}: scores {out}"
        assert torch.isfinite(D.grad).all(), f"{mode} {name}: non-finite gradient"
        passes = 2 if mode == "otam_both" else 1
        assert D.grad.min() >= 0 and D.grad.max() <= passes * (1 + 1e-5), f"{mode} {name}: alignment outside [0, 1]"
        reference = score(values.double(), gamma, mode, backend="ref")
        assert_close(out.double(), reference, 1e-5, 0, f"{mode} {name}: vs float64 reference")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_in_same_dtype_out(dtype):
    gen = torch.Generator().manual_seed(9)
    D = torch.rand(3, 5, 6, generator=gen).to(dtype).requires_grad_(True)
    for mode in MODES:
        out = score(D, 0.1, mode)
        assert out.dtype == dtype, f"{mode}: {out.dtype}"
        (grad,) = torch.autograd.grad(out.sum(), D)
        assert grad.dtype == dtype
        in_fp32 = score(D.detach().float(), 0.1, mode)
        assert_close(out.float(), in_fp32, 1e-2, 1e-2, f"{mode}: {dtype} vs float32")
    assert hard_dtw(D).dtype == dtype and cumulative_cost(D).dtype == dtype


def test_small_gamma_tends_to_hard_cost():
    gen = torch.Generator().manual_seed(10)
    D = torch.rand(5, 6, 7, generator=gen, dtype=torch.float64)
    # soft-min of k values lies in [min - gamma log k, min]; along a path at most L + W steps lose gamma log 3 each.
    bound = (6 + 9) * 1e-3 * math.log(3)
    for soft, hard in [(soft_dtw(D, 1e-3), hard_dtw(D)), (soft_otam(D, 1e-3), hard_otam(D))]:
        assert (soft <= hard + 1e-12).all() and (soft >= hard - bound).all(), f"{soft} vs hard {hard}"


# ------------------------------------------------------------------------------------------------------------------
# Matrices, expected alignment, double backward
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_cumulative_cost_matrix_matches_reference(gamma):
    gen = torch.Generator().manual_seed(11)
    D = torch.rand(3, 4, 6, generator=gen, dtype=torch.float64)
    for mode, prepadded in [("dtw", False), ("otam", False), ("otam", True)]:
        ours = cumulative_cost(D, mode, gamma, prepadded=prepadded)
        ref = cumulative_cost(D, mode, gamma, prepadded=prepadded, backend="ref")
        assert_close(ours, ref, 1e-12, 1e-12, f"{mode} prepadded={prepadded} gamma={gamma} matrix")
    assert_close(cumulative_cost(D, "dtw", 0.5)[..., -1, -1], soft_dtw(D, 0.5), 1e-12, 1e-12, "corner = score")


def test_expected_alignment_is_the_gradient_and_a_probability():
    gen = torch.Generator().manual_seed(12)
    D = torch.rand(4, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([[5, 6], [3, 6], [5, 2], [1, 1]])
    for mode in MODES:
        (grad,) = torch.autograd.grad(score(D, 0.3, mode, lengths).sum(), D)
        A = expected_alignment(D, 0.3, mode, lengths)
        assert_close(A, grad, 1e-12, 1e-12, f"{mode}: expected alignment vs autograd")
    A = expected_alignment(D, 0.3, "dtw", lengths)
    for b, (r, c) in enumerate(lengths.tolist()):
        # every DTW path visits the first and the last cell
        assert_close(A[b, 0, 0], torch.tensor(1.0, dtype=A.dtype), 0, 1e-12, "A[0, 0]")
        assert_close(A[b, r - 1, c - 1], torch.tensor(1.0, dtype=A.dtype), 0, 1e-12, "A[end]")
    sharp = expected_alignment(D[0], 1e-4, "dtw")
    assert ((sharp < 1e-6) | (sharp > 1 - 1e-6)).all(), "gamma -> 0 should give a 0/1 path indicator"


def test_double_backward_raises():
    # The analytic backward is not itself differentiable: a second derivative must fail loudly, not be silently 0.
    D = torch.rand(2, 3, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad((soft_dtw(D) * weights).sum(), D, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        grad.sum().backward()


# ------------------------------------------------------------------------------------------------------------------
# Backend choice
# ------------------------------------------------------------------------------------------------------------------
def test_backend_selection():
    assert resolve_backend(None, torch.device("cpu")) == "cpu"
    assert resolve_backend("ref", torch.device("cpu")) == "ref"
    expected = r"unknown alignment backend 'numba'; choose one of \['cpu', 'ref', 'triton'\]"
    with pytest.raises(ValueError, match=expected):
        soft_dtw(torch.rand(3, 4), backend="numba")


def test_triton_backend_on_cpu_tensor_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        soft_dtw(torch.rand(3, 4), backend="triton")


def test_cuda_without_triton_warns_once_and_uses_cpu(monkeypatch):
    monkeypatch.setattr(alignment_functions, "_triton_importable", lambda: False)
    monkeypatch.setattr(alignment_functions, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="triton is not importable"):
        assert resolve_backend(None, torch.device("cuda")) == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backend(None, torch.device("cuda")) == "cpu"


def test_all_shapes_of_one_problem_agree():
    # The same 4x4 problem through every public route gives one number per mode.
    gen = torch.Generator().manual_seed(13)
    D = torch.rand(4, 4, generator=gen, dtype=torch.float64)
    two_way = soft_otam(D, 0.1, bidirectional=True)
    assert_close(two_way, soft_otam(D, 0.1) + soft_otam(D.T, 0.1), 1e-12, 1e-12, "OTAM(D) + OTAM(D^T)")
    for a, b in itertools.combinations([soft_dtw(D), soft_dtw(D[None, None])[0, 0], soft_dtw(D, backend="ref")], 2):
        assert_close(a, b, 1e-12, 1e-12, "soft_dtw routes")
